package esl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediafork/mediafork/third_party/eslgo"
	"github.com/mediafork/mediafork/third_party/eslgo/command"
)

// ErrAuth is returned when FreeSWITCH refuses the password.
var ErrAuth = errors.New("esl: authentication refused")

// ErrClosed is returned by commands on a closed connection.
var ErrClosed = errors.New("esl: connection closed")

// ErrHandshake is returned when a connection does not complete its handshake
// (inbound: auth/request, auth and the event subscription; outbound: the
// connect exchange) within its HandshakeTimeout (ConnSettings).
var ErrHandshake = errors.New("esl: no handshake in time")

// ErrQueueFull ends a connection whose handler fell too far behind its events.
var ErrQueueFull = errors.New("esl: event queue full")

// ErrHandlerPanic ends a connection whose handler panicked.
var ErrHandlerPanic = errors.New("esl: handler panicked")

// ErrLineBreak is returned for a command with a line break in it: on the event
// socket a line break ends the command and starts another one, so a value that
// carries one (a URL-decoded header, say) would smuggle in a command.
var ErrLineBreak = errors.New("esl: line break in a command")

// Events are handled in two lanes, each in arrival order: events about a
// channel (with a Unique-ID), and the others (API, the fs_cli commands;
// BACKGROUND_JOB). A slow fs_cli command does not hold up CHANNEL_ANSWER.
const (
	laneChannel = iota
	laneOther
	lanes
)

func laneOf(e *Event) int {
	if e.UUID() != "" {
		return laneChannel
	}
	return laneOther
}

// queued is an event waiting for the handler, with its size on the wire.
type queued struct {
	e    *Event
	size int
}

// connConfig is what open needs besides the socket.
type connConfig struct {
	settings  ConnSettings // resolved by the Client or Outbound
	password  string
	outbound  bool
	handler   func(*Event)
	log       *slog.Logger
	overflows *atomic.Uint64 // counts the connections dropped for a full queue
	maxHeader int            // bounds each message's header block (bytes; 0: the protocol's limits only)
	tooBig    *atomic.Uint64 // counts the connections dropped for a header block over maxHeader
}

// Conn is one ESL connection: eslgo on the FreeSWITCH socket, reading every
// message through read (ReadMessage's framing and size checks), which keeps
// the events for a bounded queue of its own. Commands are serialized; events
// reach the handler in arrival order per lane (see laneOf: a channel's events
// one at a time, in order), from that queue, which never makes the reader
// wait.
type Conn struct {
	nc  net.Conn
	set ConnSettings
	log *slog.Logger

	esMu sync.Mutex
	es   *eslgo.Conn // nil until the handshake is through

	errMu sync.Mutex
	err   error // why the connection ended: the first cause

	cmdMu sync.Mutex

	qmu        sync.Mutex
	qcond      *sync.Cond
	queues     [lanes][]queued
	qlen       int // events in all lanes
	qbytes     int
	closed     bool
	overflowed bool
	overflows  *atomic.Uint64
	start      chan struct{} // closed when events may flow to the handler

	maxHeader int // readMessage's bound on a header block
	tooBig    *atomic.Uint64

	done chan struct{}
}

// Queued is how many events, and how many bytes of them, wait for the
// handler now (metrics: a queue that grows is a handler falling behind).
func (c *Conn) Queued() (events, bytes int) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return c.qlen, c.qbytes
}

// StartEvents lets queued and later events reach the handler.
func (c *Conn) StartEvents() {
	select {
	case <-c.start:
	default:
		close(c.start)
	}
}

