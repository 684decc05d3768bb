// Package wstest is a real WebSocket server (gorilla's) for the tests of
// mediafork's stream outputs: it records every connection (the upgrade's
// headers and subprotocol, every message in order, how it closed), can hold
// its reads (a slow server), drop connections and send messages back, and
// lets a test wait for what it expects (an event, never a sleep). It also
// reads Twilio Media Streams the way a consumer does (twilio.go) and measures
// tones (tone.go).
package wstest

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Options shape a Server.
type Options struct {
	// Cert, when set, serves wss:// with it.
	Cert *tls.Certificate
	// Subprotocols the server accepts (the first the client offers).
	Subprotocols []string
	// Path is the URL's path ("/media" when empty).
	Path string
	// ReadBuffer, when set, is each accepted connection's socket receive
	// buffer: small, a server that stops reading fills it fast.
	ReadBuffer int
}

// Server is a WebSocket server recording its connections.
type Server struct {
	URL  string         // ws://127.0.0.1:port/path, or wss://
	Addr netip.AddrPort // where it listens
	srv  *httptest.Server
	opts Options

	mu      sync.Mutex
	conns   []*Conn
	changed chan struct{} // closed and replaced at every change
	hold    chan struct{} // while open, connections are not read (Hold)
}

// Conn is one connection the server accepted.
type Conn struct {
	Header      http.Header // the upgrade request's
	Host        string      // its Host
	Subprotocol string      // the one agreed
	Remote      string

	s  *Server
	ws *websocket.Conn

	// Guarded by s.mu.
	messages  []Message
	closed    bool
	closeCode int // the client's close frame's code (0: none: the connection dropped)
}

// Message is one message the client sent.
type Message struct {
	Text bool
	Data []byte
	At   time.Time
}

// New starts a server; t's cleanup stops it.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Path == "" {
		opts.Path = "/media"
	}
	s := &Server{opts: opts, changed: make(chan struct{})}
	up := websocket.Upgrader{Subprotocols: opts.Subprotocols, CheckOrigin: func(*http.Request) bool { return true },
		ReadBufferSize: 4096, WriteBufferSize: 4096}
	mux := http.NewServeMux()
	mux.HandleFunc(opts.Path, func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if opts.ReadBuffer > 0 {
			if tc, ok := ws.NetConn().(*net.TCPConn); ok {
				tc.SetReadBuffer(opts.ReadBuffer)
			}
		}
		c := &Conn{Header: r.Header.Clone(), Host: r.Host, Subprotocol: ws.Subprotocol(), Remote: r.RemoteAddr, s: s, ws: ws}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		hold := s.hold
		s.notifyLocked()
		s.mu.Unlock()
		c.serve(hold)
	})
	s.srv = httptest.NewUnstartedServer(mux)
	if opts.Cert != nil {
		s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*opts.Cert}}
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(s.Close)
	u, _ := url.Parse(s.srv.URL)
	s.Addr = netip.MustParseAddrPort(u.Host)
	scheme := "ws"
	if opts.Cert != nil {
		scheme = "wss"
	}
	s.URL = scheme + "://" + u.Host + opts.Path
	return s
}

// Close stops the server and every connection.
func (s *Server) Close() {
	s.mu.Lock()
	conns := append([]*Conn(nil), s.conns...)
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.ws.Close()
	}
	s.srv.Close()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Hold stops reading: connections made after it are not read until Release
// (what is sent to them fills the socket buffers).
func (s *Server) Hold() {
	s.mu.Lock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
	s.mu.Unlock()
}

// Release reads again.
func (s *Server) Release() {
	s.mu.Lock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
	s.mu.Unlock()
}

func (c *Conn) serve(hold chan struct{}) {
	if hold != nil {
		<-hold
	}
	for {
		mt, b, err := c.ws.ReadMessage()
		c.s.mu.Lock()
		if err != nil {
			c.closed = true
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.closeCode = ce.Code
			}
			c.s.notifyLocked()
			c.s.mu.Unlock()
			c.ws.Close()
			return
		}
		c.messages = append(c.messages, Message{Text: mt == websocket.TextMessage, Data: b, At: time.Now()})
		c.s.notifyLocked()
		c.s.mu.Unlock()
	}
}

// Send sends a message to the client.
func (c *Conn) Send(text bool, b []byte) error {
	mt := websocket.BinaryMessage
	if text {
		mt = websocket.TextMessage
	}
	return c.ws.WriteMessage(mt, b)
}

// CloseWith sends a close frame with code (the client answers it and the
// connection ends).
func (c *Conn) CloseWith(code int) error {
	return c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "done"), time.Now().Add(5*time.Second))
}

// Drop ends the connection without a close frame (a server that died).
func (c *Conn) Drop() { c.ws.NetConn().Close() }

// Snapshot is a connection as it is at one moment.
type Snapshot struct {
	*Conn
	Messages  []Message
	Closed    bool
	CloseCode int
}

// Conns is every connection so far, in the order they came.
func (s *Server) Conns() []Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Snapshot, len(s.conns))
	for i, c := range s.conns {
		out[i] = Snapshot{Conn: c, Messages: append([]Message(nil), c.messages...), Closed: c.closed, CloseCode: c.closeCode}
	}
	return out
}

// Wait returns the connections once cond holds of them, failing t after
// timeout (a bound for a broken build, not a pace: cond is checked at every
// change).
func (s *Server) Wait(t testing.TB, what string, timeout time.Duration, cond func([]Snapshot) bool) []Snapshot {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cs := s.Conns(); cond(cs) {
			return cs
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("waited %s for %s; connections: %d", timeout, what, len(s.Conns()))
		}
	}
}
