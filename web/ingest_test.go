package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/esl"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/testcert"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
	"github.com/mediafork/mediafork/transport/udp"
)

const captures = "../testdata/freeswitch/captures/"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// rig is an ingest on a real TCP port with a real UDP receiver behind it.
type rig struct {
	t        *testing.T
	reader   string
	tls      *tls.Config // the client's, for wss:// (nil: ws://)
	srv      *httptest.Server
	ingest   *Ingest
	registry *mediafork.Registry
	signer   *mediafork.Signer
	sink     *tlvdump.Receiver
	sinkDone chan struct{}
	cancel   context.CancelFunc
}

// readers are the two ways the ingest reads connections, each over plain
// TCP (ws://) and TLS (wss://: on the epoll reader, the records decrypted
// there, transport/tlsrecord; on the goroutine reader, crypto/tls, the
// reference); every test runs on all four.
var readers = []string{"epoll", "goroutine", "epoll+tls", "goroutine+tls"}

// forEachReader runs body once per reader.
func forEachReader(t *testing.T, body func(t *testing.T, reader string)) {
	for _, reader := range readers {
		t.Run(reader, func(t *testing.T) { body(t, reader) })
	}
}

// newRigWith serves an ingest with the test's settings (mutate, when not nil,
// changes them) read by reader, into a registry of maxForks.
func newRigWith(t *testing.T, reader string, mutate func(*IngestSettings), maxForks int) *rig {
	t.Helper()
	return newRigOn(t, reader, mutate, maxForks, nil)
}

// newRigOn is newRigWith serving on wrap(a listener on 127.0.0.1:0) when
// wrap is not nil.
func newRigOn(t *testing.T, reader string, mutate func(*IngestSettings), maxForks int, wrap func(net.Listener) net.Listener) *rig {
	t.Helper()
	sink, err := tlvdump.Listen("127.0.0.1:0", tlvdump.Options{Keep: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, reader: reader, sink: sink, sinkDone: make(chan struct{}), cancel: cancel}
	go func() { defer close(r.sinkDone); sink.Run(ctx) }()
	set := IngestSettings{
		MaxMessageBytes: 65536,
		Defaults:        mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},
		Destinations: &mediafork.Destinations{
			Profiles: map[string]mediafork.Profile{"analytics": {Endpoints: []string{sink.Addr().String()},
				Params: mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20}}},
			Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		},
	}
	if mutate != nil {
		mutate(&set)
	}
	r.registry = mediafork.NewRegistry(udp.New(), maxForks, true, quiet)
	r.signer = mediafork.NewSigner([]byte("test-key"))
	r.ingest, err = NewIngest(r.registry, r.signer, nil, set, quiet)
	require.NoError(t, err)
	if strings.HasPrefix(reader, "epoll") {
		require.NoError(t, r.ingest.UsePoller(ReaderSettings{Readers: 2}))
	}
	r.srv = httptest.NewUnstartedServer(r.ingest.Handler())
	if wrap != nil {
		r.srv.Listener = wrap(r.srv.Listener)
	}
	if strings.HasSuffix(reader, "+tls") {
		// As serve does: a reloading certificate, the ingest's listener.
		ca := testcert.NewCA(t, "mediafork test CA")
		certFile, keyFile := ca.Leaf(t, "127.0.0.1").Write(t, t.TempDir())
		cr, err := NewCertReloader(CertSettings{CertFile: certFile, KeyFile: keyFile}, quiet)
		require.NoError(t, err)
		t.Cleanup(cr.Close)
		r.srv.Listener, err = r.ingest.TLSListener(r.srv.Listener, cr.TLSConfig())
		require.NoError(t, err)
		r.tls = ca.ClientConfig("127.0.0.1")
	}
	r.srv.Start()
	t.Cleanup(r.close)
	return r
}

