package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// Attacks on the ingest, on the wire: a raw TCP client sends the bytes.

var maskKey = [4]byte{0x11, 0x22, 0x33, 0x44}

// rawConn is a WebSocket client that writes raw bytes.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, r *rig, path string) *rawConn {
	t.Helper()
	c, err := r.dialTCP()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", path, Subprotocol)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return &rawConn{t: t, c: c, br: br}
}

func (rc *rawConn) send(frames ...[]byte) {
	rc.t.Helper()
	for _, f := range frames {
		_, err := rc.c.Write(f)
		require.NoError(rc.t, err)
	}
}

// frame64 is a client frame header announcing length n with the 64-bit form,
// and no payload.
func frame64(fin bool, op byte, n uint64) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, n)
	return append(b, maskKey[:]...)
}

// readFrame reads one server frame, whole, as it came on the wire.
func (rc *rawConn) readFrame() ([]byte, error) {
	h := make([]byte, 2)
	if _, err := io.ReadFull(rc.br, h); err != nil {
		return nil, err
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		ext := make([]byte, 2)
		if _, err := io.ReadFull(rc.br, ext); err != nil {
			return nil, err
		}
		h, n = append(h, ext...), int(binary.BigEndian.Uint16(ext))
	case 127:
		ext := make([]byte, 8)
		if _, err := io.ReadFull(rc.br, ext); err != nil {
			return nil, err
		}
		h, n = append(h, ext...), int(binary.BigEndian.Uint64(ext))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rc.br, p); err != nil {
		return nil, err
	}
	return append(h, p...), nil
}

// awaitClose reads until the server's close frame and then the end of the
// connection (within a bound: a server that never closes fails the test). It
// returns the close frame's bytes.
func (rc *rawConn) awaitClose(within time.Duration) []byte {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(within))
	var closeFrame []byte
	for {
		f, err := rc.readFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				rc.t.Fatalf("the server did not close within %v", within)
			}
			require.NotNil(rc.t, closeFrame, "connection ended without a close frame: %v", err)
			return closeFrame
		}
		if f[0]&0x0F == opClose && closeFrame == nil {
			closeFrame = f
		}
	}
}

// closeCode is the code of a close frame read by awaitClose.
func closeCode(f []byte) int {
	if len(f) < 4 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(f[2:4]))
}

// packets is how many audio packets the receiver has for the fork on uuid.
func (r *rig) packets(uuid string) int {
	n := 0
	for _, s := range r.sink.Streams() {
		if s.Signaling != nil && s.Signaling.ChannelID == uuid {
			n += s.Packets
		}
	}
	return n
}

// awaitPackets waits until the fork on uuid has more than n packets out.
func (r *rig) awaitPackets(uuid string, n int) {
	r.t.Helper()
	require.Eventually(r.t, func() bool { return r.packets(uuid) > n }, 3*time.Second, 5*time.Millisecond,
		"no new packet for %s", uuid)
}

// awaitGone waits until no fork on uuid is in the registry.
func (r *rig) awaitGone(uuid string) {
	r.t.Helper()
	require.Eventually(r.t, func() bool { return len(r.registry.Get(mediafork.CallID(uuid))) == 0 }, 3*time.Second, 5*time.Millisecond,
		"the fork on %s is still registered", uuid)
}

// awaitWait stops every fork and checks that the ingest's Wait returns.
func (r *rig) awaitWait() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r.registry.StopAll(ctx, mediafork.EndShutdown)
	done := make(chan struct{})
	go func() { r.ingest.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.t.Fatal("ingest.Wait did not return: a connection was never counted out")
	}
}

// streamer is a well-behaved fork sending audio until stopped.
type streamer struct {
	a    *fssim.AudioFork
	stop chan struct{}
	done chan struct{}
}

func (r *rig) startStreamer(uuid string) *streamer {
	r.t.Helper()
	a := r.dial("/fork/"+uuid+"?profile=analytics", fssim.AudioForkOptions{})
	s := &streamer{a: a, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(5 * time.Millisecond) // the audio's cadence, not a synchronisation
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				a.Stop("")
				return
			case <-t.C:
				if a.Send(make([]byte, 640)) != nil {
					return
				}
			}
		}
	}()
	r.awaitPackets(uuid, 0)
	return s
}

