package checkpoint

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// What a run writes, the next one reads back: every field of every fork, and
// the heartbeat; the final write at the end has the last positions.
func TestWriteThenLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "checkpoint")
	s, err := Load(path)
	require.NoError(t, err, "no file: nothing to resume")
	assert.Empty(t, s.Forks)

	at := time.UnixMicro(1796650900123456)
	ps := []mediafork.Position{
		{UUID: "a1b2-c3", Bug: "mediafork", Rate: 8000, Sent: 16000, Clock: 17600, At: at, Why: mediafork.GapPaused, Digits: 2, Paused: true},
		{UUID: "x9", Bug: "", Rate: 16000, Sent: 5, Clock: 5, Suspended: true, Why: mediafork.GapMediaLost},
	}
	positions := make(chan []mediafork.Position, 1)
	positions <- ps[:1]
	current := ps[:1]
	w := &Writer{Path: path, Log: quiet, Positions: func() []mediafork.Position {
		select {
		case current = <-positions:
		default:
		}
		return current
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	before := time.Now()
	go func() { defer close(done); w.Run(ctx) }()
	require.Eventually(t, func() bool { got, _ := Load(path); return len(got.Forks) == 1 }, 10*time.Second, 5*time.Millisecond)
	positions <- ps
	cancel()
	<-done
	s, err = Load(path)
	require.NoError(t, err)
	require.Len(t, s.Forks, 2, "the final write has the last positions")
	assert.True(t, s.Forks[0].At.Equal(at))
	s.Forks[0].At = at
	assert.Equal(t, ps, s.Forks)
	assert.False(t, s.Alive.Before(before.Truncate(time.Microsecond)), "the heartbeat")
	assert.WithinDuration(t, time.Now(), s.Alive, 10*time.Second)
}

// A checkpoint file is read as the untrusted file it may be: anything that is
// not exactly what a Writer writes is refused, with the line.
func TestLoadRefusesWhatIsNotACheckpoint(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"", "hello\n", header + "\nu1 mediafork 8000 1 2 3 0 0 0\n", header + "\nu1 mediafork 8000 3 2 3 0 0 0 0\n",
		header + "\nu1 mediafork 11025 1 2 3 0 0 0 0\n", header + "\nu;1 mediafork 8000 1 2 3 0 0 0 0\n",
		header + "\nu1 mediafork 8000 1 2 3 9 0 0 0\n", header + "\nu1 mediafork 8000 -1 2 3 0 0 0 0\n",
		header + "\nu1 mediafork 8000 1 2 3 0 0 2 0\n", header + "\nu1 mediafork 8000 1 2 3 0 0 0 7\n",
	} {
		path := filepath.Join(t.TempDir(), "checkpoint")
		require.NoError(t, os.WriteFile(path, []byte(bad), 0o600))
		_, err := Load(path)
		assert.Error(t, err, "%q", bad)
	}
	path := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, os.Mkdir(path, 0o700))
	_, err := Load(path)
	assert.Error(t, err, "a directory")
}