// open runs eslgo's handshake on a FreeSWITCH socket: inbound (FreeSWITCH's
// auth/request, auth), or outbound (connect; its reply is returned), with the
// settings of cfg (resolved: open does not fill in defaults). The socket gets a
// deadline of HandshakeTimeout; the caller ends it with handshakeDone once the
// connection is ready for use. ctx ending stops the handshake. On an error the
// socket is closed.
func open(ctx context.Context, nc net.Conn, cfg connConfig) (*Conn, *eslgo.RawResponse, error) {
	if strings.ContainsAny(cfg.password, "\r\n") {
		nc.Close()
		return nil, nil, fmt.Errorf("%w (in the password)", ErrLineBreak)
	}
	nc.SetDeadline(time.Now().Add(cfg.settings.HandshakeTimeout))
	c := &Conn{nc: nc, set: cfg.settings, log: cfg.log, done: make(chan struct{}), start: make(chan struct{}), overflows: cfg.overflows,
		maxHeader: cfg.maxHeader, tooBig: cfg.tooBig}
	c.qcond = sync.NewCond(&c.qmu)
	opts := eslgo.Options{Context: context.Background(), Logger: eslgoLogger{cfg.log}, ExitTimeout: time.Second,
		ReadResponse: c.read}
	stopHandshake := context.AfterFunc(ctx, func() { nc.Close() })
	var (
		es   *eslgo.Conn
		resp *eslgo.RawResponse
		err  error
	)
	if cfg.outbound {
		es, resp, err = eslgo.OutboundOptions{Options: opts, Network: "tcp", ConnectTimeout: c.set.HandshakeTimeout}.Handshake(nc)
	} else {
		es, err = eslgo.InboundOptions{Options: opts, Network: "tcp", Password: cfg.password,
			AuthTimeout: c.set.HandshakeTimeout}.Handshake(nc)
	}
	if !stopHandshake() && err == nil {
		es.Close()
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, nil, c.handshakeFailed(ctx, err)
	}
	c.esMu.Lock()
	c.es = es
	c.esMu.Unlock()
	for lane := range lanes {
		go c.dispatch(cfg.handler, lane)
	}
	go func() {
		<-es.Done()
		c.setErr(io.EOF) // unless there was a cause
		c.qmu.Lock()
		c.closed = true
		c.qcond.Broadcast()
		c.qmu.Unlock()
		close(c.done)
	}()
	return c, resp, nil
}

