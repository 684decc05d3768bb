package mediafork

import "encoding/binary"

// L16BE is signed 16-bit big-endian, network order, as RTP L16.
const L16BE Encoding = "l16be"

// l16beCodec is signed 16-bit big-endian (network order), as RTP's L16.
type l16beCodec struct{}

func (l16beCodec) Name() Encoding      { return L16BE }
func (l16beCodec) Code() uint8         { return 2 }
func (l16beCodec) BytesPerSample() int { return 2 }

// Encode swaps four samples a step in one 64-bit word where it can (RTP
// endpoints encode every frame: a byte at a time was a quarter of their cost
// over TLV's copy).
func (l16beCodec) Encode(dst, src []byte, stride, n int) {
	i := 0
	switch stride {
	case 2:
		for ; i+4 <= n && 2*i+8 <= len(src); i += 4 {
			binary.LittleEndian.PutUint64(dst[2*i:], swapHalves(binary.LittleEndian.Uint64(src[2*i:])))
		}
	case 4: // one channel of stereo
		for ; i+4 <= n && 4*i+16 <= len(src); i += 4 {
			binary.LittleEndian.PutUint64(dst[2*i:], swapHalves(pickEvenHalves(
				binary.LittleEndian.Uint64(src[4*i:]), binary.LittleEndian.Uint64(src[4*i+8:]))))
		}
	}
	for ; i < n; i++ {
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

// swapHalves swaps the bytes of each of x's four 16-bit lanes.
func swapHalves(x uint64) uint64 {
	return x&0x00ff00ff00ff00ff<<8 | x>>8&0x00ff00ff00ff00ff
}
