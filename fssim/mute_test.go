package fssim

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A muted side sends zeros; the other keeps its tone.
func TestMuteSilencesOneSide(t *testing.T) {
	t.Parallel()
	c := &Call{opts: CallOptions{ReadHz: 440, WriteHz: 1000}}
	peaks := func() (l, r int) {
		frame := make([]byte, 160*4)
		c.fillTone("stereo", 8000, frame, 0, 2, 0)
		for i := 0; i < len(frame); i += 4 {
			l = max(l, abs16(frame[i:]))
			r = max(r, abs16(frame[i+2:]))
		}
		return l, r
	}
	l, r := peaks()
	assert.Greater(t, l, 4000)
	assert.Greater(t, r, 4000)
	c.Mute(false, true)
	l, r = peaks()
	assert.Greater(t, l, 4000)
	assert.Zero(t, r)
	c.Mute(true, false)
	l, r = peaks()
	assert.Zero(t, l)
	assert.Greater(t, r, 4000)
}

func abs16(b []byte) int {
	v := int(int16(binary.LittleEndian.Uint16(b)))
	if v < 0 {
		return -v
	}
	return v
}
