package mediafork

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"
)

// summaryEvery is how often `mediafork logger on` logs each live fork.
const summaryEvery = time.Second

// Summaries logs one line per live fork every so often while on: packets,
// bytes and level per direction. It is ForkStream's `forkstream set logger on`
// without its line per frame, which at a thousand calls is 50,000 lines a
// second and the end of the disk before anything useful is read.
type Summaries struct {
	registry *Registry
	every    time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	stop context.CancelFunc // nil while off
	done chan struct{}
}

// NewSummaries logs registry's forks to log, every so often (at least 1 ms).
func NewSummaries(registry *Registry, every time.Duration, log *slog.Logger) *Summaries {
	return &Summaries{registry: registry, every: max(every, time.Millisecond), log: log}
}

// Set turns the summaries on or off; setting the state in force does nothing.
func (s *Summaries) Set(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on == (s.stop != nil) {
		return
	}
	if !on {
		s.stop()
		<-s.done
		s.stop, s.done = nil, nil
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go s.run(ctx, s.done)
}

// On reports whether the summaries are being logged.
func (s *Summaries) On() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop != nil
}

// Close turns the summaries off.
func (s *Summaries) Close() { s.Set(false) }

func (s *Summaries) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, f := range s.registry.List() {
				s.logFork(f.Info())
			}
		}
	}
}

func (s *Summaries) logFork(in Info) {
	if in.State != StateStreaming {
		return
	}
	attrs := []any{"uuid", in.UUID, "stream_id", in.StreamID, "frames_in", in.FramesIn, "drops", in.Drops}
	for _, l := range in.Levels {
		d := l.Direction.String()
		attrs = append(attrs, slog.Group(d, "packets", in.PacketsOut[d], "bytes", in.BytesOut[d],
			"dbfs", math.Round(l.DBFS*10)/10, "silent", l.Silent))
	}
	s.log.Info("fork summary", attrs...)
}
