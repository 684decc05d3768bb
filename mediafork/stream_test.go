package mediafork

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeDialer is an in-memory StreamDialer: its connections take every
// message (counting them, allocating nothing) and read nothing until closed.
type fakeDialer struct {
	fail  error       // every dial fails with it
	panic bool        // every dial panics
	mu    sync.Mutex  // guards conns
	conns []*fakeConn // every connection made
	dials atomic.Int32
}

func (d *fakeDialer) Dial(ctx context.Context, sd StreamDial) (StreamConn, error) {
	d.dials.Add(1)
	if d.panic {
		panic("dialer broke")
	}
	if d.fail != nil {
		return nil, d.fail
	}
	c := &fakeConn{closed: make(chan struct{}), dial: sd}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c, nil
}

type fakeConn struct {
	dial     StreamDial
	messages atomic.Int64
	bytes    atomic.Int64
	once     sync.Once
	closed   chan struct{}
}

func (c *fakeConn) WriteMessage(_ bool, b []byte, _ time.Time) error {
	select {
	case <-c.closed:
		return errors.New("closed")
	default:
	}
	c.messages.Add(1)
	c.bytes.Add(int64(len(b)))
	return nil
}
func (c *fakeConn) Flush(time.Time) error { return nil }
func (c *fakeConn) ReadMessage(int) (bool, []byte, error) {
	<-c.closed
	return false, nil, errors.New("closed")
}
func (c *fakeConn) SendClose(int, string, time.Time) error { c.Close(); return nil }
func (c *fakeConn) Close() error                           { c.once.Do(func() { close(c.closed) }); return nil }

// streamTarget is a configured stream endpoint's target (its options parsed
// from keys, url among them).
func streamTarget(t testing.TB, p Protocol, fm EndpointFormat, keys map[string]any) Target {
	t.Helper()
	op, _ := LookupProtocol(p)
	opts, err := op.ParseOptions(keys)
	require.NoError(t, err)
	return Target{Protocol: p, Addr: netip.MustParseAddrPort("192.0.2.10:443"), Format: fm, Options: opts}
}

