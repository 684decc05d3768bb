package fssim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	randv2 "math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/mediafork/mediafork/wsframe"
)

// mod_audio_stream's WebSocket client (libwsc v1.1.0), byte for byte as
// recorded in ../shared/freeswitch/captures/audio_stream: its upgrade request,
// the audio it queues while connecting, its masked frames and its closes.

// StreamHandshakeTimeout is libwsc's connect and upgrade timeout: fixed, 1 s
// (s09d: no 101 within it → error code 10 "Timeout").
const StreamHandshakeTimeout = time.Second

// StreamCloseReason is the reason of the close mod_audio_stream sends on stop
// and at hangup (s01, s08, s16): "Normal closure", code 1000.
const StreamCloseReason = "Normal closure"

// streamQueueLimit is libwsc's send queue (from source): beyond it frames are
// dropped ("Send queue full").
const streamQueueLimit = 1024

// libwsc's error codes, as mod_audio_stream::error reports them.
const (
	StreamErrIO            = 1
	StreamErrConnectFailed = 6
	StreamErrSSL           = 9 // a certificate refused, among others
	StreamErrTimeout       = 10
	StreamErrProtocol      = 11
)

// StreamError is a libwsc error: the code and text of a mod_audio_stream::error
// event.
type StreamError struct {
	Code int
	Text string
}

func (e *StreamError) Error() string { return fmt.Sprintf("libwsc error %d: %s", e.Code, e.Text) }

// AudioStreamOptions are what uuid_audio_stream and the channel variables give
// the module.
type AudioStreamOptions struct {
	Metadata string // start's metadata: one text frame, after any queued audio
	// STREAM_EXTRA_HEADERS: request lines Name:value after Origin, sorted by
	// name (s14d).
	ExtraHeaders map[string]string
	// Queued is audio captured before the 101 (a slow upgrade): flushed in a
	// burst right after it, before the metadata (s09c).
	Queued [][]byte
	// TLS for wss:// URLs (STREAM_TLS_CA_FILE and friends); nil verifies
	// against the system roots.
	TLS *tls.Config
	// HandshakeTimeout overrides libwsc's fixed 1 s (tests only).
	HandshakeTimeout time.Duration
}

// AudioStream is one mod_audio_stream WebSocket.
type AudioStream struct {
	Conn     net.Conn
	Request  []byte // the upgrade request, as sent
	Response []byte // the server's status line and headers

	br  *bufio.Reader
	opt AudioStreamOptions

	wmu       sync.Mutex // one writer; guards the fields below
	open      bool       // upgraded: frames go out, not to the queue
	closed    bool       // no more frames at all
	closeSent bool
	queue     [][]byte
	dropped   int // frames the full queue refused
	wbuf      []byte
}

// newAudioStream is a stream that queues what it is given until it connects.
func newAudioStream(o AudioStreamOptions) *AudioStream {
	s := &AudioStream{opt: o}
	for _, f := range o.Queued {
		s.queue = append(s.queue, append([]byte(nil), f...))
	}
	return s
}

// DialAudioStream connects like mod_audio_stream: the recorded upgrade request
// (Host and Origin with the port, no space after the colons, lower-case
// "Connection:upgrade", no subprotocol, no extensions, no User-Agent), then
// o.Queued in a burst, then the metadata frame if any. The error is a
// *StreamError carrying the code the module would report.
func DialAudioStream(ctx context.Context, rawURL string, o AudioStreamOptions) (*AudioStream, error) {
	s := newAudioStream(o)
	if err := s.connect(ctx, rawURL); err != nil {
		return s, err
	}
	return s, nil
}

// streamURL is a URL as libwsc takes it apart.
type streamURL struct {
	tls        bool
	host, port string
	path       string // path and query, verbatim
}

// parseStreamURL checks a URL as mod_audio_stream's validate_ws_uri does: ws://
// or wss://, a host of [A-Za-z0-9.-], a numeric port.
func parseStreamURL(raw string) (streamURL, error) {
	var u streamURL
	rest, ok := strings.CutPrefix(raw, "ws://")
	if !ok {
		if rest, ok = strings.CutPrefix(raw, "wss://"); !ok {
			return u, errors.New("invalid websocket uri")
		}
		u.tls = true
	}
	authority := rest
	u.path = "/"
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, u.path = rest[:i], rest[i:]
		if u.path[0] == '?' {
			u.path = "/" + u.path
		}
	}
	u.host, u.port = authority, "80"
	if u.tls {
		u.port = "443"
	}
	if h, p, ok := strings.Cut(authority, ":"); ok {
		u.host, u.port = h, p
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return u, errors.New("invalid websocket uri")
		}
	}
	if u.host == "" || strings.Trim(u.host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" {
		return u, errors.New("invalid websocket uri")
	}
	return u, nil
}