func (r *rig) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r.registry.StopAll(ctx, mediafork.EndShutdown)
	r.srv.Close()
	done := make(chan struct{})
	go func() { r.ingest.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.t.Error("ingest.Wait did not return: a connection was never counted out")
	}
	assert.Eventually(r.t, func() bool { return r.ingest.readerLoad() == 0 }, 5*time.Second, time.Millisecond,
		"every connection counted out of its epoll reader's load")
	// Every wss:// connection was served by the reader the test meant.
	switch st := &r.ingest.Stats; r.reader {
	case "epoll+tls":
		assert.Zero(r.t, st.TLSGoroutine.Load(), "wss:// connections left to crypto/tls on the epoll reader")
	case "goroutine+tls":
		assert.Zero(r.t, st.TLSEpoll.Load())
	}
	r.ingest.Close()
	r.cancel()
	<-r.sinkDone
}

func (r *rig) url(path string) string {
	if r.tls != nil {
		return "wss" + strings.TrimPrefix(r.srv.URL, "http") + path
	}
	return "ws" + strings.TrimPrefix(r.srv.URL, "http") + path
}

// httpURL is path's http:// (https:// for wss://) URL, client the HTTP
// client for it.
func (r *rig) httpURL(path string) string {
	if r.tls != nil {
		return "https" + strings.TrimPrefix(r.srv.URL, "http") + path
	}
	return r.srv.URL + path
}

func (r *rig) client() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: r.tls}}
}

// opts are o with the rig's client TLS config (wss://).
func (r *rig) opts(o fssim.AudioForkOptions) fssim.AudioForkOptions {
	if o.TLSConfig == nil {
		o.TLSConfig = r.tls
	}
	return o
}

// dialTCP connects to the ingest as a raw client: over TLS for wss://.
func (r *rig) dialTCP() (net.Conn, error) {
	if r.tls != nil {
		return tls.Dial("tcp", r.srv.Listener.Addr().String(), r.tls)
	}
	return net.Dial("tcp", r.srv.Listener.Addr().String())
}

// signed is a fork mediafork started, as its module connects: the path with
// its credential's token, and the metadata its start command gave the module
// (the signaling fields and the description), which the module sends as its
// first text frame.
func (r *rig) signed(spec mediafork.Spec) (path, metadata string) {
	r.t.Helper()
	c := r.signer.Sign(spec, time.Now().Add(time.Minute))
	module := mediafork.ModuleAudioFork
	if spec.Source == mediafork.SourceAudioStream {
		module = mediafork.ModuleAudioStream
	}
	meta, err := esl.MetadataFrame(module, spec.Metadata, c.Description)
	require.NoError(r.t, err)
	return "/fork/" + string(spec.UUID) + "?cred=" + c.Token, meta
}

func (r *rig) dial(path string, o fssim.AudioForkOptions) *fssim.AudioFork {
	r.t.Helper()
	a, err := fssim.DialAudioFork(context.Background(), r.url(path), r.opts(o))
	require.NoError(r.t, err)
	return a
}

