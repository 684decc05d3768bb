package esl

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/percipia/eslgo/command"
)

// Subscriptions are the events mediafork listens to (plain format).
var Subscriptions = []string{"CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE", "API", "BACKGROUND_JOB",
	"CUSTOM", "mod_audio_fork::connect", "mod_audio_fork::connect_failed", "mod_audio_fork::disconnect",
	"mod_audio_fork::buffer_overrun"}

// ErrNotConnected is returned by commands while the switch is unreachable.
var ErrNotConnected = errors.New("esl: not connected")

// Handler receives what happens on a switch. OnConnect runs after every
// (re)connect and subscription, before any event is handled; OnEvent gets
// events one at a time in arrival order.
type Handler interface {
	OnConnect(ctx context.Context, sw *Client)
	OnEvent(sw *Client, e *Event)
	OnDisconnect(sw *Client, err error)
}

// Backoff for reconnecting: 0.5 s doubling to 30 s, with jitter.
var (
	BackoffMin = 500 * time.Millisecond
	BackoffMax = 30 * time.Second
)

// Client is the inbound connection to one FreeSWITCH, kept up forever.
type Client struct {
	name, addr, password string
	handler              Handler
	log                  *slog.Logger

	mu   sync.Mutex
	conn *Conn

	connected  atomic.Bool
	Reconnects atomic.Uint64 // connections made after the first
}

// NewClient makes a client for the switch called name at addr.
func NewClient(name, addr, password string, h Handler, log *slog.Logger) *Client {
	return &Client{name: name, addr: addr, password: password, handler: h,
		log: log.With("component", "esl", "freeswitch", name, "addr", addr)}
}

// Name is the switch's name in the config.
func (c *Client) Name() string { return c.name }

// Connected reports whether the connection is up.
func (c *Client) Connected() bool { return c.connected.Load() }

// Run connects and reconnects until ctx is done.
func (c *Client) Run(ctx context.Context) {
	backoff := BackoffMin
	first := true
	for ctx.Err() == nil {
		conn, err := c.connect(ctx)
		if err != nil {
			c.log.Warn("cannot connect to FreeSWITCH", "error", err, "retry_in", backoff.Round(time.Millisecond))
		} else {
			if !first {
				c.Reconnects.Add(1)
			}
			first = false
			backoff = BackoffMin
			c.log.Info("connected to FreeSWITCH")
			c.connected.Store(true)
			c.handler.OnConnect(ctx, c)
			conn.StartEvents()
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
			c.log.Warn("lost the connection to FreeSWITCH", "error", conn.Err(), "retry_in", backoff.Round(time.Millisecond))
			c.handler.OnDisconnect(c, conn.Err())
		}
		jitter := time.Duration(rand.Int64N(int64(backoff) / 4))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + jitter):
		}
		backoff = min(backoff*2, BackoffMax)
	}
}

func (c *Client) connect(ctx context.Context) (*Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	conn, err := dial(ctx, up, c.password, false, func(e *Event) { c.handler.OnEvent(c, e) }, c.log)
	if err != nil {
		return nil, err
	}
	resp, err := conn.Send(ctx, command.Event{Format: "plain", Listen: Subscriptions})
	if err != nil || !resp.IsOk() {
		conn.Close()
		if err == nil {
			err = errors.New(resp.GetReply())
		}
		return nil, err
	}
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
