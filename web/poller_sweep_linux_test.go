package web

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The deadline sweep checks a share of the connections each round, each one
// once per pollTick, instead of all of them at once (which held a round up
// for a millisecond or more at 1,000 calls); after a long wait (a parked
// reader), one whole pass.
func TestSweepSpreadsTheDeadlineChecks(t *testing.T) {
	t.Parallel()
	p := &poller{set: &ReaderSettings{}}
	require.NoError(t, p.set.resolve())
	for i := 0; i < 1000; i++ {
		p.slots = append(p.slots, &polledConn{fd: -1, msgs: 1})
	}
	p.slots[500] = nil // a free slot is skipped
	p.live = 999
	t0 := time.Now()
	checked := func() (n int) {
		for _, pc := range p.slots {
			if pc != nil && pc.seen == pc.msgs {
				n++
			}
		}
		return n
	}
	for round := 1; round <= 100; round++ {
		now := t0.Add(time.Duration(round) * time.Millisecond)
		p.sweep(time.Millisecond, now)
		want := min(10*round, 999)
		if round > 50 {
			want = 10*round - 1
		}
		require.Equal(t, want, checked(), "after round %d of 1 ms", round)
	}
	assert.Equal(t, uint32(1), p.passes.Load(), "one whole pass in 100 ms")
	assert.Equal(t, p.set.cadence(999), p.want, "the pass sets the cadence")

	for _, pc := range p.slots {
		if pc != nil {
			pc.msgs++
		}
	}
	p.sweep(5*time.Second, t0.Add(6*time.Second)) // a reader parked for long
	assert.Equal(t, 999, checked(), "one whole pass after a long wait")
	assert.Equal(t, uint32(2), p.passes.Load())
	assert.Zero(t, p.due, "nothing owed after a whole pass")
}
