package web

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

// memSwitch is a FreeSWITCH in memory for the orchestrator: answered calls
// to list and dump, forks accepted and not started.
type memSwitch struct {
	name string
	mu   sync.Mutex
	up   map[mediafork.CallID]map[string]string
}

func (s *memSwitch) Name() string   { return s.name }
func (s *memSwitch) Module() string { return mediafork.ModuleAudioFork }
func (s *memSwitch) StartFork(context.Context, mediafork.ForkStart) error {
	return nil
}
func (s *memSwitch) StopFork(context.Context, mediafork.CallID, string) error { return nil }
func (s *memSwitch) SetVar(context.Context, mediafork.CallID, string, string) error {
	return nil
}
func (s *memSwitch) Log(context.Context, string, string) error { return nil }
func (s *memSwitch) Dump(_ context.Context, uuid mediafork.CallID) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.up[uuid]; ok {
		return h, nil
	}
	return nil, mediafork.ErrSwitchRefused
}
func (s *memSwitch) AnsweredChannels(context.Context) ([]mediafork.CallID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mediafork.CallID
	for u := range s.up {
		out = append(out, u)
	}
	return out, nil
}

func (s *memSwitch) answer(uuid, caller, dest string) map[string]string {
	h := map[string]string{"Unique-ID": uuid, "Channel-Name": "sofia/internal/" + caller, "Caller-Caller-ID-Number": caller,
		"Caller-Destination-Number": dest, "Call-Direction": "inbound", "Caller-Channel-Answered-Time": "1795341976131739"}
	s.mu.Lock()
	s.up[mediafork.CallID(uuid)] = h
	s.mu.Unlock()
	return h
}

// callsRig is the API and console over an orchestrator with profiles and a
// switch in memory.
type callsRig struct {
	*consoleRig
	o  *mediafork.Orchestrator
	sw *memSwitch
}

func newCallsRig(t *testing.T, token string) *callsRig {
	p := &mediafork.Policy{Defaults: mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},
		BugName: "mediafork", IngestURL: "ws://127.0.0.1:8090",
		Destinations: &mediafork.Destinations{Profiles: map[string]mediafork.Profile{
			"analytics": {Endpoints: []string{"127.0.0.1:9000"}, Params: mediafork.Params{Encoding: mediafork.PCMU}},
			"speech": {Endpoints: []string{"127.0.0.1:9100", "127.0.0.1:9200"}, Params: mediafork.Params{Rate: 16000},
				Formats: []mediafork.EndpointFormat{{Directions: mediafork.DirSetOf(mediafork.DirRX)}, {Encoding: mediafork.PCMU, Rate: 8000}}},
		}}}
	r, o := startConsole(t, consoleOptions{token: token, console: ConsoleSettings{FeedInterval: 20 * time.Millisecond}, maxForks: 100,
		policy: p, switches: map[string]bool{"fs1": true}})
	return &callsRig{consoleRig: r, o: o, sw: &memSwitch{name: "fs1", up: map[mediafork.CallID]map[string]string{}}}
}

