// Package wsout dials the WebSocket connections of mediafork's stream
// outputs (twilio, audiofork): gorilla's client, through the address the fork
// resolved and pinned (never the URL's host again: a DNS change cannot move
// the audio), with the URL's host as the Host header and the TLS server name,
// TLS certificates verified (against a CA file when the endpoint names one),
// within the dial context's deadline. The messages one drain of the output's
// queue writes go out in one flush (one TLS record and one send, not one per
// message).
package wsout

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mediafork/mediafork/internal/boundedfile"
	"github.com/mediafork/mediafork/mediafork"
)

// Dialer is the mediafork.StreamDialer of gorilla WebSockets. Its zero value
// is not usable: New makes one.
type Dialer struct {
	mu  sync.Mutex
	cas map[string]caEntry // CA files read, by path; bounded by the config's
}

type caEntry struct {
	pool *x509.CertPool
	mod  time.Time
	size int64
}

// maxCAFiles bounds the CA files kept: the config names a few.
const maxCAFiles = 64

// Buffers per connection: gorilla's frame buffer (a 20 ms message of 16 kHz
// stereo is 1.3 KB, a twilio one under 1.2 KB: one frame each) and the flush
// buffer, which a drain of a few messages fills (a longer drain flushes it
// as it fills). Thousands of connections keep them: small.
const (
	frameBuffer    = 4 << 10
	writeBuffer    = 8 << 10
	readBuffer     = 2 << 10
	maxFrameHeader = 14 // a client frame's header: 2 bytes, 8 of length, 4 of mask
)

// New returns a Dialer.
func New() *Dialer { return &Dialer{cas: map[string]caEntry{}} }

var _ mediafork.StreamDialer = (*Dialer)(nil)

// Dial connects to d.URL through d.Addr within ctx.
func (dl *Dialer) Dial(ctx context.Context, d mediafork.StreamDial) (mediafork.StreamConn, error) {
	if d.URL == nil || !d.Addr.IsValid() {
		return nil, errors.New("wsout: no URL or address")
	}
	var tc *tls.Config
	if d.URL.Scheme == "wss" {
		var err error
		if tc, err = dl.tlsConfig(d); err != nil {
			return nil, err
		}
	}
	var cork *corkConn
	tcp := func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", d.Addr.String())
	}
	gd := websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := tcp(ctx)
			if err != nil {
				return nil, err
			}
			cork = &corkConn{Conn: c}
			return cork, nil
		},
		NetDialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := tcp(ctx)
			if err != nil {
				return nil, err
			}
			tlsConn := tls.Client(c, tc)
			if err := tlsConn.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			cork = &corkConn{Conn: tlsConn}
			return cork, nil
		},
		ReadBufferSize:  readBuffer,
		WriteBufferSize: max(frameBuffer, d.MessageSize+maxFrameHeader), // every message one frame
	}
	if d.Subprotocol != "" {
		gd.Subprotocols = []string{d.Subprotocol}
	}
	header := http.Header{}
	for k, vs := range d.Header {
		header[k] = vs
	}
	ws, resp, err := gd.DialContext(ctx, d.URL.String(), header)
	if err != nil {
		if resp != nil {
			// Never the URL: its query may hold a token.
			return nil, fmt.Errorf("upgrade refused: %s", resp.Status)
		}
		return nil, err
	}
	return &Conn{ws: ws, cork: cork}, nil
}

// tlsConfig verifies the server by the URL's host, against the endpoint's CA
// file when it names one, else the system's roots.
func (dl *Dialer) tlsConfig(d mediafork.StreamDial) (*tls.Config, error) {
	tc := &tls.Config{ServerName: d.URL.Hostname(), MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
		InsecureSkipVerify: d.InsecureSkipVerify} //nolint:gosec // off by default; the operator's explicit choice
	if d.CAFile != "" {
		pool, err := dl.pool(d.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// pool is path's certificates, read again when the file changes.
func (dl *Dialer) pool(path string) (*x509.CertPool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tls_ca_file: %w", err)
	}
	dl.mu.Lock()
	e, ok := dl.cas[path]
	dl.mu.Unlock()
	if ok && e.mod.Equal(st.ModTime()) && e.size == st.Size() {
		return e.pool, nil
	}
	p, err := boundedfile.CertPool(path)
	if err != nil {
		return nil, fmt.Errorf("tls_ca_file: %w", err)
	}
	dl.mu.Lock()
	if len(dl.cas) >= maxCAFiles {
		clear(dl.cas)
	}
	dl.cas[path] = caEntry{pool: p, mod: st.ModTime(), size: st.Size()}
	dl.mu.Unlock()
	return p, nil
}

// Conn is one stream connection.
type Conn struct {
	ws   *websocket.Conn
	cork *corkConn
	rb   bytes.Buffer // the last message read
}

var _ mediafork.StreamConn = (*Conn)(nil)

// WriteMessage writes one message into the flush buffer (sent when it
// fills, or at Flush).
func (c *Conn) WriteMessage(text bool, b []byte, deadline time.Time) error {
	c.cork.hold()
	c.ws.SetWriteDeadline(deadline)
	mt := websocket.BinaryMessage
	if text {
		mt = websocket.TextMessage
	}
	return c.ws.WriteMessage(mt, b)
}

// Flush sends what WriteMessage holds.
func (c *Conn) Flush(deadline time.Time) error { return c.cork.flush(deadline) }

// ReadMessage reads the next message, at most limit bytes.
func (c *Conn) ReadMessage(limit int) (bool, []byte, error) {
	c.ws.SetReadLimit(int64(limit))
	mt, r, err := c.ws.NextReader()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return false, nil, &mediafork.StreamClosed{Code: ce.Code, Reason: ce.Text}
		}
		return false, nil, err
	}
	c.rb.Reset()
	if _, err := c.rb.ReadFrom(r); err != nil {
		return false, nil, err
	}
	return mt == websocket.TextMessage, c.rb.Bytes(), nil
}

// SendClose sends a close frame and lets the server answer until deadline.
func (c *Conn) SendClose(code int, reason string, deadline time.Time) error {
	if err := c.cork.flush(deadline); err != nil {
		return err
	}
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline); err != nil {
		return err
	}
	return c.ws.SetReadDeadline(deadline)
}

// Close closes the connection.
func (c *Conn) Close() error { return c.ws.Close() }

// corkConn gathers what gorilla writes between hold and flush into one
// write. Its lock is the connection's own write lock: the writer and the
// reader (answering pings) are all that take it.
type corkConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  []byte
}

func (c *corkConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > writeBuffer && len(c.buf) > 0 {
		if err := c.send(); err != nil {
			return 0, err
		}
	}
	if len(p) > writeBuffer {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = make([]byte, 0, writeBuffer)
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// send writes the buffer out (under mu).
func (c *corkConn) send() error {
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// flush writes what is held and stops holding.
func (c *corkConn) flush(deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	if len(c.buf) == 0 {
		return nil
	}
	c.Conn.SetWriteDeadline(deadline)
	return c.send()
}