// waitStreams waits until n directions have their end packet and returns them.
func (r *rig) waitEnded(n int) []*tlvdump.Stream {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ended []*tlvdump.Stream
		for _, s := range r.sink.Streams() {
			if s.End != nil {
				ended = append(ended, s)
			}
		}
		if len(ended) >= n {
			return ended
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("only %d of %d directions ended", len(ended), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func deinterleave(pcm []byte) (left, right []byte) {
	for i := 0; i+4 <= len(pcm); i += 4 {
		left = append(left, pcm[i:i+2]...)
		right = append(right, pcm[i+2:i+4]...)
	}
	return
}

// TestReplayRecordedForks feeds the audio mod_audio_fork really sent, at its
// real 20 ms cadence, with its upgrade headers, and checks every byte out.
// With -short, the first second of each capture.
func TestReplayRecordedForks(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		cases := []struct {
			dir        string
			mix        string
			rate       int
			packetSize int // payload bytes of one 20 ms l16 packet
		}{
			{"t01_stereo_8k", "stereo", 8000, 320},
			{"t07_stereo_16k_native", "stereo", 16000, 640},
			{"t02_mono_8k", "mono", 8000, 320},
			{"t03_mixed_8k", "mixed", 8000, 320},
		}
		for _, tc := range cases {
			t.Run(tc.dir, func(t *testing.T) {
				t.Parallel()
				raw, err := os.ReadFile(captures + tc.dir + "/ws/conn01/audio.raw")
				require.NoError(t, err)
				req, err := os.ReadFile(captures + tc.dir + "/ws/conn01/request.txt")
				require.NoError(t, err)
				require.Contains(t, strings.ToLower(string(req)), "sec-websocket-protocol: audio.drachtio.org")

				r := newRigWith(t, reader, nil, 10)
				a := r.dial(fmt.Sprintf("/fork/%s?profile=analytics&mix=%s&rate=%d", strings.ReplaceAll(tc.dir, "_", "-"), tc.mix, tc.rate),
					fssim.AudioForkOptions{Metadata: `{"hello":"world"}`}) // the recorded metadata frame
				assert.Equal(t, fssim.Subprotocol, a.Conn.Subprotocol())
				channels := 1
				if tc.mix == "stereo" {
					channels = 2
				}
				if testing.Short() { // the first second of each capture, not all of it
					raw = raw[:min(len(raw), 50*fssim.FrameBytes(tc.rate, channels))]
				}
				require.NoError(t, a.Stream(context.Background(), raw, fssim.FrameBytes(tc.rate, channels), 20*time.Millisecond))
				var ce *websocket.CloseError
				require.ErrorAs(t, a.Stop(""), &ce)
				assert.Equal(t, websocket.CloseNormalClosure, ce.Code, "the server answers the module's close 1000")

				streams := r.waitEnded(channels)
				require.Len(t, streams, channels)
				want := map[tlvcodec.Direction][]byte{}
				switch tc.mix {
				case "stereo":
					want[tlvcodec.RX], want[tlvcodec.TX] = deinterleave(raw)
				case "mono":
					want[tlvcodec.RX] = raw
				case "mixed":
					want[tlvcodec.Mixed] = raw
				}
				for _, s := range streams {
					w, ok := want[s.Direction]
					require.True(t, ok, "unexpected direction %s", s.Direction)
					assert.True(t, bytes.Equal(w, s.Payload), "%s payload differs from the recorded channel (%d vs %d bytes)", s.Direction, len(s.Payload), len(w))
					require.NotNil(t, s.Signaling)
					assert.False(t, s.AudioBeforeSig)
					require.NotNil(t, s.Format, "a format packet per direction")
					assert.False(t, s.FormatBeforeSig, "the format packet follows the signaling")
					assert.False(t, s.AudioBeforeFormat, "and comes before the audio")
					assert.Equal(t, strings.ReplaceAll(tc.dir, "_", "-"), s.Signaling.ChannelID, "channel_id defaults to the uuid")
					assert.Equal(t, uint32(1), s.FirstSeq)
					assert.Equal(t, len(w)/tc.packetSize, s.Packets, "one 20 ms frame per packet")
					assert.Equal(t, uint32(s.Packets), s.LastSeq)
					assert.Zero(t, s.Missing)
					assert.Zero(t, s.Reordered)
					assert.Equal(t, tlvcodec.ReasonHangup, s.End.Reason)
					assert.Equal(t, s.LastSeq, s.End.LastSequence)
				}
			})
		}
	})
}

// TestRecordedUpgradeRequest sends the module's upgrade request byte for byte
// (Host without the port) and checks the answer on the wire.
func TestRecordedUpgradeRequest(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		raw, err := os.ReadFile(captures + "t01_stereo_8k/ws/conn01/request.txt")
		require.NoError(t, err)
		req := strings.Replace(string(raw), "GET /t01_stereo_8k?ch=2&rate=8000 ", "GET /fork/t01?profile=analytics ", 1)
		require.NotEqual(t, string(raw), req)
		if !strings.HasSuffix(req, "\r\n\r\n") { // the capture stops after the last header line
			req += "\r\n"
		}
		conn, err := r.dialTCP()
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte(req))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		assert.Equal(t, "audio.drachtio.org", resp.Header.Get("Sec-WebSocket-Protocol"))
		assert.Equal(t, "websocket", strings.ToLower(resp.Header.Get("Upgrade")))
		assert.Empty(t, resp.Header.Get("Sec-WebSocket-Extensions"))
	})
}

