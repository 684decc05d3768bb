package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/internal/testport"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
)

// A WebSocket dropped without a close: end packets with reason 3, and the fork
// starts again (new stream, new signaling) while the call is up.
func TestWebSocketDropIsRetried(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	first := s.waitPackets("support-2000-", 2, 5)
	require.True(t, call.DropMedia("mediafork"))
	waitResumed(t, s, "support-2000-", first)
}

// waitResumed waits until the streams of channelID that were first go on
// after a gap of reason 1 (media lost and made again): the same stream ids,
// no end, no new stream; the frames reported missing are the frames missing.
func waitResumed(t *testing.T, s *stack, channelID string, first []*tlvdump.Stream) {
	t.Helper()
	require.Eventually(t, func() bool {
		ss := s.streamsOf(channelID)
		if len(ss) != len(first) {
			return false
		}
		for i, st := range ss {
			if st.Gaps == 0 || st.Packets < first[i].Packets+5 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "the streams go on after a gap: %s\n%s", describeStreams(s.streamsOf(channelID)), s.logs)
	for i, st := range s.streamsOf(channelID) {
		assert.Equal(t, first[i].StreamID, st.StreamID, "the same stream")
		assert.Nil(t, st.End, "not ended")
		require.NotNil(t, st.LastGap)
		assert.Equal(t, tlvcodec.GapMediaLost, st.LastGap.Reason)
		assert.Equal(t, st.GapFrames, st.Missing, "the frames missing are the frames reported")
		assert.Positive(t, st.GapFrames)
	}
}

// mediafork restarts mid-call: the new one re-forks the answered calls its
// rules match (new stream id, new signaling) and leaves other bugs alone.
func TestRestartReforks(t *testing.T) {
	s, c := prepareStack(t, 1)
	sw := s.switches[0]
	run := func() (stop func()) {
		d, err := newDaemon(c, s.opts, slog.New(slog.NewTextHandler(io.Discard, nil)), new(slog.LevelVar))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.run(ctx) }()
		require.Eventually(t, func() bool { return d.switchesUp()[d.bridge.Clients()[0].Name()] }, 5*time.Second, 10*time.Millisecond)
		return func() { cancel(); require.NoError(t, <-done) }
	}
	t.Cleanup(func() { sw.Close() })
	stopA := run()
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	// Another application's fork on the same call, under its own bug name.
	other := newWSCounter(t)
	require.Equal(t, "+OK Success\n", sw.FsCli("uuid_audio_fork "+call.UUID+" start "+other.url+" mono 8k otherapp"))
	first := s.waitPackets("support-2000-", 2, 5)
	stopA()
	for _, st := range s.waitEnded("support-2000-", 2) { // sent before stopA returned; the receiver reads them
		assert.Equal(t, tlvcodec.ReasonShutdown, st.End.Reason)
	}
	stopB := run()
	defer stopB()
	require.Eventually(t, func() bool { return len(s.streamsOf("support-2000-")) == 4 }, 10*time.Second, 10*time.Millisecond)
	for _, st := range s.streamsOf("support-2000-") {
		if st.StreamID != first[0].StreamID {
			assert.NotNil(t, st.Signaling)
		}
	}
	assert.Contains(t, call.Bugs(), "otherapp", "the other application's bug is untouched")
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" stop otherapp"))
	n := other.frames()
	require.Eventually(t, func() bool { return other.frames() > n+5 }, 5*time.Second, 10*time.Millisecond, "it still streams")
}

// wsCounter is a WebSocket server that counts frames (another application).
type wsCounter struct {
	url string
	mu  sync.Mutex
	n   int
}

