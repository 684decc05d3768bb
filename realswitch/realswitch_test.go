package realswitch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/g711"
	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/third_party/eslgo"
	"github.com/mediafork/mediafork/tlvcodec"

	"github.com/mediafork/mediafork/internal/tone"
)

// packets is how much audio a test waits for per direction before it looks
// at the tones: 0.6 s, enough for 100 ms skipped and 400 ms analysed.
const packets = 30

// ruleFor is a rule forking the B leg of this test's calls to extension ext.
func ruleFor(sw *fsSwitch, ext string, fork map[string]any) map[string]any {
	r := map[string]any{
		"name":  "rs-" + ext,
		"match": map[string]any{"variable_rs_tag": "^" + sw.tag + "$", "Channel-Name": "^loopback/" + ext + "-b$"},
	}
	for k, v := range fork {
		r[k] = v
	}
	return r
}

// assertLoopbackSignaling checks the metadata of a rule fork on the B leg of
// a call to ext (the defaults: channel name, destination, caller id).
func assertLoopbackSignaling(t *testing.T, s stream, ext string) {
	t.Helper()
	require.NotNil(t, s.Sig, "stream %d %s: no signaling", s.ID, s.Dir)
	assert.Equal(t, "loopback/"+ext+"-b", s.Sig.ChannelID)
	assert.Equal(t, ext, s.Sig.Exten)
	assert.Equal(t, "0000000000", s.Sig.CallerID)
	assert.Equal(t, ext, s.Sig.CalledID)
}

// assertFormat checks a direction's format packet (20 ms frames, or as given).
func assertFormat(t *testing.T, s stream, encoding uint8, rate uint32, frameMs ...uint16) {
	t.Helper()
	require.NotNil(t, s.Format, "stream %d %s: no format packet", s.ID, s.Dir)
	ms := uint16(20)
	if len(frameMs) > 0 {
		ms = frameMs[0]
	}
	assert.Equal(t, tlvcodec.Format{StreamID: s.ID, Direction: s.Dir, Encoding: encoding, SampleRate: rate, Channels: 1, FrameMs: ms}, *s.Format,
		"stream %d %s", s.ID, s.Dir)
}

// assertEnded checks that every direction ended with reason.
func assertEnded(t *testing.T, ss []stream, reason tlvcodec.EndReason) {
	t.Helper()
	for _, s := range ss {
		if assert.NotNil(t, s.End, "stream %d %s: no end packet", s.ID, s.Dir) {
			assert.Equal(t, reason, s.End.Reason, "stream %d %s", s.ID, s.Dir)
		}
		AssertClean(t, s)
	}
}

// assertBLegAudio checks a stereo l16 8 kHz fork of a call's B leg: one
// stream, RX then TX, with the far end's 1000 Hz in RX and the B leg's own
// 440 Hz in TX.
func assertBLegAudio(t *testing.T, ss []stream, ext string) {
	t.Helper()
	require.Len(t, ss, 2, describe(ss))
	assert.Equal(t, ss[0].ID, ss[1].ID, "one stream id for both directions")
	assert.NotZero(t, ss[0].ID)
	rx, tx := byDir(t, ss, tlvcodec.RX), byDir(t, ss, tlvcodec.TX)
	for _, s := range []stream{rx, tx} {
		assertLoopbackSignaling(t, s, ext)
		assertFormat(t, s, 1, 8000)
		AssertClean(t, s)
	}
	AssertTones(t, rx, toneA)
	AssertTones(t, tx, toneB)
}

