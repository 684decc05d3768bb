package wsout_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/internal/testcert"
	"github.com/mediafork/mediafork/internal/wstest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/transport/udp"
	"github.com/mediafork/mediafork/transport/wsout"
	"github.com/mediafork/mediafork/twiliows"
)

// The calls' tones, as the simulator's and the dist switch's: the forked
// channel receives 1000 Hz (RX, left) and sends 440 Hz (TX, right).
const (
	rxHz = 1000.0
	txHz = 440.0
)

const secret = "Bearer s3cr3t-t0ken-never-shown"

func newRegistry(t *testing.T) (*mediafork.Registry, *syncbuf.Buffer) {
	logs := &syncbuf.Buffer{}
	reg := mediafork.NewRegistry(udp.New(), 100, true, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	reg.SetStreamDialer(wsout.New())
	t.Cleanup(reg.WaitHooks)
	return reg, logs
}

// target is a configured endpoint of proto with keys (url among them), in
// format fm, as a fork gets it: resolved from a profile (the url's host by
// lookup when it is a name: the server's address), written into a credential
// and read back (the reference alone), and found again in the registry's
// config at Begin.
func target(t *testing.T, reg *mediafork.Registry, proto mediafork.Protocol, addr netip.AddrPort, fm mediafork.EndpointFormat, keys map[string]any) mediafork.Target {
	t.Helper()
	op, ok := mediafork.LookupProtocol(proto)
	require.True(t, ok)
	opts, err := op.ParseOptions(keys)
	require.NoError(t, err)
	hp, err := mediafork.StreamHostPort(keys["url"].(string))
	require.NoError(t, err)
	d := &mediafork.Destinations{EndpointKey: []byte("test key"),
		Profiles: map[string]mediafork.Profile{"bots": {Endpoints: []string{hp}, Formats: []mediafork.EndpointFormat{fm},
			Protocols: []mediafork.EndpointProtocol{{Protocol: proto, Options: opts}}}},
		LookupHost: func(context.Context, string) ([]netip.Addr, error) { return []netip.Addr{addr.Addr()}, nil }}
	ts, err := d.ResolveTargets(context.Background(), "bots", nil, false)
	require.NoError(t, err)
	require.Len(t, ts, 1)
	require.Equal(t, addr, ts[0].Addr)
	cred, err := json.Marshal(ts[0])
	require.NoError(t, err)
	for _, v := range []string{"s3cr3t", "query-secret", "acme"} {
		require.NotContains(t, string(cred), v, "a credential carries no secret")
	}
	var back mediafork.Target
	require.NoError(t, json.Unmarshal(cred, &back))
	reg.SetStreamEndpoints(d)
	return back
}

func spec(mix mediafork.Mix, rate int) mediafork.Spec {
	return mediafork.Spec{UUID: callUUID, Bug: "mediafork", Profile: "bots",
		Params:   mediafork.Params{Mix: mix, Rate: rate, Encoding: mediafork.L16, FrameMs: 20},
		Metadata: mediafork.Metadata{ChannelID: "chan-7", Exten: "2000", CallerID: "+15550001", CalledID: "+15550002"}}
}

// frames are seconds of the call's audio in 20 ms frames of a bug of mix at
// rate: RX 1000 Hz, TX 440 Hz (mono: RX; mixed: both summed).
func frames(mix mediafork.Mix, rate int, seconds float64) [][]byte {
	var pcm []byte
	switch mix {
	case mediafork.Stereo:
		pcm = fssim.Tone(rate, seconds, 8000, rxHz, txHz)
	case mediafork.Mono:
		pcm = fssim.Tone(rate, seconds, 8000, rxHz)
	default:
		a, b := fssim.Tone(rate, seconds, 8000, rxHz), fssim.Tone(rate, seconds, 8000, txHz)
		pcm = make([]byte, len(a))
		for i := 0; i+1 < len(a); i += 2 {
			v := int16(uint16(a[i])|uint16(a[i+1])<<8) + int16(uint16(b[i])|uint16(b[i+1])<<8)
			pcm[i], pcm[i+1] = byte(v), byte(uint16(v)>>8)
		}
	}
	n := fssim.FrameBytes(rate, mix.Channels())
	var out [][]byte
	for i := 0; i+n <= len(pcm); i += n {
		out = append(out, pcm[i:i+n])
	}
	return out
}

// streamInfo is the fork's i-th output's stream state.
func streamInfo(t *testing.T, f *mediafork.Fork, i int) mediafork.StreamInfo {
	t.Helper()
	in := f.Info()
	require.Greater(t, len(in.Outputs), i)
	require.NotNil(t, in.Outputs[i].Stream, "output %d is no stream output", i)
	return *in.Outputs[i].Stream
}

// waitState polls the fork's stream state until cond holds (a state the
// writer goroutine sets; no event carries it).
func waitState(t *testing.T, f *mediafork.Fork, i int, what string, cond func(mediafork.StreamInfo) bool) mediafork.StreamInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s := streamInfo(t, f, i); cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited for %s: %+v", what, streamInfo(t, f, i))
		}
		time.Sleep(time.Millisecond)
	}
}