func TestNoSubprotocolOffered(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		a := r.dial("/fork/u1?profile=analytics", fssim.AudioForkOptions{Subprotocols: []string{}})
		assert.Equal(t, "", a.Conn.Subprotocol(), "none offered, none answered")
		// No subprotocol reads as mod_audio_stream, whose hand-typed forks hold
		// the opening audio until it is known not to be a burst before the
		// metadata: live frames, 20 ms apart.
		require.NoError(t, a.Stream(context.Background(), make([]byte, 2*640), 640, 20*time.Millisecond))
		a.Stop("")
		r.waitEnded(2)
	})
}

func TestRefusedBeforeUpgrade(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, func(s *IngestSettings) { s.Token = "s3cret" }, 10)
		expired := r.signer.Sign(mediafork.Spec{UUID: "u1"}, time.Now().Add(-time.Minute)).Token
		cases := []struct {
			name, path string
			o          fssim.AudioForkOptions
			status     int
		}{
			{"other path", "/stream/u1?token=s3cret", fssim.AudioForkOptions{}, 404},
			{"no uuid", "/fork/?token=s3cret", fssim.AudioForkOptions{}, 404},
			{"unknown parameter", "/fork/u1?token=s3cret&bogus=1", fssim.AudioForkOptions{}, 404},
			{"no token", "/fork/u1?profile=analytics", fssim.AudioForkOptions{}, 401},
			{"wrong token", "/fork/u1?profile=analytics&token=nope", fssim.AudioForkOptions{}, 401},
			{"wrong basic password", "/fork/u1?profile=analytics", fssim.AudioForkOptions{BasicUser: "fs", BasicPassword: "nope"}, 401},
			{"forged credential", "/fork/u1?cred=abc.def", fssim.AudioForkOptions{}, 401},
			{"expired credential", "/fork/u1?cred=" + expired, fssim.AudioForkOptions{}, 401},
			{"unknown profile", "/fork/u1?profile=nope&token=s3cret", fssim.AudioForkOptions{}, 400},
			{"bad rate", "/fork/u1?profile=analytics&rate=11025&token=s3cret", fssim.AudioForkOptions{}, 400},
			{"bad mix", "/fork/u1?profile=analytics&mix=quad&token=s3cret", fssim.AudioForkOptions{}, 400},
			{"destination not allowed", "/fork/u1?to=8.8.8.8:9000&token=s3cret", fssim.AudioForkOptions{}, 403},
			{"malformed destination", "/fork/u1?to=nonsense&token=s3cret", fssim.AudioForkOptions{}, 400},
			{"port 0", "/fork/u1?to=127.0.0.1:0&token=s3cret", fssim.AudioForkOptions{}, 400},
			{"not a call uuid", "/fork/a_b?profile=analytics&token=s3cret", fssim.AudioForkOptions{}, 404},
			{"too many destinations", "/fork/u1?token=s3cret" + strings.Repeat("&to=127.0.0.1:9", mediafork.DefaultMaxDestinations+1), fssim.AudioForkOptions{}, 400},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				a, err := fssim.DialAudioFork(context.Background(), r.url(tc.path), r.opts(tc.o))
				require.ErrorIs(t, err, websocket.ErrBadHandshake)
				require.NotNil(t, a.Response)
				assert.Equal(t, tc.status, a.Response.StatusCode)
				body, _ := io.ReadAll(a.Response.Body)
				assert.Contains(t, string(body), `"error":`)
				assert.NotContains(t, string(body), "s3cret")
			})
		}
		assert.Equal(t, 0, r.registry.Len())
		r.sink.Streams()
		time.Sleep(50 * time.Millisecond)
		assert.Empty(t, r.sink.Streams(), "nothing forwarded")

		// The right token, as token= or as the Basic password, is let in.
		a := r.dial("/fork/u1?profile=analytics&token=s3cret", fssim.AudioForkOptions{})
		b := r.dial("/fork/u2?profile=analytics", fssim.AudioForkOptions{BasicUser: "fs", BasicPassword: "s3cret"})
		a.Send(make([]byte, 640))
		b.Send(make([]byte, 640))
		a.Stop("")
		b.Stop("")
		r.waitEnded(4)
	})
}