// TestRealSwitchRuleFork forks a call by a rule on each media module: the
// module configured (audio_fork, audio_stream) or found (auto, which
// prefers mod_audio_fork) is the one mediafork drives, and the B leg's two
// directions arrive with their tones until the hangup ends them.
func TestRealSwitchRuleFork(t *testing.T) {
	for _, tc := range []struct{ module, api, connected string }{
		{"audio_fork", "uuid_audio_fork", "mod_audio_fork::connect"},
		{"audio_stream", "uuid_audio_stream", "mod_audio_stream::connect"},
		{"auto", "uuid_audio_fork", "mod_audio_fork::connect"},
	} {
		t.Run(tc.module, func(t *testing.T) {
			sw := useSwitch(t)
			rcv := listenUDP(t, "127.0.0.1:0")
			cfg := baseConfig(tc.module)
			cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"to": []string{rcv.Addr()}})}
			d := startDaemon(t, cfg)

			c := sw.Originate("9000")
			ss := rcv.WaitAudio(2, packets)
			assertBLegAudio(t, ss, "9000")

			// The switch ran the module's command with mediafork's signed URL.
			start := sw.WaitEvent(tc.api+" start", apiEvent(tc.api, c.B+" start "))
			arg := start.GetHeader("API-Command-Argument")
			assert.Contains(t, arg, fmt.Sprintf(" start ws://%s/fork/%s?cred=", d.Ingest, c.B))
			assert.Regexp(t, ` stereo 8000 `, arg)
			sw.WaitEvent(tc.connected, customEvent(tc.connected, c.B))
			assert.Empty(t, sw.Events(apiEvent(otherModuleAPI(tc.api), c.B)), "the other module was driven")
			// The stream is named on the channel, for CDRs.
			sw.WaitEvent("uuid_setvar mediafork_stream_id", apiEvent("uuid_setvar", fmt.Sprintf("%s mediafork_stream_id %d", c.B, ss[0].ID)))
			assert.Equal(t, fmt.Sprint(ss[0].ID), strings.TrimSpace(sw.API("uuid_getvar "+c.B+" mediafork_stream_id")))

			sw.Kill(c)
			assertEnded(t, rcv.WaitEnds(2), tlvcodec.ReasonHangup)
			d.WaitLog("fork ended", msg("fork ended", "uuid", c.B, "reason", "hangup"))
		})
	}
}

func otherModuleAPI(api string) string {
	if api == "uuid_audio_fork" {
		return "uuid_audio_stream"
	}
	return "uuid_audio_fork"
}

// TestRealSwitchSocketApp runs extension 9102, ForkStream's step in a
// dialplan: `set mediafork=127.0.0.1:19010,OB-CHANNEL,9102,+111,+222`,
// `socket 127.0.0.1:8084 async full`, then a 440 Hz tone. The arguments reach
// the signaling packets, and the dialplan goes on after the socket: the tone
// after it plays, in the fork's TX.
func TestRealSwitchSocketApp(t *testing.T) {
	sw := useSwitch(t)
	// Both addresses are the dist dialplan's.
	rcv := listenUDP(t, "127.0.0.1:19010")
	cfg := baseConfig("auto")
	cfg["outbound"] = map[string]any{"listen": "127.0.0.1:8084"}
	d := startDaemon(t, cfg)

	c := sw.Originate("9102")
	ss := rcv.WaitAudio(2, packets)
	require.Len(t, ss, 2, describe(ss))
	rx, tx := byDir(t, ss, tlvcodec.RX), byDir(t, ss, tlvcodec.TX)
	for _, s := range []stream{rx, tx} {
		require.NotNil(t, s.Sig)
		assert.Equal(t, tlvcodec.Signaling{StreamID: s.ID, Direction: s.Dir, ChannelID: "OB-CHANNEL", Exten: "9102",
			CallerID: "+111", CalledID: "+222", Timestamp: s.Sig.Timestamp}, *s.Sig)
		assertFormat(t, s, 1, 8000)
		AssertClean(t, s)
	}
	AssertTones(t, rx, toneA)
	AssertTones(t, tx, toneB) // played by the step after the socket

	// The switch asked mediafork's outbound listener, which resumed the
	// dialplan: the socket ended and the playback after it began.
	socket := sw.WaitEvent("socket on B", func(e *eslgo.Event) bool {
		return e.GetName() == "CHANNEL_EXECUTE" && e.GetHeader("Unique-ID") == c.B && e.GetHeader("Application") == "socket"
	})
	playback := sw.WaitEvent("the playback after the socket", func(e *eslgo.Event) bool {
		return e.GetName() == "CHANNEL_EXECUTE" && e.GetHeader("Unique-ID") == c.B && e.GetHeader("Application") == "playback"
	})
	assert.Greater(t, sequence(playback), sequence(socket), "the playback runs after the socket")
	d.WaitLog("the socket fork", msg("fork streaming", "uuid", c.B, "channel_id", "OB-CHANNEL"))

	sw.Kill(c)
	assertEnded(t, rcv.WaitEnds(2), tlvcodec.ReasonHangup)
}

