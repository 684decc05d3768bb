package esl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/percipia/eslgo"
	"github.com/percipia/eslgo/command"
)

// ErrAuth is returned when FreeSWITCH refuses the password.
var ErrAuth = errors.New("esl: authentication refused")

// ErrClosed is returned by commands on a closed connection.
var ErrClosed = errors.New("esl: connection closed")

// ErrHandshake is returned when a connection does not complete its handshake
// (inbound: auth/request, auth and the event subscription; outbound: the
// connect exchange) within HandshakeTimeout.
var ErrHandshake = errors.New("esl: no handshake in time")

// ErrQueueFull ends a connection whose handler fell too far behind its events.
var ErrQueueFull = errors.New("esl: event queue full")

// ErrHandlerPanic ends a connection whose handler panicked.
var ErrHandlerPanic = errors.New("esl: handler panicked")

// ErrLineBreak is returned for a command with a line break in it: on the event
// socket a line break ends the command and starts another one, so a value that
// carries one (a URL-decoded header, say) would smuggle in a command.
var ErrLineBreak = errors.New("esl: line break in a command")

// Knobs. Variables so the configuration can set them; set them before
// connecting (they are read when a connection starts, or when a command does).
var (
	// CommandTimeout bounds every command; one that times out closes the connection.
	CommandTimeout = 5 * time.Second
	// HandshakeTimeout bounds everything before a connection is in use: the TCP
	// connect, FreeSWITCH's auth/request, the auth reply and the subscription
	// (inbound), the connect exchange (outbound). A peer that accepts and says
	// nothing is dropped after it; for the inbound client it is a failed attempt.
	HandshakeTimeout = 5 * time.Second
	// MaxQueuedEvents and MaxQueuedBytes bound the events read from a connection
	// and not yet handled. Beyond either, the connection is dropped (logged at
	// ERROR and counted): FreeSWITCH does the same to listeners that fall far
	// behind, and the reconnect resyncs live channels.
	MaxQueuedEvents = 10000
	MaxQueuedBytes  = 64 << 20
)

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

// connConfig is what dial needs besides the socket.
type connConfig struct {
	password  string
	outbound  bool
	handler   func(*Event)
	log       *slog.Logger
	overflows *atomic.Uint64 // counts the connections dropped for a full queue
}

// Conn is one ESL connection: eslgo behind a guard. Commands are serialized;
// events reach the handler in arrival order per lane (see laneOf: a channel's
// events one at a time, in order), from a bounded queue that never makes the
// reader wait.
type Conn struct {
	es    *eslgo.Conn
	guard *guard
	log   *slog.Logger

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

	// life ends when the guard does: eslgo cannot close while a command waits
	// for its reply (it holds a lock), so waiting commands give up first.
	life    context.Context
	endLife context.CancelFunc
	done    chan struct{}
}

// StartEvents lets queued and later events reach the handler.
func (c *Conn) StartEvents() {
	select {
	case <-c.start:
	default:
		close(c.start)
	}
}

