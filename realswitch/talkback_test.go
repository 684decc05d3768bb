package realswitch

import (
	"encoding/base64"
	le "encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/g711"
	"github.com/mediafork/mediafork/internal/wstest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/third_party/eslgo"
	"github.com/mediafork/mediafork/tlvcodec"
)

// Talk-back on the real switch (issue 22): a receiver of each protocol
// (Twilio, mod_audio_fork, TLV) sends a 700 Hz tone back into a bridged
// call (extension 9400: caller 9400-a ~ 9400-b == 9401-a ~ 9401-b callee;
// the fork is on 9400-b), and a monitor fork on each party (mono: what that
// party hears) measures who heard it, from when, how long, with which gaps;
// the marks' answers and the clear are checked against those times. On the
// stock modules (the dist install of MEDIAFORK_TEST_ESL: files and
// uuid_displace) and on jambonz's mod_audio_fork (MEDIAFORK_TEST_ESL_JAMBONZ:
// a second dist install with jambonz's module, streamed).

// Targets (issue 22), per path.
type talkbackTargets struct {
	firstHeard time.Duration // first audio heard after it reached mediafork
	maxGap     time.Duration // the longest silence inside continuous audio
	clearIn    time.Duration // silent after a clear
}

var (
	streamTargets = talkbackTargets{firstHeard: 250 * time.Millisecond, maxGap: 60 * time.Millisecond, clearIn: 100 * time.Millisecond}
	stockTargets  = talkbackTargets{firstHeard: 500 * time.Millisecond, maxGap: 100 * time.Millisecond, clearIn: 300 * time.Millisecond}
)

const (
	tbTone = 700.0
	tbAmp  = 8000
	tbRate = 8000
	// monitorLatency: a monitor fork hears a frame up to this long after
	// the party did (the module's buffering; README of the talk-back
	// captures: a displace issued at t was audible at the monitor from
	// t+0.05). A mark answered before its audio reached the monitor is
	// early only if it came more than this before it.
	monitorLatency = 60 * time.Millisecond
)

// bridgedCall is extension 9400's four channels.
type bridgedCall struct {
	*call
	C, D string // 9401-a (bridged to B), 9401-b (the callee)
}

// OriginateBridged places a 9400 call and finds its bridged legs.
func (sw *fsSwitch) OriginateBridged() bridgedCall {
	sw.t.Helper()
	c := sw.Originate("9400")
	e := sw.WaitEvent("the bridge of "+c.B, func(e *eslgo.Event) bool {
		return e.GetName() == "CHANNEL_BRIDGE" && (e.GetHeader("Bridge-A-Unique-ID") == c.B || e.GetHeader("Bridge-B-Unique-ID") == c.B)
	})
	bc := bridgedCall{call: c, C: e.GetHeader("Bridge-B-Unique-ID")}
	if bc.C == c.B {
		bc.C = e.GetHeader("Bridge-A-Unique-ID")
	}
	bc.D = strings.TrimSpace(sw.API("uuid_getvar " + bc.C + " other_loopback_leg_uuid"))
	require.Regexp(sw.t, `^[0-9a-f-]{36}$`, bc.D, "the callee of %s", bc.C)
	return bc
}

// monitor is a fork of one party (mono: its READ, what it hears) to a
// WebSocket server of the test's.
type monitor struct {
	name string
	srv  *wstest.Server
}

// Monitor forks leg, mono 8 kHz, to a server of its own.
func (sw *fsSwitch) Monitor(name, leg string) *monitor {
	sw.t.Helper()
	m := &monitor{name: name, srv: wstest.New(sw.t, wstest.Options{Subprotocols: []string{mediafork.AudioForkSubprotocol}})}
	out := sw.API(fmt.Sprintf("uuid_audio_fork %s start %s mono 8k rsmon", leg, m.srv.URL))
	require.Contains(sw.t, out, "+OK", "monitor of %s", name)
	m.srv.Wait(sw.t, "the monitor of "+name, waitFor, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) > 5 })
	return m
}

// heard is what a monitor heard: its samples, the time of each.
type heard struct {
	at      []time.Time // when the party heard each sample
	samples []int16
}