// waitDone waits for the fork's end, which comes once its stream writers
// and readers have returned.
func waitDone(t *testing.T, f *mediafork.Fork) {
	t.Helper()
	select {
	case <-f.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the fork's stream writers did not end")
	}
}

// callUUID is the forked call's.
const callUUID = "5f8e2a4c-0d1b-4c3e-9a7f-000000000021"

// greeting is how many messages a stream connection of proto opens with:
// Twilio's connected and start, mod_audio_fork's metadata frame.
func greeting(proto mediafork.Protocol) int {
	if proto == mediafork.ProtocolTwilio {
		return 2
	}
	return 1
}

// beginStream begins the fork of callUUID, a stereo bug at rate, with one
// stream endpoint of proto at srv (keys, url among them, in format fm), and
// waits for the greeting of the server's first connection.
func beginStream(t *testing.T, reg *mediafork.Registry, srv *wstest.Server, proto mediafork.Protocol, fm mediafork.EndpointFormat, keys map[string]any, rate int) *mediafork.Fork {
	t.Helper()
	f, err := reg.Claim(callUUID, "mediafork")
	require.NoError(t, err)
	tg := target(t, reg, proto, srv.Addr, fm, keys)
	require.NoError(t, f.Begin(spec(mediafork.Stereo, rate), []mediafork.Target{tg}))
	srv.Wait(t, "the greeting", 20*time.Second, func(cs []wstest.Snapshot) bool {
		return len(cs) == 1 && len(cs[0].Messages) >= greeting(proto)
	})
	return f
}

// writeFrames writes seconds of the call's audio into f, a stereo bug at
// rate.
func writeFrames(f *mediafork.Fork, rate int, seconds float64) {
	for _, fr := range frames(mediafork.Stereo, rate, seconds) {
		f.Write(nil, fr)
	}
}

// hangUp ends the fork as a hangup does and returns the server's
// connections once the last one is closed and the fork's stream writers
// have ended.
func hangUp(t *testing.T, srv *wstest.Server, f *mediafork.Fork) []wstest.Snapshot {
	t.Helper()
	f.Finish(mediafork.EndHangup)
	cs := srv.Wait(t, "the close", 20*time.Second, func(cs []wstest.Snapshot) bool { return len(cs) > 0 && cs[len(cs)-1].Closed })
	waitDone(t, f)
	return cs
}

// noStreamGoroutines checks, once every fork of the test has ended, that no
// goroutine of a stream output is left (one that has just closed its done
// channel may still be on its way out: a short wait for that).
func noStreamGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	var left []string
	for range 200 {
		left = left[:0]
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "mediafork.(*streamOutput)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines of stream outputs outlived their forks:\n%s", len(left), strings.Join(left, "\n\n"))
}

func assertTones(t *testing.T, what string, x []int16, rate int, want, not float64) {
	t.Helper()
	require.Greater(t, len(x), rate/2, "%s: %d samples", what, len(x))
	x = x[rate/10:]
	in, out := wstest.ToneShare(x, rate, want), wstest.ToneShare(x, rate, not)
	t.Logf("%s: %.0f Hz %.3f, %.0f Hz %.3f", what, want, in, not, out)
	assert.Greater(t, in, 0.9, "%s: %.0f Hz is %.0f%% of the energy", what, want, 100*in)
	assert.Less(t, out, 0.02, "%s: %.0f Hz is %.0f%% of the energy", what, not, 100*out)
}

