package esl

import (
	"errors"
	"sync"
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

// stateBox holds a client's state and when it last changed.
type stateBox struct {
	mu    sync.Mutex
	state State
	since time.Time
}

func (b *stateBox) set(s State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != s {
		b.state, b.since = s, time.Now()
	}
}

// State is the client's state and the time it entered it.
func (c *Client) State() (State, time.Time) {
	c.state.mu.Lock()
	defer c.state.mu.Unlock()
	return c.state.state, c.state.since
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
