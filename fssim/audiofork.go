package fssim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

// Subprotocol is the one mod_audio_fork offers.
const Subprotocol = "audio.drachtio.org"

// AudioForkOptions are what uuid_audio_fork and the channel variables give the module.
type AudioForkOptions struct {
	Metadata string // sent verbatim as the first text frame when not ""
	// MOD_AUDIO_BASIC_AUTH_USERNAME / _PASSWORD
	BasicUser, BasicPassword string
	// Subprotocols offered; nil offers audio.drachtio.org as the module does.
	Subprotocols []string
	// TLSConfig for wss:// URLs (the switch's trust store, SSL_CERT_FILE);
	// nil verifies against the system roots.
	TLSConfig *tls.Config
}

// AudioFork is one mod_audio_fork media bug's WebSocket.
type AudioFork struct {
	Conn     *websocket.Conn
	Response *http.Response
}

// DialAudioFork connects like mod_audio_fork (libwebsockets): Host and Origin
// without the port, Cache-Control and Pragma no-cache, no User-Agent, no
// extensions; then sends the metadata frame if any.
func DialAudioFork(ctx context.Context, rawURL string, o AudioForkOptions) (*AudioFork, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Host", u.Hostname())
	h.Set("Origin", "http://"+u.Hostname())
	h.Set("Cache-Control", "no-cache")
	h.Set("Pragma", "no-cache")
	h["User-Agent"] = []string{""} // libwebsockets sends none
	if o.BasicUser != "" || o.BasicPassword != "" {
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(o.BasicUser, o.BasicPassword)
		h.Set("Authorization", req.Header.Get("Authorization"))
	}
	d := websocket.Dialer{
		Subprotocols:     o.Subprotocols,
		HandshakeTimeout: 5 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		TLSClientConfig:  o.TLSConfig,
	}
	if d.Subprotocols == nil {
		d.Subprotocols = []string{Subprotocol}
	}
	conn, resp, err := d.DialContext(ctx, rawURL, h)
	if err != nil {
		return &AudioFork{Response: resp}, err
	}
	// lws aborts when the server answers with another subprotocol (t18).
	if p := conn.Subprotocol(); p != "" && p != Subprotocol {
		conn.Close()
		return &AudioFork{Response: resp}, errors.New("HS: PROTOCOL malformed")
	}
	a := &AudioFork{Conn: conn, Response: resp}
	if o.Metadata != "" {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(o.Metadata)); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return a, nil
}

// Send writes one binary frame of L16 PCM.
func (a *AudioFork) Send(pcm []byte) error { return a.Conn.WriteMessage(websocket.BinaryMessage, pcm) }

// SendText writes a text frame (send_text).
func (a *AudioFork) SendText(s string) error {
	return a.Conn.WriteMessage(websocket.TextMessage, []byte(s))
}

// Stream sends pcm in frames of frameBytes, one every cadence (20 ms for the
// module; 0 sends as fast as the socket takes them), until pcm or ctx ends.
// Pacing follows an absolute schedule, as the module's media tick does.
func (a *AudioFork) Stream(ctx context.Context, pcm []byte, frameBytes int, cadence time.Duration) error {
	return pace(ctx, pcm, frameBytes, cadence, a.Send)
}

// pace sends pcm in frames of frameBytes through send, one every cadence (0:
// as fast as send returns), on an absolute schedule like a module's media
// tick, until pcm or ctx ends.
func pace(ctx context.Context, pcm []byte, frameBytes int, cadence time.Duration, send func([]byte) error) error {
	start := time.Now()
	for i := 0; len(pcm) > 0; i++ {
		if cadence > 0 {
			if d := time.Until(start.Add(time.Duration(i) * cadence)); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		}
		n := min(frameBytes, len(pcm))
		if err := send(pcm[:n]); err != nil {
			return err
		}
		pcm = pcm[n:]
	}
	return nil
}

// Stop is `uuid_audio_fork <uuid> stop [text]` or a hangup: an optional final
// text frame, then close 1000 with an empty reason; it waits for the server's
// close answer.
func (a *AudioFork) Stop(finalText string) error {
	if finalText != "" {
		if err := a.SendText(finalText); err != nil {
			return err
		}
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := a.Conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		return err
	}
	return a.AwaitClose(2 * time.Second)
}

// GracefulShutdown is `uuid_audio_fork <uuid> graceful-shutdown`: a zero-length
// binary frame, and no close.
func (a *AudioFork) GracefulShutdown() error { return a.Send(nil) }

// AwaitClose reads until the server closes and returns the close error seen
// (*websocket.CloseError), or a timeout.
func (a *AudioFork) AwaitClose(timeout time.Duration) error {
	a.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer a.Conn.Close()
	for {
		if _, _, err := a.Conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce
			}
			return fmt.Errorf("no close from server: %w", err)
		}
	}
}

// Drop closes the TCP connection without a close frame (t16).
func (a *AudioFork) Drop() error { return a.Conn.NetConn().Close() }