// A call's fork to a Twilio-protocol server: connected, start as Twilio
// documents it (the upgrade carrying the endpoint's header), µ-law media on
// both tracks with the call's tones, a digit, stop, close 1000; read as a
// Twilio consumer reads it. No secret reaches a log line or the API.
func TestTwilioToARealServer(t *testing.T) {
	defer noStreamGoroutines(t)
	srv := wstest.New(t, wstest.Options{})
	reg, logs := newRegistry(t)
	f, err := reg.Claim(callUUID, "mediafork")
	require.NoError(t, err)
	tg := target(t, reg, mediafork.ProtocolTwilio, srv.Addr, mediafork.EndpointFormat{}, map[string]any{
		"url": srv.URL + "?token=query-secret-never-shown", "headers": map[string]any{"Authorization": secret, "X-Tenant": "acme"},
		"parameters": map[string]any{"bot": "support"}, "account_sid": "ACmediafork"})
	sp := spec(mediafork.Stereo, 8000)
	sp.Targets = []mediafork.Target{tg}
	require.NoError(t, f.Begin(sp, sp.Targets))
	srv.Wait(t, "start", 20*time.Second, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) >= 2 })

	fs := frames(mediafork.Stereo, 8000, 1)
	for i, fr := range fs {
		if i == 25 {
			f.DTMF(mediafork.DTMFReceived{UUID: f.UUID, Digit: '5', Duration: 100 * time.Millisecond})
		}
		f.Write(nil, fr)
	}
	c := hangUp(t, srv, f)[0]
	assert.Equal(t, 1000, c.CloseCode, "close code")
	assert.Equal(t, secret, c.Header.Get("Authorization"))
	assert.Equal(t, "acme", c.Header.Get("X-Tenant"))
	assert.Equal(t, srv.Addr.String(), c.Host, "the URL's host is the Host header")
	s := wstest.ReadTwilio(c.Messages)
	assert.Empty(t, s.Problems)
	require.NotNil(t, s.Start)
	assert.Regexp(t, regexp.MustCompile(`^MZ[0-9a-f]{32}$`), s.StreamSid)
	assert.Equal(t, twiliows.Start{AccountSid: "ACmediafork", StreamSid: s.StreamSid, CallSid: string(f.UUID),
		Tracks:      []string{"inbound", "outbound"},
		MediaFormat: twiliows.MediaFormat{Encoding: "audio/x-mulaw", SampleRate: 8000, Channels: 1},
		CustomParameters: map[string]string{"bot": "support", "channel_id": "chan-7", "exten": "2000",
			"caller_id": "+15550001", "called_id": "+15550002"}}, *s.Start)
	for _, tr := range []string{"inbound", "outbound"} {
		require.Len(t, s.Chunks[tr], 50, tr)
		for i := range 50 {
			assert.Equal(t, i+1, s.Chunks[tr][i], "%s chunk", tr)
			assert.Equal(t, 20*i, s.Times[tr][i], "%s timestamp", tr)
		}
		assert.Len(t, s.Payload[tr], 8000, "%s: 1 s of µ-law", tr)
	}
	assertTones(t, "inbound", s.Samples("inbound"), 8000, rxHz, txHz)
	assertTones(t, "outbound", s.Samples("outbound"), 8000, txHz, rxHz)
	assert.Equal(t, "5", s.Digits)
	assert.True(t, s.Stopped)
	// The digit goes where it was drained: after the frames before it.
	for i, m := range s.Messages {
		if m.Event == twiliows.EventDTMF {
			assert.Equal(t, 2+2*25, i, "the dtmf message follows 25 frames of both tracks")
		}
	}

	in := f.Info()
	require.Len(t, in.Outputs, 1)
	st := in.Outputs[0].Stream
	require.NotNil(t, st)
	assert.Equal(t, mediafork.ProtocolTwilio, in.Outputs[0].Protocol)
	assert.Equal(t, s.StreamSid, st.StreamSid)
	assert.Equal(t, uint64(101), st.MessagesSent, "100 media and a dtmf")
	assert.Zero(t, st.Drops)
	assert.Equal(t, uint64(1), st.Connects)
	assert.Equal(t, uint64(50), in.PacketsOut["RX"])
	assert.Equal(t, uint64(50), in.PacketsOut["TX"])
	api, _ := json.Marshal(in)
	for _, out := range []string{string(api), logs.String()} {
		assert.NotContains(t, out, "s3cr3t")
		assert.NotContains(t, out, "query-secret")
	}
	assert.Contains(t, string(api), `"url":"ws://`+srv.Addr.String()+`/media?…"`)
	assert.Contains(t, in.EndpointNames(), "twilio+ws://"+srv.Addr.String()+"/media?…")
}

