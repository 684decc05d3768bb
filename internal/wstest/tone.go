package wstest

import (
	"encoding/binary"
	"math"
)

// ToneShare is the part of x's energy at hz (Goertzel): 1 for a pure tone at
// hz over whole periods, 0 for none of it.
func ToneShare(x []int16, rate int, hz float64) float64 {
	w := 2 * math.Pi * hz / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2, energy float64
	for _, v := range x {
		f := float64(v)
		energy += f * f
		s1, s2 = f+coeff*s1-s2, s1
	}
	if energy == 0 {
		return 0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * power / (float64(len(x)) * energy)
}

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
