package esl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediafork/mediafork/third_party/eslgo/command"
)

// ErrNotConnected is returned by commands while the switch is unreachable.
var ErrNotConnected = errors.New("esl: not connected")

// Handler receives what happens on a switch. OnConnect runs after every
// (re)connect and subscription, before any event is handled. OnEvent gets the
// events about channels (those with a Unique-ID) one at a time in arrival
// order, and the others (API: fs_cli commands; BACKGROUND_JOB) one at a time in
// arrival order too, but concurrently with the channel events: a slow fs_cli
// answer does not hold up CHANNEL_ANSWER.
type Handler interface {
	OnConnect(ctx context.Context, sw *Client)
	OnEvent(sw *Client, e *Event)
	OnDisconnect(sw *Client, err error)
}

// Client is the inbound connection to one FreeSWITCH, kept up forever.
type Client struct {
	name, addr, password string
	handler              Handler
	set                  ClientSettings
	log                  *slog.Logger
	configKey            string // freeswitch[i], for log lines
	state                stateBox

	mu   sync.Mutex
	conn *Conn

	connected  atomic.Bool
	Reconnects atomic.Uint64 // connections made after the first
	// QueueOverflows counts the connections dropped because the handler fell
	// MaxQueuedEvents / MaxQueuedBytes behind (ConnSettings).
	QueueOverflows atomic.Uint64
	// HandlerPanics counts the connections ended by a panic in the handler.
	HandlerPanics atomic.Uint64
}

// NewClient makes a client for the switch called name at addr, with s (its
// zero fields take their defaults; a bad one is an error).
func NewClient(name, addr, password string, h Handler, s ClientSettings, log *slog.Logger) (*Client, error) {
	if err := s.resolve(); err != nil {
		return nil, err
	}
	c := &Client{name: name, addr: addr, password: password, handler: h, set: s,
		log: log.With("component", "esl", "freeswitch", name, "addr", addr)}
	c.state.set(StateConnecting)
	return c, nil
}

// Name is the switch's name in the config.
func (c *Client) Name() string { return c.name }

// Connected reports whether the connection is in use: authenticated,
// subscribed, and not ended (also while OnConnect runs).
func (c *Client) Connected() bool {
	if !c.connected.Load() {
		return false
	}
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return false
	}
	select {
	case <-conn.Done():
		return false
	default:
		return true
	}
}

// QueuedEvents is the length of the connection's event queue (0 while
// disconnected).
func (c *Client) QueuedEvents() int {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return 0
	}
	n, _ := conn.Queued()
	return n
}

// Run connects and reconnects until ctx is done.
func (c *Client) Run(ctx context.Context) {
	backoff := c.set.BackoffMin
	first := true
	for ctx.Err() == nil {
		var jitter time.Duration
		if backoff >= 4 {
			jitter = time.Duration(rand.Int64N(int64(backoff) / 4))
		}
		wait := backoff + jitter
		conn, err := c.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.connectFailed(err, wait)
		} else {
			if !first {
				c.Reconnects.Add(1)
			}
			first = false
			up := time.Now()
			c.log.Info("connected to FreeSWITCH")
			c.connected.Store(true)
			c.state.set(StateConnected)
			if c.onConnect(ctx, conn) {
				conn.StartEvents()
			}
			select {
			case <-conn.Done():
			case <-ctx.Done():
				conn.Close()
			}
			c.connected.Store(false)
			c.mu.Lock()
			c.conn = nil
			c.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			if time.Since(up) >= c.set.StableAfter {
				backoff, wait = c.set.BackoffMin, c.set.BackoffMin
			}
			if errors.Is(conn.Err(), ErrHandlerPanic) {
				c.HandlerPanics.Add(1)
			}
			c.state.failed(StateDown, c.lostReason(conn.Err()), time.Now().Add(wait))
			c.log.Warn("lost the connection to FreeSWITCH", "error", conn.Err(), "retry_in", wait.Round(time.Millisecond))
			c.handler.OnDisconnect(c, conn.Err())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.set.BackoffMax)
	}
}

// connectFailed records and logs a failed attempt: a refused password is one
// line naming the config key to fix and the next attempt.
func (c *Client) connectFailed(err error, wait time.Duration) {
	next := time.Now().Add(wait)
	if errors.Is(err, ErrWrongPassword) {
		c.state.failed(StateAuthFailed, c.reasonOf(err), next)
		c.log.Error(fmt.Sprintf("ESL authentication refused by FreeSWITCH %s: wrong password; check %s; next attempt in %s",
			c.name, c.passwordKey(), wait.Round(time.Millisecond)),
			"key", c.passwordKey(), "retry_in", wait.Round(time.Millisecond), "next_retry", next.Format(time.RFC3339))
		return
	}
	c.state.failed(StateDown, c.reasonOf(err), next)
	c.log.Warn("cannot connect to FreeSWITCH", "error", err, "retry_in", wait.Round(time.Millisecond), "next_retry", next.Format(time.RFC3339))
}

// onConnect runs the handler's OnConnect; a panic in it ends the connection,
// not the process. false when it panicked.
func (c *Client) onConnect(ctx context.Context, conn *Conn) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in the ESL connect handler; closing the connection",
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			conn.stop(fmt.Errorf("%w: %v", ErrHandlerPanic, r))
			ok = false
		}
	}()
	c.handler.OnConnect(ctx, c)
	return true
}

// connect dials, authenticates and subscribes, all within HandshakeTimeout.
func (c *Client) connect(ctx context.Context) (*Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, c.set.HandshakeTimeout)
	defer cancel()
	d := net.Dialer{}
	up, err := d.DialContext(hctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	conn, _, err := open(hctx, up, connConfig{settings: c.set.ConnSettings, password: c.password,
		handler: func(e *Event) { c.handler.OnEvent(c, e) }, log: c.log, overflows: &c.QueueOverflows})
	if err != nil {
		return nil, err
	}
	resp, err := conn.Send(hctx, command.Event{Format: "plain", Listen: SubscribedEvents})
	if err != nil || !resp.IsOk() {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("event subscription refused: %s", resp.GetReply())
		} else {
			err = conn.handshakeErr(fmt.Errorf("event subscription: %w", err))
		}
		return nil, err
	}
	conn.handshakeDone()
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	return conn, nil
}

// API runs an api command on the switch.
func (c *Client) API(ctx context.Context, cmd string) (string, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return "", ErrNotConnected
	}
	return conn.API(ctx, cmd)
}