// encoding l16 at 16 kHz of one track: audio/x-l16, little-endian.
func TestTwilioL16(t *testing.T) {
	defer noStreamGoroutines(t)
	srv := wstest.New(t, wstest.Options{})
	reg, _ := newRegistry(t)
	f := beginStream(t, reg, srv, mediafork.ProtocolTwilio, mediafork.EndpointFormat{Encoding: mediafork.L16, Directions: mediafork.DirSetOf(mediafork.DirRX)},
		map[string]any{"url": srv.URL}, 16000)
	writeFrames(f, 16000, 1)
	s := wstest.ReadTwilio(hangUp(t, srv, f)[0].Messages)
	assert.Empty(t, s.Problems)
	require.NotNil(t, s.Start)
	assert.Equal(t, []string{"inbound"}, s.Start.Tracks)
	assert.Equal(t, twiliows.MediaFormat{Encoding: "audio/x-l16", SampleRate: 16000, Channels: 1}, s.Start.MediaFormat)
	assert.Len(t, s.Payload["inbound"], 32000, "1 s of 16 kHz L16")
	assert.Empty(t, s.Payload["outbound"])
	assertTones(t, "inbound", s.Samples("inbound"), 16000, rxHz, txHz)
}

// A fork to a mod_audio_fork-protocol server as mod_audio_fork would feed
// it: the subprotocol, the metadata text frame, binary L16 frames of 20 ms in
// the endpoint's mix and rate, close 1000. Stereo as the bug; mono RX
// downsampled; mixed summed.
func TestAudioForkToARealServer(t *testing.T) {
	for _, c := range []struct {
		name  string
		fm    mediafork.EndpointFormat
		mix   string
		rate  int
		chans int
	}{
		{"stereo", mediafork.EndpointFormat{}, "stereo", 16000, 2},
		{"mono rx at 8 kHz", mediafork.EndpointFormat{Directions: mediafork.DirSetOf(mediafork.DirRX), Rate: 8000}, "mono", 8000, 1},
		{"mixed", mediafork.EndpointFormat{Directions: mediafork.DirSetOf(mediafork.DirMixed)}, "mixed", 16000, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := wstest.New(t, wstest.Options{Subprotocols: []string{mediafork.AudioForkSubprotocol}})
			reg, _ := newRegistry(t)
			f := beginStream(t, reg, srv, mediafork.ProtocolAudioFork, c.fm, map[string]any{"url": srv.URL, "parameters": map[string]any{"app": "recorder"}}, 16000)
			writeFrames(f, 16000, 1)
			conn := hangUp(t, srv, f)[0]
			assert.Equal(t, mediafork.AudioForkSubprotocol, conn.Subprotocol)
			assert.Equal(t, 1000, conn.CloseCode)
			require.True(t, conn.Messages[0].Text, "the metadata is the first frame, text")
			var md map[string]any
			require.NoError(t, json.Unmarshal(conn.Messages[0].Data, &md))
			assert.Equal(t, map[string]any{"uuid": string(f.UUID), "bug": "mediafork", "channel_id": "chan-7", "exten": "2000",
				"caller_id": "+15550001", "called_id": "+15550002", "mix": c.mix, "sample_rate": float64(c.rate), "app": "recorder"}, md)
			var pcm []byte
			for i, m := range conn.Messages[1:] {
				require.False(t, m.Text, "frame %d", i)
				require.Len(t, m.Data, c.rate/50*2*c.chans, "frame %d: 20 ms", i)
				pcm = append(pcm, m.Data...)
			}
			assert.Len(t, conn.Messages[1:], 50)
			ch := wstest.Channels(pcm, c.chans)
			switch c.mix {
			case "stereo":
				assertTones(t, "left", ch[0], c.rate, rxHz, txHz)
				assertTones(t, "right", ch[1], c.rate, txHz, rxHz)
			case "mono":
				assertTones(t, "mono", ch[0], c.rate, rxHz, txHz)
			case "mixed":
				x := ch[0][c.rate/10:]
				a, b := wstest.ToneShare(x, c.rate, rxHz), wstest.ToneShare(x, c.rate, txHz)
				assert.Greater(t, a+b, 0.9, "mixed: %.3f + %.3f", a, b)
				assert.Greater(t, min(a, b), 0.3, "mixed: %.3f + %.3f", a, b)
			}
		})
	}
}

