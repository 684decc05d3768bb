package esl

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
)

// A wrong password is one readable line: the switch, the key to fix, the next
// attempt; no Go value dumped, no line break in any value. The state says
// auth_failed, since when.
func TestWrongPasswordIsOneReadableLine(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	sw := fssim.NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	var logs syncbuf.Buffer
	c, err := NewClient("fs-east", sw.Addr(), "WrongPass", &recorder{}, set, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	c.SetConfigKey("freeswitch[1]")
	st, _ := c.State()
	assert.Equal(t, StateConnecting, st)
	before := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var line string
	require.Eventually(t, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "authentication refused") {
				line = l
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, line, "FreeSWITCH fs-east")
	assert.Contains(t, line, "check freeswitch[1].password")
	assert.Contains(t, line, "next attempt in")
	assert.Regexp(t, `next_retry=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`, line)
	assert.Contains(t, line, "level=ERROR")
	for _, bad := range []string{`\n`, "map[", "&eslgo", "RawResponse", "WrongPass"} {
		assert.NotContains(t, line, bad)
	}
	st, since := c.State()
	assert.Equal(t, StateAuthFailed, st)
	assert.False(t, since.Before(before.Truncate(time.Second)), "since is when it changed")
	assert.False(t, c.Connected())
}

// The right password: connected, and a drop makes it down.
func TestStateFollowsTheConnection(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	sw := fssim.NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	c := startClient(t, set, sw.Addr(), "ClueCon", &recorder{}, nil)
	require.Eventually(t, func() bool { st, _ := c.State(); return st == StateConnected }, 5*time.Second, 5*time.Millisecond)
	_, up := c.State()
	sw.Close()
	require.Eventually(t, func() bool { st, _ := c.State(); return st == StateDown }, 5*time.Second, 5*time.Millisecond)
	_, since := c.State()
	assert.False(t, since.Before(up))
}

// Status says why a switch is not connected, in an operator's words, and
// when the next attempt is: a refused password (naming the key), a port
// nothing listens on, a switch that never answers, a connection lost.
func TestStatusSaysWhyAndWhenNext(t *testing.T) {
	t.Parallel()
	until := func(c *Client, ok func(Status) bool) Status {
		t.Helper()
		var st Status
		require.Eventually(t, func() bool { st = c.Status(); return ok(st) }, 10*time.Second, 5*time.Millisecond, "last status: %+v", st)
		return st
	}
	failedWith := func(state State) func(Status) bool {
		return func(st Status) bool { return st.State == state && st.Reason != "" }
	}

	t.Run("wrong password", func(t *testing.T) {
		sw := fssim.NewSwitch("ClueCon", nil)
		require.NoError(t, sw.Listen("127.0.0.1:0"))
		defer sw.Close()
		c, err := NewClient("fs1", sw.Addr(), "WrongPass", &recorder{}, ClientSettings{BackoffMin: time.Second}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		c.SetConfigKey("freeswitch[0]")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		before := time.Now()
		go func() { defer close(done); c.Run(ctx) }()
		defer func() { cancel(); <-done }()
		st := until(c, failedWith(StateAuthFailed))
		after := time.Now()
		assert.Equal(t, "authentication refused: wrong password (freeswitch[0].password)", st.Reason)
		// The backoff (1 s, and up to a quarter more of jitter) from the
		// failure, which came between before and after.
		assert.False(t, st.NextAttempt.Before(before.Add(time.Second)), "next attempt %v after the start: not before the backoff", st.NextAttempt.Sub(before))
		assert.False(t, st.NextAttempt.After(after.Add(1250*time.Millisecond)), "next attempt %v after the failure was seen: no later than the backoff and its jitter", st.NextAttempt.Sub(after))
		assert.Equal(t, sw.Addr(), st.Addr)
		assert.Equal(t, 1, st.Failures)
	})

	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now: the kernel refuses
		c := startClient(t, ClientSettings{BackoffMin: 2 * time.Second}, addr, "ClueCon", &recorder{}, nil)
		st := until(c, failedWith(StateDown))
		assert.True(t, strings.HasPrefix(st.Reason, "connection refused: nothing listens at "+addr), st.Reason)
		assert.True(t, st.NextAttempt.After(time.Now()), "the next attempt is ahead")
	})

	t.Run("timed out", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		go func() { // accepts and never says a word
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		c := startClient(t, ClientSettings{ConnSettings: ConnSettings{HandshakeTimeout: 200 * time.Millisecond}, BackoffMin: 2 * time.Second}, ln.Addr().String(), "ClueCon", &recorder{}, nil)
		st := until(c, failedWith(StateDown))
		assert.Equal(t, "timed out: no answer from "+ln.Addr().String(), st.Reason)
	})

	t.Run("ACL", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		go func() { // what FreeSWITCH says to an address its ACL denies
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(rudeRejection))
				c.Close()
			}
		}()
		c := startClient(t, ClientSettings{BackoffMin: 2 * time.Second}, ln.Addr().String(), "ClueCon", &recorder{}, nil)
		st := until(c, failedWith(StateDown))
		assert.Equal(t, "refused by FreeSWITCH's ACL (event_socket.conf.xml apply-inbound-acl)", st.Reason)
	})

	t.Run("lost, then back", func(t *testing.T) {
		sw := fssim.NewSwitch("ClueCon", nil)
		require.NoError(t, sw.Listen("127.0.0.1:0"))
		defer sw.Close()
		c := startClient(t, ClientSettings{BackoffMin: 300 * time.Millisecond}, sw.Addr(), "ClueCon", &recorder{}, nil)
		st := until(c, func(st Status) bool { return st.State == StateConnected })
		assert.Empty(t, st.Reason)
		assert.True(t, st.NextAttempt.IsZero())
		sw.DropConnections()
		st = until(c, failedWith(StateDown))
		assert.True(t, strings.HasPrefix(st.Reason, "connection lost"), st.Reason)
		st = until(c, func(st Status) bool { return st.State == StateConnected })
		assert.Empty(t, st.Reason, "connected again: no reason left over")
		assert.Zero(t, st.Failures)
	})
}
