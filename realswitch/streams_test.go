package realswitch

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/internal/wstest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"

	"github.com/mediafork/mediafork/internal/tone"
)

// streamModules are the media modules the stream tests fork with, each in
// its own subtest: the fork's description (four endpoints) travels in the
// metadata frame, so both take it.
var streamModules = []string{"audio_fork", "audio_stream"}

// TestRealSwitchEveryProtocolAtOnce is issue 21's "done when" on the real
// switch: one rule fork of a call with 1000 Hz and 440 Hz sides feeds at
// once a TLV receiver (ForkStream's bytes with the extensions off: signaling
// and audio, nothing else), RTP RX and TX streams that ffmpeg decodes through
// the API's SDP, a Twilio-protocol WebSocket server (connected, start, µ-law
// media on both tracks with the right tones, stop) and a
// mod_audio_fork-protocol server receiving stereo L16 with the same tones.
// Then, with the extensions on, the digits uuid_send_dtmf sends appear in the
// TLV (DTMF packets), RTP (RFC 4733 events) and Twilio (dtmf messages)
// outputs of one fork. On mod_audio_fork and on mod_audio_stream.
func TestRealSwitchEveryProtocolAtOnce(t *testing.T) {
	ffmpeg := rtptest.NeedTool(t, "ffmpeg", "ffmpeg")
	for _, module := range streamModules {
		t.Run(module, func(t *testing.T) { everyProtocolAtOnce(t, ffmpeg, module) })
	}
}