// handshakeFailed says why the handshake failed: a refused password, no
// answer in time, what the reader found wrong, or eslgo's error.
func (c *Conn) handshakeFailed(ctx context.Context, err error) error {
	cause := c.cause()
	switch {
	case errors.Is(err, eslgo.ErrAuthFailed):
		return passwordError{} // eslgo's text dumps the reply as a Go value
	case isTimeout(cause), isTimeout(err), errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w (%v): %v", ErrHandshake, c.set.HandshakeTimeout, err)
	case ctx.Err() != nil:
		return ctx.Err()
	case cause != nil && !errors.Is(cause, io.EOF):
		return fmt.Errorf("esl: %w", cause)
	}
	return fmt.Errorf("esl: %w", err)
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

// handshakeDone lifts the handshake deadline: the connection is in use.
func (c *Conn) handshakeDone() { c.nc.SetDeadline(time.Time{}) }

// handshakeErr says what a failed handshake command means: past the deadline,
// the handshake was too slow.
func (c *Conn) handshakeErr(err error) error {
	if isTimeout(c.cause()) || isTimeout(err) {
		return fmt.Errorf("%w (%v): %v", ErrHandshake, c.set.HandshakeTimeout, err)
	}
	return err
}

// read is eslgo's reader (eslgo.Options.ReadResponse): every message
// FreeSWITCH sends is read with ReadMessage, so a framing error ends the
// connection with a clear error; events are parsed and queued here, in the
// order they came; replies and auth requests go on to eslgo. An error ends the connection (eslgo closes it when its reader stops).
func (c *Conn) read(r *bufio.Reader) (*eslgo.RawResponse, error) {
	for {
		m, err := readMessage(r, c.maxHeader)
		if err != nil {
			if errors.Is(err, ErrHeaderBlockTooBig) && c.tooBig != nil {
				c.tooBig.Add(1)
			}
			// Closed under the reader on purpose: by stop, which set the
			// cause; by eslgo on FreeSWITCH's disconnect notice (io.EOF,
			// set when it is done); or by open giving up.
			if !errors.Is(err, net.ErrClosed) {
				c.setErr(err)
			}
			return nil, err
		}
		var ev *Event
		switch m.ContentType() {
		case TypeEventPlain:
			ev, err = ParseEvent(m.Body)
		case TypeEventJSON:
			ev, err = parseJSONEvent(m.Body)
		case TypeDisconnect:
			// FreeSWITCH says it is about to close; its close ends the
			// connection (eslgo's waits for the notice can block this reader
			// for seconds while a command waits for a reply that will not
			// come).
			continue
		case TypeRejection:
			err = fmt.Errorf("%w: FreeSWITCH refused the connection (its ACL): %s", ErrAuth,
				truncate(strings.TrimSpace(string(m.Body)), 80))
		default:
			return rawResponse(m), nil
		}
		if err == nil {
			err = c.enqueue(ev, len(m.Raw))
		}
		if err != nil {
			c.setErr(err)
			return nil, err
		}
	}
}

// rawResponse is a message as eslgo's own reader would have made it: header
// names canonical, values trimmed (and left URL-encoded).
func rawResponse(m *Message) *eslgo.RawResponse {
	h := make(textproto.MIMEHeader, len(m.Headers))
	for _, kv := range m.Headers {
		h.Add(textproto.CanonicalMIMEHeaderKey(kv.Name), textproto.TrimString(kv.Value))
	}
	return &eslgo.RawResponse{Headers: h, Body: m.Body}
}

// stop ends the connection with err as its cause (unless it had one; nil: the
// cause is elsewhere).
func (c *Conn) stop(err error) {
	if err != nil {
		c.setErr(err)
	}
	c.nc.Close()
	c.esMu.Lock()
	es := c.es
	c.esMu.Unlock()
	if es != nil {
		es.Close()
	}
}

func (c *Conn) setErr(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// cause is why the connection is ending or ended (nil while it is fine).
func (c *Conn) cause() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// enqueue is the reader handing over an event (size: its bytes on the wire).
// It never waits: past MaxQueuedEvents or MaxQueuedBytes (ConnSettings) it returns
// ErrQueueFull, which ends the connection, and what was queued is discarded
// (the reconnect resyncs).
func (c *Conn) enqueue(e *Event, size int) error {
	e.At = time.Now()
	c.qmu.Lock()
	if c.closed || c.overflowed {
		c.qmu.Unlock()
		return nil
	}
	if c.qlen+1 > c.set.MaxQueuedEvents || c.qbytes+size > c.set.MaxQueuedBytes {
		n, bytes := c.qlen, c.qbytes
		c.overflowed = true
		for i := range c.queues {
			clear(c.queues[i])
			c.queues[i] = nil
		}
		c.qlen, c.qbytes = 0, 0
		c.qcond.Broadcast()
		c.qmu.Unlock()
		if c.overflows != nil {
			c.overflows.Add(1)
		}
		msg := fmt.Sprintf("event queue full: %d events / %d bytes; reconnecting and resyncing", n, bytes)
		c.log.Error(msg, "max_events", c.set.MaxQueuedEvents, "max_bytes", c.set.MaxQueuedBytes)
		return fmt.Errorf("%w: %d events / %d bytes", ErrQueueFull, n, bytes)
	}
	lane := laneOf(e)
	c.queues[lane] = append(c.queues[lane], queued{e, size})
	c.qlen++
	c.qbytes += size
	c.qcond.Broadcast()
	c.qmu.Unlock()
	return nil
}

// dispatch hands one lane's events to handler one by one, in order, until the
// connection closes (events still queued then are delivered first).
func (c *Conn) dispatch(handler func(*Event), lane int) {
	select {
	case <-c.start:
	case <-c.done:
	}
	for {
		c.qmu.Lock()
		for len(c.queues[lane]) == 0 && !c.closed && !c.overflowed {
			c.qcond.Wait()
		}
		if len(c.queues[lane]) == 0 {
			c.qmu.Unlock()
			return
		}
		q := c.queues[lane][0]
		c.queues[lane][0] = queued{}
		c.queues[lane] = c.queues[lane][1:]
		c.qlen--
		c.qbytes -= q.size
		c.qmu.Unlock()
		if handler != nil && !c.handle(handler, q.e) {
			return
		}
	}
}

// handle runs the handler on one event; a panic ends the connection (logged
// with its stack), not the process. false when it panicked.
func (c *Conn) handle(handler func(*Event), e *Event) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in the ESL event handler; closing the connection",
				"event", e.Name, "uuid", e.UUID(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			c.stop(fmt.Errorf("%w: %v", ErrHandlerPanic, r))
			ok = false
		}
	}()
	handler(e)
	return true
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why the connection ended (nil while it is up).
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.cause()
	default:
		return nil
	}
}