// heard places each sample on the switch's media clock: the module sends
// 20 ms of what the party hears every 20 ms, sample after sample, so sample
// k was heard at start + k/rate, start being the earliest the receive times
// allow (the least delayed frame). A receive time alone would blame the
// test's own hold-ups (a busy machine: frames read late, then in a bunch) on
// the call; silences the party heard are in the samples.
func (m *monitor) heard() heard {
	var h heard
	cs := m.srv.Conns()
	if len(cs) == 0 {
		return h
	}
	var start time.Time
	for _, msg := range cs[0].Messages {
		if msg.Text {
			continue
		}
		for i := 0; i+1 < len(msg.Data); i += 2 {
			h.samples = append(h.samples, int16(le.LittleEndian.Uint16(msg.Data[i:])))
		}
		// The frame's last sample was heard by the time it arrived.
		if s := msg.At.Add(-time.Duration(len(h.samples)) * time.Second / tbRate); start.IsZero() || s.Before(start) {
			start = s
		}
	}
	h.at = make([]time.Time, len(h.samples))
	for k := range h.at {
		h.at[k] = start.Add(time.Duration(k+1) * time.Second / tbRate)
	}
	return h
}

// WaitUntil waits until the monitor has heard audio up to t.
func (m *monitor) WaitUntil(t *testing.T, until time.Time) {
	t.Helper()
	m.srv.Wait(t, m.name+" hearing up to a time", waitFor, func(cs []wstest.Snapshot) bool {
		if len(cs) == 0 || len(cs[0].Messages) == 0 {
			return false
		}
		return cs[0].Messages[len(cs[0].Messages)-1].At.After(until)
	})
}

// tonePresence is, every hop samples, whether hz is heard in the 20 ms
// window there (Goertzel amplitude of a Hann-windowed window above half a
// test tone's), and when.
type presence struct {
	at []time.Time
	on []bool
}

const tbHop = 20 // samples: 2.5 ms

func (h heard) presence(hz float64, from, to time.Time) presence {
	const win = 160
	var p presence
	w := 2 * math.Pi * hz / tbRate
	coeff := 2 * math.Cos(w)
	hann := make([]float64, win)
	gain := 0.0
	for i := range hann {
		hann[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(win-1))
		gain += hann[i]
	}
	for s := 0; s+win <= len(h.samples); s += tbHop {
		at := h.at[s+win/2]
		if at.Before(from) || at.After(to) {
			continue
		}
		var s1, s2 float64
		for i, v := range h.samples[s : s+win] {
			s1, s2 = float64(v)*hann[i]+coeff*s1-s2, s1
		}
		amp := 2 * math.Sqrt(math.Max(s1*s1+s2*s2-coeff*s1*s2, 0)) / gain
		p.at = append(p.at, at)
		p.on = append(p.on, amp > tbAmp/2)
	}
	return p
}

// span is where a tone was heard: first and last, and the silences inside.
type span struct {
	first, last time.Time
	gaps        []time.Duration
	heard       bool
}

func (p presence) span() span {
	var s span
	var off time.Time
	for i, on := range p.on {
		if !on {
			if s.heard && off.IsZero() {
				off = p.at[i]
			}
			continue
		}
		if !s.heard {
			s.first, s.heard = p.at[i], true
		}
		if !off.IsZero() {
			s.gaps = append(s.gaps, p.at[i].Sub(off)+time.Second*tbHop/tbRate)
			off = time.Time{}
		}
		s.last = p.at[i]
	}
	return s
}

func (s span) maxGap() time.Duration {
	var m time.Duration
	for _, g := range s.gaps {
		m = max(m, g)
	}
	return m
}

func (s span) String() string {
	if !s.heard {
		return "not heard"
	}
	gaps := append([]time.Duration(nil), s.gaps...)
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] > gaps[j] })
	if len(gaps) > 5 {
		gaps = gaps[:5]
	}
	return fmt.Sprintf("heard for %v, %d gaps (longest %v)", s.last.Sub(s.first).Round(time.Millisecond), len(s.gaps), gaps)
}

// tone700 is n samples of the test tone from sample k.
func tone700(k, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(tbAmp * math.Sin(2*math.Pi*tbTone*float64(k+i)/tbRate))
	}
	return out
}

