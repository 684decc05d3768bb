package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/wstest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// The whole path, simulated switch to WebSocket servers: a rule forks a call
// to a profile mixing a TLV endpoint, a Twilio-protocol server and a
// mod_audio_fork-protocol server. The fork's credential carries only the
// stream endpoints' references (the daemon finds them in its config when the
// switch connects back); the Twilio server gets connected, start, µ-law
// media with the call's tones on both tracks, the digits uuid_send_dtmf
// sends, and stop; the mod_audio_fork server the metadata frame and stereo
// L16 of the same tones; the API, fs_cli, the console and the metrics name
// every protocol and show each stream's connection; the header's secret is
// never shown. On both modules.
func TestStreamProtocolsFromARule(t *testing.T) {
	for _, module := range []string{conf.ModuleAudioFork, conf.ModuleAudioStream} {
		t.Run(module, func(t *testing.T) { streamProtocolsFromARule(t, module) })
	}
}

func streamProtocolsFromARule(t *testing.T, module string) {
	const secret = "Bearer e2e-s3cr3t"
	tw := wstest.New(t, wstest.Options{})
	af := wstest.New(t, wstest.Options{Subprotocols: []string{mediafork.AudioForkSubprotocol}})
	var tlvAddr string
	s := newStack(t, 1, func(c *conf.Config) {
		tlvAddr = c.Profiles["analytics"].Endpoints[0]
		c.Profiles["bots"] = conf.Profile{
			Endpoints: []string{tlvAddr, tw.URL, af.URL},
			Protocols: []conf.EndpointProtocol{{}, {Protocol: "twilio", Keys: map[string]any{"headers": map[string]any{"Authorization": secret}}},
				{Protocol: "audiofork"}},
		}
		c.Rules[0].Profile = "bots"
		c.FreeSWITCH[0].Module = module
	})
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000", ReadHz: 1000, WriteHz: 440})
	ch := "support-2000-"
	defer func() {
		if t.Failed() {
			t.Log(s.logs.String())
		}
	}()
	s.waitPackets(ch, 2, 5)
	tw.Wait(t, "twilio media", 20*time.Second, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) >= 12 })
	af.Wait(t, "audiofork frames", 20*time.Second, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) >= 6 })

	assert.Equal(t, "+OK "+call.UUID+" sent DTMF 12#.\n", sw.FsCli("uuid_send_dtmf "+call.UUID+" 12#"))
	tw.Wait(t, "three digits", 20*time.Second, func(cs []wstest.Snapshot) bool { return wstest.ReadTwilio(cs[0].Messages).Digits == "12#" })
	// A second of both tracks.
	tw.Wait(t, "a second of audio", 20*time.Second, func(cs []wstest.Snapshot) bool {
		return len(wstest.ReadTwilio(cs[0].Messages).Chunks["outbound"]) >= 50
	})

	status, body := s.call("GET", "/v1/forks/"+call.UUID, "", "")
	require.Equal(t, 200, status, body)
	var info mediafork.Info
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	require.Len(t, info.Outputs, 3)
	var protos []mediafork.Protocol
	for _, o := range info.Outputs {
		protos = append(protos, o.Protocol)
	}
	assert.Equal(t, []mediafork.Protocol{mediafork.ProtocolTLV, mediafork.ProtocolTwilio, mediafork.ProtocolAudioFork}, protos)
	twInfo, afInfo := info.Outputs[1].Stream, info.Outputs[2].Stream
	require.NotNil(t, twInfo)
	require.NotNil(t, afInfo)
	assert.True(t, twInfo.Connected)
	assert.True(t, afInfo.Connected)
	assert.Regexp(t, `^MZ[0-9a-f]{32}$`, twInfo.StreamSid)
	assert.Equal(t, tw.URL, twInfo.URL)
	assert.NotContains(t, body, "s3cr3t")

	sw.FsCli("mediafork status " + call.UUID)
	want := fmt.Sprintf("[NOTICE] mediafork:   twilio %s connected sent=", tw.URL)
	require.Eventually(t, func() bool { return countPrefix(sw.Logs(), want) == 1 }, 5*time.Second, 10*time.Millisecond, "%v", sw.Logs())
	for _, l := range sw.Logs() {
		if strings.HasPrefix(l, want) {
			assert.Contains(t, l, "stream_sid="+twInfo.StreamSid)
		}
	}
	assert.Equal(t, 1, countPrefix(sw.Logs(), fmt.Sprintf("[NOTICE] mediafork:   audiofork %s connected sent=", af.URL)))

	status, snap := s.call("GET", "/v1/console/snapshot", "", "")
	require.Equal(t, 200, status, snap)
	assert.Contains(t, snap, fmt.Sprintf(`"endpoints":[%q,%q,%q]`, tlvAddr, "twilio+"+tw.URL, "audiofork+"+af.URL))
	// The fork's detail in the console: the stream's identity and connection.
	var rows struct {
		Forks []struct {
			ID   uint64 `json:"id"`
			UUID string `json:"uuid"`
		} `json:"add"`
	}
	require.NoError(t, json.Unmarshal([]byte(snap), &rows), snap)
	var id uint64
	for _, r := range rows.Forks {
		if r.UUID == call.UUID {
			id = r.ID
		}
	}
	require.NotZero(t, id, snap)
	status, detail := s.call("GET", fmt.Sprintf("/v1/console/forks/%d", id), "", "")
	require.Equal(t, 200, status, detail)
	assert.Contains(t, detail, fmt.Sprintf(`"streamSid %s → %s connected"`, twInfo.StreamSid, tw.URL))
	assert.Contains(t, detail, fmt.Sprintf(`"address":%q,"protocol":"twilio"`, "twilio+"+tw.URL))
	assert.NotContains(t, detail, "s3cr3t")

	_, metrics := s.call("GET", "/metrics", "", "")
	assert.Contains(t, metrics, `mediafork_streams_connected{protocol="twilio"} 1`)
	assert.Contains(t, metrics, `mediafork_streams_connected{protocol="audiofork"} 1`)
	assert.Regexp(t, `mediafork_stream_connections_total\{endpoint="`+regexp.QuoteMeta(tw.Addr.String())+`",outcome="connected",profile="bots",protocol="twilio"\} 1`, metrics)

	sw.Hangup(call.UUID, "NORMAL_CLEARING")
	twc := tw.Wait(t, "twilio's close", 20*time.Second, func(cs []wstest.Snapshot) bool { return cs[0].Closed })[0]
	afc := af.Wait(t, "audiofork's close", 20*time.Second, func(cs []wstest.Snapshot) bool { return cs[0].Closed })[0]
	tlv := s.waitEnded(ch, 2)
	for _, st := range tlv {
		assert.Equal(t, tlvcodec.ReasonHangup, st.End.Reason)
	}

	assert.Equal(t, 1000, twc.CloseCode)
	assert.Equal(t, secret, twc.Header.Get("Authorization"))
	ts := wstest.ReadTwilio(twc.Messages)
	assert.Empty(t, ts.Problems)
	require.NotNil(t, ts.Start)
	assert.Equal(t, call.UUID, ts.Start.CallSid)
	assert.Equal(t, []string{"inbound", "outbound"}, ts.Start.Tracks)
	assert.Equal(t, "support-2000-", ts.Start.CustomParameters["channel_id"])
	assert.True(t, ts.Stopped)
	assert.Equal(t, "12#", ts.Digits)
	for tr, hz := range map[string][2]float64{"inbound": {1000, 440}, "outbound": {440, 1000}} {
		x := ts.Samples(tr)
		require.GreaterOrEqual(t, len(x), 8000, tr)
		x = x[800:]
		assert.Greater(t, frameShare(x, hz[0]), 0.9, "%s: %.0f Hz", tr, hz[0])
		assert.Less(t, frameShare(x, hz[1]), 0.02, "%s: %.0f Hz", tr, hz[1])
	}

	assert.Equal(t, 1000, afc.CloseCode)
	assert.Equal(t, mediafork.AudioForkSubprotocol, afc.Subprotocol)
	require.True(t, afc.Messages[0].Text)
	var md map[string]any
	require.NoError(t, json.Unmarshal(afc.Messages[0].Data, &md))
	assert.Equal(t, call.UUID, md["uuid"])
	assert.Equal(t, "stereo", md["mix"])
	var pcm []byte
	for _, m := range afc.Messages[1:] {
		require.False(t, m.Text)
		require.Len(t, m.Data, 640, "20 ms of 8 kHz stereo")
		pcm = append(pcm, m.Data...)
	}
	lr := wstest.Channels(pcm, 2)
	for c, hz := range [][2]float64{{1000, 440}, {440, 1000}} {
		x := lr[c][800:]
		assert.Greater(t, frameShare(x, hz[0]), 0.9, "channel %d: %.0f Hz", c, hz[0])
		assert.Less(t, frameShare(x, hz[1]), 0.02, "channel %d: %.0f Hz", c, hz[1])
	}
	assert.NotContains(t, s.logs.String(), "s3cr3t", "the daemon's log")
}

