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
// updates (~10 a second) while it is stuck, the forks keep taking frames, and
// the stuck client is disconnected at the write deadline. Not parallel: 2,000
// forks stream, and the gaps are timed.
func TestSlowFeedClientBlocksNothing(t *testing.T) {
	// The write deadline: far above a loaded machine's hiccups (the client
	// that reads must never meet it), and the time the stuck one holds its
	// last write before it is dropped. A feed that waited for that write
	// would leave a gap as long between two messages to the other client.
	const writeTimeout = 3 * time.Second
	r := newConsoleRigWith(t, consoleToken, ConsoleSettings{FeedWriteTimeout: writeTimeout}, 3000)
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
	fr.until(30*time.Second, "2,000 forks", func() bool { return len(fr.forks) == 2000 })
	frames0 := forks[0].FramesIn.Load()
	start, n0 := time.Now(), len(fr.payloads)
	fr.until(30*time.Second, "the slow client's disconnection", func() bool { return r.console.feeds.Load() == 1 })
	stuck := time.Since(start)
	assert.GreaterOrEqual(t, stuck, writeTimeout, "dropped at the write deadline, not before")
	assert.Less(t, fr.maxGap(n0), writeTimeout*2/3, "the client that reads waited for the stuck one")
	assert.Greater(t, forks[0].FramesIn.Load()-frames0, uint64(25), "the media path went on")
	n1 := len(fr.payloads)
	fr.until(10*time.Second, "updates after the drop", func() bool { return len(fr.payloads) >= n1+5 })
	t.Logf("fast client: %d messages in the %v until the slow one was dropped (%.1f/s), longest gap %v",
		n1-n0, stuck.Round(time.Millisecond), float64(n1-n0)/stuck.Seconds(), fr.maxGap(n0).Round(time.Millisecond))
}
