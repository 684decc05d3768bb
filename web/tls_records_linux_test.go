//go:build linux

package web

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// corrupting is a client's TCP connection that flips a bit of the last byte
// (a record's authentication tag) of its write number at, once armed.
type corrupting struct {
	net.Conn
	armed  atomic.Bool
	writes int
	at     int
}

func (c *corrupting) Write(p []byte) (int, error) {
	if c.armed.Load() {
		if c.writes++; c.writes == c.at {
			p = append([]byte(nil), p...)
			p[len(p)-1] ^= 1
		}
	}
	return c.Conn.Write(p)
}

// A record that does not authenticate, on the epoll reader after the
// handover (and, for reference, on the goroutine reader with crypto/tls):
// the connection ends at once with the alert TLS says (bad_record_mac), the
// fork as media lost, and nothing of the record is forwarded; frames cut
// across records before it arrive whole.
func TestBadRecordEndsTheConnection(t *testing.T) {
	t.Parallel()
	for _, reader := range []string{"epoll+tls", "goroutine+tls"} {
		t.Run(reader, func(t *testing.T) {
			t.Parallel()
			r := newRigWith(t, reader, nil, 10)
			raw, err := net.Dial("tcp", r.srv.Listener.Addr().String())
			require.NoError(t, err)
			cc := &corrupting{Conn: raw, at: 3}
			c := tls.Client(cc, r.tls)
			defer c.Close()
			fmt.Fprintf(c, "GET /fork/bad-record?profile=analytics HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", Subprotocol)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			rc := &rawConn{t: t, c: c, br: br}
			rc.send(clientFrame(true, opText, []byte(`{"channel_id":"bad-record"}`), maskKey))
			// A frame cut in two records, then one whole: both arrive.
			frame := clientFrame(true, opBinary, make([]byte, 640), maskKey)
			rc.send(frame[:100], frame[100:], frame)
			r.awaitPackets("bad-record", 3) // two frames, two directions
			cc.armed.Store(true)
			rc.send(frame, frame, frame) // the third write's record does not authenticate
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadAll(br)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "remote error: tls: bad record MAC", "the alert, as crypto/tls sends it")
			for _, s := range r.waitEnded(2) {
				assert.Equal(t, tlvcodec.ReasonMediaLost, s.End.Reason)
				assert.Equal(t, 4*320, len(s.Payload), "%s: the four frames before the bad record, not it", s.Direction)
			}
		})
	}
}

