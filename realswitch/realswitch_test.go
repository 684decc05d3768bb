package realswitch

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/third_party/eslgo"
	"github.com/mediafork/mediafork/tlvcodec"
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

// assertFormat checks a direction's format packet.
func assertFormat(t *testing.T, s stream, encoding uint8, rate uint32) {
	t.Helper()
	require.NotNil(t, s.Format, "stream %d %s: no format packet", s.ID, s.Dir)
	assert.Equal(t, tlvcodec.Format{StreamID: s.ID, Direction: s.Dir, Encoding: encoding, SampleRate: rate, Channels: 1, FrameMs: 20}, *s.Format,
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

			sw.Kill(c)
			assertEnded(t, rcv.WaitEnds(2), tlvcodec.ReasonHangup)
		})
	}
}