// GET /v1/profiles lists the profiles in force, each with a line saying
// where its audio goes and in which format, and no secret; GET /v1/calls the
// live calls with their forks. Both need the token.
func TestProfilesAndCallsAPI(t *testing.T) {
	t.Parallel()
	r := newCallsRig(t, consoleToken)
	for _, path := range []string{"/v1/profiles", "/v1/calls"} {
		status, _ := r.get(path, "")
		assert.Equal(t, 401, status, path)
		status, _ = r.request("POST", path, "", "", consoleToken, "{}")
		assert.Equal(t, 405, status, path)
	}
	status, body := r.get("/v1/profiles", consoleToken)
	require.Equal(t, 200, status, body)
	var got struct {
		Profiles []profileView `json:"profiles"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Len(t, got.Profiles, 2)
	assert.Equal(t, profileView{Name: "analytics", Description: "stereo bug → tlv 127.0.0.1:9000 (rx+tx pcmu 8000 Hz 20 ms)",
		Params:    mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.PCMU, FrameMs: 20},
		Endpoints: []endpointView{{Address: "127.0.0.1:9000", Protocol: "tlv", Format: "rx+tx pcmu 8000 Hz 20 ms"}}}, got.Profiles[0])
	assert.Equal(t, "speech", got.Profiles[1].Name)
	assert.Equal(t, []endpointView{{Address: "127.0.0.1:9100", Protocol: "tlv", Format: "rx l16 16000 Hz 20 ms"},
		{Address: "127.0.0.1:9200", Protocol: "tlv", Format: "rx+tx pcmu 8000 Hz 20 ms"}}, got.Profiles[1].Endpoints)

	r.sw.answer("0a1b2c3d-0000-4000-8000-00000000c001", "+15551000", "3000")
	r.o.SwitchUp(context.Background(), r.sw)
	status, body = r.get("/v1/calls", consoleToken)
	require.Equal(t, 200, status, body)
	assert.JSONEq(t, `{"calls":[{"uuid":"0a1b2c3d-0000-4000-8000-00000000c001","freeswitch":"fs1","channel":"sofia/internal/+15551000",
		"caller":"+15551000","callee":"3000","direction":"inbound","answered":"`+time.UnixMicro(1795341976131739).Format(time.RFC3339Nano)+`",
		"wanted":false,"forks":[]}]}`, body)
}

// The feed carries the live calls (added, then removed on hangup) and each
// switch's state with why it is not connected and when it tries again; the
// full message says whether the console is open (no token).
func TestFeedCarriesCallsAndSwitchReasons(t *testing.T) {
	t.Parallel()
	r := newCallsRig(t, consoleToken)
	next := time.Now().Add(7 * time.Second)
	var reason atomic.Value
	reason.Store("connection refused: nothing listens at 10.0.0.9:8021 (mod_event_socket loaded? listen-ip, listen-port)")
	r.console.SetSwitchStatus(func() []SwitchStatus {
		return []SwitchStatus{{Name: "fs1", Addr: "127.0.0.1:8021", Up: true, State: "connected", Leader: "mf-a", Leads: true},
			{Name: "fs-east", Addr: "10.0.0.9:8021", State: "down", Reason: reason.Load().(string), Next: next, Leader: "mf-b"}}
	})
	r.sw.answer("0a1b2c3d-0000-4000-8000-00000000c002", "+15551001", "3000")
	r.o.SwitchUp(context.Background(), r.sw)

	conn, _, err := r.dial("/v1/console/feed", consoleToken)
	require.NoError(t, err)
	defer conn.Close()
	var first feedMessage
	require.NoError(t, conn.ReadJSON(&first))
	assert.Equal(t, "full", first.Type)
	assert.False(t, first.Open, "a token is set")
	assert.Equal(t, []switchRow{{Name: "fs-east", Up: false, State: "down", Addr: "10.0.0.9:8021", Reason: reason.Load().(string), Next: next.UnixMilli(), Leader: "mf-b"},
		{Name: "fs1", Up: true, State: "connected", Addr: "127.0.0.1:8021", Leader: "mf-a", Leads: true}}, first.Switches, "in a cluster, who leads each switch")
	require.Len(t, first.CallAdd, 1)
	assert.Equal(t, callRow{UUID: "0a1b2c3d-0000-4000-8000-00000000c002", Server: "fs1", Channel: "sofia/internal/+15551001",
		Caller: "+15551001", Callee: "3000", Direction: "inbound", Answered: time.UnixMicro(1795341976131739).UnixMilli()}, first.CallAdd[0])

	read := func(what string, ok func(m feedMessage) bool) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			var m feedMessage
			require.NoError(t, conn.ReadJSON(&m), what)
			if ok(m) {
				return
			}
		}
	}
	// A second call, then the first hangs up.
	h := r.sw.answer("0a1b2c3d-0000-4000-8000-00000000c003", "+15551002", "3001")
	r.o.HandleEvent(context.Background(), "fs1", mediafork.CallAnswered{Data: mediafork.NewChannelData(h)})
	read("the new call", func(m feedMessage) bool {
		return len(m.CallAdd) == 1 && m.CallAdd[0].Caller == "+15551002" && m.CallDel == nil
	})
	r.o.HandleEvent(context.Background(), "fs1", mediafork.CallHungUp{UUID: "0a1b2c3d-0000-4000-8000-00000000c002"})
	read("the hangup", func(m feedMessage) bool {
		return len(m.CallDel) == 1 && m.CallDel[0] == "0a1b2c3d-0000-4000-8000-00000000c002" && m.CallAdd == nil
	})
	// The switch's reason changes: the switches again.
	reason.Store("authentication refused: wrong password (freeswitch[1].password)")
	read("the new reason", func(m feedMessage) bool {
		return len(m.Switches) == 2 && strings.HasPrefix(m.Switches[0].Reason, "authentication")
	})

	// Without a token the console says it is open.
	open := newCallsRig(t, "")
	_, body := open.get("/v1/console/snapshot", "")
	assert.Contains(t, body, `"open":true`)
}

// A live fork's detail: its streams with their ids and formats, its
// endpoints, metadata, parameters and counters, and its levels a second
// over the time it has streamed; a fork that is not live is 404, a bad id
// 400; the token is needed; no credential in it.
func TestForkDetail(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, consoleToken, false, 10)
	uuid := "0a1b2c3d-0000-4000-8000-000000000d01"
	f := r.fork(uuid)
	var rx, tx atomic.Int32
	rx.Store(8000)
	r.stream([]*mediafork.Fork{f}, &rx, &tx)

	var id uint64
	require.Eventually(t, func() bool {
		r.console.mu.Lock()
		defer r.console.mu.Unlock()
		if lf := r.console.rows[f]; lf != nil && lf.history.n >= 3 {
			id = lf.row.ID
			return true
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "three seconds of history")

	status, _ := r.get(fmt.Sprintf("/v1/console/forks/%d", id), "")
	assert.Equal(t, 401, status)
	status, body := r.get(fmt.Sprintf("/v1/console/forks/%d", id), consoleToken)
	require.Equal(t, 200, status, body)
	var d struct {
		UUID      string             `json:"uuid"`
		State     string             `json:"state"`
		Trigger   string             `json:"trigger"`
		Rule      string             `json:"rule"`
		Metadata  mediafork.Metadata `json:"metadata"`
		Params    mediafork.Params   `json:"params"`
		Outputs   []outputDetail     `json:"outputs"`
		Endpoints []endpointDetail   `json:"endpoint_detail"`
		Packets   map[string]uint64  `json:"packets_out"`
		History   struct {
			Dirs   []string `json:"dirs"`
			StepMs int      `json:"step_ms"`
			End    int64    `json:"end"`
			Values [][]*int `json:"values"`
		} `json:"history"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &d))
	assert.Equal(t, uuid, d.UUID)
	assert.Equal(t, "streaming", d.State)
	assert.Equal(t, "rule", d.Trigger)
	assert.Equal(t, "support", d.Rule)
	assert.Equal(t, "+1555", d.Metadata.CallerID)
	assert.Equal(t, mediafork.Stereo, d.Params.Mix)
	assert.Equal(t, []outputDetail{{StreamID: f.StreamID, Protocol: "tlv", Format: "rx+tx l16 8000 Hz 20 ms", Endpoints: []string{"127.0.0.1:9999"},
		Identities: []string{fmt.Sprint("stream ", f.StreamID)}}}, d.Outputs)
	require.Len(t, d.Endpoints, 1)
	assert.Equal(t, endpointDetail{Address: "127.0.0.1:9999", Protocol: "tlv", Format: "rx+tx l16 8000 Hz 20 ms", StreamID: f.StreamID,
		Packets: d.Endpoints[0].Packets}, d.Endpoints[0])
	assert.Greater(t, d.Endpoints[0].Packets, uint64(4), "signaling, format, then audio")
	assert.Positive(t, d.Packets["RX"])
	assert.Equal(t, []string{"RX", "TX"}, d.History.Dirs)
	assert.Equal(t, 1000, d.History.StepMs)
	require.Len(t, d.History.Values, 2)
	require.GreaterOrEqual(t, len(d.History.Values[0]), 3)
	last := len(d.History.Values[0]) - 2 // a full second
	require.NotNil(t, d.History.Values[0][last])
	require.NotNil(t, d.History.Values[1][last])
	assert.Greater(t, *d.History.Values[0][last], -30, "RX: the tone")
	assert.Equal(t, int(mediafork.MinDBFS), *d.History.Values[1][last], "TX: silence")
	assert.NotContains(t, body, "cred=")

	status, _ = r.get("/v1/console/forks/999999", consoleToken)
	assert.Equal(t, 404, status)
	status, _ = r.get("/v1/console/forks/x", consoleToken)
	assert.Equal(t, 400, status)
}

