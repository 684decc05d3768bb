package esl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/percipia/eslgo"
	"github.com/percipia/eslgo/command"
)

// ErrAuth is returned when FreeSWITCH refuses the password.
var ErrAuth = errors.New("esl: authentication refused")

// ErrClosed is returned by commands on a closed connection.
var ErrClosed = errors.New("esl: connection closed")

// CommandTimeout bounds every command; one that times out closes the connection.
const CommandTimeout = 5 * time.Second

// Conn is one ESL connection: eslgo behind a guard. Commands are serialized;
// events reach the handler one at a time, in arrival order, from a queue that
// never makes the reader wait.
type Conn struct {
	es    *eslgo.Conn
	guard *guard
	log   *slog.Logger

	cmdMu sync.Mutex

	qmu    sync.Mutex
	qcond  *sync.Cond
	queue  []*Event
	closed bool
	start  chan struct{} // closed when events may flow to the handler

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
// the fake auth (see guard.fakeAuth).
func dial(ctx context.Context, up net.Conn, password string, outbound bool, handler func(*Event), log *slog.Logger) (*Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		up.Close()
		return nil, err
	}
	c := &Conn{log: log, done: make(chan struct{}), start: make(chan struct{})}
	c.qcond = sync.NewCond(&c.qmu)
	accepted := make(chan net.Conn, 1)
	go func() {
		down, err := ln.Accept()
		ln.Close()
		if err != nil {
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
			if err := c.guard.fakeAuth(); err != nil {
				ready <- err
				c.guard.stop(err)
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
		AuthTimeout: 5 * time.Second,
	}
	es, err := opts.Dial(ln.Addr().String())
	if err != nil {
		ln.Close()
		if gerr := <-ready; gerr == nil {
			c.guard.stop(err)
			<-c.guard.done
			if c.guard.err != nil && !errors.Is(c.guard.err, io.EOF) && !isClosedErr(c.guard.err) {
				return nil, fmt.Errorf("esl: %w", c.guard.err)
			}
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
	go c.dispatch(handler)
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

func (c *Conn) enqueue(e *Event) {
	c.qmu.Lock()
	c.queue = append(c.queue, e)
	c.qcond.Signal()
	c.qmu.Unlock()
}

// dispatch hands events to handler one by one, in order, until the connection
// closes (events still queued then are delivered first).
func (c *Conn) dispatch(handler func(*Event)) {
	select {
	case <-c.start:
	case <-c.done:
	}
	for {
		c.qmu.Lock()
		for len(c.queue) == 0 && !c.closed {
			c.qcond.Wait()
		}
		if len(c.queue) == 0 {
			c.qmu.Unlock()
			return
		}
		e := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.qmu.Unlock()
		if handler != nil {
			handler(e)
		}
	}
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