// TestRealSwitchFsCli drives mediafork from fs_cli through the alias it
// installs: start with a profile, status (all, one), stop, status of a call
// without a fork, start with a host:port; answers come in the FreeSWITCH log.
func TestRealSwitchFsCli(t *testing.T) {
	sw := useSwitch(t)
	byProfile, byAddr := listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0")
	cfg := baseConfig("auto")
	cfg["profiles"] = map[string]any{"rs-profile": map[string]any{"endpoints": []string{byProfile.Addr()}}}
	d := startDaemon(t, cfg)
	c := sw.Originate("9000")

	typed := sw.TypeMediafork("start " + c.B + " rs-profile")
	sw.WaitLogAfter(typed, "^NOTICE mediafork: fork "+c.B+" requested$")
	started := sw.WaitLogAfter(typed, "^NOTICE mediafork: fork "+c.B+" started, stream [0-9]+, 1 endpoint\\(s\\)$")
	ss := byProfile.WaitAudio(2, packets)
	assertBLegAudio(t, ss, "9000")
	assert.Equal(t, fmt.Sprintf("NOTICE mediafork: fork %s started, stream %d, 1 endpoint(s)", c.B, ss[0].ID), started)

	forkLine := fmt.Sprintf("^NOTICE mediafork: %s stream %d streaming stereo/8000/l16 frames_in=[1-9][0-9]* packets_out=[1-9][0-9]* drops=0 endpoints=%s$",
		c.B, ss[0].ID, regexp.QuoteMeta(byProfile.Addr()))
	typed = sw.TypeMediafork("status")
	sw.WaitLogAfter(typed, "^NOTICE mediafork: 1 fork\\(s\\) live$")
	sw.WaitLogAfter(typed, forkLine)
	typed = sw.TypeMediafork("status " + c.B)
	sw.WaitLogAfter(typed, "^NOTICE mediafork: 1 fork\\(s\\) live$")
	sw.WaitLogAfter(typed, forkLine)

	typed = sw.TypeMediafork("stop " + c.B)
	sw.WaitLogAfter(typed, "^NOTICE mediafork: fork "+c.B+" stopped$")
	assertEnded(t, byProfile.WaitEnds(2), tlvcodec.ReasonStopped)
	sw.WaitEvent("uuid_audio_fork stop", apiEvent("uuid_audio_fork", c.B+" stop mediafork"))
	typed = sw.TypeMediafork("status " + c.B)
	sw.WaitLogAfter(typed, "^NOTICE mediafork: no fork on "+c.B+"$")

	// Again, to an address typed on the line.
	typed = sw.TypeMediafork("start " + c.B + " " + byAddr.Addr())
	sw.WaitLogAfter(typed, "^NOTICE mediafork: fork "+c.B+" started, stream [0-9]+, 1 endpoint\\(s\\)$")
	ss = byAddr.WaitAudio(2, packets)
	assertBLegAudio(t, ss, "9000")
	assert.Len(t, d.Lines(msg("fork streaming", "uuid", c.B)), 2)

	sw.Kill(c)
	assertEnded(t, byAddr.WaitEnds(2), tlvcodec.ReasonHangup)
}