// speaker is a receiver that talks back, in its protocol.
type speaker interface {
	// ready waits until mediafork's stream to it is up.
	ready(t *testing.T)
	// audio sends 20 ms of the tone (from sample k).
	audio(t *testing.T, k int)
	// mark sends a mark; clear a clear.
	mark(t *testing.T, name string)
	clear(t *testing.T)
	// answered waits for the answer to mark name and says when it came and
	// whether it said cleared (twilio's answers do not say: false).
	answered(t *testing.T, name string) (time.Time, bool)
	// endpoint is its profile endpoint (talkback_to to).
	endpoint(to string) any
}

// twilioSpeaker is a Twilio Media Streams server sending media (µ-law),
// mark and clear.
type twilioSpeaker struct {
	srv *wstest.Server
	sid string
	c   wstest.Snapshot
}

func newTwilioSpeaker(t *testing.T) *twilioSpeaker {
	return &twilioSpeaker{srv: wstest.New(t, wstest.Options{})}
}

func (s *twilioSpeaker) endpoint(to string) any {
	return map[string]any{"protocol": "twilio", "url": s.srv.URL, "talkback": true, "talkback_to": to}
}

func (s *twilioSpeaker) ready(t *testing.T) {
	cs := s.srv.Wait(t, "the twilio stream's start", waitFor, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) >= 2 })
	var m struct {
		StreamSid string `json:"streamSid"`
	}
	require.NoError(t, json.Unmarshal(cs[0].Messages[1].Data, &m))
	s.sid, s.c = m.StreamSid, cs[0]
}

func (s *twilioSpeaker) audio(t *testing.T, k int) {
	pcm := tone700(k, tbRate/50)
	b := make([]byte, len(pcm))
	for i, v := range pcm {
		b[i] = g711.LinearToULaw(v)
	}
	require.NoError(t, s.c.Send(true, []byte(`{"event":"media","streamSid":"`+s.sid+`","media":{"payload":"`+base64.StdEncoding.EncodeToString(b)+`"}}`)))
}

func (s *twilioSpeaker) mark(t *testing.T, name string) {
	require.NoError(t, s.c.Send(true, []byte(`{"event":"mark","streamSid":"`+s.sid+`","mark":{"name":"`+name+`"}}`)))
}

func (s *twilioSpeaker) clear(t *testing.T) {
	require.NoError(t, s.c.Send(true, []byte(`{"event":"clear","streamSid":"`+s.sid+`"}`)))
}

func (s *twilioSpeaker) answered(t *testing.T, name string) (time.Time, bool) {
	var at time.Time
	s.srv.Wait(t, "the answer to mark "+name, waitFor, func(cs []wstest.Snapshot) bool {
		for _, m := range cs[0].Messages {
			var msg struct {
				Event string `json:"event"`
				Mark  struct {
					Name string `json:"name"`
				} `json:"mark"`
			}
			if m.Text && json.Unmarshal(m.Data, &msg) == nil && msg.Event == "mark" && msg.Mark.Name == name {
				at = m.At
				return true
			}
		}
		return false
	})
	return at, false
}

// audioforkSpeaker is a mod_audio_fork server as jambonz's take talk-back:
// binary L16, {"type":"mark"}, {"type":"killAudio"}.
type audioforkSpeaker struct {
	srv *wstest.Server
	c   wstest.Snapshot
}

func newAudioforkSpeaker(t *testing.T) *audioforkSpeaker {
	return &audioforkSpeaker{srv: wstest.New(t, wstest.Options{Subprotocols: []string{mediafork.AudioForkSubprotocol}})}
}

func (s *audioforkSpeaker) endpoint(to string) any {
	return map[string]any{"protocol": "audiofork", "url": s.srv.URL, "talkback": true, "talkback_to": to, "directions": []string{"rx"}, "rate": 8000}
}

func (s *audioforkSpeaker) ready(t *testing.T) {
	cs := s.srv.Wait(t, "the audiofork stream's metadata", waitFor, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) >= 1 })
	s.c = cs[0]
}

func (s *audioforkSpeaker) audio(t *testing.T, k int) {
	pcm := tone700(k, tbRate/50)
	b := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		le.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	require.NoError(t, s.c.Send(false, b))
}