func streamOf(t testing.TB, f *Fork) *streamOutput {
	t.Helper()
	require.Len(t, f.streams, 1)
	return f.streams[0]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The media write of a stream output — cutting, encoding into its ring's
// slot (base64 and JSON for twilio), waking the writer, DTMF on the way —
// allocates nothing, in both stream protocols (the writer, draining into a
// connection that allocates nothing, neither).
func TestStreamWriteAllocatesNothing(t *testing.T) {
	for _, p := range []Protocol{ProtocolTwilio, ProtocolAudioFork} {
		d := &fakeDialer{}
		reg := NewRegistry(testTransport{batch: 1}, 10, true, quiet)
		reg.SetStreamDialer(d)
		f, _ := reg.Claim("u", "b")
		require.NoError(t, f.Begin(stereoSpec(), []Target{streamTarget(t, p, EndpointFormat{}, map[string]any{"url": "wss://bot.example.com/media"})}))
		o := streamOf(t, f)
		waitFor(t, "connected", o.connected.Load)
		frame, _, _ := pcmStereo(160)
		f.Write(nil, frame)
		i := 0
		assert.Zero(t, testing.AllocsPerRun(500, func() {
			if i%100 == 50 {
				f.DTMF(DTMFReceived{UUID: "u", Digit: '#', Duration: 80 * time.Millisecond})
			}
			f.Write(nil, frame)
			for o.ring.head.Load() != o.ring.tail.Load() {
				runtime.Gosched() // the writer drains before the next frame, as it does in 20 ms
			}
			i++
		}), "%s", p)
		f.Finish(EndHangup)
		<-f.Done()
		d.mu.Lock()
		c := d.conns[0]
		d.mu.Unlock()
		want := int64(2 + 502*2 + 5 + 1) // connected, start, media of both tracks (a frame before, 501 in AllocsPerRun), dtmf, stop
		if p == ProtocolAudioFork {
			want = 1 + 502 // metadata, frames
		}
		assert.Equal(t, want, c.messages.Load(), "%s: messages on the connection", p)
		assert.Zero(t, o.drops.Load(), "%s", p)
	}
}

// No audio waits for a connection that is not up: each frame of each track
// is dropped and counted (on the output, the fork and the endpoint's
// counters), and the writer, still dialing with backoff, ends with the fork.
func TestStreamDownDrops(t *testing.T) {
	d := &fakeDialer{fail: errors.New("connection refused")}
	reg := NewRegistry(testTransport{batch: 1}, 10, true, quiet)
	reg.SetStreamDialer(d)
	f, _ := reg.Claim("u", "b")
	require.NoError(t, f.Begin(stereoSpec(), []Target{streamTarget(t, ProtocolTwilio, EndpointFormat{}, map[string]any{"url": "ws://bot.example.com/media"})}))
	o := streamOf(t, f)
	waitFor(t, "a failed dial", func() bool { return o.failures.Load() > 0 })
	frame, _, _ := pcmStereo(160)
	for range 10 {
		f.Write(nil, frame)
	}
	assert.Equal(t, uint64(20), o.drops.Load())
	assert.Equal(t, uint64(20), f.Drops.Load())
	assert.Equal(t, uint64(10), f.DropsBy[DirRX-1].Load())
	assert.Equal(t, uint64(20), o.epc.Drops.Load())
	info := f.Info().Outputs[0].Stream
	assert.False(t, info.Connected)
	assert.Equal(t, "connect: connection refused", info.LastError)
	f.Finish(EndHangup)
	<-f.Done()
}

// A panic on a connection's path (here the dialer's) is recovered and
// counted; the writer goes on with backoff and ends with the fork.
func TestStreamPanicRecovered(t *testing.T) {
	d := &fakeDialer{panic: true}
	reg := NewRegistry(testTransport{batch: 1}, 10, true, quiet)
	reg.SetStreamDialer(d)
	f, _ := reg.Claim("u", "b")
	require.NoError(t, f.Begin(stereoSpec(), []Target{streamTarget(t, ProtocolAudioFork, EndpointFormat{}, map[string]any{"url": "ws://x.example.com/"})}))
	waitFor(t, "two dials", func() bool { return d.dials.Load() >= 2 })
	assert.GreaterOrEqual(t, reg.StreamPanics(), uint64(2))
	assert.Contains(t, f.Info().Outputs[0].Stream.LastError, "panic: dialer broke")
	f.Finish(EndHangup)
	<-f.Done()
}

// A credential carries a stream endpoint's reference, never its URL or
// headers; the serving instance finds the endpoint in its own config, and
// refuses to begin when the config differs (or lacks it), saying which.
func TestStreamCredentialReference(t *testing.T) {
	keys := map[string]any{"url": "wss://bot.example.com/media?token=abc123secret", "headers": map[string]any{"Authorization": "Bearer zzz-secret"}}
	tg := streamTarget(t, ProtocolTwilio, EndpointFormat{}, keys)
	dst := &Destinations{EndpointKey: []byte("k1"), Profiles: map[string]Profile{"bots": {Endpoints: []string{"192.0.2.10:443"},
		Protocols: []EndpointProtocol{{Protocol: ProtocolTwilio, Options: tg.Options}}}}}
	ts, err := dst.ResolveTargets(context.Background(), "bots", nil, false)
	require.NoError(t, err)
	b, err := json.Marshal(ts[0])
	require.NoError(t, err)
	assert.Regexp(t, `^"twilio 192\.0\.2\.10:443 - \{\\"p\\":\\"bots\\",\\"i\\":0,\\"h\\":\\"[A-Za-z0-9_-]{16}\\"\}"$`, string(b))
	assert.NotContains(t, string(b), "secret")
	var back Target
	require.NoError(t, json.Unmarshal(b, &back))

	reg := NewRegistry(testTransport{batch: 1}, 10, true, quiet)
	reg.SetStreamDialer(&fakeDialer{fail: errors.New("no")})
	begin := func(d *Destinations) error {
		reg.SetStreamEndpoints(d)
		f, _ := reg.Claim("u", "b")
		berr := f.Begin(stereoSpec(), []Target{back})
		f.Finish(EndHangup)
		<-f.Done()
		return berr
	}
	require.NoError(t, begin(dst))

	other := streamTarget(t, ProtocolTwilio, EndpointFormat{}, map[string]any{"url": "wss://bot.example.com/media?token=rotated"})
	changed := &Destinations{EndpointKey: []byte("k1"), Profiles: map[string]Profile{"bots": {Endpoints: []string{"192.0.2.10:443"},
		Protocols: []EndpointProtocol{{Protocol: ProtocolTwilio, Options: other.Options}}}}}
	err = begin(changed)
	require.ErrorIs(t, err, ErrStreamEndpoint)
	assert.Contains(t, err.Error(), "profiles.bots.endpoints[0] is configured differently")
	err = begin(&Destinations{EndpointKey: []byte("k2"), Profiles: dst.Profiles})
	assert.ErrorIs(t, err, ErrStreamEndpoint, "another key: another fingerprint")
	err = begin(&Destinations{Profiles: map[string]Profile{}})
	assert.ErrorContains(t, err, "profiles.bots.endpoints[0] is not in this instance's config")
	assert.NotContains(t, err.Error(), "secret")
}

func TestStreamFormats(t *testing.T) {
	tw, af := twilioProtocol{}, audioforkProtocol{}
	stereo8 := Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20}
	stereo16 := Params{Mix: Stereo, Rate: 16000, Encoding: L16, FrameMs: 40}
	f, err := tw.Format(EndpointFormat{}, nil, stereo16)
	require.NoError(t, err)
	assert.Equal(t, EndpointFormat{Directions: DirSetOf(DirRX, DirTX), Encoding: PCMU, Rate: 8000, FrameMs: 20}, f, "µ-law 8 kHz 20 ms whatever the fork's")
	f, err = tw.Format(EndpointFormat{Encoding: L16}, nil, stereo16)
	require.NoError(t, err)
	assert.Equal(t, 16000, f.Rate)
	f, err = tw.Format(EndpointFormat{Encoding: L16, Directions: DirSetOf(DirTX)}, nil, stereo8)
	require.NoError(t, err)
	assert.Equal(t, EndpointFormat{Directions: DirSetOf(DirTX), Encoding: L16, Rate: 8000, FrameMs: 20}, f)
	for _, c := range []struct {
		ask  EndpointFormat
		p    Params
		want string
	}{
		{EndpointFormat{}, Params{Mix: Mixed, Rate: 8000, Encoding: L16, FrameMs: 20}, "directions: "},
		{EndpointFormat{Directions: DirSetOf(DirMixed)}, stereo8, "directions: "},
		{EndpointFormat{Encoding: PCMA}, stereo8, "encoding: "},
		{EndpointFormat{Rate: 16000}, stereo16, "rate: "},
		{EndpointFormat{Encoding: L16, Rate: 16000}, stereo8, "rate: "},
		{EndpointFormat{Encoding: L16, Rate: 24000}, Params{Mix: Stereo, Rate: 48000, Encoding: L16, FrameMs: 20}, "rate: "},
	} {
		_, ferr := tw.Format(c.ask, nil, c.p)
		assert.ErrorContains(t, ferr, c.want, "twilio %+v from %+v", c.ask, c.p)
	}
	f, err = af.Format(EndpointFormat{}, nil, stereo16)
	require.NoError(t, err)
	assert.Equal(t, EndpointFormat{Directions: DirSetOf(DirRX, DirTX), Encoding: L16, Rate: 16000, FrameMs: 20}, f)
	f, err = af.Format(EndpointFormat{Directions: DirSetOf(DirMixed), Rate: 8000}, nil, stereo16)
	require.NoError(t, err)
	assert.Equal(t, EndpointFormat{Directions: DirSetOf(DirMixed), Encoding: L16, Rate: 8000, FrameMs: 20}, f)
	for _, c := range []struct {
		ask  EndpointFormat
		want string
	}{
		{EndpointFormat{Directions: DirSetOf(DirTX)}, "directions: "},
		{EndpointFormat{Directions: DirSetOf(DirRX, DirMixed)}, "directions: "},
		{EndpointFormat{Encoding: PCMU}, "encoding: "},
		{EndpointFormat{Rate: 32000}, "rate: "},
	} {
		_, err := af.Format(c.ask, nil, stereo16)
		assert.ErrorContains(t, err, c.want, "audiofork %+v", c.ask)
	}
}

