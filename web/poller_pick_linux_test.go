package web

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// New connections fill one reader up to connsPerReader, then the least
// loaded of one more, and so on: few readers tick at low load, all at high.
func TestPickFillsReadersInTurn(t *testing.T) {
	t.Parallel()
	ps := &pollers{list: []*poller{{}, {}, {}}}
	index := func(p *poller) int {
		for i, q := range ps.list {
			if q == p {
				return i
			}
		}
		return -1
	}
	counts := make([]int, 3)
	add := func(n int) {
		for range n {
			p := ps.pick()
			p.load.Add(1)
			counts[index(p)]++
		}
	}
	add(connsPerReader)
	assert.Equal(t, []int{connsPerReader, 0, 0}, counts, "one reader up to connsPerReader")
	add(connsPerReader)
	assert.Equal(t, []int{connsPerReader, connsPerReader, 0}, counts, "then the second takes the new ones")
	add(3 * connsPerReader)
	assert.Equal(t, []int{5 * connsPerReader / 3, 5 * connsPerReader / 3, 5 * connsPerReader / 3}, counts, "at high load, all share")

	// Connections end on the first reader: it is the least loaded again.
	ps.list[0].load.Add(-100)
	assert.Same(t, ps.list[0], ps.pick())
}

// readerLoad is the connections the epoll readers count as theirs.
func (in *Ingest) readerLoad() int {
	n := 0
	if in.poller != nil {
		for _, p := range in.poller.list {
			n += int(p.load.Load())
		}
	}
	return n
}

// The rounds' cadence stretches with fewer calls so that a round carries some
// 20 frames, between RoundInterval and MaxRoundInterval.
func TestCadenceStretchesWithFewerCalls(t *testing.T) {
	t.Parallel()
	s := ReaderSettings{MaxRoundInterval: 4 * time.Millisecond}
	require.NoError(t, s.resolve())
	for _, tc := range []struct {
		live int
		want time.Duration
	}{{0, 4 * time.Millisecond}, {1, 4 * time.Millisecond}, {100, 4 * time.Millisecond}, {160, 2500 * time.Microsecond},
		{200, 2 * time.Millisecond}, {400, time.Millisecond}, {500, 800 * time.Microsecond},
		{1000, 800 * time.Microsecond}, {5000, 800 * time.Microsecond}} {
		assert.Equal(t, tc.want, s.cadence(tc.live), "%d calls", tc.live)
	}
	s.MaxRoundInterval = time.Millisecond // never longer than 1 ms
	assert.Equal(t, time.Millisecond, s.cadence(10))
	assert.Equal(t, 800*time.Microsecond, s.cadence(800))
}
