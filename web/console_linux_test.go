package web

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/mediafork"
)

// smallSendServer serves h on loopback with 4 KiB socket send buffers,
// behind a net.Conn that is no *net.TCPConn, so the console leaves them
// small (it enlarges a *net.TCPConn's): a client that does not read stops a
// large message from leaving at once, whatever the machine's buffer sizes.
func smallSendServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallSendListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

type smallSendListener struct{ net.Listener }

func (l smallSendListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetWriteBuffer(4096)
	return struct{ net.Conn }{c}, nil
}

// dialStuck opens a feed that never reads, with a 4 KiB receive buffer, and
// returns once the server has begun writing to it: bytes wait in its
// receive queue. With the server's small send buffer, a message much larger
// than both buffers (the first, full one at hundreds of forks) cannot leave:
// from then on its writer is stuck on it.
func dialStuck(t *testing.T, srv *httptest.Server) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{consoleProtocol, bearerPrefix + base64.RawURLEncoding.EncodeToString([]byte(consoleToken))},
		NetDial: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			// Before connect, so the window it offers is small from the start.
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}).Dial}
	slow, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/console/feed", nil)
	require.NoError(t, err)
	t.Cleanup(func() { slow.Close() })
	rc, err := slow.NetConn().(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	queued := func() (n int) {
		rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		return n
	}
	require.Eventually(t, func() bool { return queued() > 0 }, 10*time.Second, 5*time.Millisecond, "the server writes to the stuck client")
	return slow
}

// A client that stops reading costs only itself: while its writer is stuck
// on a message, another client goes on getting updates and the forks go on
// taking frames. Counted in messages and frames, not per second: a busy
// machine is slower, not wrong.
func TestSlowFeedClientBlocksNothing(t *testing.T) {
	// The stuck client stays stuck for the whole test.
	r := newConsoleRigWith(t, consoleToken, ConsoleSettings{FeedWriteTimeout: time.Minute}, 3000)
	var forks []*mediafork.Fork
	for i := 0; i < 2000; i++ {
		forks = append(forks, r.fork(fmt.Sprintf("0a1b2c3d-0000-4000-8000-%012d", i)))
	}
	var rx, tx atomic.Int32
	rx.Store(8000)
	tx.Store(8000)
	r.stream(forks, &rx, &tx)
	srv := smallSendServer(t, r.srv.Config.Handler)

	// The stuck client: its first message, the full one of 2,000 forks
	// (~840 KB), is far over the ~16 KB both buffers hold.
	slow := dialStuck(t, srv)
	t0 := time.Now()

	d := websocket.Dialer{Subprotocols: []string{consoleProtocol, bearerPrefix + base64.RawURLEncoding.EncodeToString([]byte(consoleToken))},
		HandshakeTimeout: 5 * time.Second, EnableCompression: true}
	fast, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/console/feed", nil)
	require.NoError(t, err)
	defer fast.Close()
	fr := newFeedReader(t, fast)
	fr.until(time.Minute, "2,000 forks", func() bool { return len(fr.forks) == 2000 })
	frames0, n0 := forks[0].FramesIn.Load(), len(fr.payloads)
	fr.until(time.Minute, "5 updates and 25 frames while the other client is stuck", func() bool {
		return len(fr.payloads)-n0 >= 5 && forks[0].FramesIn.Load()-frames0 >= 25
	})
	assert.EqualValues(t, 2, r.console.feeds.Load(), "the stuck client is still connected, still stuck")
	t.Logf("while the other client was stuck (%s): %d updates, %d frames", time.Since(t0).Round(time.Millisecond),
		len(fr.payloads)-n0, forks[0].FramesIn.Load()-frames0)

	// It goes away: its writer is freed, the other client reads on.
	slow.Close()
	fr.until(time.Minute, "the stuck client's slot freed", func() bool { return r.console.feeds.Load() == 1 })
}

// A client stuck on a message is disconnected at FeedWriteTimeout, and its
// slot is free again.
func TestStuckFeedClientIsDropped(t *testing.T) {
	r := newConsoleRigWith(t, consoleToken, ConsoleSettings{FeedWriteTimeout: 300 * time.Millisecond}, 1000)
	for i := 0; i < 500; i++ { // a full message of ~200 KB
		r.fork(fmt.Sprintf("0a1b2c3d-0000-4000-8000-%012d", i))
	}
	srv := smallSendServer(t, r.srv.Config.Handler)
	slow := dialStuck(t, srv)
	require.Eventually(t, func() bool { return r.console.feeds.Load() == 0 }, 10*time.Second, 5*time.Millisecond,
		"the stuck client is dropped at the write deadline")
	// What had reached it, then the end of the connection (not our read
	// deadline).
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := slow.ReadMessage()
	var ne net.Error
	require.Error(t, err)
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the server closed the connection: %v", err)
}