// TestRealSwitchHandTyped forks a call with each module's own command, typed
// by hand at the ingest (destination in the URL query), and stops it the same
// way: the module's close ends the stream normally.
func TestRealSwitchHandTyped(t *testing.T) {
	for _, api := range []string{"uuid_audio_fork", "uuid_audio_stream"} {
		t.Run(api, func(t *testing.T) {
			sw := useSwitch(t)
			rcv := listenUDP(t, "127.0.0.1:0")
			d := startDaemon(t, baseConfig("auto"))
			c := sw.Originate("9000")

			out := sw.API(fmt.Sprintf("%s %s start ws://%s/fork/%s?to=%s stereo 8k", api, c.B, d.Ingest, c.B, rcv.Addr()))
			assert.Equal(t, "+OK Success", strings.TrimSpace(out))
			ss := rcv.WaitAudio(2, packets)
			assertBLegAudio(t, ss, "9000") // metadata from uuid_dump
			d.WaitLog("the fork", msg("fork streaming", "uuid", c.B, "bug", ""))

			out = sw.API(fmt.Sprintf("%s %s stop", api, c.B))
			assert.Equal(t, "+OK Success", strings.TrimSpace(out))
			assertEnded(t, rcv.WaitEnds(2), tlvcodec.ReasonHangup)
			d.WaitLog("the end", msg("fork ended", "uuid", c.B, "reason", "hangup"))
		})
	}
}

// TestRealSwitchTLS forks over wss:// on each module, with a certificate made
// for the test: without what the module needs to trust it the module refuses
// to connect, with it the audio flows as over ws://.
func TestRealSwitchTLS(t *testing.T) {
	for _, tc := range []struct {
		module, api, refused string
		trust                func(certFile string) string
	}{
		{"audio_fork", "uuid_audio_fork", "mod_audio_fork::connect_failed",
			func(string) string { return "MOD_AUDIO_FORK_ALLOW_SELFSIGNED=true" }},
		{"audio_stream", "uuid_audio_stream", "mod_audio_stream::error",
			func(certFile string) string { return "STREAM_TLS_CA_FILE=" + certFile }},
	} {
		t.Run(tc.module, func(t *testing.T) {
			sw := useSwitch(t)
			rcv := listenUDP(t, "127.0.0.1:0")
			certFile, keyFile := selfSigned(t)
			cfg := baseConfig(tc.module)
			cfg["ingest"] = map[string]any{"tls": map[string]any{"cert_file": certFile, "key_file": keyFile}}
			cfg["fork"] = map[string]any{"retry": map[string]any{"attempts": 0}}
			cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"to": []string{rcv.Addr()}})}
			d := startDaemon(t, cfg)

			// Not trusted: the module refuses the certificate.
			untrusted := sw.Originate("9000")
			e := sw.WaitEvent(tc.refused, customEvent(tc.refused, untrusted.B))
			t.Logf("%s: %s", tc.refused, e.Body)
			d.WaitLog("the fork given up", msg("fork given up", "uuid", untrusted.B))

			c := sw.Originate("9000", tc.trust(certFile))
			ss := rcv.WaitAudio(2, packets)
			assertBLegAudio(t, ss, "9000")
			start := sw.WaitEvent(tc.api+" start", apiEvent(tc.api, c.B+" start "))
			assert.Contains(t, start.GetHeader("API-Command-Argument"), fmt.Sprintf(" start wss://%s/fork/%s?cred=", d.Ingest, c.B))
			// The epoll reader decrypted its records (transport/tlsrecord),
			// with the suite OpenSSL 3 and crypto/tls agree on.
			fast := d.WaitLog("the epoll reader's wss://", msg("wss:// on the epoll reader: its records decrypted there", "uuid", c.B))
			t.Logf("%s: %s %s", tc.module, fast.Str("tls"), fast.Str("suite"))
			assert.Equal(t, "TLS 1.3", fast.Str("tls"))
			assert.Empty(t, d.Lines(func(l logLine) bool {
				return strings.HasPrefix(l.Str("msg"), "a wss:// connection is served by crypto/tls and the goroutine reader")
			}), "no wss:// connection left to crypto/tls")

			sw.Kill(c)
			assertEnded(t, rcv.WaitEnds(2), tlvcodec.ReasonHangup)
		})
	}
}