// A server that drops the connection: mediafork dials again while the call
// lives and starts again with the same streamSid (a new connected and start,
// sequenceNumber from 1), chunks going on from the media clock; what was
// written while down is counted as dropped, not held.
func TestTwilioReconnects(t *testing.T) {
	defer noStreamGoroutines(t)
	srv := wstest.New(t, wstest.Options{})
	reg, _ := newRegistry(t)
	f := beginStream(t, reg, srv, mediafork.ProtocolTwilio, mediafork.EndpointFormat{}, map[string]any{"url": srv.URL}, 8000)
	fs := frames(mediafork.Stereo, 8000, 3)
	next := 0
	write := func(n int) {
		for range n {
			f.Write(nil, fs[next])
			next++
		}
	}
	write(10)
	cs := srv.Wait(t, "10 frames", 20*time.Second, func(cs []wstest.Snapshot) bool { return len(cs[0].Messages) >= 2+20 })
	cs[0].Drop()
	waitState(t, f, 0, "the drop noticed", func(s mediafork.StreamInfo) bool { return s.Disconnects == 1 })
	write(10) // down (or up again already): dropped, or sent on the new connection
	srv.Wait(t, "a second connection's start", 20*time.Second, func(cs []wstest.Snapshot) bool { return len(cs) == 2 && len(cs[1].Messages) >= 2 })
	write(10)
	cs = hangUp(t, srv, f)
	require.Len(t, cs, 2)

	first, second := wstest.ReadTwilio(cs[0].Messages), wstest.ReadTwilio(cs[1].Messages)
	assert.Empty(t, first.Problems)
	assert.Empty(t, second.Problems, "the second connection starts over: connected, start with sequenceNumber 1")
	require.NotNil(t, second.Start)
	assert.Equal(t, first.StreamSid, second.StreamSid, "the same streamSid")
	assert.True(t, second.Stopped)
	assert.Equal(t, 10, len(first.Chunks["inbound"]))
	inSecond := second.Chunks["inbound"]
	require.GreaterOrEqual(t, len(inSecond), 10)
	assert.Greater(t, inSecond[0], 10, "chunks go on from the media clock")
	assert.Equal(t, 30, inSecond[len(inSecond)-1], "the last frame is chunk 30")
	st := streamInfo(t, f, 0)
	assert.Equal(t, uint64(2), st.Connects)
	lost := 30 - 10 - len(inSecond)
	assert.Equal(t, uint64(2*lost), st.Drops, "what was written while down: %d frames of two tracks", lost)
	assert.Equal(t, st.Drops, f.Drops.Load())
}

// A slow server: the connection's queue fills and what does not fit is
// dropped and counted, the write deadline drops the connection, mediafork
// dials again; meanwhile the media path never waits: another fork's packets,
// written between this fork's frames, each arrive before the next frame is
// written (event order, not wall clock).
func TestAudioForkSlowServer(t *testing.T) {
	defer noStreamGoroutines(t)
	srv := wstest.New(t, wstest.Options{Subprotocols: []string{mediafork.AudioForkSubprotocol}, ReadBuffer: 4096})
	srv.Hold()
	sink := listenUDP(t)
	reg, _ := newRegistry(t)
	f, _ := reg.Claim(callUUID, "slow")
	tg := target(t, reg, mediafork.ProtocolAudioFork, srv.Addr, mediafork.EndpointFormat{},
		map[string]any{"url": srv.URL, "queue_ms": 200, "write_timeout": "300ms"})
	require.NoError(t, f.Begin(spec(mediafork.Stereo, 16000), []mediafork.Target{tg}))
	other, _ := reg.Claim("5f8e2a4c-0d1b-4c3e-9a7f-000000000022", "fast")
	require.NoError(t, other.Begin(spec(mediafork.Stereo, 16000), mediafork.TLVTargets(sink.addr)))
	sink.expectControl(t, 4) // signaling and format, per direction

	waitState(t, f, 0, "connected", func(s mediafork.StreamInfo) bool { return s.Connected })
	fs := frames(mediafork.Stereo, 16000, 1)
	tick := time.NewTicker(time.Millisecond) // the pace of writing, not a synchronisation
	defer tick.Stop()
	seq := uint32(0)
	for i := 0; ; i++ {
		f.Write(nil, fs[i%len(fs)])
		other.Write(nil, fs[i%len(fs)])
		seq++
		sink.expectAudio(t, seq) // RX and TX of this frame, before the next is written
		if s := streamInfo(t, f, 0); s.Disconnects >= 1 && s.Drops > 0 {
			break
		}
		<-tick.C
	}
	st := streamInfo(t, f, 0)
	t.Logf("after %d frames: %+v", seq, st)
	assert.Contains(t, st.LastError, "connection:", "the write deadline dropped the connection")
	srv.Release()
	cs := srv.Wait(t, "a second connection with its metadata frame", 20*time.Second, func(cs []wstest.Snapshot) bool {
		return len(cs) >= 2 && len(cs[len(cs)-1].Messages) >= 1
	})
	assert.True(t, cs[len(cs)-1].Messages[0].Text, "the metadata frame again")
	f.Finish(mediafork.EndHangup)
	other.Finish(mediafork.EndHangup)
	waitDone(t, f)
	st = streamInfo(t, f, 0)
	assert.Equal(t, st.Drops, f.Drops.Load(), "drops counted on the fork too")
	eps := reg.Endpoints()
	var drops uint64
	for _, e := range eps {
		if e.Protocol == mediafork.ProtocolAudioFork {
			drops = e.Drops.Load()
		}
	}
	assert.GreaterOrEqual(t, drops, st.Drops, "and on the endpoint's counters")
}