func (s *streamer) end() {
	close(s.stop)
	<-s.done
}

// logTo makes the ingest log into a buffer (before any connection).
func (r *rig) logTo() *syncbuf.Buffer {
	b := &syncbuf.Buffer{}
	r.ingest.log = slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return b
}

// wrapAttack is issue 9's frame sequence: a non-final fragment of 20 bytes,
// then a continuation whose 64-bit length wraps when added to it.
func wrapAttack() []byte {
	b := clientFrame(false, opBinary, make([]byte, 20), maskKey)
	return append(b, frame64(false, opContinuation, 1<<64-14)...)
}

// Issue 9 finding 1: one frame killed the daemon (the epoll reader panicked).
func TestWrappingLengthAfterFirstMessage(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		other := r.startStreamer("bystander")
		defer other.end()

		for i, attack := range [][]byte{
			wrapAttack(),
			append(clientFrame(false, opBinary, make([]byte, 20), maskKey), frame64(true, opContinuation, 1<<63)...),
			append(clientFrame(false, opBinary, make([]byte, 20), maskKey), frame64(true, opContinuation, 1<<64-1)...),
			append(clientFrame(false, opText, make([]byte, 20), maskKey), frame64(true, opContinuation, 1<<63-1)...),
			frame64(true, opBinary, 1<<64-1),
		} {
			uuid := fmt.Sprintf("attacker%d", i)
			rc := rawDial(t, r, "/fork/"+uuid+"?profile=analytics")
			rc.send(clientFrame(true, opBinary, make([]byte, 640), maskKey))
			r.awaitPackets(uuid, 0)
			rc.send(attack)
			code := closeCode(rc.awaitClose(3 * time.Second))
			assert.Contains(t, []int{websocket.CloseProtocolError, websocket.CloseMessageTooBig}, code, "attack %d", i)
			r.awaitGone(uuid)
			// The daemon is alive: the bystander still streams.
			r.awaitPackets("bystander", r.packets("bystander"))
		}
		r.awaitWait()
	})
}

// Issue 9 finding 1, second half: a fragmented message's length counted
// against the next frame.
func TestFragmentedThenLargeFrame(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10) // 64 KiB messages
		rc := rawDial(t, r, "/fork/u1?profile=analytics")
		rc.send(clientFrame(true, opBinary, make([]byte, 640), maskKey),
			clientFrame(false, opBinary, make([]byte, 20480), maskKey),
			clientFrame(true, opContinuation, make([]byte, 20480), maskKey),
			clientFrame(true, opBinary, make([]byte, 30720), maskKey),
			clientFrame(true, opClose, []byte{0x03, 0xE8}, maskKey))
		assert.Equal(t, websocket.CloseNormalClosure, closeCode(rc.awaitClose(3*time.Second)))
		for _, s := range r.waitEnded(2) {
			assert.Equal(t, (640+40960+30720)/2, s.Bytes, "every message went out")
			assert.Equal(t, tlvcodec.ReasonHangup, s.End.Reason)
		}
	})
}

// Issue 9 finding 2: the same frames as the first message left the fork
// "starting" for ever, its slot taken, Wait blocked.
func TestWrappingLengthAsFirstMessage(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 5)
		other := r.startStreamer("bystander")
		for i := 0; i < 6; i++ { // more than the free slots
			rc := rawDial(t, r, "/fork/attacker?profile=analytics")
			rc.send(wrapAttack())
			code := closeCode(rc.awaitClose(3 * time.Second))
			assert.Contains(t, []int{websocket.CloseProtocolError, websocket.CloseMessageTooBig}, code)
			r.awaitGone("attacker")
		}
		// The uuid and the slots are free: a real fork on it streams.
		a := r.dial("/fork/attacker?profile=analytics", fssim.AudioForkOptions{})
		require.NoError(t, a.Send(make([]byte, 640)))
		r.awaitPackets("attacker", 0)
		r.awaitPackets("bystander", r.packets("bystander"))
		a.Stop("")
		other.end()
		r.awaitWait()
	})
}