// Key updates after the handover, with OpenSSL's client as the module (its
// s_client, TLS 1.3): "k" updates the client's keys (the epoll reader's
// Receiver follows: the frames after it arrive), "K" also asks for ours
// (the close frame mediafork writes when the fork is stopped goes after a
// KeyUpdate of its own, which OpenSSL takes: it reads the close frame and
// mediafork's close_notify, no alert). The goroutine reader with crypto/tls
// is the reference.
func TestKeyUpdatesAfterTheHandover(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is missing (.ci/run installs it)")
		}
		t.Skip("no openssl command")
	}
	for _, reader := range []string{"epoll+tls", "goroutine+tls"} {
		t.Run(reader, func(t *testing.T) {
			t.Parallel()
			r := newRigWith(t, reader, nil, 10)
			logs := r.logTo()
			// -msg prints every TLS message OpenSSL sends and reads.
			cmd := exec.Command("openssl", "s_client", "-connect", r.srv.Listener.Addr().String(), "-tls1_3",
				"-ciphersuites", "TLS_AES_128_GCM_SHA256", "-servername", "127.0.0.1", "-msg")
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			out := &syncbuf.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			require.NoError(t, cmd.Start())
			defer cmd.Process.Kill()
			await := func(what string, n int) {
				t.Helper()
				require.Eventually(t, func() bool { return strings.Count(out.String(), what) >= n }, 10*time.Second, 5*time.Millisecond,
					"%q %d times in OpenSSL's output:\n%s", what, n, out.String())
			}
			await("Verify return code", 1) // the handshake is done
			fmt.Fprintf(stdin, "GET /fork/key-update?profile=analytics HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"+
				"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
				"Sec-WebSocket-Protocol: %s\r\n\r\n", Subprotocol)
			await("101 Switching Protocols", 1)
			stdin.Write(clientFrame(true, opText, []byte(`{"channel_id":"key-update"}`), maskKey))
			frame := clientFrame(true, opBinary, make([]byte, 640), maskKey)
			stdin.Write(frame)
			stdin.Write(frame)
			r.awaitPackets("key-update", 3) // two frames, two directions
			if reader == "epoll+tls" {      // handed over: the epoll reader opens the records from here
				require.Eventually(t, func() bool { return strings.Contains(logs.String(), "wss:// on the epoll reader") }, 10*time.Second, 5*time.Millisecond)
			}
			sent := r.packets("key-update")
			for i, command := range []string{"k", "K"} {
				// s_client takes a command from a read of its input alone.
				fmt.Fprintln(stdin, command)
				await("KEYUPDATE", i+1)
				stdin.Write(frame)
				r.awaitPackets("key-update", sent+1)
				sent = r.packets("key-update")
			}
			for _, f := range r.registry.Get(mediafork.CallID("key-update")) {
				f.Stop(mediafork.EndStopped)
			}
			await("stopped", 1) // the close frame's reason, read after our KeyUpdate
			stdin.Close()
			require.NoError(t, cmd.Wait(), out.String())
			// -msg: the records OpenSSL read ("<<<"), ours.
			assert.Equal(t, 1, strings.Count(out.String(), "<<< TLS 1.3, Handshake [length 0005], KeyUpdate"),
				"our one KeyUpdate, answering K's request, before the close frame")
			assert.NotContains(t, out.String(), "fatal", "no alert: OpenSSL read every record")
			assert.NotContains(t, out.String(), ":error:")
			for _, s := range r.waitEnded(2) {
				assert.Equal(t, 4*320, len(s.Payload), "%s: every frame, before and after the key updates", s.Direction)
			}
		})
	}
}

// Talk-back's messages reach the module whole and in order on every reader:
// after the handover the epoll reader's outbox writes them (waiting for room)
// and, on wss://, seals them into records first; a message larger than a
// record and than the socket's buffer goes out in several records and
// writes, and the close frame after them is still read whole.
func TestTalkbackMessagesOnEachReader(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		logs := r.logTo()
		begun := make(chan *session, 1)
		r.ingest.beginHook = func(s *session) { begun <- s }
		rc := rawDial(t, r, "/fork/talk?profile=analytics")
		rc.send(clientFrame(true, opText, []byte(`{"channel_id":"talk"}`), maskKey), clientFrame(true, opBinary, make([]byte, 640), maskKey))
		var s *session
		select {
		case s = <-begun:
		case <-time.After(10 * time.Second):
			t.Fatal("the fork did not begin")
		}
		if strings.HasPrefix(reader, "epoll") { // after the handover: the epoll reader's outbox writes
			require.Eventually(t, func() bool { return strings.Contains(logs.String(), "handed over") || r.ingest.readerLoad() > 0 },
				10*time.Second, 5*time.Millisecond)
		}
		var want [][]byte
		for i, n := range []int{320, 40000, 320, 60000, 7} {
			b := random(n)
			b[0] = byte(i)
			want = append(want, b)
			require.True(t, s.Send(i == 4, b), "message %d taken", i)
		}
		rc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for i, w := range want {
			f, err := rc.readFrame()
			require.NoError(t, err, "message %d", i)
			op := byte(opBinary)
			if i == 4 {
				op = opText
			}
			require.Equal(t, 0x80|op, f[0], "message %d: a final frame of its type", i)
			require.True(t, bytes.Equal(w, f[len(f)-len(w):]), "message %d: %d bytes, as sent", i, len(w))
		}
		for _, f := range r.registry.Get(mediafork.CallID("talk")) {
			f.Stop(mediafork.EndStopped)
		}
		assert.Equal(t, websocket.CloseNormalClosure, closeCode(rc.awaitClose(10*time.Second)))
	})
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