// UpgradeRequest is the request mod_audio_stream sends for u with key, byte
// for byte (s01 ws/conn01/request.txt; extra headers as in s14d).
func UpgradeRequest(rawURL, key string, extra map[string]string) ([]byte, error) {
	u, err := parseStreamURL(rawURL)
	if err != nil {
		return nil, err
	}
	hostport := u.host + ":" + u.port
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost:%s\r\nUpgrade:websocket\r\nConnection:upgrade\r\nSec-WebSocket-Key:%s\r\nSec-WebSocket-Version:13\r\nOrigin:http://%s\r\n",
		u.path, hostport, key, hostport)
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s:%s\r\n", n, extra[n])
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

// connect dials, upgrades within the handshake timeout, then flushes the
// queue and sends the metadata.
func (s *AudioStream) connect(ctx context.Context, rawURL string) error {
	u, err := parseStreamURL(rawURL)
	if err != nil {
		return &StreamError{StreamErrConnectFailed, err.Error()}
	}
	timeout := s.opt.HandshakeTimeout
	if timeout <= 0 {
		timeout = StreamHandshakeTimeout
	}
	deadline := time.Now().Add(timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", net.JoinHostPort(u.host, u.port))
	if err != nil {
		if dctx.Err() == context.DeadlineExceeded {
			return &StreamError{StreamErrTimeout, "Timeout"}
		}
		return &StreamError{StreamErrConnectFailed, systemError(err)}
	}
	if u.tls {
		cfg := s.opt.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = u.host
		}
		conn = tls.Client(conn, cfg)
	}
	var key [16]byte
	rand.Read(key[:])
	s.Request, _ = UpgradeRequest(rawURL, base64.StdEncoding.EncodeToString(key[:]), s.opt.ExtraHeaders)
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	fail := func(e *StreamError) error {
		conn.Close()
		s.wmu.Lock()
		s.closed = true
		s.wmu.Unlock()
		return e
	}
	if _, err := conn.Write(s.Request); err != nil { // the TLS handshake, on wss://
		if errors.Is(err, errCertificate) {
			return fail(&StreamError{StreamErrSSL, streamTLSFailure})
		}
		return fail(ioError(err))
	}
	s.br = bufio.NewReaderSize(conn, 4096)
	for {
		line, err := s.br.ReadSlice('\n')
		if err != nil {
			if isTimeoutErr(err) {
				return fail(&StreamError{StreamErrTimeout, "Timeout"})
			}
			return fail(ioError(err))
		}
		s.Response = append(s.Response, line...)
		if len(s.Response) > 8192 {
			return fail(&StreamError{StreamErrConnectFailed, "WebSocket upgrade failed"})
		}
		if string(line) == "\r\n" || string(line) == "\n" {
			break
		}
	}
	// libwsc checks only these two (from source): the accept value is not
	// verified, a subprotocol in the reply is ignored.
	if !bytes.Contains(s.Response, []byte("HTTP/1.1 101")) || !bytes.Contains(s.Response, []byte("Sec-WebSocket-Accept:")) {
		return fail(&StreamError{StreamErrConnectFailed, "WebSocket upgrade failed"})
	}
	conn.SetDeadline(time.Time{})
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.Conn = conn
	if s.closed { // stopped while connecting
		conn.Close()
		return &StreamError{StreamErrIO, "closed"}
	}
	// The queued audio first, then the metadata (s09c).
	for _, f := range s.queue {
		if err := s.writeLocked(websocket.BinaryMessage, f); err != nil {
			return ioError(err)
		}
	}
	s.queue = nil
	if s.opt.Metadata != "" {
		if err := s.writeLocked(websocket.TextMessage, []byte(s.opt.Metadata)); err != nil {
			return ioError(err)
		}
	}
	s.open = true
	return nil
}

// systemError is how libwsc words a socket error: "Connection refused
// (system error 111)".
func systemError(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		msg := errno.Error()
		return strings.ToUpper(msg[:1]) + msg[1:] + " (system error " + strconv.Itoa(int(errno)) + ")"
	}
	return err.Error()
}

// ioError is libwsc's error 1 for a connection lost without a close frame
// (s11, s11b).
func ioError(err error) *StreamError {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &StreamError{StreamErrIO, systemError(err)}
	}
	return &StreamError{StreamErrIO, "Connection closed without WebSocket CLOSE (abnormal EOF)"}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeLocked sends one masked frame (FIN, no RSV, a fresh mask key); s.wmu held.
func (s *AudioStream) writeLocked(op int, payload []byte) error {
	key := randv2.Uint32()
	b := wsframe.AppendClientHeader(s.wbuf[:0], byte(op), len(payload), key)
	b = append(b, payload...)
	wsframe.Mask(b[len(b)-len(payload):], key)
	s.wbuf = b
	s.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := s.Conn.Write(b)
	return err
}

