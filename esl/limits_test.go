package esl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/syncbuf"
)

// acceptor is a TCP peer on 127.0.0.1:0 that reports every accept (with its
// time) and serves each connection with serve.
type acceptor struct {
	ln      net.Listener
	accepts chan time.Time
}

func newAcceptor(t *testing.T, serve func(c net.Conn)) *acceptor {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := &acceptor{ln: ln, accepts: make(chan time.Time, 1000)}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			a.accepts <- time.Now()
			go serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return a
}

func (a *acceptor) addr() string { return a.ln.Addr().String() }

// attempts waits for n accepts and returns when each came.
func (a *acceptor) attempts(t *testing.T, n int, each func()) []time.Time {
	t.Helper()
	var times []time.Time
	for len(times) < n {
		select {
		case at := <-a.accepts:
			times = append(times, at)
			if each != nil {
				each()
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d connection attempts", len(times))
		}
	}
	return times
}

// assertGrowing checks the backoff by what the client decided, not by how
// fast a loaded machine ran it: the waits it logged (retry_in, one line per
// failed attempt, in order) double from BackoffMin, each within its jitter
// (+25 %), and each next attempt came no sooner than its wait after the line
// (logged before the wait began; a timer never fires early, and load only
// makes an attempt, and the acceptor's note of it, later).
func assertGrowing(t *testing.T, attempts []time.Time, logs *syncbuf.Buffer, set ClientSettings) {
	t.Helper()
	waits := retryWaits(t, logs.String())
	require.GreaterOrEqual(t, len(waits), len(attempts)-1, "a wait logged before each next attempt:\n%s", logs.String())
	base := set.BackoffMin
	for i, next := range attempts[1:] {
		w := waits[i]
		assert.GreaterOrEqual(t, w.wait, base, "wait %d: at least the backoff: %v", i, waits)
		assert.LessOrEqual(t, w.wait, base+base/4, "wait %d: at most the backoff and its jitter: %v", i, waits)
		// The log's time is truncated to the ms, retry_in rounded to it.
		assert.GreaterOrEqual(t, next.Sub(w.logged), w.wait-time.Millisecond, "attempt %d came before its wait was over: %v", i+2, waits)
		base = min(2*base, set.BackoffMax)
	}
}

// retryWait is a wait the client logged, and when.
type retryWait struct {
	logged time.Time
	wait   time.Duration
}

func (w retryWait) String() string { return w.wait.String() }

var retryInRE = regexp.MustCompile(`(?m)^time=(\S+) .* retry_in=(\S+)`)

// retryWaits are the waits the client logged, in order.
func retryWaits(t *testing.T, logs string) []retryWait {
	t.Helper()
	var waits []retryWait
	for _, m := range retryInRE.FindAllStringSubmatch(logs, -1) {
		at, err := time.Parse(time.RFC3339Nano, m[1])
		require.NoError(t, err, m[0])
		d, err := time.ParseDuration(m[2])
		require.NoError(t, err, m[0])
		waits = append(waits, retryWait{at, d})
	}
	return waits
}

func shortBackoff() ClientSettings {
	set := ClientSettings{BackoffMin: 100 * time.Millisecond, BackoffMax: 10 * time.Second}
	set.HandshakeTimeout = 30 * time.Millisecond
	return set
}

// The backoff tests read the waits the client chose from its log: they hold
// on a loaded machine.

// A switch that accepts TCP and never says anything: every attempt fails after
// HandshakeTimeout, attempts back off, and the client is never "connected".
func TestSilentSwitchBacksOff(t *testing.T) {
	set := shortBackoff()
	a := newAcceptor(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	var logs syncbuf.Buffer
	rec := &recorder{}
	c := startClient(t, set, a.addr(), "ClueCon", rec, &logs)
	attempts := a.attempts(t, 5, func() { assert.False(t, c.Connected()) })
	assertGrowing(t, attempts, &logs, set)
	assert.False(t, c.Connected())
	n, _ := rec.snapshot()
	assert.Zero(t, n, "OnConnect never ran")
	assert.Contains(t, logs.String(), "no handshake in time")
}

// A switch that refuses the password (the recorded bytes): a clear error, and
// the attempts back off too.
func TestRefusedPasswordBacksOff(t *testing.T) {
	set := shortBackoff()
	set.HandshakeTimeout = 5 * time.Second
	refusal := readTranscript(t, "esl/auth_bad_password.txt")
	a := newAcceptor(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for _, w := range refusal {
			if w.FromServer {
				c.Write(w.Data)
				continue
			}
			if _, err := r.ReadString('\n'); err != nil { // the auth command
				return
			}
		}
	})
	var logs syncbuf.Buffer
	c := startClient(t, set, a.addr(), "WrongPass", &recorder{}, &logs)
	attempts := a.attempts(t, 5, func() { assert.False(t, c.Connected()) })
	assertGrowing(t, attempts, &logs, set)
	assert.False(t, c.Connected())
	assert.Contains(t, logs.String(), "authentication refused")
	assert.NotContains(t, logs.String(), "WrongPass")
}

// A switch that authenticates and subscribes, then drops the connection at
// once: the backoff is not reset by a connection that did not stay up.
func TestFlappingSwitchBacksOff(t *testing.T) {
	set := shortBackoff()
	set.HandshakeTimeout = 5 * time.Second
	a := newAcceptor(t, func(c net.Conn) {
		defer c.Close()
		io.WriteString(c, "Content-Type: auth/request\n\n")
		r := bufio.NewReader(c)
		for _, reply := range []string{"+OK accepted", "+OK event listener enabled plain"} {
			for { // one command: lines up to a blank one
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.TrimRight(line, "\r\n") == "" {
					break
				}
			}
			fmt.Fprintf(c, "Content-Type: command/reply\nReply-Text: %s\n\n", reply)
		}
	})
	rec := &recorder{}
	var logs syncbuf.Buffer
	c := startClient(t, set, a.addr(), "ClueCon", rec, &logs)
	attempts := a.attempts(t, 5, nil)
	assertGrowing(t, attempts, &logs, set)
	n, _ := rec.snapshot()
	assert.GreaterOrEqual(t, n, 4, "each attempt did connect")
	assert.GreaterOrEqual(t, c.Reconnects.Load(), uint64(3))
}

// floodingSwitch answers `api flood` with n events of the given body size
// (each for its own channel), then the reply.
func floodingSwitch(t *testing.T, n, bodySize int) *scripted {
	return newScripted(t, func(cmd string, w io.Writer) {
		if strings.TrimSpace(cmd) == "api flood" {
			var b strings.Builder
			for i := 0; i < n; i++ {
				body := fmt.Sprintf("Event-Name: API\nUnique-ID: u%d\nContent-Length: %d\n\n%s", i, bodySize, strings.Repeat("x", bodySize))
				fmt.Fprintf(&b, "Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(body), body)
			}
			io.WriteString(w, b.String())
		}
		io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
	})
}

// gatedRecorder blocks its handler on the first event of the first connection
// until released: a slow `mediafork status`.
func gatedRecorder(t *testing.T) (rec *recorder, release func()) {
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	rec = &recorder{}
	var first sync.Once
	rec.onEvent = func(*Event) { first.Do(func() { <-gate }) }
	return rec, release
}

// Events faster than the handler takes them: past MaxQueuedEvents the
// connection is dropped with a clear ERROR, counted, and made again (which
// resyncs); the reader never waited for the handler.
func TestEventQueueFullInEvents(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	set.MaxQueuedEvents = 10
	s := floodingSwitch(t, 50, 10)
	rec, _ := gatedRecorder(t)
	var logs syncbuf.Buffer
	c := startClient(t, set, s.ln.Addr().String(), "ClueCon", rec, &logs)
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	_, err := c.API(context.Background(), "flood")
	assert.ErrorIs(t, err, ErrClosed, "the connection was dropped under the command")
	require.Eventually(t, func() bool { n, _ := rec.snapshot(); return n == 2 && c.Connected() }, 5*time.Second, 5*time.Millisecond,
		"no reconnect; log:\n%s", logs.String())
	assert.Equal(t, uint64(1), c.QueueOverflows.Load())
	assert.Contains(t, logs.String(), "level=ERROR msg=\"event queue full: 10 events / ")
	assert.Contains(t, logs.String(), "reconnecting and resyncing")
	out, err := c.API(context.Background(), "status")
	require.NoError(t, err)
	assert.Equal(t, "+OK", out)
}

// The same bound in bytes: a few big events fill it long before 10,000 would.
func TestEventQueueFullInBytes(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	set.MaxQueuedBytes = 64 << 10
	s := floodingSwitch(t, 40, 8<<10)
	rec, _ := gatedRecorder(t)
	var logs syncbuf.Buffer
	c := startClient(t, set, s.ln.Addr().String(), "ClueCon", rec, &logs)
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	c.API(context.Background(), "flood")
	require.Eventually(t, func() bool { return c.QueueOverflows.Load() == 1 }, 5*time.Second, 5*time.Millisecond, "log:\n%s", logs.String())
	assert.Contains(t, logs.String(), "event queue full: ")
	require.Eventually(t, func() bool { n, _ := rec.snapshot(); return n == 2 && c.Connected() }, 5*time.Second, 5*time.Millisecond)
}

// Under the bound, a handler stuck on one event stalls neither the reader nor
// the commands, and every event is handled, in order, once it is free.
func TestSlowHandlerDoesNotStallTheReader(t *testing.T) {
	t.Parallel()
	s := floodingSwitch(t, 100, 10)
	rec, release := gatedRecorder(t)
	c := startClient(t, ClientSettings{}, s.ln.Addr().String(), "ClueCon", rec, nil)
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	_, err := c.API(context.Background(), "flood") // its reply came after the 100 events
	require.NoError(t, err)
	_, err = c.API(context.Background(), "status")
	require.NoError(t, err)
	// The queue holds what the handler has not taken (metrics): all but the
	// one it is stuck on.
	require.Eventually(t, func() bool { return c.QueuedEvents() == 99 }, 5*time.Second, 5*time.Millisecond, "%d queued", c.QueuedEvents())
	release()
	require.Eventually(t, func() bool { _, ev := rec.snapshot(); return len(ev) == 100 }, 5*time.Second, 5*time.Millisecond, "%d events", func() int { _, ev := rec.snapshot(); return len(ev) }())
	assert.Zero(t, c.QueuedEvents())
	_, ev := rec.snapshot()
	for i, e := range ev {
		require.Equal(t, fmt.Sprintf("u%d", i), e.UUID())
	}
	assert.Zero(t, c.QueueOverflows.Load())
}

// A command whose reply never comes closes the connection; the client
// reconnects.
func TestCommandTimeoutClosesTheConnection(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	set.CommandTimeout = 100 * time.Millisecond
	s := newScripted(t, func(cmd string, w io.Writer) {
		if strings.TrimSpace(cmd) != "api hang" {
			io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
		}
	})
	var logs syncbuf.Buffer
	rec := &recorder{}
	c := startClient(t, set, s.ln.Addr().String(), "ClueCon", rec, &logs)
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	_, err := c.API(context.Background(), "hang")
	require.Error(t, err)
	require.Eventually(t, func() bool { n, _ := rec.snapshot(); return n == 2 && c.Connected() }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, logs.String(), "ESL command timed out; closing the connection")
	_, err = c.API(context.Background(), "status")
	require.NoError(t, err)
}

// A panic in the event handler ends that connection, logged at ERROR with the
// stack; the client reconnects and the process lives on.
func TestHandlerPanicEndsOnlyThatConnection(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	s := newScripted(t, func(cmd string, w io.Writer) {
		if strings.TrimSpace(cmd) == "api boom" {
			io.WriteString(w, plainEvent("BOOM", "b"))
		}
		io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
	})
	rec := &recorder{}
	rec.onEvent = func(e *Event) {
		if e.Name == "BOOM" {
			panic("a handler bug")
		}
	}
	var logs syncbuf.Buffer
	c := startClient(t, set, s.ln.Addr().String(), "ClueCon", rec, &logs)
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	c.API(context.Background(), "boom")
	require.Eventually(t, func() bool { n, _ := rec.snapshot(); return n == 2 && c.Connected() }, 5*time.Second, 5*time.Millisecond,
		"log:\n%s", logs.String())
	assert.Equal(t, uint64(1), c.HandlerPanics.Load())
	assert.Contains(t, logs.String(), `level=ERROR msg="panic in the ESL event handler; closing the connection"`)
	assert.Contains(t, logs.String(), `event=BOOM uuid=b`)
	assert.Contains(t, logs.String(), "a handler bug")
	assert.Contains(t, logs.String(), "runtime/debug.Stack", "the stack is logged")
	_, err := c.API(context.Background(), "status")
	require.NoError(t, err)
}

// A panic in OnConnect: the same.
type panicOnFirstConnect struct {
	recorder
	once sync.Once
}

func (p *panicOnFirstConnect) OnConnect(ctx context.Context, c *Client) {
	p.recorder.OnConnect(ctx, c)
	p.once.Do(func() { panic("resync bug") })
}

func TestOnConnectPanicEndsOnlyThatConnection(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	s := newScripted(t, func(cmd string, w io.Writer) {
		io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
	})
	h := &panicOnFirstConnect{}
	var logs syncbuf.Buffer
	c := startClient(t, set, s.ln.Addr().String(), "ClueCon", h, &logs)
	require.Eventually(t, func() bool { n, _ := h.snapshot(); return n == 2 && c.Connected() }, 5*time.Second, 5*time.Millisecond,
		"log:\n%s", logs.String())
	assert.Contains(t, logs.String(), `level=ERROR msg="panic in the ESL connect handler; closing the connection"`)
	assert.Contains(t, logs.String(), `panic="resync bug"`)
	assert.Equal(t, uint64(1), c.HandlerPanics.Load())
}

// A header value is URL-decoded and may hold a line break; on the event socket
// a line break ends a command and starts another. No command with one is sent.
func TestNoLineBreakReachesTheSwitch(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	s := newScripted(t, func(cmd string, w io.Writer) {
		mu.Lock()
		seen = append(seen, strings.TrimSpace(cmd))
		mu.Unlock()
		io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
	})
	c := startClient(t, ClientSettings{}, s.ln.Addr().String(), "ClueCon", &recorder{}, nil)
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	evil := "x\n\napi system rm -rf /"
	decoded, err := ParseEvent([]byte("Event-Name: CHANNEL_ANSWER\nCaller-Destination-Number: x%0A%0Aapi%20system%20rm%20-rf%20%2F\n\n"))
	require.NoError(t, err)
	require.Equal(t, evil, decoded.Get("Caller-Destination-Number"), "the recorded encoding decodes to a line break")
	for _, cmd := range []string{"uuid_setvar u v " + evil, "uuid_setvar u v x\r\napi system", "log NOTICE a\rb"} {
		_, err = c.API(context.Background(), cmd)
		assert.ErrorIs(t, err, ErrLineBreak)
	}
	out, err := c.API(context.Background(), "status") // a marker: everything before it has arrived
	require.NoError(t, err)
	assert.Equal(t, "+OK", out)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"api status"}, seen)
	assert.True(t, c.Connected(), "a refused command leaves the connection alone")
}

