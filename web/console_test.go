package web

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/mediafork"
)

const consoleToken = "s3cret-console-token"

// discard is a Transport that takes every packet and sends nothing.
type discard struct{}

type discardEndpoint struct{}

func (discard) Open(netip.AddrPort) (mediafork.Endpoint, error) { return discardEndpoint{}, nil }
func (discardEndpoint) Send(bufs [][]byte) (int, error)         { return len(bufs), nil }
func (discardEndpoint) BatchSize() int                          { return 64 }
func (discardEndpoint) Close() error                            { return nil }

// consoleRig is the API with its console over a registry whose forks the
// test drives frame by frame.
type consoleRig struct {
	t       *testing.T
	reg     *mediafork.Registry
	console *Console
	srv     *httptest.Server
	logs    *syncbuf.Buffer
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newConsoleRig(t *testing.T, token string, listenIn bool, maxForks int) *consoleRig {
	return newConsoleRigWith(t, token, ConsoleSettings{ListenIn: listenIn}, maxForks)
}

// newConsoleRigWith is newConsoleRig with the console's settings.
func newConsoleRigWith(t *testing.T, token string, set ConsoleSettings, maxForks int) *consoleRig {
	r, _ := startConsole(t, consoleOptions{token: token, console: set, maxForks: maxForks,
		policy: &mediafork.Policy{Destinations: &mediafork.Destinations{}}, switches: map[string]bool{"fs1": true, "fs2": false}})
	return r
}

// consoleOptions are what the rigs' APIs and consoles differ in.
type consoleOptions struct {
	token    string
	console  ConsoleSettings
	maxForks int
	policy   *mediafork.Policy
	switches map[string]bool // connected or not, by name
}

// startConsole serves the API with its console over a registry and an
// orchestrator with opts' policy; all of it ends with the test.
func startConsole(t *testing.T, opts consoleOptions) (*consoleRig, *mediafork.Orchestrator) {
	r := &consoleRig{t: t, logs: &syncbuf.Buffer{}, stop: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(r.logs, nil))
	r.reg = mediafork.NewRegistry(discard{}, opts.maxForks, true, log)
	o := mediafork.NewOrchestrator(r.reg, mediafork.NewSigner(nil), opts.policy, log)
	switches := func() map[string]bool { return maps.Clone(opts.switches) }
	api := NewAPI(o, switches, new(slog.LevelVar), APISettings{Token: opts.token}, nil, log)
	var err error
	r.console, err = NewConsole(r.reg, switches, opts.console, log)
	require.NoError(t, err)
	api.SetConsole(r.console)
	r.srv = httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		close(r.stop)
		r.wg.Wait()
		r.console.Close()
		r.srv.Close()
		o.Close()
		for _, f := range r.reg.List() {
			f.Finish(mediafork.EndShutdown)
		}
		r.reg.WaitHooks()
	})
	return r, o
}

// fork starts a streaming stereo fork of uuid as a rule would have.
func (r *consoleRig) fork(uuid string) *mediafork.Fork {
	f, err := r.reg.Claim(mediafork.CallID(uuid), "mediafork")
	require.NoError(r.t, err)
	spec := mediafork.Spec{Profile: "analytics", Trigger: mediafork.TriggerRule, Rule: "support",
		Params:   mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},
		Metadata: mediafork.Metadata{ChannelID: "sofia/internal/" + uuid, CallerID: "+1555", CalledID: "2000"}}
	require.NoError(r.t, f.Begin(spec, mediafork.TLVTargets(netip.MustParseAddrPort("127.0.0.1:9999"))))
	return f
}

// stream writes a tone frame to each fork every 20 ms until the rig ends or
// the returned func is called (then the caller owns the forks' Write and
// Finish again); the amplitude of each side is read at each frame (0:
// silence).
func (r *consoleRig) stream(forks []*mediafork.Fork, rx, tx *atomic.Int32) (stop func()) {
	r.wg.Add(1)
	halt, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer r.wg.Done()
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			wobble := 0.5 + float64(n%10)/20 // the levels move from frame to frame
			frame := toneFrame(n, wobble*float64(rx.Load()), wobble*float64(tx.Load()))
			for _, f := range forks {
				if f.State() == mediafork.StateStreaming {
					f.Write(nil, frame)
				}
			}
			select {
			case <-r.stop:
				return
			case <-halt:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(halt); <-done }
}