// The level history keeps each second's highest level, a minute of them;
// a second the sampler missed is a gap, not silence.
func TestLevelHistory(t *testing.T) {
	t.Parallel()
	var h levelHistory
	t0 := time.Unix(1_800_000_000, 0)
	lv := func(rx, tx float64) []mediafork.Level { return []mediafork.Level{{DBFS: rx}, {DBFS: tx}} }
	h.add(t0, lv(-20, -96))
	h.add(t0.Add(500*time.Millisecond), lv(-10, -50)) // the same second: the highest
	h.add(t0.Add(2*time.Second), lv(-30, -40))        // second 1 missed
	s := h.series(2)
	ptr := func(v int) *int { return &v }
	assert.Equal(t, [][]*int{{ptr(-10), nil, ptr(-30)}, {ptr(-50), nil, ptr(-40)}}, s)
	assert.Equal(t, t0.Unix()+2, h.sec)
	h.add(t0.Add(time.Second), lv(0, 0)) // the clock went back: ignored
	assert.Equal(t, s, h.series(2))
	for i := 3; i < 100; i++ {
		h.add(t0.Add(time.Duration(i)*time.Second), lv(float64(-i%90), -96))
	}
	s = h.series(2)
	require.Len(t, s[0], HistorySeconds, "a minute")
	assert.Equal(t, -99%90, *s[0][HistorySeconds-1])
	assert.Equal(t, -40%90, *s[0][0], "the oldest kept is 59 s before the newest")
	h.add(t0.Add(500*time.Second), lv(-5, -5)) // long after: only the newest
	s = h.series(2)
	assert.Equal(t, [][]*int{{ptr(-5)}, {ptr(-5)}}, s)
}

