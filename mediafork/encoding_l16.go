package mediafork

import "encoding/binary"

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
	i := 0
	if stride == 4 { // one channel of stereo, four samples a step
		for ; i+4 <= n && 4*i+16 <= len(src); i += 4 {
			binary.LittleEndian.PutUint64(dst[2*i:], pickEvenHalves(
				binary.LittleEndian.Uint64(src[4*i:]), binary.LittleEndian.Uint64(src[4*i+8:])))
		}
	}
	for ; i < n; i++ {
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

// pickEvenHalves packs the 16-bit words 0 and 2 of a, then of b: four samples
// of one channel out of eight interleaved ones, in the order they came.
func pickEvenHalves(a, b uint64) uint64 {
	return a&0xffff | a>>16&0xffff0000 | (b&0xffff)<<32 | (b>>32&0xffff)<<48
}