// toneFrame is frame n of 20 ms stereo 8 kHz: 440 Hz left, 1000 Hz right.
func toneFrame(n int, left, right float64) []byte {
	b := make([]byte, 0, 640)
	for i := 0; i < 160; i++ {
		t := float64(n*160+i) / 8000
		b = binary.LittleEndian.AppendUint16(b, uint16(int16(left*math.Sin(2*math.Pi*440*t))))
		b = binary.LittleEndian.AppendUint16(b, uint16(int16(right*math.Sin(2*math.Pi*1000*t))))
	}
	return b
}

func (r *consoleRig) ws(path string) string {
	return "ws" + strings.TrimPrefix(r.srv.URL, "http") + path
}

// dial opens a console WebSocket as the page does: the token in the bearer
// subprotocol ("" for none).
func (r *consoleRig) dial(path, token string) (*websocket.Conn, *http.Response, error) {
	protos := []string{consoleProtocol}
	if token != "" {
		protos = append(protos, bearerPrefix+base64.RawURLEncoding.EncodeToString([]byte(token)))
	}
	d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: 5 * time.Second, EnableCompression: true}
	return d.Dial(r.ws(path), nil)
}

func (r *consoleRig) get(path, token string) (int, string) {
	req, _ := http.NewRequest("GET", r.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// feedReader reads feed messages, keeping every payload for the checks.
type feedReader struct {
	t        *testing.T
	conn     *websocket.Conn
	payloads []string
	forks    map[uint64]*forkRow
	dyns     map[uint64]dyn
	ended    []*forkRow
}

func newFeedReader(t *testing.T, conn *websocket.Conn) *feedReader {
	return &feedReader{t: t, conn: conn, forks: map[uint64]*forkRow{}, dyns: map[uint64]dyn{}}
}

// until reads messages until ok holds of the state, or fails at the deadline.
func (fr *feedReader) until(d time.Duration, what string, ok func() bool) {
	fr.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		fr.conn.SetReadDeadline(deadline)
		_, b, err := fr.conn.ReadMessage()
		require.NoError(fr.t, err, "waiting for %s", what)
		fr.payloads = append(fr.payloads, string(b))
		var m feedMessage
		require.NoError(fr.t, json.Unmarshal(b, &m))
		if m.Type == "full" {
			fr.forks, fr.dyns = map[uint64]*forkRow{}, map[uint64]dyn{}
		}
		for _, r := range m.Add {
			fr.forks[r.ID] = r
		}
		for _, d := range m.Upd {
			fr.dyns[uint64(d[0])] = d
		}
		for _, id := range m.Del {
			delete(fr.forks, id)
			delete(fr.dyns, id)
		}
		fr.ended = append(fr.ended, m.Ended...)
	}
}

func (fr *feedReader) byUUID(uuid string) (*forkRow, dyn, bool) {
	for id, r := range fr.forks {
		if r.UUID == uuid {
			return r, fr.dyns[id], true
		}
	}
	return nil, dyn{}, false
}

// Every console data endpoint and the live feed answer 401 without the
// right token; the page itself loads (it shows nothing until the feed
// authenticates).
func TestConsoleNeedsTheToken(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, consoleToken, true, 10)
	r.fork("0a1b2c3d-0000-4000-8000-000000000001")
	for _, tok := range []string{"", "wrong"} {
		status, body := r.get("/v1/console/snapshot", tok)
		assert.Equal(t, 401, status, "snapshot with %q", tok)
		assert.NotContains(t, body, "0a1b2c3d")
		for _, path := range []string{"/v1/console/feed", "/v1/console/listen/0a1b2c3d-0000-4000-8000-000000000001?dir=rx"} {
			conn, res, err := r.dial(path, tok)
			require.Error(t, err, path)
			if conn != nil {
				conn.Close()
			}
			require.NotNil(t, res, path)
			assert.Equal(t, 401, res.StatusCode, "%s with %q", path, tok)
		}
	}
	status, body := r.get("/", "")
	assert.Equal(t, 200, status)
	assert.Contains(t, body, "/console/app.js")
	assert.NotContains(t, body, "0a1b2c3d")
	res, err := http.Get(r.srv.URL + "/")
	require.NoError(t, err)
	res.Body.Close()
	assert.Contains(t, res.Header.Get("Content-Security-Policy"), "script-src 'self'")
	for _, asset := range []string{"/console/app.js", "/console/style.css"} {
		code, _ := r.get(asset, "")
		assert.Equal(t, 200, code, asset)
	}
	status, _ = r.get("/console/nope.js", "")
	assert.Equal(t, 404, status)

	status, body = r.get("/v1/console/snapshot", consoleToken)
	assert.Equal(t, 200, status)
	assert.Contains(t, body, "0a1b2c3d")
	// The Authorization header works for the feed too (non-browser clients).
	conn, _, err := websocket.DefaultDialer.Dial(r.ws("/v1/console/feed"), http.Header{"Authorization": {"Bearer " + consoleToken}})
	require.NoError(t, err)
	conn.Close()
}

