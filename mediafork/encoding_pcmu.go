package mediafork

import (
	"encoding/binary"

	"github.com/mediafork/mediafork/g711"
)

// PCMU is G.711 µ-law.
const PCMU Encoding = "pcmu"

// pcmuCodec is G.711 µ-law: one byte a sample, 160 bytes per 20 ms at 8 kHz.
type pcmuCodec struct{}

func (pcmuCodec) Name() Encoding      { return PCMU }
func (pcmuCodec) Code() uint8         { return 3 }
func (pcmuCodec) BytesPerSample() int { return 1 }

func (pcmuCodec) Encode(dst, src []byte, stride, n int) {
	for i := 0; i < n; i++ {
		dst[i] = g711.LinearToULaw(int16(binary.LittleEndian.Uint16(src[i*stride:])))
	}
}

func (pcmuCodec) Decode(dst []int16, src []byte) int {
	for i, b := range src {
		dst[i] = g711.ULawToLinear(b)
	}
	return len(src)
}
