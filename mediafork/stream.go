package mediafork

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// The port stream protocols (StreamProtocol: WebSocket media streams such as
// Twilio's and mod_audio_fork's) reach their servers through. The domain
// owns it; a transport package implements it (a gorilla WebSocket dialer),
// tests implement it in memory. Nothing in the table uses it yet: it is the
// shape issue 21's stream protocols build on.

// StreamDialer opens one stream endpoint's connection.
type StreamDialer interface {
	// Dial connects to u through addr, the address resolved (and checked
	// against destinations.allow) when the fork was asked for: u's host is
	// only the Host header and the TLS server name, never resolved again.
	// TLS certificates are verified. headers are sent with the upgrade;
	// subprotocol is offered when not "". It gives up at ctx's deadline.
	Dial(ctx context.Context, u *url.URL, addr netip.AddrPort, headers http.Header, subprotocol string) (StreamConn, error)
}

// StreamConn is one connection of a stream output: written by the output's
// writer goroutine (one at a time), read by its reader (one at a time).
type StreamConn interface {
	// WriteMessage sends one text or binary message, failing at deadline.
	WriteMessage(text bool, b []byte, deadline time.Time) error
	// ReadMessage returns the next message from the server, at most limit
	// bytes (longer ones fail the connection). The slice is valid until the
	// next call.
	ReadMessage(limit int) (text bool, b []byte, err error)
	// Close ends the connection with a close code and reason (1000: normal),
	// waiting at most until deadline for the handshake.
	Close(code int, reason string, deadline time.Time) error
}