func everyProtocolAtOnce(t *testing.T, ffmpeg, module string) {
	sw := useSwitch(t)
	tlv := listenUDP(t, "127.0.0.1:0")
	base := rtptest.FreeBase(t, 2)
	tw := wstest.New(t, wstest.Options{})
	af := wstest.New(t, wstest.Options{Subprotocols: []string{mediafork.AudioForkSubprotocol}})
	cfg := baseConfig(module)
	api := withAPI(t, cfg)
	cfg["fork"] = map[string]any{"retry": map[string]any{"attempts": 3, "backoff": "200ms"},
		"end_packet": false, "format_packet": false, "dtmf_packet": false}
	cfg["profiles"] = map[string]any{"rs-all": map[string]any{"endpoints": []any{
		tlv.Addr(),
		map[string]any{"address": base.String(), "protocol": "rtp", "encoding": "pcmu"},
		map[string]any{"protocol": "twilio", "url": tw.URL, "headers": map[string]any{"Authorization": "Bearer rs-s3cr3t"}},
		map[string]any{"protocol": "audiofork", "url": af.URL},
	}}}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-all"})}
	d := startDaemon(t, cfg)
	c := sw.Originate("9000")
	tlv.WaitAudio(2, packets)

	// RTP: ffmpeg is given the API's SDP and nothing else.
	status, sdp := httpGet(t, "http://"+api+"/v1/forks/"+c.B+"/sdp")
	require.Equal(t, 200, status, sdp)
	ffm, rx, tx := rtptest.FFmpegRXTX(t, ffmpeg, sdp, base)
	ffm.WaitFiles(t, 60*time.Second, rtptest.WAVBytes(2, 8000), rx, tx) // 2 s of each side
	tw.Wait(t, "a second of twilio media", waitFor, func(cs []wstest.Snapshot) bool {
		return len(cs) == 1 && len(wstest.ReadTwilio(cs[0].Messages).Chunks["outbound"]) >= 50
	})
	af.Wait(t, "a second of mod_audio_fork frames", waitFor, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) >= 51 })

	status, body := httpGet(t, "http://"+api+"/v1/forks/"+c.B)
	require.Equal(t, 200, status, body)
	var info mediafork.Info
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	require.Len(t, info.Outputs, 4)
	for i, p := range []mediafork.Protocol{mediafork.ProtocolTLV, mediafork.ProtocolRTP, mediafork.ProtocolTwilio, mediafork.ProtocolAudioFork} {
		assert.Equal(t, p, info.Outputs[i].Protocol)
	}
	require.NotNil(t, info.Outputs[2].Stream)
	assert.True(t, info.Outputs[2].Stream.Connected)
	assert.True(t, info.Outputs[3].Stream.Connected)
	assert.NotContains(t, body, "rs-s3cr3t")

	sw.Kill(c)
	ffm.WaitExit(t, 30*time.Second)
	twc := tw.Wait(t, "twilio's close", waitFor, func(cs []wstest.Snapshot) bool { return cs[0].Closed })[0]
	afc := af.Wait(t, "mod_audio_fork's close", waitFor, func(cs []wstest.Snapshot) bool { return cs[0].Closed })[0]
	d.WaitLog("fork ended", msg("fork ended", "uuid", c.B, "reason", "hangup"))

	// TLV: ForkStream's bytes, the extensions off: signaling, then audio
	// from sequence 1 without a gap, each 20 ms of l16 at 8 kHz (the last
	// may be shorter), no format, DTMF or end packet.
	ss := tlv.Streams()
	require.Len(t, ss, 2)
	for i := range ss {
		s := &ss[i]
		for _, p := range s.Problems {
			if p != "audio before the signaling and format packets" { // no format packet comes: it is off
				t.Errorf("stream %d %s: %s", s.ID, s.Dir, p)
			}
		}
		assert.Nil(t, s.Format, "stream %d %s: a format packet with format_packet off", s.ID, s.Dir)
		assert.Nil(t, s.End, "stream %d %s: an end packet with end_packet off", s.ID, s.Dir)
		assert.Empty(t, s.DTMF)
		assert.Equal(t, uint32(1), s.FirstSeq)
		assert.Equal(t, s.Audio, int(s.LastSeq), "stream %d %s: no gap", s.ID, s.Dir)
		assert.Equal(t, 320, s.Sizes[0], "stream %d %s: 20 ms of l16 at 8 kHz", s.ID, s.Dir)
		assert.LessOrEqual(t, len(s.Sizes), 2, "stream %d %s: sizes %v", s.ID, s.Dir, s.Sizes)
		assertLoopbackSignaling(t, *s, "9000")
		s.Format = &tlvcodec.Format{SampleRate: 8000, Encoding: 1} // the encoding as configured, for AssertTones
	}
	AssertTones(t, byDir(t, ss, tlvcodec.RX), toneA)
	AssertTones(t, byDir(t, ss, tlvcodec.TX), toneB)

	rtptest.WAVTone(t, rx, 8000, 2, toneA)
	rtptest.WAVTone(t, tx, 8000, 2, toneB)

	assert.Equal(t, 1000, twc.CloseCode)
	assert.Equal(t, "Bearer rs-s3cr3t", twc.Header.Get("Authorization"))
	s := wstest.ReadTwilio(twc.Messages)
	assert.Empty(t, s.Problems)
	require.NotNil(t, s.Start)
	assert.Equal(t, c.B, s.Start.CallSid)
	assert.Equal(t, []string{"inbound", "outbound"}, s.Start.Tracks)
	assert.Equal(t, "audio/x-mulaw", s.Start.MediaFormat.Encoding)
	assert.Equal(t, "loopback/9000-b", s.Start.CustomParameters["channel_id"])
	assert.True(t, s.Stopped)
	for tr, hz := range map[string][2]float64{"inbound": {toneA, toneB}, "outbound": {toneB, toneA}} {
		x := s.Samples(tr)
		require.GreaterOrEqual(t, len(x), 8000, tr)
		x = x[800:]
		t.Logf("twilio %s: %.0f Hz %.3f, %.0f Hz %.3f", tr, hz[0], tone.Share(x, 8000, hz[0]), hz[1], tone.Share(x, 8000, hz[1]))
		assert.Greater(t, tone.Share(x, 8000, hz[0]), 0.9, "twilio %s: %.0f Hz", tr, hz[0])
		assert.Less(t, tone.Share(x, 8000, hz[1]), 0.02, "twilio %s: %.0f Hz", tr, hz[1])
	}

	assert.Equal(t, 1000, afc.CloseCode)
	assert.Equal(t, mediafork.AudioForkSubprotocol, afc.Subprotocol)
	require.True(t, afc.Messages[0].Text, "the metadata frame first")
	var md map[string]any
	require.NoError(t, json.Unmarshal(afc.Messages[0].Data, &md))
	assert.Equal(t, c.B, md["uuid"])
	assert.Equal(t, "stereo", md["mix"])
	var pcm []byte
	for i, m := range afc.Messages[1:] {
		require.False(t, m.Text, "frame %d", i)
		require.Len(t, m.Data, 640, "frame %d: 20 ms of 8 kHz stereo L16", i)
		pcm = append(pcm, m.Data...)
	}
	lr := wstest.Channels(pcm, 2)
	for ch, hz := range [][2]float64{{toneA, toneB}, {toneB, toneA}} {
		x := lr[ch][800:]
		t.Logf("audiofork channel %d: %.0f Hz %.3f, %.0f Hz %.3f", ch, hz[0], tone.Share(x, 8000, hz[0]), hz[1], tone.Share(x, 8000, hz[1]))
		assert.Greater(t, tone.Share(x, 8000, hz[0]), 0.9, "audiofork channel %d: %.0f Hz", ch, hz[0])
		assert.Less(t, tone.Share(x, 8000, hz[1]), 0.02, "audiofork channel %d: %.0f Hz", ch, hz[1])
	}
	assert.Empty(t, d.Lines(func(l logLine) bool { return strings.Contains(fmt.Sprint(l), "rs-s3cr3t") }), "the daemon's log")
}

