package esl

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mediafork/mediafork/third_party/eslgo"
)

// State is where a switch's ESL connection is, for /readyz and the console.
type State string

// States of a client.
const (
	StateConnecting State = "connecting"  // no attempt has ended yet
	StateConnected  State = "connected"   // authenticated and subscribed
	StateAuthFailed State = "auth_failed" // FreeSWITCH refused the password (retrying)
	StateDown       State = "down"        // unreachable, refused or lost (retrying)
)

// ErrWrongPassword is FreeSWITCH answering the auth command with -ERR.
var ErrWrongPassword = errors.New("esl: authentication refused: wrong password")

// passwordError is a refused password, as ErrWrongPassword (and ErrAuth,
// eslgo.ErrAuthFailed), without eslgo's dump of the reply.
type passwordError struct{}

func (passwordError) Error() string   { return ErrWrongPassword.Error() }
func (passwordError) Unwrap() []error { return []error{ErrWrongPassword, ErrAuth, eslgo.ErrAuthFailed} }

// stateBox holds a client's state, when it last changed, and, while it is
// not connected, why and when the next attempt is.
type stateBox struct {
	mu       sync.Mutex
	state    State
	since    time.Time
	reason   string
	next     time.Time
	failures int
}

func (b *stateBox) set(s State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != s {
		b.state, b.since = s, time.Now()
	}
	if s == StateConnected {
		b.reason, b.next, b.failures = "", time.Time{}, 0
	}
}

// failed records an attempt or a connection that ended: the state, why, and
// when the next attempt is.
func (b *stateBox) failed(s State, reason string, next time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != s {
		b.state, b.since = s, time.Now()
	}
	b.reason, b.next = reason, next
	b.failures++
}

// State is the client's state and the time it entered it.
func (c *Client) State() (State, time.Time) {
	c.state.mu.Lock()
	defer c.state.mu.Unlock()
	return c.state.state, c.state.since
}

// Status is a client's state as an operator reads it (the web console):
// what, since when, why it is not connected and when it tries again.
type Status struct {
	Name  string
	Addr  string
	State State
	Since time.Time
	// Reason says why the client is not connected, in a few words:
	// "authentication refused: wrong password (freeswitch[0].password)",
	// "connection refused", "timed out", "connection lost: EOF". "" while
	// connected and before the first attempt has ended.
	Reason string
	// NextAttempt is when the client tries again; zero while connected or
	// while an attempt is under way.
	NextAttempt time.Time
	// Failures counts the attempts and connections that ended since the
	// last successful one.
	Failures int
}

// Status is the client's state now, with its reason and next attempt.
func (c *Client) Status() Status {
	c.state.mu.Lock()
	defer c.state.mu.Unlock()
	b := &c.state
	return Status{Name: c.name, Addr: c.addr, State: b.state, Since: b.since, Reason: b.reason, NextAttempt: b.next, Failures: b.failures}
}

// reasonOf says in a few words why an attempt failed or a connection ended,
// the way an operator looks it up (README, troubleshooting).
func (c *Client) reasonOf(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "connection lost"
	case errors.Is(err, ErrWrongPassword):
		return "authentication refused: wrong password (" + c.passwordKey() + ")"
	case errors.Is(err, ErrAuth):
		// FreeSWITCH's ACL (event_socket.conf.xml apply-inbound-acl) said no.
		return "refused by FreeSWITCH's ACL (event_socket.conf.xml apply-inbound-acl)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing listens at " + c.addr + " (mod_event_socket loaded? listen-ip, listen-port)"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable: " + c.addr
	case errors.Is(err, ErrHandshake), isTimeout(err), errors.As(err, &ne) && ne.Timeout():
		return "timed out: no answer from " + c.addr
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "cannot resolve " + dns.Name
	}
	return truncate(strings.TrimPrefix(err.Error(), "esl: "), 120)
}

// lostReason is reasonOf for a connection that was up.
func (c *Client) lostReason(err error) string {
	if err == nil || errors.Is(err, io.EOF) {
		return "connection lost: FreeSWITCH closed it"
	}
	return fmt.Sprintf("connection lost: %s", c.reasonOf(err))
}

// SetConfigKey names the switch's entry in the config (freeswitch[0]), for
// log lines that tell the operator what to fix. Call before Run.
func (c *Client) SetConfigKey(key string) { c.configKey = key }

// passwordKey is the config key of the switch's password.
func (c *Client) passwordKey() string {
	if c.configKey == "" {
		return "the password of freeswitch " + c.name
	}
	return c.configKey + ".password"
}
