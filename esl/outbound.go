package esl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediafork/mediafork/third_party/eslgo/command"
)

// OutboundCall is one connection from the dialplan `socket` application: the
// channel's data from the connect reply, and the socket to answer on.
type OutboundCall struct {
	Data   map[string]string // channel data, header names as eslgo gives them
	Remote net.Addr
	conn   *Conn
}

// API runs an api command on the call's socket.
func (oc *OutboundCall) API(ctx context.Context, cmd string) (string, error) {
	return oc.conn.API(ctx, cmd)
}

// Resume makes FreeSWITCH go on with the dialplan once the socket closes.
func (oc *OutboundCall) Resume(ctx context.Context) error {
	resp, err := oc.conn.Send(ctx, rawCommand("resume"))
	if err != nil {
		return err
	}
	if !resp.IsOk() {
		return fmt.Errorf("resume: %s", resp.GetReply())
	}
	return nil
}

// OutboundHandler decides what to do with one call; the socket is closed with
// `exit` after it returns.
type OutboundHandler func(ctx context.Context, call *OutboundCall)

// Outbound is the listener the dialplan `socket` application connects to.
type Outbound struct {
	ln      net.Listener
	handler OutboundHandler
	set     OutboundSettings
	log     *slog.Logger
	wg      sync.WaitGroup
	active  atomic.Int64

	// Refused counts sockets closed because MaxConns were being served.
	Refused atomic.Uint64
	// QueueOverflows counts sockets dropped for a full event queue.
	QueueOverflows atomic.Uint64
	// HandlerPanics counts sockets ended by a panic in the handler.
	HandlerPanics atomic.Uint64
	// HeadersTooBig counts sockets closed for a header block over
	// MaxHeaderBytes (OutboundSettings).
	HeadersTooBig atomic.Uint64
}

// Active is the number of outbound sockets being served.
func (o *Outbound) Active() int { return int(o.active.Load()) }

// ListenOutbound opens the outbound listener, with s (its zero fields take
// their defaults; a bad one is an error).
func ListenOutbound(addr string, h OutboundHandler, s OutboundSettings, log *slog.Logger) (*Outbound, error) {
	if err := s.resolve(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	return &Outbound{ln: ln, handler: h, set: s, log: log.With("component", "outbound")}, nil
}

// NewOutbound is ListenOutbound on a listener already bound (handed in): it
// takes ln, and closes it when it fails.
func NewOutbound(ln net.Listener, h OutboundHandler, s OutboundSettings, log *slog.Logger) (*Outbound, error) {
	if err := s.resolve(); err != nil {
		ln.Close()
		return nil, err
	}
	return &Outbound{ln: ln, handler: h, set: s, log: log.With("component", "outbound")}, nil
}

// Addr is where it listens.
func (o *Outbound) Addr() net.Addr { return o.ln.Addr() }

// Serve accepts until ctx is done, then waits for the calls in progress.
func (o *Outbound) Serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { o.ln.Close() })
	defer stop()
	for {
		up, err := o.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				o.log.Warn("accept failed", "error", err)
			}
			break
		}
		if n := o.active.Add(1); n > int64(o.set.MaxConns) {
			o.active.Add(-1)
			o.Refused.Add(1)
			o.log.Warn("too many outbound sockets; closing a new one", "remote", up.RemoteAddr().String(), "max", o.set.MaxConns)
			up.Close()
			continue
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			defer o.active.Add(-1)
			o.serveConn(ctx, up)
		}()
	}
	o.wg.Wait()
}

func (o *Outbound) serveConn(ctx context.Context, up net.Conn) {
	remote := up.RemoteAddr()
	log := o.log.With("remote", remote.String())
	conn, resp, err := open(ctx, up, connConfig{settings: o.set.ConnSettings, outbound: true, log: log, overflows: &o.QueueOverflows,
		maxHeader: o.set.MaxHeaderBytes, tooBig: &o.HeadersTooBig})
	if err != nil {
		log.Warn("connect failed", "error", err)
		return
	}
	defer conn.Close()
	conn.StartEvents()
	conn.handshakeDone()
	// The reply is the channel data; its Reply-Text is URL-encoded ("%2BOK%0A").
	if reply := resp.GetReply(); !strings.HasPrefix(reply, "+OK") {
		log.Warn("connect refused", "reply", reply)
		return
	}
	data := map[string]string{}
	for k := range resp.Headers {
		data[k] = resp.GetHeader(k)
	}
	call := &OutboundCall{Data: data, Remote: remote, conn: conn}
	if !o.handle(ctx, call, log) {
		return
	}
	ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn.Send(ectx, command.Exit{}) // FreeSWITCH answers, says goodbye and closes
	select {
	case <-conn.Done():
	case <-ectx.Done():
	}
}

// handle runs the handler; a panic ends this socket (logged with its stack),
// not the process. false when it panicked.
func (o *Outbound) handle(ctx context.Context, call *OutboundCall, log *slog.Logger) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			o.HandlerPanics.Add(1)
			log.Error("panic in the outbound socket handler; closing the socket",
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			call.conn.stop(fmt.Errorf("%w: %v", ErrHandlerPanic, r))
			ok = false
		}
	}()
	o.handler(ctx, call)
	return true
}
