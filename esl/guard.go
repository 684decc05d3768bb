package esl

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// guard sits between a FreeSWITCH socket (up) and eslgo (down, through a
// loopback pair). It reads every message FreeSWITCH sends with ReadMessage, so a
// framing error ends the connection with a clear error instead of silently
// stopping eslgo's reader; it passes replies on to eslgo and takes events for
// itself, in the order they came.
type guard struct {
	up, down net.Conn
	onEvent  func(*Event, int) // an event and its size on the wire

	errOnce  sync.Once
	err      error
	once     sync.Once
	done     chan struct{}
	copyDone chan struct{}
}

func newGuard(up, down net.Conn, onEvent func(*Event, int)) *guard {
	return &guard{up: up, down: down, onEvent: onEvent, done: make(chan struct{}), copyDone: make(chan struct{})}
}

// fakeAuth plays FreeSWITCH's inbound greeting to eslgo on down: eslgo's
// outbound server cannot be given a listener or be stopped, so an outbound
// socket is handed to eslgo's inbound client as an already authenticated one.
func (g *guard) fakeAuth() error {
	if _, err := io.WriteString(g.down, "Content-Type: auth/request\n\n"); err != nil {
		return err
	}
	r := bufio.NewReader(g.down)
	for { // "auth <password>", then the blank line(s) eslgo ends commands with
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	_, err := io.WriteString(g.down, "Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
	return err
}

func (g *guard) run() {
	go func() { // commands: eslgo -> FreeSWITCH, as they are
		_, err := io.Copy(g.up, g.down)
		close(g.copyDone)
		g.stop(err)
	}()
	r := bufio.NewReaderSize(g.up, 64<<10)
	for {
		m, err := ReadMessage(r)
		if err != nil {
			g.drain(err)
			return
		}
		switch m.ContentType() {
		case TypeEventPlain:
			ev, err := ParseEvent(m.Body)
			if err != nil {
				g.stop(err)
				return
			}
			g.onEvent(ev, len(m.Raw))
		case TypeEventJSON:
			ev, err := parseJSONEvent(m.Body)
			if err != nil {
				g.stop(err)
				return
			}
			g.onEvent(ev, len(m.Raw))
		default:
			if _, err := g.down.Write(m.Raw); err != nil {
				g.stop(err)
				return
			}
			if ct := m.ContentType(); ct == TypeDisconnect || ct == TypeRejection {
				// FreeSWITCH closes after these; let eslgo read it first.
				continue
			}
		}
	}
}

// drain ends the FreeSWITCH side but lets eslgo read what it was already
// given (a reply right before FreeSWITCH closes, such as "+OK bye"): eslgo sees
// the end of its stream, closes, and then both sides are done.
func (g *guard) drain(err error) {
	g.setErr(err)
	g.up.Close()
	if tcp, ok := g.down.(*net.TCPConn); ok {
		tcp.CloseWrite()
		select {
		case <-g.copyDone:
		case <-time.After(300 * time.Millisecond):
		}
	}
	g.stop(err)
}

// stop ends both sides at once, keeping the first error.
func (g *guard) stop(err error) {
	g.setErr(err)
	g.once.Do(func() {
		g.up.Close()
		g.down.Close()
		close(g.done)
	})
}

func (g *guard) setErr(err error) {
	if err == nil {
		err = io.EOF
	}
	g.errOnce.Do(func() { g.err = err })
}

func parseJSONEvent(body []byte) (*Event, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: event JSON: %v", ErrProtocol, err)
	}
	e := &Event{Headers: map[string]string{}}
	for k, v := range raw {
		if k == "_body" {
			e.Body = []byte(fmt.Sprint(v))
			continue
		}
		e.Headers[k] = fmt.Sprint(v)
		e.Order = append(e.Order, k)
	}
	e.Name = e.Headers["Event-Name"]
	if e.Name == "" {
		return nil, fmt.Errorf("%w: event without Event-Name", ErrProtocol)
	}
	return e, nil
}
