// Package wsout dials the WebSocket connections of mediafork's stream
// outputs (twilio, audiofork): gorilla's client, through the address the fork
// resolved and pinned (never the URL's host again: a DNS change cannot move
// the audio), with the URL's host as the Host header and the TLS server name,
// TLS certificates verified (against a CA file when the endpoint names one),
// within the dial context's deadline. The messages one drain of the output's
// queue writes go out in one flush (one TLS record and one send, not one per
// message); their frames are built here (RFC 6455 §5.2, masked), without an
// allocation, gorilla reading and answering the server's frames.
package wsout

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mediafork/mediafork/internal/boundedfile"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/wsframe"
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
	maxFrameHeader = wsframe.MaxClientHeader
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
			cork = newCorkConn(c, d.MessageSize)
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
			cork = newCorkConn(tlsConn, d.MessageSize)
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
	var seed [32]byte
	crand.Read(seed[:]) // never fails (crypto/rand's contract since Go 1.24)
	return &Conn{ws: ws, cork: cork, masks: rand.NewChaCha8(seed)}, nil
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
	ws    *websocket.Conn
	cork  *corkConn
	masks *rand.ChaCha8 // the frames' masking keys (RFC 6455 §5.3: unpredictable)
	rb    bytes.Buffer  // the last message read
}

var _ mediafork.StreamConn = (*Conn)(nil)

// WriteMessage writes one message, as one masked client frame, into the
// flush buffer (sent when it fills, or at Flush). The frame is built here,
// not by gorilla: its client writer is allocated for every message and sets
// the socket's deadline each time (two allocations and three poller calls a
// frame for a twilio stream); gorilla still writes the control frames.
func (c *Conn) WriteMessage(text bool, b []byte, deadline time.Time) error {
	op := byte(websocket.BinaryMessage)
	if text {
		op = websocket.TextMessage
	}
	return c.cork.frame(op, b, uint32(c.masks.Uint64()), deadline)
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

// corkConn gathers the frames of one drain into one write: WriteMessage's,
// and what gorilla writes meanwhile (a pong). Its lock is the connection's
// own write lock: the writer and the reader (answering pings) are all that
// take it.
type corkConn struct {
	net.Conn
	size int // the buffer's capacity: the largest frame the output writes
	mu   sync.Mutex
	held bool
	buf  []byte
	// deadline is the socket's write deadline as this connection last set
	// it (zero: unknown, gorilla set one).
	deadline time.Time
}

func newCorkConn(c net.Conn, messageSize int) *corkConn {
	return &corkConn{Conn: c, size: max(writeBuffer, messageSize+maxFrameHeader)}
}

// deadlineSlack: the write deadline is moved only when it would move by
// more than this (setting it is a poller call; once a frame it was a few per
// cent of a stream's CPU): a write may time out up to this much sooner than
// write_timeout.
const deadlineSlack = 100 * time.Millisecond

// setDeadline moves the socket's write deadline to d (under mu).
func (c *corkConn) setDeadline(d time.Time) {
	if !c.deadline.IsZero() && !d.Before(c.deadline) && d.Sub(c.deadline) < deadlineSlack {
		return
	}
	c.Conn.SetWriteDeadline(d)
	c.deadline = d
}

// SetWriteDeadline is gorilla's, for its control frames: the next send sets
// the writer's own again.
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = time.Time{}
	return c.Conn.SetWriteDeadline(t)
}

// frame appends a masked client frame of p (RFC 6455 §5.2) to the buffer,
// sending what it holds first when the frame would not fit.
func (c *corkConn) frame(op byte, p []byte, key uint32, deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = true
	n := maxFrameHeader + len(p)
	if len(c.buf)+n > cap(c.buf) && len(c.buf) > 0 {
		if err := c.send(deadline); err != nil {
			return err
		}
	}
	if n > cap(c.buf) {
		// The first frame, or one larger than the output's messages (a
		// hello with much metadata): a buffer that holds it.
		c.buf = make([]byte, 0, max(n, c.size))
	}
	c.buf = wsframe.AppendClientHeader(c.buf, op, len(p), key)
	c.buf = append(c.buf, p...)
	wsframe.Mask(c.buf[len(c.buf)-len(p):], key)
	return nil
}

// Write is gorilla's: sent at once, or held until the flush while a drain
// writes.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > cap(c.buf) && len(c.buf) > 0 {
		if err := c.send(time.Time{}); err != nil {
			return 0, err
		}
	}
	if len(p) > cap(c.buf)-len(c.buf) {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// send writes the buffer out (under mu), by deadline when it is not zero
// (gorilla's writes come with the deadline they set).
func (c *corkConn) send(deadline time.Time) error {
	if !deadline.IsZero() {
		c.setDeadline(deadline)
	}
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
	return c.send(deadline)
}
