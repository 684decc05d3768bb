package esl

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
)

// guard sits between a FreeSWITCH socket (up) and eslgo (down, through a
// loopback pair). It reads every message FreeSWITCH sends with ReadMessage, so a
// framing error ends the connection with a clear error instead of silently
// stopping eslgo's reader; it passes replies on to eslgo and takes events for
// itself, in the order they came.
type guard struct {
	up, down net.Conn
	onEvent  func(*Event)

	once sync.Once
	err  error
	done chan struct{}
}

func newGuard(up, down net.Conn, onEvent func(*Event)) *guard {
	return &guard{up: up, down: down, onEvent: onEvent, done: make(chan struct{})}
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
		g.stop(err)
	}()
	r := bufio.NewReaderSize(g.up, 64<<10)
	for {
		m, err := ReadMessage(r)
		if err != nil {
			g.stop(err)
			return
		}
		switch m.ContentType() {
		case TypeEventPlain:
			ev, err := ParseEvent(m.Body)
			if err != nil {
				g.stop(err)
				return
			}
			g.onEvent(ev)
		case TypeEventJSON:
			ev, err := parseJSONEvent(m.Body)
			if err != nil {
				g.stop(err)
				return
			}
			g.onEvent(ev)
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

// stop ends both sides once, keeping the first error.
func (g *guard) stop(err error) {
	g.once.Do(func() {
		if err == nil {
			err = io.EOF
		}
		g.err = err
		g.up.Close()
		g.down.Close()
		close(g.done)
	})
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
