package web

import (
	"encoding/base64"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

// A client that stops reading costs only itself: the others get their
// updates ~10 times a second, the forks keep taking frames, and the stuck
// client is disconnected at the write deadline.
// Not parallel: it measures a rate, at 2,000 forks.
func TestSlowFeedClientBlocksNothing(t *testing.T) {
	r := newConsoleRigWith(t, consoleToken, ConsoleSettings{FeedWriteTimeout: 300 * time.Millisecond}, 3000)
	var forks []*mediafork.Fork
	for i := 0; i < 2000; i++ {
		forks = append(forks, r.fork(fmt.Sprintf("0a1b2c3d-0000-4000-8000-%012d", i)))
	}
	var rx, tx atomic.Int32
	rx.Store(8000)
	tx.Store(8000)
	r.stream(forks, &rx, &tx)

	// The slow client: a small receive buffer, never read.
	d := websocket.Dialer{Subprotocols: []string{consoleProtocol, bearerPrefix + base64.RawURLEncoding.EncodeToString([]byte(consoleToken))},
		NetDial: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			// Before connect, so the window it offers is small from the start.
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}).Dial}
	slow, _, err := d.Dial(r.ws("/v1/console/feed"), nil)
	require.NoError(t, err)
	defer slow.Close()

	fast, _, err := r.dial("/v1/console/feed", consoleToken)
	require.NoError(t, err)
	defer fast.Close()
	fr := newFeedReader(t, fast)
	fr.until(10*time.Second, "2,000 forks", func() bool { return len(fr.forks) == 2000 })
	frames0 := forks[0].FramesIn.Load()
	start, n0 := time.Now(), len(fr.payloads)
	fr.until(10*time.Second, "the slow client's disconnection", func() bool { return r.console.feeds.Load() == 1 })
	fr.until(10*time.Second, "a second of updates", func() bool { return time.Since(start) > time.Second })
	rate := float64(len(fr.payloads)-n0) / time.Since(start).Seconds()
	assert.Greater(t, rate, 5.0, "updates a second to the client that reads")
	assert.Greater(t, forks[0].FramesIn.Load()-frames0, uint64(25), "the media path went on")
	t.Logf("fast client: %.1f messages/s while the slow one was stuck and then dropped", rate)
}