func (s *audioforkSpeaker) mark(t *testing.T, name string) {
	require.NoError(t, s.c.Send(true, []byte(`{"type":"mark","data":{"name":"`+name+`"}}`)))
}

func (s *audioforkSpeaker) clear(t *testing.T) {
	require.NoError(t, s.c.Send(true, []byte(`{"type":"killAudio"}`)))
}

func (s *audioforkSpeaker) answered(t *testing.T, name string) (time.Time, bool) {
	var at time.Time
	var cleared bool
	s.srv.Wait(t, "the answer to mark "+name, waitFor, func(cs []wstest.Snapshot) bool {
		for _, m := range cs[0].Messages {
			var msg struct {
				Type string `json:"type"`
				Data struct {
					Name  string `json:"name"`
					Event string `json:"event"`
				} `json:"data"`
			}
			if m.Text && json.Unmarshal(m.Data, &msg) == nil && msg.Type == "mark" && msg.Data.Name == name {
				at, cleared = m.At, msg.Data.Event == "cleared"
				return true
			}
		}
		return false
	})
	return at, cleared
}

// tlvSpeaker is a TLV receiver talking back from the socket its stream
// arrives at, to the address the stream comes from.
type tlvSpeaker struct {
	conn *net.UDPConn
	from *net.UDPAddr
	id   uint32
	seq  uint32
	dir  tlvcodec.Direction

	mu      sync.Mutex
	answers map[uint32]tlvAnswer
	changed chan struct{}
}

type tlvAnswer struct {
	at     time.Time
	status tlvcodec.MarkStatus
}

func newTLVSpeaker(t *testing.T) *tlvSpeaker {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &tlvSpeaker{conn: conn, answers: map[uint32]tlvAnswer{}, changed: make(chan struct{})}
}

func (s *tlvSpeaker) endpoint(to string) any {
	s.dir = map[string]tlvcodec.Direction{"far": tlvcodec.TX, "other": tlvcodec.RX, "both": tlvcodec.Mixed}[to]
	return map[string]any{"address": s.conn.LocalAddr().String(), "talkback": true, "talkback_to": to}
}

func (s *tlvSpeaker) ready(t *testing.T) {
	buf := make([]byte, 65536)
	s.conn.SetReadDeadline(time.Now().Add(waitFor))
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		require.NoError(t, err, "the TLV stream")
		var h tlvcodec.Header
		if h.Unmarshal(buf[:n]) == nil && h.Type == tlvcodec.TypeAudio {
			s.from, s.id = from, h.StreamID
			break
		}
	}
	s.conn.SetReadDeadline(time.Time{})
	go func() { // the answers, and the rest of the stream
		for {
			n, _, err := s.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var m tlvcodec.TalkbackMark
			if m.Unmarshal(buf[:n]) == nil && m.Status != tlvcodec.MarkPending {
				s.mu.Lock()
				s.answers[m.MarkID] = tlvAnswer{time.Now(), m.Status}
				close(s.changed)
				s.changed = make(chan struct{})
				s.mu.Unlock()
			}
		}
	}()
}

func (s *tlvSpeaker) send(t *testing.T, b []byte, err error) {
	require.NoError(t, err)
	_, err = s.conn.WriteToUDP(b, s.from)
	require.NoError(t, err)
}

type marshaler interface{ Marshal() ([]byte, error) }

func (s *tlvSpeaker) sendPacket(t *testing.T, p marshaler) {
	b, err := p.Marshal()
	s.send(t, b, err)
}

func (s *tlvSpeaker) audio(t *testing.T, k int) {
	pcm := tone700(k, tbRate/50)
	b := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		le.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	s.seq++
	s.sendPacket(t, &tlvcodec.TalkbackAudio{StreamID: s.id, Direction: s.dir, Sequence: s.seq, Payload: b})
}

func markID(name string) uint32 {
	var n uint32
	fmt.Sscanf(strings.TrimPrefix(name, "m"), "%d", &n)
	return n
}

func (s *tlvSpeaker) mark(t *testing.T, name string) {
	s.sendPacket(t, &tlvcodec.TalkbackMark{StreamID: s.id, Direction: s.dir, MarkID: markID(name)})
}