// A panic anywhere on a connection's path ends that connection only: logged
// at ERROR with the stack, the fork finished, the connection counted out.
func TestPanicEndsOnlyItsConnection(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		logs := r.logTo()
		r.ingest.testHook = func(p []byte) {
			if bytes.HasPrefix(p, []byte("boom")) {
				panic("boom on the wire")
			}
		}
		r.ingest.SetLookup(lookupFunc(func(_ context.Context, uuid string) (mediafork.CallInfo, error) {
			if uuid == "boom-first" {
				panic("boom in the lookup")
			}
			return mediafork.CallInfo{}, fmt.Errorf("no call")
		}))
		other := r.startStreamer("bystander")

		// While streaming (on the epoll reader: its goroutine).
		a := r.dial("/fork/boom-later?profile=analytics", fssim.AudioForkOptions{})
		require.NoError(t, a.Send(make([]byte, 640)))
		r.awaitPackets("boom-later", 0)
		require.NoError(t, a.Send([]byte("boom")))
		r.awaitGone("boom-later")
		a.AwaitClose(3 * time.Second)

		// The first message (before any hand-over).
		b := r.dial("/fork/boom-first?profile=analytics", fssim.AudioForkOptions{})
		require.NoError(t, b.Send(make([]byte, 640)))
		r.awaitGone("boom-first")
		b.AwaitClose(3 * time.Second)

		r.awaitPackets("bystander", r.packets("bystander"))
		for _, uuid := range []string{"boom-later", "boom-first"} {
			c := r.dial("/fork/"+uuid+"?profile=analytics", fssim.AudioForkOptions{})
			c.Stop("")
		}
		other.end()
		r.awaitWait()
		for _, p := range []string{"boom on the wire", "boom in the lookup"} {
			assert.Regexp(t, `level=ERROR msg="panic on an ingest connection; closing it".*panic="`+p+`".*goroutine`, logs.String())
		}
	})
}

// Issue 20 finding 9: after mod_audio_fork's graceful zero-length frame the
// module sends no close frame (t13: the server is expected to close), and
// mediafork waited 5 s for one, reading on. Now it flushes, sends the end
// packets and closes (1000) at once: a ping sent right after the graceful
// frame is never answered, the close comes first. With max_forks 5, four
// graceful forks whose sockets the peer keeps open and four new ones: all
// accepted. The graceful frame after audio, and as the first message.
func TestGracefulFrameClosesAtOnce(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 5)
		var graceful []*rawConn
		for i := range 4 {
			rc := rawDial(t, r, fmt.Sprintf("/fork/graceful-%d?profile=analytics", i))
			if i%2 == 0 {
				rc.send(clientFrame(true, opBinary, make([]byte, 640), maskKey))
			}
			rc.send(clientFrame(true, opBinary, nil, maskKey), // graceful, and no close after it
				clientFrame(true, opPing, []byte("still there?"), maskKey)) // a server still reading answers it
			graceful = append(graceful, rc)
		}
		for i, rc := range graceful {
			rc.c.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a failure only
			f, err := rc.readFrame()
			require.NoError(t, err, "fork %d", i)
			assert.Equal(t, []byte{0x88, 0x02, 0x03, 0xE8}, f, "fork %d: close 1000 first (a pong: the server read on after the graceful frame)", i)
			r.awaitGone(fmt.Sprintf("graceful-%d", i))
		}
		for _, s := range r.waitEnded(4) { // the forks that had begun with audio: 2 directions each
			assert.Equal(t, tlvcodec.ReasonHangup, s.End.Reason)
		}
		for i := range 4 { // the graceful sockets still open on the peer's side
			rawDial(t, r, fmt.Sprintf("/fork/next-%d?profile=analytics", i)) // 101, not 503
		}
	})
}

// gate holds every Write of the connections of a gatedListener while it is
// shut, whatever their deadlines: a peer that reads nothing, for as long as
// the test says, so that any wait on it shows.
type gate struct {
	mu   sync.Mutex
	shut chan struct{} // nil: open
}

func (g *gate) close() { g.mu.Lock(); g.shut = make(chan struct{}); g.mu.Unlock() }

func (g *gate) open() {
	g.mu.Lock()
	if g.shut != nil {
		close(g.shut)
		g.shut = nil
	}
	g.mu.Unlock()
}

func (g *gate) wait() {
	g.mu.Lock()
	c := g.shut
	g.mu.Unlock()
	if c != nil {
		<-c
	}
}