// Listen-in is off unless configured: 404 with the token. Without the
// right token the answer is 401 whether it is on or off (issue 20: a 404
// told anyone that it was off, a 401 that it was on). On without an API
// token it is refused (403).
func TestListenInOffAnswers404(t *testing.T) {
	t.Parallel()
	uuid := "0a1b2c3d-0000-4000-8000-000000000002"
	for _, on := range []bool{false, true} {
		r := newConsoleRig(t, consoleToken, on, 10)
		r.fork(uuid)
		for _, tok := range []string{"", "wrong"} {
			conn, res, err := r.dial("/v1/console/listen/"+uuid+"?dir=rx", tok)
			require.Error(t, err)
			if conn != nil {
				conn.Close()
			}
			assert.Equal(t, 401, res.StatusCode, "listen-in on: %v, token %q", on, tok)
			body, _ := io.ReadAll(res.Body)
			assert.NotContains(t, string(body), "listen")
		}
	}
	r := newConsoleRig(t, consoleToken, false, 10)
	r.fork(uuid)
	conn, res, err := r.dial("/v1/console/listen/"+uuid+"?dir=rx", consoleToken)
	require.Error(t, err)
	if conn != nil {
		conn.Close()
	}
	assert.Equal(t, 404, res.StatusCode, "off, with the token")
	open := newConsoleRig(t, "", true, 10)
	open.fork(uuid)
	conn, res, err = open.dial("/v1/console/listen/"+uuid+"?dir=rx", "")
	require.Error(t, err)
	if conn != nil {
		conn.Close()
	}
	assert.Equal(t, 403, res.StatusCode)
	assert.NotContains(t, open.logs.String(), "listen-in")
}

// The feed shows a fork with its trigger and rule, its meters moving with
// the tones and falling to silence on one side (one-way flagged), then its
// end with the reason; no credential or fork URL in any payload.
func TestFeedShowsForksMetersAndEnds(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, consoleToken, false, 10)
	uuid := "0a1b2c3d-0000-4000-8000-000000000003"
	f := r.fork(uuid)
	var rx, tx atomic.Int32
	rx.Store(8000)
	tx.Store(8000)
	stopStream := r.stream([]*mediafork.Fork{f}, &rx, &tx)

	conn, res, err := r.dial("/v1/console/feed", consoleToken)
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, consoleProtocol, res.Header.Get("Sec-WebSocket-Protocol"), "the bearer protocol is never echoed")
	fr := newFeedReader(t, conn)
	fr.until(5*time.Second, "the fork, both sides audible", func() bool {
		_, d, ok := fr.byUUID(uuid)
		return ok && d[7] > -40 && d[8] > -40 && d[1] > 0 && d[2] > 0
	})
	row, _, _ := fr.byUUID(uuid)
	assert.Equal(t, "rule", row.Trigger)
	assert.Equal(t, "support", row.Rule)
	assert.Equal(t, "analytics", row.Profile)
	assert.Equal(t, []string{"RX", "TX"}, row.Levels)
	assert.Equal(t, []string{"127.0.0.1:9999"}, row.Endpoints)
	assert.Equal(t, "+1555", row.Caller)

	tx.Store(0) // one-way: TX goes silent
	fr.until(5*time.Second, "TX at silence", func() bool { _, d, _ := fr.byUUID(uuid); return d[8] == int64(mediafork.MinDBFS) && d[7] > -40 })
	fr.until(mediafork.SilentAfter+3*time.Second, "TX flagged silent", func() bool { _, d, _ := fr.byUUID(uuid); return d[9] == 2 })

	// A failed fork whose error holds a fork URL: scrubbed.
	g, err := r.reg.Claim("0a1b2c3d-0000-4000-8000-000000000004", "mediafork")
	require.NoError(t, err)
	g.Fail(errors.New("upgrade of ws://127.0.0.1:8090/fork?cred=eyJzZWNyZXQiOjF9.abc refused"))
	g.Finish(mediafork.EndMediaLost)
	stopStream()
	f.Stop(mediafork.EndStopped)
	f.Finish(mediafork.EndStopped)
	fr.until(5*time.Second, "the ends", func() bool { _, _, live := fr.byUUID(uuid); return !live && len(fr.ended) == 2 })
	byUUID := map[string]*forkRow{}
	for _, e := range fr.ended {
		byUUID[e.UUID] = e
	}
	assert.Equal(t, "stopped", byUUID[uuid].Reason)
	assert.Greater(t, byUUID[uuid].Packets[0], uint64(0))
	assert.Equal(t, "failed", byUUID["0a1b2c3d-0000-4000-8000-000000000004"].State)
	assert.Contains(t, byUUID["0a1b2c3d-0000-4000-8000-000000000004"].Error, "<redacted>")

	_, snap := r.get("/v1/console/snapshot", consoleToken)
	for _, p := range append(fr.payloads, snap) {
		assert.NotContains(t, p, "cred=")
		assert.NotContains(t, p, "eyJzZWNyZXQiOjF9")
		assert.NotContains(t, p, "ws://")
		assert.NotContains(t, p, consoleToken)
	}
}