// startOutbound serves the outbound listener on 127.0.0.1:0 with h.
func startOutbound(t *testing.T, set OutboundSettings, h OutboundHandler, w io.Writer) *Outbound {
	if w == nil {
		w = io.Discard
	}
	o, err := ListenOutbound("127.0.0.1:0", h, set, slog.New(slog.NewTextHandler(w, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return o
}

// dialOutbound connects like FreeSWITCH's socket application and waits for
// mediafork's `connect`.
func dialOutbound(t *testing.T, o *Outbound) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", o.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "connect", strings.TrimRight(line, "\r\n"))
	return c, r
}

// waitClosed reads until the peer closes; the deadline only bounds a failure.
func waitClosed(t *testing.T, c net.Conn, r io.Reader, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, r)
	require.NoError(t, err, "not closed within %v", within)
}

// A peer that connects to the outbound listener and never answers `connect`
// is dropped after HandshakeTimeout, without reaching the handler.
func TestOutboundSilentPeerIsDropped(t *testing.T) {
	t.Parallel()
	var set OutboundSettings
	set.HandshakeTimeout = 100 * time.Millisecond
	called := make(chan struct{}, 1)
	var logs syncbuf.Buffer
	o := startOutbound(t, set, func(context.Context, *OutboundCall) { called <- struct{}{} }, &logs)
	c, r := dialOutbound(t, o)
	waitClosed(t, c, r, 2*time.Second)
	assert.Empty(t, called)
	require.Eventually(t, func() bool { return o.Active() == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, logs.String(), "no handshake in time")
}

// Beyond MaxConns, a new socket is closed at once, logged and counted;
// once one ends, a new one is served again.
func TestOutboundConnectionCap(t *testing.T) {
	t.Parallel()
	var set OutboundSettings
	set.MaxConns = 2
	var logs syncbuf.Buffer
	o := startOutbound(t, set, func(context.Context, *OutboundCall) {}, &logs)
	first, _ := dialOutbound(t, o)
	dialOutbound(t, o)
	require.Equal(t, 2, o.Active())

	extra, err := net.Dial("tcp", o.Addr().String())
	require.NoError(t, err)
	defer extra.Close()
	waitClosed(t, extra, extra, 2*time.Second)
	assert.Equal(t, uint64(1), o.Refused.Load())
	assert.Contains(t, logs.String(), "too many outbound sockets; closing a new one")

	first.Close()
	require.Eventually(t, func() bool { return o.Active() == 1 }, 5*time.Second, 5*time.Millisecond)
	dialOutbound(t, o) // served again
	assert.Equal(t, uint64(1), o.Refused.Load())
}

// A panic in the outbound handler ends that socket, logged with its stack; the
// listener serves the next one.
func TestOutboundHandlerPanic(t *testing.T) {
	t.Parallel()
	connectReply := readTranscript(t, "extra/outbound_connect_resume_fork_exit.txt")[1].Data
	var logs syncbuf.Buffer
	calls := make(chan string, 2)
	var n atomic.Int32
	o := startOutbound(t, OutboundSettings{}, func(_ context.Context, call *OutboundCall) {
		calls <- call.Data["Unique-Id"]
		if n.Add(1) == 1 {
			panic(errors.New("handler bug"))
		}
	}, &logs)
	for i := 0; i < 2; i++ {
		c, r := dialOutbound(t, o)
		r.ReadString('\n') // the blank line ending `connect`
		_, err := c.Write(connectReply)
		require.NoError(t, err)
		select {
		case uuid := <-calls:
			assert.Equal(t, "04e07857-5dec-4c13-a44c-6ee605e3f343", uuid, "the recorded connect reply")
		case <-time.After(5 * time.Second):
			t.Fatal("handler not called")
		}
		if i == 0 {
			waitClosed(t, c, r, 5*time.Second)
		}
	}
	assert.Equal(t, uint64(1), o.HandlerPanics.Load())
	assert.Contains(t, logs.String(), `level=ERROR msg="panic in the outbound socket handler; closing the socket"`)
	assert.Contains(t, logs.String(), "handler bug")
	assert.Contains(t, logs.String(), "runtime/debug.Stack")
}

// A slow fs_cli command (an API event the handler takes long over) does not
// hold up the CHANNEL_ANSWER that came after it; a channel's own events stay
// in order.
func TestSlowFsCliCommandDoesNotHoldUpChannelEvents(t *testing.T) {
	t.Parallel()
	s := newScripted(t, func(cmd string, w io.Writer) {
		if strings.TrimSpace(cmd) == "api go" {
			body := "Event-Name: API\nAPI-Command: echo\nAPI-Command-Argument: %5Bmediafork%5D%20status\n\n"
			fmt.Fprintf(w, "Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(body), body)
			io.WriteString(w, plainEvent("CHANNEL_ANSWER", "a"))
			io.WriteString(w, plainEvent("CHANNEL_HANGUP_COMPLETE", "a"))
		}
		io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
	})
	hungUp := make(chan struct{})
	apiDone := make(chan bool, 1)
	rec := &recorder{}
	rec.onEvent = func(e *Event) {
		switch e.Name {
		case "API":
			select { // the status answer: slow until the channel's events are through
			case <-hungUp:
				apiDone <- true
			case <-time.After(5 * time.Second):
				apiDone <- false
			}
		case "CHANNEL_HANGUP_COMPLETE":
			close(hungUp)
		}
	}
	c := startClient(t, ClientSettings{}, s.ln.Addr().String(), "ClueCon", rec, nil)
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	_, err := c.API(context.Background(), "go")
	require.NoError(t, err)
	assert.True(t, <-apiDone, "CHANNEL_ANSWER and CHANNEL_HANGUP_COMPLETE waited for the fs_cli command")
	_, ev := rec.snapshot()
	var names []string
	for _, e := range ev {
		if e.UUID() == "a" {
			names = append(names, e.Name)
		}
	}
	assert.Equal(t, []string{"CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"}, names, "a channel's events in order")
	assert.Len(t, ev, 3)
}

// blockingConnect is a Handler whose OnConnect (the resync) waits until told.
type blockingConnect struct {
	recorder
	entered chan struct{}
	release chan struct{}
}

func (b *blockingConnect) OnConnect(ctx context.Context, c *Client) {
	b.recorder.OnConnect(ctx, c)
	b.entered <- struct{}{}
	<-b.release
}

// Connected is false as soon as the connection is gone, even while OnConnect
// (a long resync) is still running: /readyz must not say ready then.
func TestConnectedFalseOnceTheConnectionIsGone(t *testing.T) {
	t.Parallel()
	s := newScripted(t, func(cmd string, w io.Writer) {
		io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
	})
	h := &blockingConnect{entered: make(chan struct{}, 1), release: make(chan struct{})}
	c := startClient(t, ClientSettings{}, s.ln.Addr().String(), "ClueCon", h, nil)
	t.Cleanup(func() { close(h.release) })
	<-h.entered
	assert.True(t, c.Connected(), "authenticated and subscribed")
	server := <-s.conns
	server.Close()
	require.Eventually(t, func() bool { return !c.Connected() }, 5*time.Second, 5*time.Millisecond,
		"the switch is gone but Connected still says true")
}