func newWSCounter(t *testing.T) *wsCounter {
	w := &wsCounter{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	up := websocket.Upgrader{Subprotocols: []string{fssim.Subprotocol}}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(rw, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
			w.mu.Lock()
			w.n++
			w.mu.Unlock()
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	w.url = "ws://" + ln.Addr().String() + "/other"
	return w
}

func (w *wsCounter) frames() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// An endpoint that refuses and one that never reads cost the live endpoint
// nothing, with the daemon's batching sender; the refusals are counted.
func TestBadEndpointsThroughDaemon(t *testing.T) {
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := closed.LocalAddr().String()
	closed.Close()
	stalled, err := net.ListenPacket("udp", "127.0.0.1:0") // never read
	require.NoError(t, err)
	defer stalled.Close()
	s := newStack(t, 1, func(c *conf.Config) {
		p := c.Profiles["analytics"]
		p.Endpoints = append([]string{refused, stalled.LocalAddr().String()}, p.Endpoints...)
		c.Profiles["analytics"] = p
	})
	sw := s.switches[0]
	for i := 0; i < 5; i++ {
		sw.Answer(fssim.CallOptions{Dest: "2000", Vars: map[string]string{"sip_h_X-Campaign": fmt.Sprint(i)}})
	}
	for i := 0; i < 5; i++ {
		st := s.waitPackets(fmt.Sprintf("support-2000-%d", i), 2, 50)
		for _, d := range st {
			assert.Zero(t, d.Missing, "the live endpoint misses nothing")
		}
	}
	// Counted against the endpoint that refused, not the others.
	label := func(ep string) string { return fmt.Sprintf(`{endpoint=%q,profile="analytics",protocol="tlv"}`, ep) }
	require.Eventually(t, func() bool { return scrape(t, s, "mediafork_send_errors_total"+label(refused)) > 0 }, 5*time.Second, 20*time.Millisecond)
	assert.Greater(t, scrape(t, s, "mediafork_drops_total"+label(refused)), 0.0)
	assert.Equal(t, 0.0, scrape(t, s, "mediafork_send_errors_total"+label(s.sink.Addr().String())))
	assert.Equal(t, 0.0, scrape(t, s, "mediafork_drops_total"+label(s.sink.Addr().String())))
	assert.Equal(t, 0.0, scrape(t, s, "mediafork_send_errors_total"+label(stalled.LocalAddr().String())), "a full buffer is a drop, not an error")
}

// Ingest abuse: a handshake that never completes is cut off; a client that
// never reads what we write does not hold anything up.
func TestIngestAbuse(t *testing.T) {
	s := newStackWith(t, 1, func(o *options) { o.requestTimeout = 300 * time.Millisecond }, nil)

	// Half a request, then silence: the server hangs up.
	slow, err := net.Dial("tcp", s.ingest)
	require.NoError(t, err)
	defer slow.Close()
	io.WriteString(slow, "GET /fork/x?profile=analytics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	slow.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = bufio.NewReader(slow).ReadByte()
	require.Error(t, err)
	assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "closed by the server, not by our deadline")

	// A client floods pings and never reads the pongs.
	flood, err := fssim.DialAudioFork(context.Background(), "ws://"+s.ingest+"/fork/flood?profile=analytics", fssim.AudioForkOptions{})
	require.NoError(t, err)
	defer flood.Conn.Close()
	require.NoError(t, flood.Send(make([]byte, 640)))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		big := make([]byte, 125)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if flood.Conn.WriteControl(websocket.PingMessage, big, time.Now().Add(100*time.Millisecond)) != nil {
				return
			}
		}
	}()
	// Meanwhile a normal call works.
	call := s.switches[0].Answer(fssim.CallOptions{Dest: "2000"})
	s.waitPackets("support-2000-", 2, 25)
	close(stop)
	wg.Wait()
	s.switches[0].Hangup(call.UUID, "NORMAL_CLEARING")
	s.waitEnded("support-2000-", 2)
}

// Issue 20 finding 7: a request whose body never comes whole (a POST
// announcing 100 bytes and sending 3) was held for ever: the request's
// headers had a deadline, its body none (after the 404 the server waits to
// read the rest, to keep the connection alive). The whole request has the
// request deadline: every one of 100 such connections is closed by the
// server.
func TestUnfinishedRequestBodyIsCut(t *testing.T) {
	s := newStackWith(t, 1, func(o *options) { o.requestTimeout = 300 * time.Millisecond }, nil)
	const n = 100
	conns := make([]net.Conn, 0, n)
	for _, path := range []string{"/fork/unfinished?profile=analytics", "/elsewhere"} {
		for range n / 2 {
			c, err := net.Dial("tcp", s.ingest)
			require.NoError(t, err)
			defer c.Close()
			_, err = io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"+
				"Content-Length: 100\r\n\r\nabc")
			require.NoError(t, err)
			conns = append(conns, c)
		}
	}
	for i, c := range conns {
		// The answer, then the server's close; this deadline only keeps a
		// connection the server holds from hanging the test.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, syscall.ECONNRESET) {
			err = nil // closed with our unread bytes in its buffer: TCP resets
		}
		require.NoError(t, err, "connection %d: not closed by the server", i)
	}
}