// TestRealSwitchESLCut cuts mediafork's event socket mid-call and keeps it
// down while the switch goes on: the fork streams on (media never depends on
// ESL) and ends by itself at the hangup; a call answered meanwhile is forked by
// the resync once mediafork is back.
func TestRealSwitchESLCut(t *testing.T) {
	sw := useSwitch(t)
	before, during := listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0")
	proxy := startProxy(t, eslAddr)
	cfg := baseConfig("auto")
	cfg["freeswitch"] = []any{switchEntry(proxy.Addr(), "auto")}
	cfg["rules"] = []any{
		ruleFor(sw, "9000", map[string]any{"to": []string{before.Addr()}}),
		ruleFor(sw, "9200", map[string]any{"to": []string{during.Addr()}}),
	}
	d := startDaemon(t, cfg)
	first := sw.Originate("9000")
	got := before.WaitAudio(2, packets)

	mark := d.Log.Mark()
	proxy.Cut()
	d.WaitLogSince(mark, "the lost connection", msg("lost the connection to FreeSWITCH"))
	proxy.WaitRefused(1) // mediafork tried again, and is still out
	// The fork streams on.
	before.Wait("audio after the cut", func(ss []stream) bool {
		return len(ss) == 2 && ss[0].Audio >= got[0].Audio+packets && ss[1].Audio >= got[1].Audio+packets
	})
	// A call answered now is not seen; one hung up now ends its fork anyway.
	second := sw.Originate("9200")
	sw.Kill(first)
	assertEnded(t, before.WaitEnds(2), tlvcodec.ReasonHangup)
	assertBLegAudio(t, before.Streams(), "9000")
	assert.Empty(t, during.Streams(), "forked while mediafork was cut off")

	proxy.Restore()
	d.WaitLogSince(mark, "the reconnection", msg("connected to FreeSWITCH"))
	resync := d.WaitLogSince(mark, "the resync", msg("resync done"))
	assert.Equal(t, "1", resync.Str("forked"), "the resync forks the call answered meanwhile")
	d.WaitLogSince(mark, "the call answered meanwhile forked", msg("fork streaming", "uuid", second.B))
	assertBLegAudio(t, during.WaitAudio(2, packets), "9200")

	sw.Kill(second)
	assertEnded(t, during.WaitEnds(2), tlvcodec.ReasonHangup)
	assert.Len(t, d.Lines(msg("connected to FreeSWITCH")), 2, "one reconnection")
}

// formatsProfile is a profile of one 16 kHz stereo bug feeding endpoints in
// their own formats.
type formatsProfile struct {
	rx16, mulaw, mixed, alaw *receiver // nil: not in the profile
}

func (p formatsProfile) config() map[string]any {
	var eps []any
	if p.rx16 != nil { // 16 kHz l16, RX only
		eps = append(eps, map[string]any{"address": p.rx16.Addr(), "directions": []string{"rx"}})
	}
	if p.mulaw != nil { // 8 kHz G.711 µ-law both ways
		eps = append(eps, map[string]any{"address": p.mulaw.Addr(), "encoding": "pcmu", "rate": 8000})
	}
	if p.mixed != nil { // 8 kHz big-endian l16 mixed, made from the stereo
		eps = append(eps, map[string]any{"address": p.mixed.Addr(), "directions": []string{"mixed"}, "encoding": "l16be", "rate": 8000})
	}
	if p.alaw != nil { // 8 kHz A-law TX in 40 ms frames
		eps = append(eps, map[string]any{"address": p.alaw.Addr(), "directions": []string{"tx"}, "encoding": "pcma", "rate": 8000, "frame_ms": 40})
	}
	return map[string]any{"mix": "stereo", "rate": 16000, "endpoints": eps}
}