func TestDuplicateAndTooMany(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 2)
		a := r.dial("/fork/u1?profile=analytics", fssim.AudioForkOptions{})
		_, err := fssim.DialAudioFork(context.Background(), r.url("/fork/u1?profile=analytics"), r.opts(fssim.AudioForkOptions{}))
		require.ErrorIs(t, err, websocket.ErrBadHandshake)
		dup, _ := fssim.DialAudioFork(context.Background(), r.url("/fork/u1?profile=analytics"), r.opts(fssim.AudioForkOptions{}))
		assert.Equal(t, http.StatusConflict, dup.Response.StatusCode)
		b := r.dial("/fork/u2?profile=analytics", fssim.AudioForkOptions{})
		full, err := fssim.DialAudioFork(context.Background(), r.url("/fork/u3?profile=analytics"), r.opts(fssim.AudioForkOptions{}))
		require.Error(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, full.Response.StatusCode)
		a.Stop("")
		b.Stop("")
		// Once ended, the uuid is free again.
		require.Eventually(t, func() bool { return r.registry.Len() == 0 }, 3*time.Second, 10*time.Millisecond)
		c := r.dial("/fork/u1?profile=analytics", fssim.AudioForkOptions{})
		c.Stop("")
	})
}

func TestOversizedMessageClosed1009(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, func(s *IngestSettings) { s.MaxMessageBytes = 4096 }, 10)
		a := r.dial("/fork/u1?profile=analytics", fssim.AudioForkOptions{})
		require.NoError(t, a.Send(make([]byte, 640)))
		require.NoError(t, a.Send(make([]byte, 5000)))
		var ce *websocket.CloseError
		require.ErrorAs(t, a.AwaitClose(2*time.Second), &ce)
		assert.Equal(t, websocket.CloseMessageTooBig, ce.Code)
		for _, s := range r.waitEnded(2) {
			assert.Equal(t, 1, s.Packets, "the good frame went out, the oversized one did not")
			assert.Equal(t, tlvcodec.ReasonMediaLost, s.End.Reason)
		}
	})
}

// Frames of any size, cutting through samples and sample pairs, carry over.
func TestArbitraryFrameSizes(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		pcm := fssim.Tone(8000, 1.013, 8000, 440, 1000) // not a whole number of frames
		a := r.dial("/fork/u1?profile=analytics", fssim.AudioForkOptions{})
		rng := rand.New(rand.NewPCG(7, 8))
		rest := pcm
		for len(rest) > 0 {
			n := min(len(rest), 1+rng.IntN(2000))
			require.NoError(t, a.Send(rest[:n]))
			rest = rest[n:]
		}
		a.Stop("")
		left, right := deinterleave(pcm)
		for _, s := range r.waitEnded(2) {
			want := left
			if s.Direction == tlvcodec.TX {
				want = right
			}
			assert.Equal(t, want, s.Payload)
			assert.Equal(t, 51, s.Packets, "50 full packets and the partial tail")
		}
	})
}

func TestGracefulShutdownFrame(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		a := r.dial("/fork/u1?profile=analytics", fssim.AudioForkOptions{Metadata: `{"hello":"world"}`})
		require.NoError(t, a.Send(make([]byte, 1000))) // 1.56 frames
		require.NoError(t, a.GracefulShutdown())
		ended := r.waitEnded(2) // flushed and ended before any close
		for _, s := range ended {
			assert.Equal(t, 2, s.Packets)
			assert.Equal(t, tlvcodec.ReasonHangup, s.End.Reason)
		}
		// The module sends nothing after it, not even a close (t13): the
		// server closes at once. (The deadline bounds a failure only.)
		var ce *websocket.CloseError
		require.ErrorAs(t, a.AwaitClose(10*time.Second), &ce)
		assert.Equal(t, websocket.CloseNormalClosure, ce.Code)
		for _, s := range r.sink.Streams() {
			assert.Equal(t, 2, s.Packets)
		}
	})
}