func (s *tlvSpeaker) clear(t *testing.T) {
	s.sendPacket(t, &tlvcodec.TalkbackClear{StreamID: s.id, Direction: s.dir})
}

func (s *tlvSpeaker) answered(t *testing.T, name string) (time.Time, bool) {
	id := markID(name)
	timeout := time.After(waitFor)
	for {
		s.mu.Lock()
		a, ok := s.answers[id]
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return a.at, a.status == tlvcodec.MarkCleared
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("no answer to mark %s", name)
		}
	}
}

// jambonzAddr is MEDIAFORK_TEST_ESL_JAMBONZ: a second dist install with
// jambonz's mod_audio_fork in place of drachtio's.
var jambonzAddr = os.Getenv("MEDIAFORK_TEST_ESL_JAMBONZ")

// talkbackRun is one speaker's talk-back into one party of a bridged call,
// measured.
type talkbackRun struct {
	t       *testing.T
	sw      *fsSwitch
	c       bridgedCall
	caller  *monitor // A: hears B's TX (the far end of the fork's channel)
	callee  *monitor // D: hears C's TX (the bridged party)
	sp      speaker
	to      string
	targets talkbackTargets
	late    time.Duration // the speaker's worst lateness in the last continuous()
}

// hearer and bystander are the monitors of the party that should hear the
// talk-back and of the other (with both: the caller, and the callee who hears
// it too).
func (r *talkbackRun) hearers() (hear, other *monitor, background, otherBackground float64) {
	switch r.to {
	case "other":
		return r.callee, r.caller, toneA, toneB
	}
	return r.caller, r.callee, toneB, toneA
}

// continuous sends secs of the tone in real-time 20 ms frames from now,
// then mark; it returns when the first frame left. Frame i leaves at
// t0 + i·20 ms, as a speech engine streams: a sender held up (a busy
// machine) sends what it owes at once, never stretching the speech (a
// ticker would drop the ticks it missed and send late ever after).
func (r *talkbackRun) continuous(secs float64, mark string) time.Time {
	t := r.t
	frames := int(secs * 50)
	t0 := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	r.late = 0
	for i := 0; i < frames; i++ {
		due := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			<-timer.C
		}
		// This process's own lateness (a busy host): audio that left the
		// speaker late leaves the switch's buffer short, and what the
		// caller then misses is the host's, not mediafork's.
		r.late = max(r.late, time.Since(due))
		r.sp.audio(t, i*tbRate/50)
	}
	if mark != "" {
		r.sp.mark(t, mark)
	}
	return t0
}

// hostStall: the speaker this late means the host did not give the test
// real time (talkback).
const hostStall = 60 * time.Millisecond

// talkbackSwitch is a switch to test talk-back on, with its module setting.
type talkbackSwitch struct {
	name, addr, module string
	targets            talkbackTargets
}

// talkbackSwitches are the paths: the stock modules (files and displace) on
// MEDIAFORK_TEST_ESL, jambonz's module (streamed) on
// MEDIAFORK_TEST_ESL_JAMBONZ (CI runs both).
func talkbackSwitches(t *testing.T) []talkbackSwitch {
	out := []talkbackSwitch{{"stock", eslAddr, "audio_fork", stockTargets}}
	if jambonzAddr != "" {
		out = append(out, talkbackSwitch{"jambonz", jambonzAddr, "auto", streamTargets})
	} else if os.Getenv("CI") == "true" {
		t.Error("CI=true and MEDIAFORK_TEST_ESL_JAMBONZ is not set: CI tests talk-back on jambonz's mod_audio_fork too (see .ci/run)")
	} else {
		t.Log("jambonz's path skipped: set MEDIAFORK_TEST_ESL_JAMBONZ=host:port of a dist install with its mod_audio_fork (see captures/talkback/README.md)")
	}
	return out
}