// At most MaxClients feeds.
func TestFeedClientLimit(t *testing.T) {
	t.Parallel()
	r := newConsoleRigWith(t, consoleToken, ConsoleSettings{MaxClients: 1}, 10)
	c1, _, err := r.dial("/v1/console/feed", consoleToken)
	require.NoError(t, err)
	defer c1.Close()
	_, res, err := r.dial("/v1/console/feed", consoleToken)
	require.Error(t, err)
	assert.Equal(t, 503, res.StatusCode)
}

// The feed's size at 2,000 live forks whose levels move: the full message
// a client gets first, and a tick's delta (levels every tick, counters at
// 2 Hz), raw and as permessage-deflate would send it.
func TestFeedSizeAt2000Forks(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, consoleToken, false, 3000)
	var forks []*mediafork.Fork
	for i := 0; i < 2000; i++ {
		forks = append(forks, r.fork(fmt.Sprintf("0a1b2c3d-0000-4000-8000-%012d", i)))
	}
	write := func(n int) {
		for i, f := range forks {
			for k := 0; k < 5; k++ { // one frame in five is metered
				f.Write(nil, toneFrame(n+k, float64(1000+(i*37+n*101)%20000), float64(500+(i*53+n*71)%20000)))
			}
		}
	}
	write(0)
	var st feedState
	full, _ := json.Marshal(st.next(r.console.snapshot(), false, false))
	var deltas, deflated, counterTick []int
	for tick := 1; tick <= counterEvery; tick++ {
		write(tick * 5)
		r.console.mu.Lock()
		r.console.snap.at = time.Time{} // the next tick, now
		r.console.mu.Unlock()
		m := st.next(r.console.snapshot(), false, false)
		require.NotNil(t, m)
		b, _ := json.Marshal(m)
		deltas = append(deltas, len(b))
		deflated = append(deflated, deflateSize(b))
		if r.console.snap.builds%counterEvery == 0 {
			counterTick = append(counterTick, len(b))
		}
	}
	t.Logf("feed at 2,000 forks: full %d bytes (deflated %d); deltas per tick %v bytes (deflated %v); counter ticks %v",
		len(full), deflateSize(full), deltas, deflated, counterTick)
	assert.Less(t, len(full), 1<<20)
	for _, d := range deltas {
		assert.Less(t, d, 128<<10, "a tick's delta at 2,000 forks")
	}
}

func deflateSize(b []byte) int {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write(b)
	w.Close()
	return buf.Len()
}

