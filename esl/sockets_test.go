package esl

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
)

// tcpSockets are this process's TCP sockets (Linux): inode -> state, "0A"
// being LISTEN.
func tcpSockets(t *testing.T) map[string]string {
	t.Helper()
	fds, err := filepath.Glob("/proc/self/fd/*")
	require.NoError(t, err)
	mine := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err == nil && strings.HasPrefix(target, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	out := map[string]string{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		s := bufio.NewScanner(f)
		s.Scan() // the heading
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) > 9 && mine[fields[9]] {
				out[fields[9]] = fields[3]
			}
		}
		f.Close()
	}
	return out
}

func listening(sockets map[string]string) []string {
	var out []string
	for inode, st := range sockets {
		if st == "0A" {
			out = append(out, inode)
		}
	}
	return out
}

// An inbound connection and an outbound call are one TCP connection each:
// no loopback listener is opened for them, and no loopback pair.
// Not parallel: it lists the process's sockets.
func TestNoLoopbackListener(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		t.Skip("needs Linux /proc")
	}
	s := newScripted(t, func(cmd string, w io.Writer) {
		io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
	})
	inCall := make(chan struct{})
	release := make(chan struct{})
	o := startOutbound(t, OutboundSettings{}, func(ctx context.Context, call *OutboundCall) {
		close(inCall)
		<-release
	}, nil)
	before := tcpSockets(t)

	c := startClient(t, ClientSettings{}, s.ln.Addr().String(), "ClueCon", &recorder{}, nil)
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	_, err := c.API(context.Background(), "status")
	require.NoError(t, err)

	fs, err := net.Dial("tcp", o.Addr().String())
	require.NoError(t, err)
	defer fs.Close()
	r := bufio.NewReader(fs)
	for { // connect, up to its blank line
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if strings.TrimSpace(line) == "" {
			break
		}
	}
	io.WriteString(fs, "Content-Type: command/reply\nReply-Text: %2BOK%0A\nUnique-ID: u\n\n")
	<-inCall

	during := tcpSockets(t)
	close(release)
	opened := map[string]string{} // sockets of earlier tests may have gone since
	for inode, st := range during {
		if _, ok := before[inode]; !ok {
			opened[inode] = st
		}
	}
	assert.Empty(t, listening(opened), "no listener opened for the connections")
	assert.Len(t, opened, 4, "two TCP connections, both ends in this process: %v", opened)
}

// Every goroutine of a connection ends with it: inbound sessions, outbound
// calls through `exit`, a refused password, a peer refused by FreeSWITCH's
// ACL, a silent outbound peer, garbage from the switch.
// Not parallel: it counts the process's goroutines.
func TestNoGoroutineOutlivesItsConnection(t *testing.T) {
	var set ClientSettings
	set.HandshakeTimeout = 200 * time.Millisecond
	s := newScripted(t, func(cmd string, w io.Writer) {
		if cmd == "api garbage" {
			io.WriteString(w, "Content-Type: text/garbage\n\n")
			return
		}
		io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
	})
	writes := readTranscript(t, "extra/outbound_connect_resume_fork_exit.txt")
	o := startOutbound(t, OutboundSettings{ConnSettings: set.ConnSettings}, func(ctx context.Context, call *OutboundCall) {
		call.Resume(ctx)
		call.API(ctx, strings.TrimPrefix(commandLine(writes[4]), "api "))
	}, nil)
	refusal := readTranscript(t, "esl/auth_bad_password.txt")
	base := runtime.NumGoroutine()

	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		c, err := NewClient("fs1", s.ln.Addr().String(), "ClueCon", &recorder{}, set, discardLog())
		require.NoError(t, err)
		done := make(chan struct{})
		go func() { defer close(done); c.Run(ctx) }()
		require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
		_, err = c.API(context.Background(), "status")
		require.NoError(t, err)
		c.API(context.Background(), "garbage") // ends that connection; the client makes another
		require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
		cancel()
		<-done

		fs, err := net.Dial("tcp", o.Addr().String())
		require.NoError(t, err)
		replay(fs, writes)

		silent, err := net.Dial("tcp", o.Addr().String())
		require.NoError(t, err)
		waitClosed(t, silent, silent, 5*time.Second)

		for _, serverSays := range [][]byte{fssim.ServerBytes(refusal[:1]), []byte(rudeRejection)} {
			fsSide, ourSide := net.Pipe()
			go func() {
				defer fsSide.Close()
				fsSide.Write(serverSays)
				if bytes.Contains(serverSays, []byte("auth/request")) {
					replay(fsSide, refusal[1:])
				}
			}()
			_, _, err = open(context.Background(), ourSide, connConfig{settings: resolved(t, set.ConnSettings), password: "WrongPass", log: discardLog()})
			require.ErrorIs(t, err, ErrAuth)
		}
	}
	require.Eventually(t, func() bool { return o.Active() == 0 }, 5*time.Second, 5*time.Millisecond)
	// Polled here, not in require.Eventually: that runs its condition on a
	// goroutine of its own.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for runtime.NumGoroutine() > base {
		select {
		case <-tick.C:
		case <-deadline:
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
	}
}

const rudeRejection = "Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"

// A peer FreeSWITCH's ACL refuses: a clear error at once, not a wait for the
// handshake timeout.
func TestRudeRejection(t *testing.T) {
	t.Parallel()
	set := resolved(t, ConnSettings{HandshakeTimeout: time.Minute})
	fsSide, ourSide := net.Pipe()
	go func() {
		defer fsSide.Close()
		io.WriteString(fsSide, rudeRejection)
		io.Copy(io.Discard, fsSide)
	}()
	_, _, err := open(context.Background(), ourSide, connConfig{settings: set, password: "ClueCon", log: discardLog()})
	require.ErrorIs(t, err, ErrAuth)
	assert.ErrorContains(t, err, "Access Denied, go away.")
}