type gatedListener struct {
	net.Listener
	g *gate
}

func (l gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return gatedConn{c.(*net.TCPConn), l.g}, nil
}

// gatedConn is a TCP connection whose Write waits for its gate; the socket
// itself (SyscallConn: the epoll reader's handover) is the real one.
type gatedConn struct {
	*net.TCPConn
	g *gate
}

func (c gatedConn) Write(p []byte) (int, error) { c.g.wait(); return c.TCPConn.Write(p) }

// Stopping a fork (a hangup's ESL event, the API, shutdown) never waits on
// its peer: the close frame is written without waiting, or by the
// connection's own goroutine, never by the caller of Stop nor under a lock
// the connection's other writes take. A write to a peer that reads nothing
// waited up to a second each on the caller's path, under the epoll reader's
// connection lock before the handover. Here the peer's writes are held
// until Stop has returned; then it gets its close (1000) and answers it.
func TestStopNeverWaitsOnThePeer(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		g := &gate{}
		r := newRigOn(t, reader, nil, 10, func(ln net.Listener) net.Listener { return gatedListener{ln, g} })
		rc := rawDial(t, r, "/fork/stuck?profile=analytics") // no message yet: before the epoll reader's handover
		forks := r.registry.Get("stuck")
		require.Len(t, forks, 1)
		// A pong: the reader has the connection (and has said how to stop it).
		rc.send(clientFrame(true, opPing, []byte("there?"), maskKey))
		rc.c.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a failure only
		pong, err := rc.readFrame()
		require.NoError(t, err)
		require.Equal(t, append([]byte{0x8A, 6}, "there?"...), pong)
		g.close()
		defer g.open()
		stopped := make(chan struct{})
		go func() { forks[0].Stop(mediafork.EndStopped); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second): // bounds a failure only
			g.open()
			<-stopped
			t.Fatal("Stop waited on a peer that reads nothing")
		}
		g.open()
		f, err := rc.readFrame()
		require.NoError(t, err)
		assert.Equal(t, []byte{0x88, 0x09, 0x03, 0xE8, 's', 't', 'o', 'p', 'p', 'e', 'd'}, f, "close 1000 stopped")
		rc.send(clientFrame(true, opClose, []byte{0x03, 0xE8}, maskKey))
		r.awaitGone("stuck")
	})
}

// Every connection state has a deadline: a silent streaming connection, and
// one trickling a frame a byte at a time, are ended as media lost.
func TestSilentOrTricklingStreamEnded(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, func(s *IngestSettings) { s.MediaTimeout = 300 * time.Millisecond }, 10)
		silent := rawDial(t, r, "/fork/silent?profile=analytics")
		silent.send(clientFrame(true, opBinary, make([]byte, 640), maskKey))

		trickle := rawDial(t, r, "/fork/trickle?profile=analytics")
		trickle.send(clientFrame(true, opBinary, make([]byte, 640), maskKey))
		r.awaitPackets("trickle", 0)
		big := clientFrame(true, opBinary, make([]byte, 65536), maskKey)
		stop := make(chan struct{})
		trickled := make(chan struct{})
		go func() {
			defer close(trickled)
			t := time.NewTicker(20 * time.Millisecond) // the attack's pace
			defer t.Stop()
			for _, c := range big {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				if _, err := trickle.c.Write([]byte{c}); err != nil {
					return
				}
			}
		}()
		for _, rc := range []*rawConn{silent, trickle} {
			rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, rc.br) // until the server closes
			if errors.Is(err, syscall.ECONNRESET) {
				err = nil // closed too, with a trickled byte come after its last read: TCP resets
			}
			require.NoError(t, err, "the server did not close")
		}
		close(stop)
		<-trickled
		for _, s := range r.waitEnded(4) {
			assert.Equal(t, tlvcodec.ReasonMediaLost, s.End.Reason)
		}
		r.awaitWait()
	})
}

