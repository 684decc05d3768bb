package tlsrecord

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Listener accepts the TLS connections of a net.Listener as Conns.
type Listener struct {
	net.Listener
	config *tls.Config // the caller's, its GetConfigForClient ours
}

// NewListener serves TLS with config on inner's connections; Accept returns
// *Conn. config must leave KeyLogWriter, GetConfigForClient, WrapSession and
// UnwrapSession unset (this package sets them for each connection); its
// certificates (GetCertificate: a reloader's) are crypto/tls's as usual.
func NewListener(inner net.Listener, config *tls.Config) (*Listener, error) {
	if config.KeyLogWriter != nil || config.GetConfigForClient != nil || config.WrapSession != nil || config.UnwrapSession != nil {
		return nil, errors.New("tlsrecord: the config sets KeyLogWriter, GetConfigForClient, WrapSession or UnwrapSession")
	}
	base := config.Clone()
	base.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		t, ok := chi.Conn.(*tap)
		if !ok {
			return nil, nil
		}
		per := base.Clone()
		per.GetConfigForClient = nil
		// The secrets of this connection come to its tap. The session
		// tickets stay the listener's (crypto/tls takes them from the
		// config the handshake began with).
		per.KeyLogWriter = keyLog{t}
		per.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			if cs.Version < tls.VersionTLS13 {
				// crypto/tls logs no TLS 1.2 master secret when it resumes
				// a session: a full handshake, so that the connection's
				// records can be taken over.
				return nil, nil
			}
			return base.DecryptTicket(identity, cs)
		}
		return per, nil
	}
	return &Listener{Listener: inner, config: base}, nil
}

// Accept waits for the next connection; its handshake runs on its first
// Read or Write (or Handshake).
func (l *Listener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(raw, l.config), nil
}

// HandshakeWriteTimeout bounds the handshake's writes: a peer that reads
// nothing cannot hold a handshake for ever (its reads are bounded by the read
// deadline the caller sets, net/http's ReadHeaderTimeout).
const HandshakeWriteTimeout = 10 * time.Second

// Conn states.
const (
	stateNew       = iota // no handshake yet, or under way
	stateFast             // this package reads and writes the records
	stateCryptoTLS        // crypto/tls does (Reason says why)
	stateFailed           // the handshake failed
)

// Conn is a TLS server connection: crypto/tls's handshake, then (Fast) this
// package's record layer, which Detach hands over.
type Conn struct {
	raw net.Conn
	// The handshake's: crypto/tls's connection on the tap. Once Fast, both
	// are released (nil; cs keeps what TLSConnectionState says): a
	// connection waiting for its first message would otherwise hold
	// crypto/tls's buffers, ciphers and config (some 4.5 KiB) it never uses
	// again. Guarded by hsMu; read without it only when not Fast.
	tap *tap
	tc  *tls.Conn
	// Fast: crypto/tls's, of the handshake. (Its ExportKeyingMaterial still
	// refers to crypto/tls's connection after a TLS 1.2 handshake without
	// the extended master secret, which OpenSSL and Go clients negotiate.)
	cs *tls.ConnectionState

	hsMu   sync.Mutex
	state  atomic.Int32
	hsErr  error
	reason string // why crypto/tls serves the connection on

	inMu  sync.Mutex
	rx    Receiver
	rbuf  []byte
	rs    int // raw bytes read ahead: rbuf[rs:re]
	re    int
	plain []byte // decrypted, not read yet (a slice of rbuf)
	rerr  error  // sticky

	outMu sync.Mutex
	tx    Sender
	wbuf  []byte
	werr  error // sticky
	// detached: the state is handed over (Detach); guarded by inMu and outMu.
	detached      bool
	closeNotified bool
}

// Server makes a server Conn of raw with config (NewListener's).
func Server(raw net.Conn, config *tls.Config) *Conn {
	t := &tap{Conn: raw}
	return &Conn{raw: raw, tap: t, tc: tls.Server(t, config)}
}

