package fssim

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordedReply is the reply to the first command of the recording that
// starts with prefix (testdata/transfer: "-> " then the reply's lines,
// indented to the column of its first).
func recordedReply(t *testing.T, scenario, prefix string, nth int) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "transfer", scenario, "timeline.txt"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for i, l := range lines {
		_, cmd, ok := strings.Cut(l, " CMD   ")
		if !ok || !strings.HasPrefix(cmd, prefix) {
			continue
		}
		if nth--; nth > 0 {
			continue
		}
		first := lines[i+1]
		col := strings.Index(first, "-> ") + 3
		reply := []string{first[col:]}
		for _, more := range lines[i+2:] {
			if len(more) < col || strings.TrimSpace(more[:col]) != "" {
				break
			}
			reply = append(reply, more[col:])
		}
		return strings.Join(reply, "\n")
	}
	t.Fatalf("%s: no command %q", scenario, prefix)
	return ""
}

// A transfer leaves the channel and its media bugs as they were, as the
// real switch does (testdata/transfer/uuid_transfer): uuid_buglist answers
// the same before and after, uuid_transfer answers +OK, and the bug streams
// on.
func TestTransferKeepsTheBug(t *testing.T) {
	t.Parallel()
	sw := NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	srv := newWSServer(t, func(conn *websocket.Conn, _ string) {
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	})
	c := sw.Answer(CallOptions{})
	require.Equal(t, "+OK Success\n", sw.api("uuid_audio_fork", c.UUID+" start "+srv+" stereo 8k mediafork", nil))
	before := recordedReply(t, "uuid_transfer", "uuid_buglist", 1)
	assert.Equal(t, before, strings.TrimSpace(sw.FsCli("uuid_buglist "+c.UUID)))
	assert.Equal(t, recordedReply(t, "uuid_transfer", "uuid_transfer", 1), strings.TrimSpace(sw.FsCli("uuid_transfer "+c.UUID+" 9001 XML default")))
	assert.Equal(t, recordedReply(t, "uuid_transfer", "uuid_buglist", 2), strings.TrimSpace(sw.FsCli("uuid_buglist "+c.UUID)))
	n := c.FramesSent("mediafork")
	require.Eventually(t, func() bool { return c.FramesSent("mediafork") > n+5 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, recordedReply(t, "intercept", "uuid_buglist", 1), strings.TrimSpace(sw.FsCli("uuid_buglist no-such-channel")),
		"a channel that is gone")
}
