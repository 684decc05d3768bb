package mediafork

// L16BE is signed 16-bit big-endian, network order, as RTP L16.
const L16BE Encoding = "l16be"

// l16beCodec is signed 16-bit big-endian (network order), as RTP's L16.
type l16beCodec struct{}

func (l16beCodec) Name() Encoding      { return L16BE }
func (l16beCodec) Code() uint8         { return 2 }
func (l16beCodec) BytesPerSample() int { return 2 }

func (l16beCodec) Encode(dst, src []byte, stride, n int) {
	for i := 0; i < n; i++ {
		dst[2*i] = src[i*stride+1]
		dst[2*i+1] = src[i*stride]
	}
}

func (l16beCodec) Decode(dst []int16, src []byte) int {
	n := len(src) / 2
	for i := range dst[:n] {
		dst[i] = int16(uint16(src[2*i])<<8 | uint16(src[2*i+1]))
	}
	return n
}