func TestDroppedConnectionIsMediaLost(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		a := r.dial("/fork/u1?profile=analytics", fssim.AudioForkOptions{})
		require.NoError(t, a.Send(make([]byte, 640)))
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, a.Drop())
		for _, s := range r.waitEnded(2) {
			assert.Equal(t, tlvcodec.ReasonMediaLost, s.End.Reason)
			assert.Equal(t, uint32(1), s.End.LastSequence)
		}
	})
}

func TestMetadataSources(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		sinkAddr := r.sink.Addr().String()

		// The first text frame gives metadata and destinations.
		a := r.dial("/fork/u-text?mix=mono", fssim.AudioForkOptions{
			Metadata: fmt.Sprintf(`{"channel_id":"sofia/internal/1000@x","exten":"2000","caller_id":"1000","called_id":"2001","to":"%s"}`, sinkAddr)})
		a.Send(make([]byte, 320))
		a.SendText("later text is ignored")
		a.Stop(`{"final":"bye"}`)

		// A signed fork's description wins over what the text frame says
		// beside it.
		spec := mediafork.Spec{UUID: "u-cred", Bug: "mediafork", To: []string{sinkAddr}, Targets: mediafork.TLVTargets(netip.MustParseAddrPort(sinkAddr)),
			Params:   mediafork.Params{Mix: mediafork.Mono, Rate: 8000, Encoding: mediafork.PCMU, FrameMs: 20},
			Metadata: mediafork.Metadata{ChannelID: "signed", Exten: "e", CallerID: "c", CalledID: "d"}}
		path, meta := r.signed(spec)
		meta = strings.Replace(meta, `"channel_id":"signed"`, `"channel_id":"from-text","to":"127.0.0.2:9"`, 1)
		b := r.dial(path, fssim.AudioForkOptions{Metadata: meta})
		b.Send(make([]byte, 320))
		b.Stop("")

		// The lookup (uuid_dump) fills what is missing; the uuid is the last resort.
		r.ingest.SetLookup(lookupFunc(func(_ context.Context, uuid string) (mediafork.CallInfo, error) {
			if uuid == "u-dump" {
				return mediafork.CallInfo{Metadata: mediafork.Metadata{ChannelID: "loopback/9100-a", Exten: "9100"}}, nil
			}
			return mediafork.CallInfo{}, errors.New("no such channel")
		}))
		c := r.dial("/fork/u-dump?profile=analytics&mix=mono", fssim.AudioForkOptions{Metadata: `{"caller_id":"555"}`})
		c.Send(make([]byte, 320))
		c.Stop("")

		got := map[string]*tlvcodec.Signaling{}
		for _, s := range r.waitEnded(3) {
			got[s.Signaling.ChannelID] = s.Signaling
			if s.Signaling.ChannelID == "signed" {
				assert.Equal(t, 160, s.Bytes, "the credential's encoding (pcmu) applies")
			}
		}
		require.Contains(t, got, "sofia/internal/1000@x")
		assert.Equal(t, "2001", got["sofia/internal/1000@x"].CalledID)
		require.Contains(t, got, "signed")
		assert.Equal(t, "e", got["signed"].Exten)
		require.Contains(t, got, "loopback/9100-a")
		assert.Equal(t, "555", got["loopback/9100-a"].CallerID, "the text frame wins over uuid_dump")
		assert.Equal(t, "9100", got["loopback/9100-a"].Exten)
	})
}

func TestTextFrameDestinationOutsideAllowList(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		a := r.dial("/fork/u1", fssim.AudioForkOptions{Metadata: `{"to":["8.8.8.8:9000"]}`})
		var ce *websocket.CloseError
		require.ErrorAs(t, a.AwaitClose(2*time.Second), &ce)
		assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
		assert.Contains(t, ce.Text, "not allowed")
		require.Eventually(t, func() bool { return r.registry.Len() == 0 }, 2*time.Second, 10*time.Millisecond)
		assert.Empty(t, r.sink.Streams())
	})
}

