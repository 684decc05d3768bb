package mediafork

// L16 is signed 16-bit little-endian, as FreeSWITCH delivers it (the default).
const L16 Encoding = "l16"

// l16Codec is signed 16-bit little-endian, exactly as FreeSWITCH delivers it.
type l16Codec struct{}

func (l16Codec) Name() Encoding      { return L16 }
func (l16Codec) Code() uint8         { return 1 }
func (l16Codec) BytesPerSample() int { return 2 }

func (l16Codec) Encode(dst, src []byte, stride, n int) {
	if stride == 2 {
		copy(dst, src[:2*n])
		return
	}
	for i := 0; i < n; i++ {
		dst[2*i] = src[i*stride]
		dst[2*i+1] = src[i*stride+1]
	}
}

func (l16Codec) Decode(dst []int16, src []byte) int {
	n := len(src) / 2
	for i := range dst[:n] {
		dst[i] = int16(uint16(src[2*i]) | uint16(src[2*i+1])<<8)
	}
	return n
}