// Every refusal of a stream endpoint's keys names its key, and never shows a
// header's value.
func TestStreamOptionsRefused(t *testing.T) {
	u := "wss://bot.example.com/media"
	for _, c := range []struct {
		keys map[string]any
		want string
	}{
		{map[string]any{}, "url: "},
		{map[string]any{"url": "https://bot.example.com/"}, "url: scheme"},
		{map[string]any{"url": "wss://user:pw@bot.example.com/"}, "url: has credentials"},
		{map[string]any{"url": "wss://bot.example.com/#x"}, "url: has a fragment"},
		{map[string]any{"url": "wss:///path"}, "url: has no host"},
		{map[string]any{"url": "wss://h:99999/"}, "url: "},
		{map[string]any{"url": "wss://h/" + strings.Repeat("a", 2100)}, "url: "},
		{map[string]any{"url": u, "headers": map[string]any{"Upgrade": "x"}}, "headers: Upgrade"},
		{map[string]any{"url": u, "headers": map[string]any{"Authorization": 5}}, "headers: Authorization: the value is not a string"},
		{map[string]any{"url": u, "headers": map[string]any{"Authorization": "a\r\nb-s3cr3t"}}, "headers: Authorization: the value"},
		{map[string]any{"url": u, "headers": map[string]any{"bad name": "v"}}, "headers: "},
		{map[string]any{"url": u, "headers": "Authorization: x"}, "headers: "},
		{map[string]any{"url": u, "parameters": map[string]any{"exten": "1"}}, "parameters: exten"},
		{map[string]any{"url": u, "parameters": map[string]any{"a": []any{1}}}, "parameters: a"},
		{map[string]any{"url": u, "queue_ms": 50}, "queue_ms: "},
		{map[string]any{"url": u, "queue_ms": "2s"}, "queue_ms: "},
		{map[string]any{"url": u, "connect_timeout": "1h"}, "connect_timeout: "},
		{map[string]any{"url": u, "write_timeout": 2}, "write_timeout: "},
		{map[string]any{"url": "ws://h/", "tls_ca_file": "/ca.pem"}, "tls_ca_file: url is ws://"},
		{map[string]any{"url": u, "tls_ca_file": "/ca.pem", "tls_insecure_skip_verify": true}, "tls_insecure_skip_verify: "},
		{map[string]any{"url": u, "tls_insecure_skip_verify": "yes"}, "tls_insecure_skip_verify: "},
		{map[string]any{"url": u, "account_sid": strings.Repeat("A", 65)}, "account_sid: "},
	} {
		_, err := twilioProtocol{}.ParseOptions(c.keys)
		if assert.Error(t, err, "%v", c.keys) {
			assert.True(t, strings.HasPrefix(err.Error(), c.want), "%v: %v, want %q", c.keys, err, c.want)
			assert.NotContains(t, err.Error(), "s3cr3t")
		}
	}
	_, err := audioforkProtocol{}.ParseOptions(map[string]any{"url": u, "parameters": map[string]any{"mix": "x"}})
	assert.ErrorContains(t, err, "parameters: mix")
	o, err := twilioProtocol{}.ParseOptions(map[string]any{"url": u, "queue_ms": 500, "connect_timeout": "1s", "write_timeout": "750ms",
		"headers": map[string]any{"authorization": "Bearer x"}, "parameters": map[string]any{"n": 5, "on": true}})
	require.NoError(t, err)
	ep := o.(StreamOptions).Endpoint()
	assert.Equal(t, 500, ep.QueueMs)
	assert.Equal(t, time.Second, ep.ConnectTimeout)
	assert.Equal(t, 750*time.Millisecond, ep.WriteTimeout)
	assert.Equal(t, "Bearer x", ep.Header.Get("Authorization"))
	assert.Equal(t, map[string]string{"n": "5", "on": "true"}, ep.Parameters)
	assert.Equal(t, "bot.example.com:443", ep.HostPort())
}

