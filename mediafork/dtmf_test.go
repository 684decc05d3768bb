package mediafork

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A DTMF event of the switch reaches the call's fork, from the event's
// goroutine into the fork's queue, and its media path sends it at the next
// frame; another call's digit does not.
func TestOrchestratorHandsDTMFToTheForks(t *testing.T) {
	t.Parallel()
	r, sw := newRigUp(t, nil)
	r.event(sw, CallAnswered{Data: sw.answer("u1", "3000")})
	sw.expect(t, "start u1")
	f := r.connect(t, sw, "u1")
	r.event(sw, DTMFReceived{UUID: "u2", Digit: '1', Duration: 40 * time.Millisecond})
	assert.Zero(t, f.queuedDTMF(), "another call's digit")
	r.event(sw, DTMFReceived{UUID: "u1", Digit: '#', Duration: 40 * time.Millisecond})
	require.Equal(t, 1, f.queuedDTMF())
	f.Write(nil, make([]byte, 640))
	assert.Equal(t, uint64(1), f.DTMFIn.Load())
	assert.Zero(t, f.queuedDTMF())
	assert.Zero(t, f.ctl.Load()&ctlDTMF)
	assert.Equal(t, uint64(1), f.Info().DTMF)
}

// queuedDTMF is how many digits wait in f's queue.
func (f *Fork) queuedDTMF() int {
	f.dmu.Lock()
	defer f.dmu.Unlock()
	return f.dq.n
}