// TestRealSwitchTalkback is issue 22's "done when": on each path, a Twilio,
// a mod_audio_fork and a TLV receiver each play a 700 Hz tone into one party
// of a bridged call, measured at a monitor fork on each party: heard by the
// chosen party only (talkback_to both: by each, whole), first heard within the path's bound, 10 s of
// real-time 20 ms frames heard whole (length within 5 %, no silence inside
// longer than the bound), the other direction uninterrupted, the mark
// answered after its audio was heard; then a clear silences a second burst
// within the bound and its mark is answered at once.
func TestRealSwitchTalkback(t *testing.T) {
	for _, sw := range talkbackSwitches(t) {
		for _, proto := range []string{"twilio", "audiofork", "tlv"} {
			for _, to := range []string{"far", "other", "both"} {
				if to == "both" && proto == "audiofork" {
					continue // both: one stream protocol and TLV's own direction (mixed) are enough
				}
				t.Run(sw.name+"/"+proto+"/"+to, func(t *testing.T) { talkback(t, sw, proto, to) })
			}
		}
	}
}

func newSpeaker(t *testing.T, proto string) speaker {
	switch proto {
	case "twilio":
		return newTwilioSpeaker(t)
	case "audiofork":
		return newAudioforkSpeaker(t)
	}
	return newTLVSpeaker(t)
}