// check waits for every endpoint's audio and checks its format, its stream
// id (one per endpoint), its packet sizes and its tones.
func (p formatsProfile) check(t *testing.T) {
	t.Helper()
	ids := map[uint32]string{}
	got := func(name string, r *receiver, n int) []stream {
		ss := r.WaitAudio(n, packets)
		require.Len(t, ss, n, "%s: %s", name, describe(ss))
		for _, s := range ss {
			assert.Equal(t, ss[0].ID, s.ID, "%s: one stream id", name)
			assertLoopbackSignaling(t, s, "9000")
			AssertClean(t, s)
		}
		if other, dup := ids[ss[0].ID]; dup {
			t.Errorf("%s has the stream id of %s", name, other)
		}
		ids[ss[0].ID] = name
		return ss
	}
	if p.rx16 != nil {
		ss := got("rx16", p.rx16, 1)
		assertFormat(t, byDir(t, ss, tlvcodec.RX), 1, 16000)
		AssertTones(t, byDir(t, ss, tlvcodec.RX), toneA)
		assert.Equal(t, []int{640}, ss[0].Sizes)
	}
	if p.mulaw != nil {
		ss := got("mulaw", p.mulaw, 2)
		for _, s := range ss {
			assertFormat(t, s, 3, 8000)
			assert.Equal(t, []int{160}, s.Sizes)
		}
		AssertTones(t, byDir(t, ss, tlvcodec.RX), toneA)
		AssertTones(t, byDir(t, ss, tlvcodec.TX), toneB)
	}
	if p.mixed != nil {
		ss := got("mixed", p.mixed, 1)
		assertFormat(t, byDir(t, ss, tlvcodec.Mixed), 2, 8000)
		AssertTones(t, byDir(t, ss, tlvcodec.Mixed), toneA, toneB)
		assert.Equal(t, []int{320}, ss[0].Sizes)
	}
	if p.alaw != nil {
		ss := got("alaw", p.alaw, 1)
		assertFormat(t, byDir(t, ss, tlvcodec.TX), 4, 8000, 40)
		AssertTones(t, byDir(t, ss, tlvcodec.TX), toneB)
		assert.Equal(t, []int{320}, ss[0].Sizes)
	}
}