func TestShutdownEndsForks(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		var wg sync.WaitGroup
		closes := make(chan int, 3)
		for i := 0; i < 3; i++ {
			a := r.dial(fmt.Sprintf("/fork/u%d?profile=analytics", i), fssim.AudioForkOptions{})
			require.NoError(t, a.Send(make([]byte, 640)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ce *websocket.CloseError
				if errors.As(a.AwaitClose(3*time.Second), &ce) {
					closes <- ce.Code
				}
			}()
		}
		require.Eventually(t, func() bool { return len(r.sink.Streams()) == 6 }, 2*time.Second, 10*time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		require.NoError(t, r.registry.StopAll(ctx, mediafork.EndShutdown))
		wg.Wait()
		close(closes)
		n := 0
		for code := range closes {
			assert.Equal(t, websocket.CloseGoingAway, code)
			n++
		}
		assert.Equal(t, 3, n)
		for _, s := range r.waitEnded(6) {
			assert.Equal(t, tlvcodec.ReasonShutdown, s.End.Reason)
		}
	})
}

type lookupFunc func(context.Context, string) (mediafork.CallInfo, error)

func (f lookupFunc) Admit(mediafork.CallID, string, mediafork.Start) error { return nil }

func (f lookupFunc) LookupCall(ctx context.Context, uuid mediafork.CallID) (mediafork.CallInfo, error) {
	return f(ctx, string(uuid))
}

var _ = binary.LittleEndian

// An upgraded connection that never sends anything is closed, its fork ended.
func TestSilentConnectionTimesOut(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, func(s *IngestSettings) { s.FirstMessageTimeout = 200 * time.Millisecond }, 10)
		a := r.dial("/fork/silent?profile=analytics", fssim.AudioForkOptions{})
		defer a.Conn.Close()
		require.Eventually(t, func() bool { return r.registry.Len() == 0 }, 3*time.Second, 10*time.Millisecond)
		a.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, err := a.Conn.ReadMessage()
		assert.Error(t, err, "the server hung up")
		assert.Empty(t, r.sink.Streams(), "nothing was sent")
	})
}

// On a non-loopback listener without ingest.token, forks typed by hand are
// refused; forks mediafork signed are not.
func TestHandTypedRefusedOffLoopbackWithoutToken(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, func(s *IngestSettings) { s.RefuseHandTyped = true }, 10)
		a, err := fssim.DialAudioFork(context.Background(), r.url("/fork/u1?profile=analytics"), r.opts(fssim.AudioForkOptions{}))
		require.Error(t, err)
		assert.Equal(t, http.StatusUnauthorized, a.Response.StatusCode)
		addr := netip.MustParseAddrPort(r.sink.Addr().String())
		spec := mediafork.Spec{UUID: "u2", Bug: "mediafork", Targets: mediafork.TLVTargets(addr),
			Params: mediafork.Params{Mix: mediafork.Mono, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20}}
		path, meta := r.signed(spec)
		b := r.dial(path, fssim.AudioForkOptions{Metadata: meta})
		b.Send(make([]byte, 320))
		b.Stop("")
		r.waitEnded(1)
	})
}

// A plain HTTP request on a fork path (a probe, curl) is a 400 refusal, not a
// fork that ended with media lost; a broken handshake is a failed fork.
func TestNotAnUpgradeIsRefused(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		resp, err := r.client().Get(r.httpURL("/fork/u1?profile=analytics"))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, string(body), "not a WebSocket upgrade")
		assert.Equal(t, uint64(1), r.ingest.Stats.Refused[http.StatusBadRequest].Load())

		// Upgrade headers but no Sec-WebSocket-Key: gorilla refuses it after the claim.
		req, _ := http.NewRequest("GET", r.httpURL("/fork/u2?profile=analytics"), nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		resp, err = r.client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

		require.Eventually(t, func() bool { return r.registry.Len() == 0 }, 3*time.Second, 10*time.Millisecond)
		ended := r.registry.Totals().Ended
		assert.Zero(t, ended["media-lost"], "no media was ever lost: %v", ended)
		assert.Equal(t, uint64(1), ended["failed"], "%v", ended)
	})
}
