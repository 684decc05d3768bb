package mediafork

import (
	"encoding/binary"

	"github.com/mediafork/mediafork/g711"
)

// PCMA is G.711 A-law.
const PCMA Encoding = "pcma"

// pcmaCodec is G.711 A-law: one byte a sample, 160 bytes per 20 ms at 8 kHz.
type pcmaCodec struct{}

func (pcmaCodec) Name() Encoding      { return PCMA }
func (pcmaCodec) Code() uint8         { return 4 }
func (pcmaCodec) BytesPerSample() int { return 1 }

func (pcmaCodec) Encode(dst, src []byte, stride, n int) {
	for i := 0; i < n; i++ {
		dst[i] = g711.LinearToALaw(int16(binary.LittleEndian.Uint16(src[i*stride:])))
	}
}

func (pcmaCodec) Decode(dst []int16, src []byte) int {
	for i, b := range src {
		dst[i] = g711.ALawToLinear(b)
	}
	return len(src)
}