// Handshake runs the handshake if it has not run.
func (c *Conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext runs the handshake if it has not run; then it decides
// whether this package takes the records over (Fast).
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if s := c.state.Load(); s == stateFast || s == stateCryptoTLS {
		return nil
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	switch c.state.Load() {
	case stateFast, stateCryptoTLS:
		return nil
	case stateFailed:
		return c.hsErr
	}
	c.raw.SetWriteDeadline(time.Now().Add(HandshakeWriteTimeout))
	err := c.tc.HandshakeContext(ctx)
	c.raw.SetWriteDeadline(time.Time{})
	c.tap.done = true
	if err != nil {
		c.hsErr = err
		c.state.Store(stateFailed)
		// As net/http does for its own TLS connections.
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
			io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		return err
	}
	cs := c.tc.ConnectionState()
	if err := c.takeOver(&cs); err != nil {
		c.reason = err.Error()
		c.state.Store(stateCryptoTLS)
		return nil
	}
	// The records are this package's from here on. (TLS 1.2's TLSUnique is
	// a slice of crypto/tls's connection: copied, so that it goes too.)
	cs.TLSUnique = clone(cs.TLSUnique)
	c.cs, c.tc, c.tap = &cs, nil, nil
	c.state.Store(stateFast)
	return nil
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// takeOver keys the record layer from the secrets crypto/tls logged and sets
// its sequence numbers from the records crypto/tls wrote and read under
// those keys (the TLS 1.3 session ticket it sent, the TLS 1.2 Finished
// messages), each checked by opening it.
func (c *Conn) takeOver(cs *tls.ConnectionState) error {
	t := c.tap
	defer func() { // the handshake's records and secrets are not needed any more
		t.in, t.out = recordLog{}, recordLog{}
		t.mu.Lock()
		t.secrets = nil
		t.mu.Unlock()
	}()
	s := suiteFor(cs.Version, cs.CipherSuite)
	if s == nil {
		return fmt.Errorf("%s, %s: no record layer here for it", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
	}
	if t.in.over || t.out.over {
		return errors.New("a handshake of over 64 KiB")
	}
	var rx, tx *direction
	var err error
	if cs.Version == tls.VersionTLS13 {
		client, server := t.secret("CLIENT_TRAFFIC_SECRET_0"), t.secret("SERVER_TRAFFIC_SECRET_0")
		if client == nil || server == nil {
			return errors.New("crypto/tls logged no traffic secrets")
		}
		if rx, err = direction13(s, client); err == nil {
			tx, err = direction13(s, server)
		}
	} else {
		master, random, serverRandom := t.secret("CLIENT_RANDOM"), t.random, t.serverRandom()
		if master == nil || serverRandom == nil {
			return errors.New("crypto/tls logged no TLS 1.2 master secret")
		}
		rx, tx, err = directions12(s, master, random, serverRandom)
	}
	if err != nil {
		return err
	}
	if rx.seq, err = continued(rx, t.in.records); err != nil {
		return fmt.Errorf("the records read: %w", err)
	}
	if tx.seq, err = continued(tx, t.out.records); err != nil {
		return fmt.Errorf("the records written: %w", err)
	}
	c.rx = Receiver{d: *rx}
	c.tx = Sender{d: *tx}
	return nil
}

// continued is the sequence number d goes on from after records: the number
// of records at their end that open under d's keys, from 0 on (the records
// before are the handshake's, under other keys or none). The records are
// opened in place, each at most once (they are not needed after), all with
// d's one cipher: a record that does not open leaves d as it was.
func continued(d *direction, records [][]byte) (uint64, error) {
	d.cipher()
	for i, rec := range records {
		d.seq = 0
		if _, _, err := d.open(rec); err != nil {
			continue
		}
		for _, later := range records[i+1:] {
			if _, _, err := d.open(later); err != nil {
				return 0, errors.New("a record under the new keys did not open in turn")
			}
		}
		return d.seq, nil
	}
	return 0, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// Fast reports whether this package reads and writes the records (after a
// handshake that succeeded): Detach can hand them over.
func (c *Conn) Fast() bool { return c.state.Load() == stateFast }

// Reason says why crypto/tls serves a connection on after its handshake
// ("" when Fast, or before the handshake).
func (c *Conn) Reason() string {
	if c.state.Load() != stateCryptoTLS {
		return ""
	}
	return c.reason
}

// TLSConnectionState is crypto/tls's, of the handshake. (Not named
// ConnectionState: net/http would take that for the Request's TLS field when
// the connection comes, before its handshake.) It waits for a handshake
// under way, as crypto/tls's does.
func (c *Conn) TLSConnectionState() tls.ConnectionState {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.cs != nil {
		return *c.cs
	}
	return c.tc.ConnectionState()
}

// NetConn is the TCP connection.
func (c *Conn) NetConn() net.Conn { return c.raw }

// SyscallConn is the TCP connection's.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return nil, errors.New("tlsrecord: not a socket")
	}
	return sc.SyscallConn()
}

func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if !c.Fast() {
		return c.tc.Read(p)
	}
	c.inMu.Lock()
	defer c.inMu.Unlock()
	if c.detached {
		return 0, net.ErrClosed
	}
	for len(c.plain) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		rec, err := c.readRecord()
		if err != nil {
			return 0, err
		}
		ev, plain, err := c.rx.Open(rec)
		if err != nil {
			c.rerr = err
			c.alert(err)
			return 0, err
		}
		switch ev {
		case Data:
			c.plain = plain
		case Closed:
			c.rerr = io.EOF
		case UpdateRequested:
			c.outMu.Lock()
			c.tx.UpdateRequested()
			c.outMu.Unlock()
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

// firstReadBuffer is the size of a Conn's first read buffer: an upgrade
// request fits, with its headers (about 300 bytes from the modules).
const firstReadBuffer = 512

// readRecord returns the next whole record, reading the socket as needed. A
// timeout leaves what was read for the next call; any other error is final.
func (c *Conn) readRecord() ([]byte, error) {
	for {
		if c.rs == c.re {
			c.rs, c.re = 0, 0
		}
		n, err := RecordLen(c.rbuf[c.rs:c.re])
		if err != nil {
			c.rerr = err
			c.alert(err)
			return nil, err
		}
		if n > 0 && c.re-c.rs >= n {
			rec := c.rbuf[c.rs : c.rs+n]
			c.rs += n
			return rec, nil
		}
		if need := max(n, HeaderLen); len(c.rbuf)-c.rs < need || c.re == len(c.rbuf) {
			// The first buffer fits an upgrade request's record: a
			// connection waits for its first frame with no more (on the
			// epoll reader, until its handover). A larger record, or a full
			// buffer, takes 2 KiB: a frame, several when they queue up.
			floor := 2048
			if len(c.rbuf) == 0 {
				floor = firstReadBuffer
			}
			size := len(c.rbuf)
			for size < need || size < floor {
				size = max(2*size, floor)
			}
			nb := c.rbuf
			if size > len(nb) {
				nb = make([]byte, min(size, MaxRecord))
			}
			c.re = copy(nb, c.rbuf[c.rs:c.re])
			c.rs, c.rbuf = 0, nb
		}
		m, err := c.raw.Read(c.rbuf[c.re:])
		c.re += m
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return nil, err
			}
			if err == io.EOF && c.re > c.rs {
				err = io.ErrUnexpectedEOF
			}
			c.rerr = err
			return nil, err
		}
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if !c.Fast() {
		return c.tc.Write(p)
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.detached {
		return 0, net.ErrClosed
	}
	if c.werr != nil {
		return 0, c.werr
	}
	if c.closeNotified {
		return 0, errWriteAfterClose
	}
	c.wbuf = c.tx.Seal(c.wbuf[:0], p)
	_, err := c.raw.Write(c.wbuf)
	if cap(c.wbuf) > 4*MaxRecord {
		c.wbuf = nil
	}
	if err != nil {
		c.werr = err // a record may be half written: nothing can follow it
		return 0, err
	}
	return len(p), nil
}

// errWriteAfterClose: nothing may follow close_notify (RFC 8446 section 6.1).
var errWriteAfterClose = errors.New("tlsrecord: write after close_notify")

// Close sends close_notify (on this package's record layer, as crypto/tls
// does on its own; not after Detach) and closes the socket.
func (c *Conn) Close() error {
	switch c.state.Load() {
	case stateCryptoTLS:
		return c.tc.Close()
	case stateFast:
		if c.outMu.TryLock() { // a Write under way owns the stream
			if !c.detached && c.werr == nil && !c.closeNotified {
				c.closeNotified = true
				c.raw.SetWriteDeadline(time.Now().Add(time.Second))
				c.raw.Write(c.tx.SealCloseNotify(nil))
			}
			c.outMu.Unlock()
		}
	}
	return c.raw.Close()
}

// CloseWrite ends this side's writing: close_notify (as crypto/tls's
// CloseWrite), then the socket's write side is shut down, so that the peer
// reads the end of the stream while this side reads on (a refused
// connection drains what its peer still sends before it closes).
func (c *Conn) CloseWrite() error {
	switch c.state.Load() {
	case stateCryptoTLS:
		if err := c.tc.CloseWrite(); err != nil {
			return err
		}
	case stateFast:
		c.outMu.Lock()
		if !c.detached && c.werr == nil && !c.closeNotified {
			c.closeNotified = true
			c.raw.SetWriteDeadline(time.Now().Add(time.Second))
			_, err := c.raw.Write(c.tx.SealCloseNotify(nil))
			c.raw.SetWriteDeadline(time.Time{})
			if err != nil {
				c.werr = err
			}
		}
		c.outMu.Unlock()
	default:
		return errors.New("tlsrecord: CloseWrite before the handshake")
	}
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *Conn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// State is a connection's record layer as Detach hands it over (by value:
// the reader keeps it where it keeps the connection).
type State struct {
	Receiver Receiver
	Sender   Sender
	// Plain is what was decrypted and not read yet; Raw what was read from
	// the socket and not decrypted yet (whole records, then the start of
	// one). The socket's next bytes follow Raw.
	Plain, Raw []byte
}

// Detach hands the record layer over to a reader of the socket: after it,
// the Conn reads and writes nothing, and Close only closes its socket (the
// caller has its own copy, SyscallConn). Only a Fast connection, with no
// error read or written yet, detaches.
func (c *Conn) Detach() (*State, error) {
	if !c.Fast() {
		return nil, errors.New("tlsrecord: the connection's records are crypto/tls's")
	}
	c.inMu.Lock()
	defer c.inMu.Unlock()
	c.outMu.Lock()
	defer c.outMu.Unlock()
	switch {
	case c.detached:
		return nil, errors.New("tlsrecord: detached already")
	case c.rerr != nil:
		return nil, c.rerr
	case c.werr != nil:
		return nil, c.werr
	}
	c.detached = true
	st := &State{Receiver: c.rx, Sender: c.tx, Plain: clone(c.plain), Raw: clone(c.rbuf[c.rs:c.re])}
	// The sending side's cipher is made again when it first seals: most
	// connections write nothing more until their end, and a reader keeps
	// thousands of them.
	st.Sender.d.aead = nil
	c.rbuf, c.plain, c.wbuf = nil, nil, nil
	c.rx, c.tx = Receiver{}, Sender{}
	return st, nil
}