// The dialplan socket app names a profile that mixes protocols (channel
// variable mediafork_profile): the fork feeds its TLV endpoint and its
// Twilio-protocol server alike. An ad-hoc destination never names a stream
// protocol: mediafork_to=twilio://... is refused.
func TestStreamProfileFromTheSocketApp(t *testing.T) {
	tw := wstest.New(t, wstest.Options{})
	s := newStack(t, 1, func(c *conf.Config) {
		c.Profiles["mixed"] = conf.Profile{
			Endpoints: []string{c.Profiles["analytics"].Endpoints[0], tw.URL},
			Protocols: []conf.EndpointProtocol{{}, {Protocol: "twilio"}},
		}
	})
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "4000", ReadHz: 1000, WriteHz: 440,
		Vars: map[string]string{"mediafork_profile": "mixed"}})
	_, err := sw.DialOutbound(t.Context(), s.outbound, call)
	require.NoError(t, err)
	s.waitPackets("loopback/4000-a", 2, 5)
	cs := tw.Wait(t, "twilio media of the socket's fork", 20*time.Second, func(cs []wstest.Snapshot) bool {
		return len(cs) == 1 && len(wstest.ReadTwilio(cs[0].Messages).Chunks["inbound"]) >= 5
	})
	ts := wstest.ReadTwilio(cs[0].Messages)
	assert.Empty(t, ts.Problems)
	assert.Equal(t, call.UUID, ts.Start.CallSid)
	assert.Equal(t, "loopback/4000-a", ts.Start.CustomParameters["channel_id"])

	adhoc := sw.Answer(fssim.CallOptions{Dest: "4001", Vars: map[string]string{"mediafork_to": "twilio://127.0.0.1:9"}})
	res, err := sw.DialOutbound(t.Context(), s.outbound, adhoc)
	require.NoError(t, err)
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+adhoc.UUID), "%v", res.Commands)
	assert.Contains(t, s.logs.String(), "comes from a profile, not a destination given ad hoc")
	sw.Hangup(call.UUID, "NORMAL_CLEARING")
	tw.Wait(t, "twilio's stop", 20*time.Second, func(cs []wstest.Snapshot) bool { return wstest.ReadTwilio(cs[0].Messages).Stopped })
}