// SIGTERM under load: end packets for every stream, every connection closed,
// exit 0 within 5 seconds. The receiver only counts headers (countingSink):
// a full decoder under -race fell behind the daemon on a busy machine, and
// the test waited on its own receiver.
func TestSIGTERMUnderLoad(t *testing.T) {
	const calls = 200
	sink := newCountingSink(t)

	ingest := testport.Reserved(t)
	cfg := writeConfig(t, fmt.Sprintf("freeswitch: []\noutbound: {listen: \"\"}\napi: {listen: \"\"}\ningest: {listen: \"%s\", url: \"ws://%s\"}\nprofiles:\n  p: {endpoints: [\"%s\"]}\n",
		ingest, ingest, sink.Addr()))
	cmd := exec.Command(binary, "serve", "--config", cfg)
	var logs syncbuf.Buffer
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "ingest listening") }, 10*time.Second, 20*time.Millisecond)

	var conns []*fssim.AudioFork
	for i := 0; i < calls; i++ {
		a, err := fssim.DialAudioFork(context.Background(), fmt.Sprintf("ws://%s/fork/c%d?profile=p", ingest, i), fssim.AudioForkOptions{})
		require.NoError(t, err)
		conns = append(conns, a)
	}
	sctx, stopSending := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, a := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Stream(sctx, make([]byte, 640*1000), 640, 20*time.Millisecond)
		}()
	}
	require.Eventually(t, func() bool { // every stream under way: signaling and audio
		streams := sink.Streams()
		if len(streams) != 2*calls {
			return false
		}
		for _, st := range streams {
			if !st.Signaled || st.Packets < 3 {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "every stream signaled and its audio flowing")

	closes := make(chan int, calls)
	for _, a := range conns {
		go func() {
			var ce *websocket.CloseError
			if errors.As(a.AwaitClose(6*time.Second), &ce) {
				closes <- ce.Code
			} else {
				closes <- 0
			}
		}()
	}
	t0 := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGTERM:\n%s", logs.String())
	}
	t.Logf("exited %s after SIGTERM", time.Since(t0).Round(time.Millisecond))
	stopSending()
	wg.Wait()
	for i := 0; i < calls; i++ {
		assert.Equal(t, websocket.CloseGoingAway, <-closes)
	}
	ended := func() (n int, bad []string) {
		for _, st := range sink.Streams() {
			switch {
			case st.End == nil:
				bad = append(bad, fmt.Sprintf("stream %d %s: no end packet (%d packets, last seq %d, %d missing)", st.StreamID, st.Direction, st.Packets, st.LastSeq, st.Missing()))
			case st.End.Reason != tlvcodec.ReasonShutdown || st.End.LastSequence != st.LastSeq:
				bad = append(bad, fmt.Sprintf("stream %d %s: end reason %s last_seq %d, last audio seen %d (%d missing)", st.StreamID, st.Direction, st.End.Reason, st.End.LastSequence, st.LastSeq, st.Missing()))
			default:
				n++
			}
		}
		return n, bad
	}
	// The daemon has exited: what it sent is in the sink's queue; the sink
	// has only to read it.
	if !assert.Eventually(t, func() bool { n, _ := ended(); return n == 2*calls }, 10*time.Second, 20*time.Millisecond,
		"an end packet (reason 4, after the last audio) for every stream and direction") {
		_, bad := ended()
		if len(bad) > 10 {
			bad = append(bad[:10], fmt.Sprintf("... and %d more", len(bad)-10))
		}
		t.Logf("%d streams at the sink; not ended as expected:\n%s\nlogs:\n%s", len(sink.Streams()), strings.Join(bad, "\n"), tail(logs.String(), 20))
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func describeStreams(ss []*tlvdump.Stream) string {
	out := ""
	for _, st := range ss {
		out += fmt.Sprintf("\n  %d %s from=%s packets=%d seq=%d..%d missing=%d gaps=%d moved=%d foreign=%d end=%v warnings=%q",
			st.StreamID, st.Direction, st.Source, st.Packets, st.FirstSeq, st.LastSeq, st.Missing, st.Gaps, st.Moved, st.Foreign, st.End != nil, st.Warnings)
	}
	return out
}