func (p formatsProfile) receivers() []*receiver {
	var out []*receiver
	for _, r := range []*receiver{p.rx16, p.mulaw, p.mixed, p.alaw} {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// TestRealSwitchEndpointFormats feeds one 16 kHz stereo bug to the endpoints
// of a profile, each in its own format: 16 kHz l16 RX only, 8 kHz G.711
// µ-law both ways, 8 kHz big-endian l16 mixed (made from the stereo), 8 kHz
// A-law TX in 40 ms frames. On mod_audio_stream: mod_audio_fork cannot take
// the URL of such a fork (TestRealSwitchLongForkURL).
func TestRealSwitchEndpointFormats(t *testing.T) {
	sw := useSwitch(t)
	p := formatsProfile{listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0")}
	cfg := baseConfig("audio_stream")
	cfg["profiles"] = map[string]any{"rs-formats": p.config()}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-formats"})}
	d := startDaemon(t, cfg)
	c := sw.Originate("9000")
	p.check(t)

	// One bug for all of them, at 16 kHz.
	sw.WaitEvent("uuid_audio_stream start", apiEvent("uuid_audio_stream", c.B+" start "))
	starts := sw.Events(apiEvent("uuid_audio_stream", c.B+" start "))
	require.Len(t, starts, 1)
	assert.Contains(t, starts[0].GetHeader("API-Command-Argument"), " stereo 16000 ")
	d.WaitLog("the fork's outputs", msg("fork streaming", "uuid", c.B, "outputs", "4"))

	sw.Kill(c)
	for _, r := range p.receivers() {
		assertEnded(t, r.WaitEnds(len(r.Streams())), tlvcodec.ReasonHangup)
	}
}

// TestRealSwitchLongForkURL: mod_audio_fork crashes FreeSWITCH 1.10.12 on a
// fork URL of about 710 bytes or more (a stack overflow parsing it). A fork's
// URL carries only its credential's token; its description, which grows with
// its endpoints, travels in the metadata the module sends as its first text
// frame. A fork of 4 TLV and 2 RTP endpoints, with metadata as long as the
// signaling packet holds and full of what FreeSWITCH's argument splitter
// rewrites (spaces, quotes, backslashes), streams on mod_audio_fork — its
// metadata alone is longer than a URL the module survives, and mediafork
// refused such forks when the description was in the URL — and every
// endpoint gets its tones, the TLV ones the metadata exactly. An ingest.url
// of absurd length still crosses the bound: that fork is refused before
// anything is sent, and the switch and the call stay up.
func TestRealSwitchLongForkURL(t *testing.T) {
	sw := useSwitch(t)
	tlvs := make([]*receiver, 4)
	var endpoints []any
	for i := range tlvs {
		tlvs[i] = listenUDP(t, "127.0.0.1:0")
		endpoints = append(endpoints, tlvs[i].Addr())
	}
	var rtps [][]*net.UDPConn // RTP RX, RTCP RX, RTP TX, RTCP TX
	for range 2 {
		base, socks := rtptest.Listen(t, 2)
		rtps = append(rtps, socks)
		endpoints = append(endpoints, map[string]any{"address": base.String(), "protocol": "rtp", "encoding": "pcmu"})
	}
	// Each field as long as the signaling packet holds (63, 31, 31, 31 bytes).
	fill := func(s string, n int) string { return s + strings.Repeat("-", n-len(s)) }
	meta := map[string]string{
		"channel_id": fill(`loopback/9000-b O'Brien's "desk" \ line: ñ 名 'x'`, 63),
		"exten":      fill(`9000 \n \" \\ \u0020`, 31),
		"caller_id":  fill(`'Bob' "Smith" <1000> & {co}`, 31),
		"called_id":  fill(`[9000] it's   spaced`, 31),
	}
	cfg := baseConfig("audio_fork")
	cfg["profiles"] = map[string]any{"rs-six": map[string]any{"endpoints": endpoints}}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-six", "metadata": meta})}
	d := startDaemon(t, cfg)
	c := sw.Originate("9000")

	start := sw.WaitEvent("uuid_audio_fork start", apiEvent("uuid_audio_fork", c.B+" start "))
	args := strings.SplitN(start.GetHeader("API-Command-Argument"), " ", 7) // uuid start url mix rate bug metadata
	require.Len(t, args, 7)
	url, frame := args[2], args[6]
	assert.Less(t, len(url), 400, "the URL is the token's: %s", url)
	assert.NotContains(t, frame, " ")
	var sent map[string]string
	require.NoError(t, json.Unmarshal([]byte(frame), &sent), frame)
	assert.Greater(t, len(sent["mediafork"]), 710, "the description alone is longer than a URL the module survives")
	t.Logf("fork URL %d bytes, metadata %d bytes (description %d)", len(url), len(frame), len(sent["mediafork"]))
	for k, v := range meta {
		assert.Equal(t, v, sent[k], "the metadata frame's %s, for anyone reading it", k)
	}
	d.WaitLog("the fork streaming", msg("fork streaming", "uuid", c.B))

	for _, r := range tlvs {
		ss := r.WaitAudio(2, packets)
		require.Len(t, ss, 2, describe(ss))
		rx, tx := byDir(t, ss, tlvcodec.RX), byDir(t, ss, tlvcodec.TX)
		for _, s := range []stream{rx, tx} {
			require.NotNil(t, s.Sig)
			assert.Equal(t, meta["channel_id"], s.Sig.ChannelID)
			assert.Equal(t, meta["exten"], s.Sig.Exten)
			assert.Equal(t, meta["caller_id"], s.Sig.CallerID)
			assert.Equal(t, meta["called_id"], s.Sig.CalledID)
			assertFormat(t, s, 1, 8000)
		}
		AssertTones(t, rx, toneA)
		AssertTones(t, tx, toneB)
	}
	for _, socks := range rtps {
		for _, tc := range []struct {
			conn *net.UDPConn
			hz   float64
		}{{socks[0], toneA}, {socks[2], toneB}} {
			x := readPCMU(t, tc.conn, 25)
			share := tone.Share(x[800:], 8000, tc.hz)
			assert.Greater(t, share, 0.9, "RTP %s: %.0f Hz is %.0f%% of the energy", tc.conn.LocalAddr(), tc.hz, 100*share)
		}
	}
	drainAll(rtps)
	sw.Kill(c)
	for _, r := range tlvs {
		assertEnded(t, r.WaitEnds(2), tlvcodec.ReasonHangup)
	}
	d.Signal(syscall.SIGTERM)
	require.NoError(t, d.Wait())

	// ingest.url of absurd length: the guard refuses, nothing is sent.
	cfg["ingest"] = map[string]any{"url_path": "/" + strings.Repeat("p", 500)}
	d = startDaemon(t, cfg)
	c = sw.Originate("9000")
	refused := d.WaitLog("the refusal", msg("fork start failed", "uuid", c.B))
	assert.Regexp(t, `^fork URL of [0-9]+ bytes is over the 690 that audio_fork takes: ingest.url \([0-9]+ bytes\) is too long$`, refused.Str("error"))
	assert.Empty(t, sw.Events(apiEvent("uuid_audio_fork", c.B)), "nothing sent to the module")
	assert.Equal(t, "true", strings.TrimSpace(sw.API("uuid_exists "+c.B)), "the call is up")
	sw.Kill(c)
}

// readPCMU reads n RTP packets of payload type 0 from conn and decodes them.
func readPCMU(t *testing.T, conn *net.UDPConn, n int) []int16 {
	t.Helper()
	var x []int16
	buf := make([]byte, 2048)
	for got := 0; got < n; {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, err := conn.Read(buf)
		require.NoError(t, err, "%d RTP packets of %d on %s", got, n, conn.LocalAddr())
		var p rtp.Packet
		require.NoError(t, p.Unmarshal(bytes.Clone(buf[:k])))
		if p.PayloadType != 0 {
			continue
		}
		for _, b := range p.Payload {
			x = append(x, g711.ULawToLinear(b))
		}
		got++
	}
	return x
}

func drainAll(rtps [][]*net.UDPConn) {
	for _, socks := range rtps {
		drain(socks)
	}
}

// TestRealSwitchSIGTERM stops mediafork with two calls forked: every stream
// ends with reason 4 (mediafork shutting down) and the process exits 0; the
// calls stay up (mediafork never hangs up a call).
func TestRealSwitchSIGTERM(t *testing.T) {
	sw := useSwitch(t)
	rcv := listenUDP(t, "127.0.0.1:0")
	cfg := baseConfig("auto")
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"to": []string{rcv.Addr()}})}
	d := startDaemon(t, cfg)
	calls := []*call{sw.Originate("9000"), sw.Originate("9000")}
	ss := rcv.WaitAudio(4, packets)
	require.Len(t, ss, 4, describe(ss))

	d.Signal(syscall.SIGTERM)
	require.NoError(t, d.Wait(), "exit status")
	assert.Equal(t, "2", d.WaitLog("the shutdown", msg("shutting down: ending forks")).Str("forks"))
	ss = rcv.WaitEnds(4)
	assertEnded(t, ss, tlvcodec.ReasonShutdown)
	for _, s := range ss {
		assert.GreaterOrEqual(t, int(s.End.LastSequence), packets)
	}
	for _, c := range calls {
		assert.Equal(t, "true", strings.TrimSpace(sw.API("uuid_exists "+c.B)), "the call is up")
	}
}