// Fragmented messages count in total against the limit, text ones too; a ping
// inside one is answered; a close inside one ends it.
func TestFragmentedMessagesOnTheWire(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, func(s *IngestSettings) { s.MaxMessageBytes = 4096 }, 10)
		for _, op := range []byte{opText, opBinary} {
			rc := rawDial(t, r, "/fork/big?profile=analytics")
			rc.send(clientFrame(true, opBinary, make([]byte, 640), maskKey),
				clientFrame(false, op, make([]byte, 3000), maskKey),
				clientFrame(true, opPing, []byte("hi"), maskKey),
				clientFrame(false, opContinuation, make([]byte, 1000), maskKey),
				clientFrame(true, opContinuation, make([]byte, 97), maskKey))
			f := rc.awaitClose(3 * time.Second)
			assert.Equal(t, websocket.CloseMessageTooBig, closeCode(f))
			r.awaitGone("big")
		}

		rc := rawDial(t, r, "/fork/ping?profile=analytics")
		rc.send(clientFrame(true, opBinary, make([]byte, 640), maskKey),
			clientFrame(false, opBinary, make([]byte, 100), maskKey),
			clientFrame(true, opPing, []byte("hi"), maskKey))
		rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		pong, err := rc.readFrame()
		require.NoError(t, err)
		assert.Equal(t, []byte{0x8A, 0x02, 'h', 'i'}, pong)
		rc.send(clientFrame(true, opContinuation, make([]byte, 540), maskKey))
		r.awaitPackets("ping", 1) // the 640 + 640 reassembled: two packets per direction
		rc.send(clientFrame(false, opBinary, make([]byte, 100), maskKey),
			clientFrame(true, opClose, []byte{0x03, 0xE8}, maskKey))
		assert.Equal(t, []byte{0x88, 0x02, 0x03, 0xE8}, rc.awaitClose(3*time.Second))
		for _, s := range r.waitEnded(2) {
			if s.Signaling.ChannelID == "ping" {
				assert.Equal(t, 640, s.Bytes, "the unfinished message was not forwarded")
			}
		}
	})
}

// Issue 9 finding 11: the close the server answers, byte for byte, the same
// on both readers.
func TestCloseReplyOnTheWire(t *testing.T) {
	t.Parallel()
	protocolError := func(reason string) []byte {
		return append([]byte{0x88, byte(2 + len(reason)), 0x03, 0xEA}, reason...)
	}
	cases := []struct {
		name    string
		payload []byte
		want    []byte
	}{
		{"no code", nil, []byte{0x88, 0x02, 0x03, 0xE8}},
		{"1000", []byte{0x03, 0xE8}, []byte{0x88, 0x02, 0x03, 0xE8}},
		{"1001 with a reason", []byte("\x03\xe9bye"), []byte{0x88, 0x02, 0x03, 0xE9}},
		{"4000", []byte{0x0F, 0xA0}, []byte{0x88, 0x02, 0x0F, 0xA0}},
		{"0", []byte{0, 0}, protocolError("bad close code 0")},
		{"999", []byte{0x03, 0xE7}, protocolError("bad close code 999")},
		{"1004", []byte{0x03, 0xEC}, protocolError("bad close code 1004")},
		{"1005", []byte{0x03, 0xED}, protocolError("bad close code 1005")},
		{"1006", []byte{0x03, 0xEE}, protocolError("bad close code 1006")},
		{"1015", []byte{0x03, 0xF7}, protocolError("bad close code 1015")},
		{"1016", []byte{0x03, 0xF8}, protocolError("bad close code 1016")},
		{"2999", []byte{0x0B, 0xB7}, protocolError("bad close code 2999")},
		{"5000", []byte{0x13, 0x88}, protocolError("bad close code 5000")},
		{"bad utf8", []byte("\x03\xe8\xff"), protocolError("invalid utf8 payload in close frame")},
		{"1 byte", []byte{0x03}, protocolError("close frame with a 1-byte payload")},
	}
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		for _, first := range []bool{false, true} {
			for _, tc := range cases {
				t.Run(fmt.Sprintf("%s/first=%v", tc.name, first), func(t *testing.T) {
					rc := rawDial(t, r, "/fork/u1?profile=analytics")
					if !first {
						rc.send(clientFrame(true, opBinary, make([]byte, 640), maskKey))
					}
					rc.send(clientFrame(true, opClose, tc.payload, maskKey))
					assert.Equal(t, tc.want, rc.awaitClose(3*time.Second))
					r.awaitGone("u1")
				})
			}
		}
	})
}
