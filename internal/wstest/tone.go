package wstest

import (
	"encoding/binary"

	"github.com/mediafork/mediafork/internal/tone"
)

// ToneShare is tone.Share: the part of x's energy at hz.
func ToneShare(x []int16, rate int, hz float64) float64 { return tone.Share(x, rate, hz) }

// Channels splits interleaved L16 little-endian PCM of n channels.
func Channels(pcm []byte, n int) [][]int16 {
	out := make([][]int16, n)
	for i := 0; i+2*n <= len(pcm); i += 2 * n {
		for c := range n {
			out[c] = append(out[c], int16(binary.LittleEndian.Uint16(pcm[i+2*c:])))
		}
	}
	return out
}