// The level sampler, warm, allocates nothing (four samples a second of
// every fork were most of a busy daemon's allocations), and each fork's
// sample lands in its own history though their levels share one slice:
// a loud RX and silent TX on one fork, the reverse on the other.
func TestLevelSamplerAllocatesNothing(t *testing.T) {
	r := newConsoleRig(t, consoleToken, false, 10)
	a := r.fork("0a1b2c3d-0000-4000-8000-000000000e01")
	b := r.fork("0a1b2c3d-0000-4000-8000-000000000e02")
	for n := 0; n < 5; n++ { // the meter measures one frame in five
		a.Write(nil, toneFrame(n, 16000, 0))
		b.Write(nil, toneFrame(n, 0, 16000))
	}
	var sc levelScratch
	now := time.Unix(1_800_000_000, 0)
	r.console.sampleOnce(now, &sc) // rows and scratch made
	assert.Zero(t, testing.AllocsPerRun(100, func() { r.console.sampleOnce(now, &sc) }))
	assert.Empty(t, slices.DeleteFunc(sc.forks, func(f *mediafork.Fork) bool { return f == nil }), "no fork kept past its sample")

	r.console.mu.Lock()
	defer r.console.mu.Unlock()
	k := slot(now.Unix())
	for _, c := range []struct {
		f      *mediafork.Fork
		loudRX bool
	}{{a, true}, {b, false}} {
		lf := r.console.rows[c.f]
		require.NotNil(t, lf)
		rx, tx := lf.history.v[0][k], lf.history.v[1][k]
		if c.loudRX {
			assert.Greater(t, rx, int8(-20), "fork %s RX", c.f.UUID)
			assert.Equal(t, int8(mediafork.MinDBFS), tx, "fork %s TX", c.f.UUID)
		} else {
			assert.Equal(t, int8(mediafork.MinDBFS), rx, "fork %s RX", c.f.UUID)
			assert.Greater(t, tx, int8(-20), "fork %s TX", c.f.UUID)
		}
	}
}

// With no fork the level sampler does not tick (an idle daemon wakes for
// nothing); a fork wakes it, and its history fills; once the last fork
// ends it sleeps again.
func TestLevelSamplerSleepsWithoutForks(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, consoleToken, false, 10)
	parked := func() bool { return r.console.parked.Load() }
	require.Eventually(t, parked, 10*time.Second, time.Millisecond, "the sampler waits with no fork")

	f := r.fork("0a1b2c3d-0000-4000-8000-000000000e11")
	var rx, tx atomic.Int32
	rx.Store(8000)
	stop := r.stream([]*mediafork.Fork{f}, &rx, &tx)
	require.Eventually(t, func() bool {
		r.console.mu.Lock()
		defer r.console.mu.Unlock()
		lf := r.console.rows[f]
		return lf != nil && lf.history.n >= 2
	}, 10*time.Second, 20*time.Millisecond, "samples of the new fork")
	assert.False(t, parked())

	stop()
	f.Finish(mediafork.EndHangup)
	<-f.Done()
	require.Eventually(t, parked, 10*time.Second, time.Millisecond, "asleep again after the last fork")
}