func TestSlotRing(t *testing.T) {
	var r slotRing
	r.init(3, 8)
	for i := range 3 {
		s := r.next()
		require.NotNil(t, s)
		s.n = i
		r.push()
	}
	assert.Nil(t, r.next(), "full")
	for round := 0; round < 10; round++ {
		s := r.peek()
		require.NotNil(t, s)
		assert.Equal(t, round, s.n)
		r.pop()
		n := r.next()
		require.NotNil(t, n)
		n.n = round + 3
		r.push()
	}
	assert.Len(t, r.slots[0].buf, 8)
	assert.Equal(t, 8, cap(r.slots[0].buf), "a slot cannot grow into the next")
}

// BenchmarkStreamWrite: one frame of a stereo 8 kHz bug through a stream
// output — the media path's encoding into the queue and the writer's drain
// into an in-memory connection — beside the same frame to a TLV endpoint
// (sent at once to a socket that takes it).
func BenchmarkStreamWrite(b *testing.B) {
	frame, _, _ := pcmStereo(160)
	for _, p := range []Protocol{ProtocolTwilio, ProtocolAudioFork} {
		b.Run(p.String(), func(b *testing.B) {
			reg := NewRegistry(testTransport{batch: 1}, 10, true, quiet)
			reg.SetStreamDialer(&fakeDialer{})
			f, _ := reg.Claim("u", "b")
			require.NoError(b, f.Begin(stereoSpec(), []Target{streamTarget(b, p, EndpointFormat{}, map[string]any{"url": "ws://x.example.com/"})}))
			o := streamOf(b, f)
			for !o.connected.Load() {
				runtime.Gosched()
			}
			b.ReportAllocs()
			for b.Loop() {
				f.Write(nil, frame)
				for o.ring.head.Load() != o.ring.tail.Load() {
					runtime.Gosched()
				}
			}
			b.StopTimer()
			f.Finish(EndHangup)
			<-f.Done()
		})
	}
}