// BenchmarkFeedTick is one tick at 2,000 live forks: the shared snapshot
// and one client's delta, encoded.
func BenchmarkFeedTick(b *testing.B) {
	reg := mediafork.NewRegistry(discard{}, 3000, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c, err := NewConsole(reg, func() map[string]bool { return nil }, ConsoleSettings{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(b, err)
	defer c.Close()
	frame := toneFrame(0, 8000, 8000)
	for i := 0; i < 2000; i++ {
		f, _ := reg.Claim(mediafork.CallID(fmt.Sprintf("u%d", i)), "b")
		f.Begin(mediafork.Spec{Params: mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20}}, mediafork.TLVTargets(netip.MustParseAddrPort("127.0.0.1:9")))
		f.Write(nil, frame)
		defer f.Finish(mediafork.EndShutdown)
	}
	var st feedState
	st.next(c.snapshot(), false, false)
	b.ReportAllocs()
	for b.Loop() {
		c.mu.Lock()
		c.snap.at = time.Time{}
		c.mu.Unlock()
		if m := st.next(c.snapshot(), false, false); m != nil {
			json.Marshal(m)
		}
	}
}

// Listen-in streams exactly the fork's audio of the asked direction, and
// each use is logged once at INFO with who (remote address, token
// fingerprint, never the token), which fork and which direction.
func TestListenInStreamsTheForksAudio(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, consoleToken, true, 10)
	uuid := "0a1b2c3d-0000-4000-8000-000000000005"
	f := r.fork(uuid)
	for _, dir := range []mediafork.Direction{mediafork.DirRX, mediafork.DirTX, mediafork.DirMixed} {
		name := strings.ToLower(dir.String())
		conn, _, err := r.dial("/v1/console/listen/"+uuid+"?dir="+name, consoleToken)
		require.NoError(t, err, name)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, hello, err := conn.ReadMessage()
		require.NoError(t, err)
		var h listenHello
		require.NoError(t, json.Unmarshal(hello, &h))
		assert.Equal(t, listenHello{UUID: uuid, Bug: "mediafork", Direction: name, Rate: 8000, Encoding: "l16"}, h)

		// A second listener on the same fork is refused.
		_, res, err := r.dial("/v1/console/listen/"+uuid+"?dir=rx", consoleToken)
		require.Error(t, err)
		assert.Equal(t, 409, res.StatusCode)

		var want []byte
		for n := 0; n < 20; n++ {
			frame := toneFrame(n, 9000, 7000)
			f.Write(nil, frame)
			want = mediafork.ListenPCM(want, frame, mediafork.Stereo, dir)
		}
		var got []byte
		for len(got) < len(want) {
			mt, b, err := conn.ReadMessage()
			require.NoError(t, err)
			require.Equal(t, websocket.BinaryMessage, mt)
			got = append(got, b...)
		}
		assert.True(t, bytes.Equal(want, got), "%s: the PCM received is the fork's input", name)
		assert.Len(t, got, 20*320)
		conn.Close()
		require.Eventually(t, func() bool { return r.console.listeners.Load() == 0 }, 5*time.Second, 5*time.Millisecond)
	}
	logs := r.logs.String()
	assert.Equal(t, 3, strings.Count(logs, `msg=listen-in `), logs)
	assert.Contains(t, logs, "level=INFO msg=listen-in component=console remote=127.0.0.1:")
	assert.Contains(t, logs, "token_sha256="+fingerprint(consoleToken)+" uuid="+uuid+" bug=mediafork")
	assert.Contains(t, logs, "direction=rx")
	assert.Contains(t, logs, "direction=tx")
	assert.Contains(t, logs, "direction=mixed")
	assert.NotContains(t, logs, consoleToken)

	// Bad requests, refused before the upgrade.
	for path, status := range map[string]int{
		"/v1/console/listen/" + uuid + "?dir=sideways":                   400,
		"/v1/console/listen/bad%20uuid?dir=rx":                           400,
		"/v1/console/listen/0a1b2c3d-0000-4000-8000-00000000dead?dir=rx": 404,
		"/v1/console/listen/" + uuid + "?dir=rx&bug=other":               404,
	} {
		_, res, err := r.dial(path, consoleToken)
		require.Error(t, err, path)
		assert.Equal(t, status, res.StatusCode, path)
	}

	// The fork ends: the listen-in closes with it.
	conn, _, err := r.dial("/v1/console/listen/"+uuid, consoleToken)
	require.NoError(t, err)
	defer conn.Close()
	conn.ReadMessage() // hello
	f.Finish(mediafork.EndHangup)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err = conn.ReadMessage(); err != nil {
			break
		}
	}
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "fork ended", ce.Text)
}

// A paused fork is marked paused in the feed (and is no silent fault).
func TestFeedMarksAPausedFork(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, consoleToken, false, 10)
	f := r.fork("0a1b2c3d-0000-4000-8000-000000000001")
	flags := func() int64 {
		r.console.mu.Lock()
		if r.console.snap != nil {
			r.console.snap.at = time.Time{} // the next tick, now
		}
		r.console.mu.Unlock()
		s := r.console.snapshot()
		require.Len(t, s.dyns, 1)
		return s.dyns[0][9]
	}
	assert.Zero(t, flags()&dynPaused)
	f.Pause()
	assert.Equal(t, int64(dynPaused), flags()&dynPaused)
	f.Resume()
	assert.Zero(t, flags()&dynPaused)
}