// dial wires a FreeSWITCH socket to eslgo through a guard. outbound sockets get
// the fake auth (see guard.fakeAuth). The socket gets a deadline of
// HandshakeTimeout; the caller ends it with handshakeDone once the connection
// is ready for use.
func dial(ctx context.Context, up net.Conn, cfg connConfig) (*Conn, error) {
	password, outbound, handler, log := cfg.password, cfg.outbound, cfg.handler, cfg.log
	if strings.ContainsAny(password, "\r\n") {
		up.Close()
		return nil, fmt.Errorf("%w (in the password)", ErrLineBreak)
	}
	up.SetDeadline(time.Now().Add(HandshakeTimeout))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		up.Close()
		return nil, err
	}
	c := &Conn{log: log, done: make(chan struct{}), start: make(chan struct{}), overflows: cfg.overflows}
	c.qcond = sync.NewCond(&c.qmu)
	accepted := make(chan net.Conn, 1)
	go func() {
		down, aerr := ln.Accept()
		ln.Close()
		if aerr != nil {
			close(accepted)
			return
		}
		accepted <- down
	}()
	ready := make(chan error, 1)
	go func() {
		down, ok := <-accepted
		if !ok {
			ready <- errors.New("esl: loopback accept failed")
			up.Close()
			return
		}
		c.guard = newGuard(up, down, c.enqueue)
		if outbound {
			if ferr := c.guard.fakeAuth(); ferr != nil {
				ready <- ferr
				c.guard.stop(ferr)
				return
			}
		}
		ready <- nil
		c.guard.run()
	}()
	opts := eslgo.InboundOptions{
		Options:     eslgo.Options{Context: context.Background(), Logger: eslgoLogger{log}, ExitTimeout: time.Second},
		Network:     "tcp",
		Password:    password,
		AuthTimeout: HandshakeTimeout,
	}
	es, err := opts.Dial(ln.Addr().String())
	if err != nil {
		ln.Close()
		if gerr := <-ready; gerr == nil {
			c.guard.stop(err)
			<-c.guard.done
			if errors.Is(c.guard.err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("%w: no auth/request and auth reply within %v", ErrHandshake, HandshakeTimeout)
			}
			if c.guard.err != nil && !errors.Is(c.guard.err, io.EOF) && !isClosedErr(c.guard.err) {
				return nil, fmt.Errorf("esl: %w", c.guard.err)
			}
		} else if errors.Is(gerr, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: %v", ErrHandshake, gerr)
		}
		if strings.HasPrefix(err.Error(), "failed to auth") {
			return nil, fmt.Errorf("%w: %v", ErrAuth, err)
		}
		return nil, fmt.Errorf("esl: %w", err)
	}
	if err := <-ready; err != nil {
		es.Close()
		return nil, err
	}
	c.es = es
	c.life, c.endLife = context.WithCancel(context.Background())
	for lane := range lanes {
		go c.dispatch(handler, lane)
	}
	go func() {
		<-c.guard.done
		c.endLife()
		es.Close()
		c.qmu.Lock()
		c.closed = true
		c.qcond.Broadcast()
		c.qmu.Unlock()
		close(c.done)
	}()
	return c, nil
}

func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

// handshakeDone lifts the handshake deadline: the connection is in use.
func (c *Conn) handshakeDone() { c.guard.up.SetDeadline(time.Time{}) }

// handshakeErr says what a failed handshake command means: past the deadline,
// the handshake was too slow.
func (c *Conn) handshakeErr(err error) error {
	for _, e := range []error{c.Err(), err} {
		if errors.Is(e, os.ErrDeadlineExceeded) || errors.Is(e, context.DeadlineExceeded) {
			return fmt.Errorf("%w (%v): %v", ErrHandshake, HandshakeTimeout, err)
		}
	}
	return err
}

// enqueue is the guard's reader handing over an event (size: its bytes on the
// wire). It never waits: past MaxQueuedEvents or MaxQueuedBytes the
// connection is dropped instead, and what was queued is discarded (the
// reconnect resyncs).
func (c *Conn) enqueue(e *Event, size int) {
	c.qmu.Lock()
	if c.closed || c.overflowed {
		c.qmu.Unlock()
		return
	}
	if c.qlen+1 > MaxQueuedEvents || c.qbytes+size > MaxQueuedBytes {
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
		c.log.Error(msg, "max_events", MaxQueuedEvents, "max_bytes", MaxQueuedBytes)
		c.guard.stop(fmt.Errorf("%w: %d events / %d bytes", ErrQueueFull, n, bytes))
		return
	}
	lane := laneOf(e)
	c.queues[lane] = append(c.queues[lane], queued{e, size})
	c.qlen++
	c.qbytes += size
	c.qcond.Broadcast()
	c.qmu.Unlock()
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
			c.guard.stop(fmt.Errorf("%w: %v", ErrHandlerPanic, r))
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
		return c.guard.err
	default:
		return nil
	}
}

// Close ends the connection.
func (c *Conn) Close() {
	c.guard.stop(ErrClosed)
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
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	defer context.AfterFunc(c.life, cancel)()
	resp, err := c.es.SendCommand(ctx, cmd)
	if err != nil {
		if c.life.Err() != nil {
			return nil, ErrClosed
		}
		if ctx.Err() != nil {
			c.log.Warn("ESL command timed out; closing the connection", "command", firstWord(cmd.BuildMessage()))
			go c.guard.stop(fmt.Errorf("command timed out: %w", ctx.Err()))
		}
		select {
		case <-c.done:
			return nil, ErrClosed
		default:
		}
		return nil, err
	}
	return resp, nil
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

// eslgoLogger sends eslgo's own messages to slog at debug level: the guard
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
