package esl

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
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
	var logs logBuf
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