func talkback(t *testing.T, ts talkbackSwitch, proto, to string) {
	sw := useSwitchAt(t, ts.addr)
	sp := newSpeaker(t, proto)
	cfg := baseConfigAt(ts.addr, ts.module)
	cfg["profiles"] = map[string]any{"rs-tb": map[string]any{"endpoints": []any{sp.endpoint(to)}}}
	cfg["rules"] = []any{ruleFor(sw, "9400", map[string]any{"profile": "rs-tb"})}
	d := startDaemon(t, cfg)
	c := sw.OriginateBridged()
	r := &talkbackRun{t: t, sw: sw, c: c, sp: sp, to: to, targets: ts.targets}
	r.caller = sw.Monitor("the caller", c.A)
	r.callee = sw.Monitor("the callee", c.D)
	sp.ready(t)
	hear, other, bg, otherBg := r.hearers()

	// 10 s of continuous tone in real-time 20 ms frames, then a mark.
	t0 := r.continuous(10, "m1")
	sent := time.Now()
	m1, cleared := sp.answered(t, "m1")
	assert.False(t, cleared, "m1 was played")
	hear.WaitUntil(t, m1.Add(monitorLatency+200*time.Millisecond))
	other.WaitUntil(t, m1.Add(monitorLatency+200*time.Millisecond))
	h := hear.heard()
	tone := h.presence(tbTone, t0, m1.Add(monitorLatency+200*time.Millisecond)).span()
	t.Logf("%s %s %s: %s %s; first heard %v after it reached mediafork; mark m1 answered %v after the last 700 Hz heard (%v after the last frame was sent); the speaker at worst %v late",
		ts.name, proto, to, hear.name, tone, tone.first.Sub(t0).Round(time.Millisecond), m1.Sub(tone.last).Round(time.Millisecond), m1.Sub(sent).Round(time.Millisecond), r.late.Round(time.Millisecond))
	require.True(t, tone.heard, "the %s heard no 700 Hz", hear.name)
	length := tone.last.Sub(tone.first) + 20*time.Millisecond
	bgSpan := h.presence(bg, t0, tone.last).span()
	otherSpan := other.heard().presence(otherBg, t0, tone.last).span()
	// The timing targets are judged when the host gave this process real
	// time: the speaker at most hostStall late (1-50 ms on a quiet host,
	// or one with the suite beside it). A host that stalls this process
	// longer stalls mediafork and FreeSWITCH alike (with two CPU hogs and
	// other suites: the speaker up to 1.6 s late, a 262 ms silence with it
	// 361 ms late), and the module's 160 ms prebuffer covers no more:
	// what the parties heard is then logged, not judged. Who heard it,
	// the marks and the clear are judged always.
	if r.late <= hostStall {
		assert.LessOrEqual(t, tone.first.Sub(t0), ts.targets.firstHeard, "first heard")
		assert.InDelta(t, 10.0, length.Seconds(), 0.5, "heard for %v: 10 s within 5 %%", length)
		assert.LessOrEqual(t, tone.maxGap(), ts.targets.maxGap, "silences inside: %v", tone.gaps)
		assert.LessOrEqual(t, bgSpan.maxGap(), 40*time.Millisecond, "the %s's own %v Hz was interrupted: %v", hear.name, bg, bgSpan)
		assert.LessOrEqual(t, otherSpan.maxGap(), 40*time.Millisecond, "the %s's %v Hz was interrupted: %v", other.name, otherBg, otherSpan)
	} else {
		t.Logf("the host stalled this process up to %v (over %v): first heard, length and silences not judged this run", r.late.Round(time.Millisecond), hostStall)
	}
	assert.True(t, m1.After(tone.last.Add(-monitorLatency)), "m1 answered %v before its last audio reached the monitor", tone.last.Sub(m1))
	// Only the chosen party heard it; with both, the other heard it whole too.
	otherTone := other.heard().presence(tbTone, t0, m1.Add(monitorLatency+200*time.Millisecond)).span()
	if to != "both" {
		assert.False(t, otherTone.heard, "the %s heard the talk-back too", other.name)
	} else {
		t.Logf("%s %s both: %s %s", ts.name, proto, other.name, otherTone)
		require.True(t, otherTone.heard, "talkback_to both: the %s heard no 700 Hz", other.name)
		if r.late <= hostStall {
			otherLength := otherTone.last.Sub(otherTone.first) + 20*time.Millisecond
			assert.InDelta(t, 10.0, otherLength.Seconds(), 0.5, "the %s heard it for %v: 10 s within 5 %%", other.name, otherLength)
			assert.LessOrEqual(t, otherTone.maxGap(), ts.targets.maxGap, "silences inside, at the %s: %v", other.name, otherTone.gaps)
		}
	}

	// A burst of 6 s sent 20 times faster than real time (a TLV receiver's
	// datagrams a millisecond apart: a socket's buffer holds about a hundred),
	// a mark after it, and a clear 2 s in.
	t1 := time.Now()
	for i := 0; i < 300; i++ {
		sp.audio(t, i*tbRate/50)
		if i%10 == 9 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	sp.mark(t, "m2")
	hear.WaitUntil(t, t1.Add(2*time.Second))
	tc := time.Now()
	sp.clear(t)
	m2, cleared2 := sp.answered(t, "m2")
	hear.WaitUntil(t, tc.Add(1500*time.Millisecond))
	burst := hear.heard().presence(tbTone, t1, tc.Add(1500*time.Millisecond)).span()
	t.Logf("%s %s %s: burst %s; silent %v after the clear; m2 answered %v after it (cleared: %v)",
		ts.name, proto, to, burst, burst.last.Sub(tc).Round(time.Millisecond), m2.Sub(tc).Round(time.Millisecond), cleared2)
	require.True(t, burst.heard, "the burst was not heard")
	if to == "both" {
		other.WaitUntil(t, tc.Add(1500*time.Millisecond))
		otherBurst := other.heard().presence(tbTone, t1, tc.Add(1500*time.Millisecond)).span()
		require.True(t, otherBurst.heard, "the %s did not hear the burst", other.name)
		assert.LessOrEqual(t, otherBurst.last.Sub(tc), ts.targets.clearIn+monitorLatency, "the %s heard it after the clear", other.name)
	}
	assert.LessOrEqual(t, burst.last.Sub(tc), ts.targets.clearIn+monitorLatency, "heard after the clear")
	assert.Less(t, m2.Sub(tc), time.Second, "m2 answered at the clear")
	if proto != "twilio" {
		assert.True(t, cleared2, "m2 answered cleared")
	}
	dumpTalkbackLog(t, d)
	// Its talk-back is reported, and a line says who spoke.
	d.WaitLog("talk-back started", msg("talk-back started", "uuid", c.B))
}

// dumpTalkbackLog writes the daemon's talk-back lines to the test log when
// MEDIAFORK_TEST_TALKBACK_LOG is set (measuring).
func dumpTalkbackLog(t *testing.T, d *daemon) {
	if os.Getenv("MEDIAFORK_TEST_TALKBACK_LOG") == "" {
		return
	}
	for _, l := range strings.Split(d.Log.text(), "\n") {
		if strings.Contains(l, "talk-back") {
			t.Log(l)
		}
	}
}