// TestRealSwitchDTMFOnEveryProtocol: the digits uuid_send_dtmf sends from a
// call's A leg reach every output of the B leg's fork: a DTMF packet on the
// TLV stream, RFC 4733 events on the RTP RX stream, dtmf messages on the
// Twilio stream (after the media before them). On both modules.
func TestRealSwitchDTMFOnEveryProtocol(t *testing.T) {
	for _, module := range streamModules {
		t.Run(module, func(t *testing.T) { dtmfOnEveryProtocol(t, module) })
	}
}

func dtmfOnEveryProtocol(t *testing.T, module string) {
	sw := useSwitch(t)
	tlv := listenUDP(t, "127.0.0.1:0")
	base, socks := rtptest.Listen(t, 2)
	tw := wstest.New(t, wstest.Options{})
	cfg := baseConfig(module)
	cfg["profiles"] = map[string]any{"rs-dtmf-all": map[string]any{"endpoints": []any{
		tlv.Addr(),
		map[string]any{"address": base.String(), "protocol": "rtp", "encoding": "pcmu"},
		map[string]any{"protocol": "twilio", "url": tw.URL},
	}}}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-dtmf-all"})}
	startDaemon(t, cfg)
	c := sw.Originate("9000")
	tlv.WaitAudio(2, 5)
	tw.Wait(t, "twilio media", waitFor, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) >= 12 })

	rxs := sendDigits(t, sw, c, tlv)
	assert.Equal(t, "12#", string([]byte{rxs.DTMF[0].Digit, rxs.DTMF[1].Digit, rxs.DTMF[2].Digit}))
	var codes []byte
	buf := make([]byte, 2048)
	for len(codes) < 12 {
		socks[0].SetReadDeadline(time.Now().Add(waitFor))
		n, err := socks[0].Read(buf)
		require.NoError(t, err, "%d RFC 4733 packets of 12", len(codes))
		if n > 12 && buf[1]&0x7f == 101 {
			codes = append(codes, buf[12])
		}
	}
	assert.Equal(t, []byte{1, 1, 1, 1, 2, 2, 2, 2, 11, 11, 11, 11}, codes, "telephone-events 1, 2, # (one start, three ends each)")
	drain(socks)
	cs := tw.Wait(t, "three dtmf messages", waitFor, func(cs []wstest.Snapshot) bool { return wstest.ReadTwilio(cs[0].Messages).Digits == "12#" })
	assert.Empty(t, wstest.ReadTwilio(cs[0].Messages).Problems)
	sw.Kill(c)
	tw.Wait(t, "twilio's stop", waitFor, func(cs []wstest.Snapshot) bool { return wstest.ReadTwilio(cs[0].Messages).Stopped })
	assertEnded(t, tlv.WaitEnds(2), tlvcodec.ReasonHangup)
}
