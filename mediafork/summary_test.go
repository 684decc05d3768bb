package mediafork

import (
	"context"
	"log/slog"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lines is a slog handler that hands each record's text to a channel.
type lines struct {
	mu sync.Mutex
	ch chan string
	h  slog.Handler
	b  *lockedBuf
}

type lockedBuf struct{ s []byte } // guarded by lines.mu

func (b *lockedBuf) Write(p []byte) (int, error) { b.s = append(b.s, p...); return len(p), nil }

func newLines() *lines {
	b := &lockedBuf{}
	return &lines{ch: make(chan string, 100), b: b, h: slog.NewTextHandler(b, nil)}
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *lines) WithGroup(string) slog.Handler            { return l }
func (l *lines) Handle(ctx context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.s = l.b.s[:0]
	if err := l.h.Handle(ctx, r); err != nil {
		return err
	}
	select {
	case l.ch <- string(l.b.s):
	default:
	}
	return nil
}

func TestSummariesOncePerTickWhileOn(t *testing.T) {
	t.Parallel()
	const every = 10 * time.Millisecond
	sink := newUDPSink(t)
	sink.conn.SetReadBuffer(4 << 20)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("uuid-sum", "mediafork")
	require.NoError(t, err)
	require.NoError(t, f.Begin(stereoSpec(), TLVTargets(sink.addr())))
	defer f.Finish(EndHangup)
	f.Write(nil, stereoTone(16384, 0))

	out := newLines()
	s := NewSummaries(reg, every, slog.New(out))
	s.Set(true)
	s.Set(true) // on twice: still one ticker
	line := <-out.ch
	assert.Regexp(t, regexp.MustCompile(`msg="fork summary" uuid=uuid-sum stream_id=\d+ frames_in=1 drops=0 `+
		`RX.packets=3 RX.bytes=\d+ RX.dbfs=-6(\.0)? RX.silent=false TX.packets=3 TX.bytes=\d+ TX.dbfs=-96 TX.silent=false`), line)
	s.Set(false)
	assert.False(t, s.On())
	for len(out.ch) > 0 { // lines of ticks before off
		<-out.ch
	}
	select {
	case l := <-out.ch:
		t.Fatalf("a summary after off: %s", l)
	case <-time.After(5 * every): // the absence of a line: nothing to wait for but time
	}
	s.Close() // off already: nothing to stop
}