// A fork's media connection is lost mid-call: its stream outputs continue.
// The Twilio server's connection closes with 1001 and no stop (the stream is
// not over); the resumed fork dials again and says connected and start with
// the same streamSid, and chunk and timestamp go on from the media clock:
// the chunks missing are the frames the TLV stream's gap packet reports. The
// mod_audio_fork server's connection likewise closes 1001, and the next one
// starts with the metadata frame again.
func TestStreamProtocolsContinueAfterMediaLost(t *testing.T) {
	tw := wstest.New(t, wstest.Options{})
	af := wstest.New(t, wstest.Options{Subprotocols: []string{mediafork.AudioForkSubprotocol}})
	s := newStack(t, 1, func(c *conf.Config) {
		tlv := c.Profiles["analytics"].Endpoints[0]
		c.Profiles["bots"] = conf.Profile{
			Endpoints: []string{tlv, tw.URL, af.URL},
			Protocols: []conf.EndpointProtocol{{}, {Protocol: "twilio"}, {Protocol: "audiofork"}},
		}
		c.Rules[0].Profile = "bots"
	})
	defer func() {
		if t.Failed() {
			t.Log(s.logs.String())
		}
	}()
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000", ReadHz: 1000, WriteHz: 440})
	ch := "support-2000-"
	first := s.waitPackets(ch, 2, 5)
	tw.Wait(t, "twilio media", 20*time.Second, func(cs []wstest.Snapshot) bool {
		return len(cs) == 1 && len(wstest.ReadTwilio(cs[0].Messages).Chunks["outbound"]) >= 10
	})
	require.True(t, call.DropMedia("mediafork"))
	waitResumed(t, s, ch, first)
	cs := tw.Wait(t, "the second connection's media", 20*time.Second, func(cs []wstest.Snapshot) bool {
		return len(cs) == 2 && cs[0].Closed && len(wstest.ReadTwilio(cs[1].Messages).Chunks["outbound"]) >= 10
	})
	before, after := wstest.ReadTwilio(cs[0].Messages), wstest.ReadTwilio(cs[1].Messages)
	assert.Equal(t, 1001, cs[0].CloseCode, "going away: the stream goes on elsewhere")
	assert.False(t, before.Stopped, "no stop: the stream is not over")
	assert.Empty(t, before.Problems)
	assert.Empty(t, after.Problems)
	require.NotNil(t, after.Start)
	assert.Equal(t, before.StreamSid, after.StreamSid, "the same stream")
	var gap *tlvcodec.Gap
	for _, st := range s.streamsOf(ch) {
		gap = st.LastGap
	}
	require.NotNil(t, gap)
	for _, tr := range []string{"inbound", "outbound"} {
		last, next := before.Chunks[tr][len(before.Chunks[tr])-1], after.Chunks[tr][0]
		assert.Equal(t, int(gap.NextSequence), next, "%s: the chunk after the gap is the TLV stream's next sequence", tr)
		assert.Equal(t, int(gap.MissingFrames), next-last-1, "%s: the chunks missing are the frames missing", tr)
		assert.Equal(t, (next-1)*20, after.Times[tr][0], "%s: the timestamp is the media clock's", tr)
	}
	x := after.Samples("inbound")
	assert.Greater(t, frameShare(x, 1000), 0.9, "the tone right after the gap")

	acs := af.Wait(t, "audiofork's second connection", 20*time.Second, func(cs []wstest.Snapshot) bool {
		return len(cs) == 2 && cs[0].Closed && len(cs[1].Messages) >= 5
	})
	assert.Equal(t, 1001, acs[0].CloseCode)
	assert.True(t, acs[1].Messages[0].Text, "the metadata frame again")

	sw.Hangup(call.UUID, "NORMAL_CLEARING")
	cs = tw.Wait(t, "twilio's close", 20*time.Second, func(cs []wstest.Snapshot) bool { return cs[1].Closed })
	assert.Equal(t, 1000, cs[1].CloseCode)
	assert.True(t, wstest.ReadTwilio(cs[1].Messages).Stopped)
}

// frameShare is hz's share of 8 kHz audio x judged 20 ms frame by frame (160
// samples each), averaged: a busy machine makes the simulator skip frames to
// stay on its clock, and the tone's phase jumps between frames spoiled a
// Goertzel over the whole (a 0.18 share of a pure 440 Hz).
func frameShare(x []int16, hz float64) float64 {
	const frame = 160
	n := len(x) / frame
	if n == 0 {
		return 0
	}
	share := 0.0
	for i := range n {
		share += wstest.ToneShare(x[i*frame:(i+1)*frame], 8000, hz)
	}
	return share / float64(n)
}
