package fssim

import (
	"encoding/binary"
	"math"
)

// Tone returns seconds of L16 little-endian PCM at rate, channels interleaved,
// with one sine frequency per channel (the recordings used 440 Hz one side and
// 1000 Hz the other).
func Tone(rate int, seconds float64, amplitude float64, freqs ...float64) []byte {
	n := int(float64(rate) * seconds)
	ch := len(freqs)
	out := make([]byte, n*ch*2)
	for i := 0; i < n; i++ {
		for c, f := range freqs {
			v := amplitude * math.Sin(2*math.Pi*f*float64(i)/float64(rate))
			binary.LittleEndian.PutUint16(out[(i*ch+c)*2:], uint16(int16(v)))
		}
	}
	return out
}

// FrameBytes is what mod_audio_fork sends per 20 ms: rate/50 * 2 * channels.
func FrameBytes(rate, channels int) int { return rate / 50 * 2 * channels }