// Close ends the connection.
func (c *Conn) Close() {
	c.stop(ErrClosed)
	<-c.done
}

// Send sends one command and returns its reply. Commands never overlap; one
// that times out closes the connection.
func (c *Conn) Send(ctx context.Context, cmd command.Command) (*eslgo.RawResponse, error) {
	if msg := cmd.BuildMessage(); strings.ContainsAny(msg, "\r\n") {
		return nil, fmt.Errorf("%w: in %s", ErrLineBreak, firstWord(msg))
	}
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	select {
	case <-c.done:
		return nil, ErrClosed
	default:
	}
	cctx, cancel := context.WithTimeout(ctx, c.set.CommandTimeout)
	defer cancel()
	resp, err := c.es.SendCommand(cctx, cmd)
	switch {
	case err == nil:
		return resp, nil
	case cctx.Err() != nil:
		// Its reply may still come, and eslgo would hand it to the next
		// command: a command given up on ends the connection.
		if ctx.Err() != nil {
			c.stop(fmt.Errorf("command given up on: %w", ctx.Err()))
			return nil, ctx.Err()
		}
		c.log.Warn("ESL command timed out; closing the connection", "command", firstWord(cmd.BuildMessage()))
		c.stop(fmt.Errorf("command timed out: %w", cctx.Err()))
		return nil, err
	default: // eslgo closed the connection under it, or the write failed
		c.stop(nil)
		return nil, fmt.Errorf("%w: %v", ErrClosed, err)
	}
}

// API runs `api <cmd>` and returns the response body, trimmed. A body starting
// with -ERR (or -USAGE) comes back as an error too.
func (c *Conn) API(ctx context.Context, cmd string) (string, error) {
	name, args, _ := strings.Cut(cmd, " ")
	resp, err := c.Send(ctx, command.API{Command: name, Arguments: args})
	if err != nil {
		return "", err
	}
	body := strings.TrimRight(string(resp.Body), "\n")
	if strings.HasPrefix(body, "-") {
		return body, fmt.Errorf("%s: %s", name, body)
	}
	return body, nil
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

// eslgoLogger sends eslgo's own messages to slog at debug level: Conn
// reports what matters.
type eslgoLogger struct{ log *slog.Logger }

func (l eslgoLogger) Debug(format string, args ...any) {
	l.log.Debug("eslgo: " + fmt.Sprintf(format, args...))
}
func (l eslgoLogger) Info(format string, args ...any) {
	l.log.Debug("eslgo: " + fmt.Sprintf(format, args...))
}
func (l eslgoLogger) Warn(format string, args ...any) {
	l.log.Debug("eslgo: " + fmt.Sprintf(format, args...))
}
func (l eslgoLogger) Error(format string, args ...any) {
	l.log.Debug("eslgo: " + fmt.Sprintf(format, args...))
}