// write sends a frame, or queues a binary one while connecting.
func (s *AudioStream) write(op int, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	switch {
	case s.closed || s.closeSent:
		return net.ErrClosed
	case !s.open:
		if op != websocket.BinaryMessage {
			return errors.New("not connected")
		}
		if len(s.queue) >= streamQueueLimit {
			s.dropped++
			return errors.New("Send queue full")
		}
		s.queue = append(s.queue, append([]byte(nil), payload...))
		return nil
	}
	return s.writeLocked(op, payload)
}

// Send writes one binary frame of L16 PCM (queued while connecting).
func (s *AudioStream) Send(pcm []byte) error { return s.write(websocket.BinaryMessage, pcm) }

// SendText writes a text frame (send_text).
func (s *AudioStream) SendText(text string) error {
	return s.write(websocket.TextMessage, []byte(text))
}

// Stream sends pcm in frames of frameBytes, one every cadence (0: as fast as
// the socket takes them), on an absolute schedule, until pcm or ctx ends.
func (s *AudioStream) Stream(ctx context.Context, pcm []byte, frameBytes int, cadence time.Duration) error {
	return pace(ctx, pcm, frameBytes, cadence, s.Send)
}

// sendClose sends a close frame once.
func (s *AudioStream) sendClose(code int, reason string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closeSent || s.closed || s.Conn == nil {
		return net.ErrClosed
	}
	s.closeSent = true
	return s.writeLocked(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason))
}

// Stop is `uuid_audio_stream <uuid> stop [text]` or a hangup: the text frame,
// then close 1000 "Normal closure" in the same millisecond (s08); the server's
// answer is awaited 1 s (libwsc's close timer, s08d), then TCP is closed. It
// returns the server's close (*websocket.CloseError) or why there was none.
func (s *AudioStream) Stop(finalText string) error {
	if finalText != "" {
		if err := s.SendText(finalText); err != nil {
			return err
		}
	}
	if err := s.sendClose(websocket.CloseNormalClosure, StreamCloseReason); err != nil {
		return err
	}
	return s.AwaitClose(time.Second)
}

// ReadMessage reads the server's next data message, answering pings; a close
// is echoed with the same code and reason (s10, s10b) and returned as a
// *websocket.CloseError.
func (s *AudioStream) ReadMessage() (int, []byte, error) {
	var msg []byte
	msgOp := 0
	for {
		fin, op, p, err := s.readFrame()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case websocket.PingMessage:
			s.wmu.Lock()
			if !s.closeSent {
				s.writeLocked(websocket.PongMessage, p)
			}
			s.wmu.Unlock()
			continue
		case websocket.PongMessage:
			continue
		case websocket.CloseMessage:
			ce := &websocket.CloseError{Code: websocket.CloseNoStatusReceived}
			if len(p) >= 2 {
				ce.Code, ce.Text = int(binary.BigEndian.Uint16(p)), string(p[2:])
			}
			s.sendClose(ce.Code, ce.Text) // echoed as is, unless ours went first
			return 0, nil, ce
		case 0: // continuation
			msg = append(msg, p...)
		default:
			msgOp, msg = op, append(msg[:0], p...)
		}
		if fin {
			if msgOp == websocket.TextMessage && !utf8.Valid(msg) {
				// s13b: error 11, close 1007.
				s.sendClose(websocket.CloseInvalidFramePayloadData, "Invalid UTF-8 in text message")
				return 0, nil, &StreamError{StreamErrProtocol, "WebSocket invalid UTF-8 (1007): Invalid UTF-8 in text message"}
			}
			return msgOp, msg, nil
		}
	}
}

// readFrame reads one server frame.
func (s *AudioStream) readFrame() (fin bool, op int, p []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(s.br, h[:]); err != nil {
		return false, 0, nil, err
	}
	fin, op = h[0]&0x80 != 0, int(h[0]&0x0F)
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var e [2]byte
		if _, err = io.ReadFull(s.br, e[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err = io.ReadFull(s.br, e[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if h[1]&0x80 != 0 {
		return false, 0, nil, &StreamError{3, "Server frames must not be masked"}
	}
	if n > 16<<20 {
		return false, 0, nil, &StreamError{StreamErrProtocol, "frame too large"}
	}
	p = make([]byte, n)
	_, err = io.ReadFull(s.br, p)
	return fin, op, p, err
}

// AwaitClose reads until the server closes (its close is returned as a
// *websocket.CloseError) or timeout passes, then closes TCP.
func (s *AudioStream) AwaitClose(timeout time.Duration) error {
	if s.Conn == nil {
		return net.ErrClosed
	}
	s.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer s.Close()
	for {
		if _, _, err := s.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce
			}
			return fmt.Errorf("no close from server: %w", err)
		}
	}
}

// Close closes TCP (after a close handshake, or to give up).
func (s *AudioStream) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.closed = true
	if s.Conn == nil {
		return nil
	}
	return s.Conn.Close()
}

// Drop closes the TCP connection without a close frame.
func (s *AudioStream) Drop() error { return s.Close() }