// wss with the endpoint's CA: the upgrade goes to the pinned address, the
// URL's name is the TLS server name and the Host header; without the CA (the
// system's roots) the certificate is refused and nothing reaches the server.
func TestStreamTLS(t *testing.T) {
	defer noStreamGoroutines(t)
	ca := testcert.NewCA(t, "mediafork test CA")
	leaf := ca.Leaf(t, "media.example.test")
	cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	require.NoError(t, err)
	srv := wstest.New(t, wstest.Options{Cert: &cert})
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.PEM, 0o600))
	url := "wss://media.example.test:" + strings.Split(srv.Addr.String(), ":")[1] + "/media"

	reg, logs := newRegistry(t)
	f := beginStream(t, reg, srv, mediafork.ProtocolTwilio, mediafork.EndpointFormat{}, map[string]any{"url": url, "tls_ca_file": caFile}, 8000)
	writeFrames(f, 8000, 0.2)
	cs := hangUp(t, srv, f)
	assert.Equal(t, "media.example.test:"+strings.Split(srv.Addr.String(), ":")[1], cs[0].Host)
	s := wstest.ReadTwilio(cs[0].Messages)
	assert.Empty(t, s.Problems)
	assert.Len(t, s.Chunks["inbound"], 10)

	// Untrusted: the system's roots do not know the test CA.
	g, _ := reg.Claim("5f8e2a4c-0d1b-4c3e-9a7f-000000000023", "untrusted")
	tg := target(t, reg, mediafork.ProtocolTwilio, srv.Addr, mediafork.EndpointFormat{}, map[string]any{"url": url})
	require.NoError(t, g.Begin(spec(mediafork.Stereo, 8000), []mediafork.Target{tg}))
	st := waitState(t, g, 0, "the certificate refused", func(s mediafork.StreamInfo) bool { return s.ConnectFailed >= 1 })
	assert.Contains(t, st.LastError, "certificate")
	assert.False(t, st.Connected)
	// A name the certificate does not hold, with the right CA.
	h, _ := reg.Claim("5f8e2a4c-0d1b-4c3e-9a7f-000000000024", "wrong-name")
	tg = target(t, reg, mediafork.ProtocolTwilio, srv.Addr, mediafork.EndpointFormat{},
		map[string]any{"url": strings.Replace(url, "media.example.test", "other.example.test", 1), "tls_ca_file": caFile})
	require.NoError(t, h.Begin(spec(mediafork.Stereo, 8000), []mediafork.Target{tg}))
	st = waitState(t, h, 0, "the name refused", func(s mediafork.StreamInfo) bool { return s.ConnectFailed >= 1 })
	assert.Contains(t, st.LastError, "other.example.test")
	for _, x := range []*mediafork.Fork{g, h} {
		x.Write(nil, frames(mediafork.Stereo, 8000, 0.02)[0])
		x.Finish(mediafork.EndHangup)
		waitDone(t, x)
	}
	assert.Len(t, srv.Conns(), 1, "no refused dial reached the server's handler")
	assert.Contains(t, logs.String(), "stream connect failed")
}

