package tone

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestShare(t *testing.T) {
	x := make([]int16, 8000) // 1 s at 8 kHz: whole periods of both tones
	for i := range x {
		x[i] = int16(8000 * math.Sin(2*math.Pi*1000*float64(i)/8000))
	}
	assert.InDelta(t, 1.0, Share(x, 8000, 1000), 0.01, "a pure 1000 Hz")
	assert.Less(t, Share(x, 8000, 440), 0.01, "no 440 Hz in it")
	for i := range x {
		x[i] += int16(8000 * math.Sin(2*math.Pi*440*float64(i)/8000))
	}
	assert.InDelta(t, 0.5, Share(x, 8000, 1000), 0.02, "half of a mix")
	assert.InDelta(t, 0.5, Share(x, 8000, 440), 0.02)
	assert.Zero(t, Share(make([]int16, 160), 8000, 1000), "silence")
}
