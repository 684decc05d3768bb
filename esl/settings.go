package esl

import (
	"time"

	"github.com/mediafork/mediafork/internal/settings"
)

// ConnSettings bound one ESL connection, inbound or outbound; a Client or an
// Outbound listener gives its own to every connection it makes. A zero field
// takes its default; a negative one is refused when the Client or Outbound is
// built. They apply for the life of what takes them: a reload does not change
// them (the config's limits: section takes effect at the next start).
type ConnSettings struct {
	// CommandTimeout bounds every command; one that times out closes the
	// connection. Default 5 s.
	CommandTimeout time.Duration
	// HandshakeTimeout bounds everything before a connection is in use: the
	// TCP connect, FreeSWITCH's auth/request, the auth reply and the
	// subscription (inbound), the connect exchange (outbound). A peer that
	// accepts and says nothing is dropped after it; for the inbound client it
	// is a failed attempt. Default 5 s.
	HandshakeTimeout time.Duration
	// MaxQueuedEvents and MaxQueuedBytes bound the events read from a
	// connection and not yet handled. Beyond either, the connection is dropped
	// (logged at ERROR and counted): FreeSWITCH does the same to listeners
	// that fall far behind, and the reconnect resyncs live channels. Defaults
	// 10,000 events and 64 MiB (limits.esl_event_queue, _bytes).
	MaxQueuedEvents int
	MaxQueuedBytes  int
}

// resolve fills in the defaults and checks s.
func (s *ConnSettings) resolve(c *settings.Checker) {
	settings.Default(c, "CommandTimeout", &s.CommandTimeout, 5*time.Second)
	settings.Default(c, "HandshakeTimeout", &s.HandshakeTimeout, 5*time.Second)
	settings.Default(c, "MaxQueuedEvents", &s.MaxQueuedEvents, 10000)
	settings.Default(c, "MaxQueuedBytes", &s.MaxQueuedBytes, 64<<20)
}

// ClientSettings are an inbound Client's: its connections' bounds and how it
// reconnects. A zero field takes its default.
//
// Reconnecting backs off from BackoffMin (0.5 s), doubling to BackoffMax
// (30 s), with jitter. Every failed attempt (refused, no handshake within
// HandshakeTimeout, wrong password, subscription refused) doubles it, and so
// does a connection lost before it had been up StableAfter (10 s): only a
// connection that was really in use resets it.
type ClientSettings struct {
	ConnSettings
	BackoffMin  time.Duration
	BackoffMax  time.Duration
	StableAfter time.Duration
}

func (s *ClientSettings) resolve() error {
	c := settings.New("esl client")
	s.ConnSettings.resolve(c)
	settings.Default(c, "BackoffMin", &s.BackoffMin, 500*time.Millisecond)
	settings.Default(c, "BackoffMax", &s.BackoffMax, 30*time.Second)
	settings.Default(c, "StableAfter", &s.StableAfter, 10*time.Second)
	c.Check(s.BackoffMax >= s.BackoffMin, "BackoffMax", "is below BackoffMin")
	return c.Err()
}

// OutboundSettings are the outbound listener's: its connections' bounds and
// how many it serves at once. A zero field takes its default.
type OutboundSettings struct {
	ConnSettings
	// MaxConns caps the outbound sockets served at once; beyond it a new one
	// is closed at once (logged, counted in Outbound.Refused). Default 1,000
	// (limits.outbound_connections).
	MaxConns int
	// MaxHeaderBytes bounds the header block of a message on an outbound
	// socket: the `connect` reply carries the channel's data there (3.6 KB,
	// 110 lines, from FreeSWITCH 1.10.12 for a loopback call; a SIP call's
	// variables add a few KB more); the other messages' blocks are a few
	// lines. Past it the socket is closed (logged, counted in
	// Outbound.HeadersTooBig). Default 64 KiB.
	MaxHeaderBytes int
}

func (s *OutboundSettings) resolve() error {
	c := settings.New("esl outbound")
	s.ConnSettings.resolve(c)
	settings.Default(c, "MaxConns", &s.MaxConns, 1000)
	settings.Default(c, "MaxHeaderBytes", &s.MaxHeaderBytes, 64<<10)
	return c.Err()
}