// What the server sends is read, judged and counted: valid messages, and
// refused ones (not JSON, not UTF-8, binary where JSON is due, and talk-back
// from an endpoint that may not speak).
func TestServerMessagesCounted(t *testing.T) {
	defer noStreamGoroutines(t)
	srv := wstest.New(t, wstest.Options{})
	reg, logs := newRegistry(t)
	f := beginStream(t, reg, srv, mediafork.ProtocolTwilio, mediafork.EndpointFormat{}, map[string]any{"url": srv.URL}, 8000)
	c := srv.Conns()[0]
	require.NoError(t, c.Send(true, []byte(`{"event":"start"}`)))
	require.NoError(t, c.Send(true, []byte(`{"event":"clear","streamSid":"x"}`))) // not its stream's
	require.NoError(t, c.Send(true, []byte(`{"event":"stop"}`)))
	require.NoError(t, c.Send(true, []byte(`{"event":`)))
	require.NoError(t, c.Send(true, []byte("\xff\xfe")))
	require.NoError(t, c.Send(false, []byte{1, 2, 3}))
	st := waitState(t, f, 0, "six server messages", func(s mediafork.StreamInfo) bool { return s.ServerMessages+s.ServerRefused == 6 })
	assert.Equal(t, uint64(2), st.ServerMessages)
	assert.Equal(t, uint64(4), st.ServerRefused)
	assert.True(t, st.Connected, "refused messages do not end the connection")
	f.Finish(mediafork.EndHangup)
	waitDone(t, f)
	assert.Contains(t, logs.String(), "stream server messages")
}

// A server that ends the stream itself (close 1000, as a Twilio or
// mod_audio_fork server does when it is done) is not dialed again for the
// call; one that goes away (1001) is.
func TestServerCloseEndsOrRedials(t *testing.T) {
	for _, c := range []struct {
		code   int
		redial bool
	}{{1000, false}, {1001, true}} {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			srv := wstest.New(t, wstest.Options{Subprotocols: []string{mediafork.AudioForkSubprotocol}})
			reg, logs := newRegistry(t)
			f := beginStream(t, reg, srv, mediafork.ProtocolAudioFork, mediafork.EndpointFormat{}, map[string]any{"url": srv.URL}, 8000)
			require.NoError(t, srv.Conns()[0].CloseWith(c.code))
			if c.redial {
				srv.Wait(t, "a second connection", 20*time.Second, func(cs []wstest.Snapshot) bool { return len(cs) == 2 && len(cs[1].Messages) >= 1 })
			} else {
				st := waitState(t, f, 0, "the server's close", func(s mediafork.StreamInfo) bool { return s.LastError != "" })
				assert.Equal(t, "closed by the server (1000)", st.LastError)
				assert.Contains(t, logs.String(), "stream closed by the server")
			}
			fr := frames(mediafork.Stereo, 8000, 0.02)[0]
			f.Write(nil, fr)
			f.Finish(mediafork.EndHangup)
			waitDone(t, f)
			if !c.redial {
				assert.Len(t, srv.Conns(), 1, "not dialed again")
				assert.Equal(t, uint64(1), streamInfo(t, f, 0).Drops, "the frame after the close")
			}
		})
	}
}

// A server message over the bound (64 KiB) ends the connection, and
// mediafork dials again: nothing of it is held.
func TestServerMessageTooLong(t *testing.T) {
	defer noStreamGoroutines(t)
	srv := wstest.New(t, wstest.Options{})
	reg, _ := newRegistry(t)
	f := beginStream(t, reg, srv, mediafork.ProtocolTwilio, mediafork.EndpointFormat{}, map[string]any{"url": srv.URL}, 8000)
	require.NoError(t, srv.Conns()[0].Send(true, bytes.Repeat([]byte("x"), 70<<10)))
	srv.Wait(t, "a second connection", 20*time.Second, func(cs []wstest.Snapshot) bool { return len(cs) == 2 && len(cs[1].Messages) >= 2 })
	st := streamInfo(t, f, 0)
	assert.Equal(t, uint64(1), st.Disconnects)
	assert.Contains(t, st.LastError, "read limit")
	f.Finish(mediafork.EndHangup)
	waitDone(t, f)
}
