package main

import (
	"bytes"
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// rawSink is a UDP socket the test reads itself.
func rawSink(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// readUntil reads datagrams from c until keep has kept n of them, failing
// after a few seconds without them.
func readUntil(t *testing.T, c *net.UDPConn, n int, keep func([]byte) bool) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 65536)
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n {
		c.SetReadDeadline(deadline)
		k, _, err := c.ReadFromUDP(buf)
		require.NoError(t, err, "kept %d of %d datagrams on %s", len(out), n, c.LocalAddr())
		if keep(buf[:k]) {
			out = append(out, bytes.Clone(buf[:k]))
		}
	}
	return out
}

// The whole path, simulated switch to receivers: a rule forks a call to a
// profile with a TLV and an RTP endpoint; the digits uuid_send_dtmf sends
// reach the TLV endpoint as DTMF packets and the RTP endpoint as RFC 4733
// events; the API, fs_cli and the metrics name each output's protocol and
// identity.
func TestDTMFFromTheSwitchOnEveryOutput(t *testing.T) {
	tlv := rawSink(t)
	base, socks := rtptest.Listen(t, 2)
	s := newStack(t, 1, func(c *conf.Config) {
		c.Profiles["multi"] = conf.Profile{
			Endpoints: []string{tlv.LocalAddr().String(), base.String()},
			Formats:   []conf.EndpointFormat{{}, {Encoding: "pcmu"}},
			Protocols: []conf.EndpointProtocol{{}, {Protocol: "rtp"}},
		}
		c.Rules[0].Profile = "multi"
	})
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000", ReadHz: 1000, WriteHz: 440})
	readUntil(t, tlv, 5, func(b []byte) bool { return b[0] == byte(tlvcodec.TypeAudio) })
	readUntil(t, socks[0], 5, func([]byte) bool { return true })

	assert.Equal(t, "+OK "+call.UUID+" sent DTMF 12#.\n", sw.FsCli("uuid_send_dtmf "+call.UUID+" 12#"))
	var digits []tlvcodec.DTMF
	for _, b := range readUntil(t, tlv, 3, func(b []byte) bool { return b[0] == byte(tlvcodec.TypeDTMF) }) {
		var d tlvcodec.DTMF
		require.NoError(t, d.Unmarshal(b))
		digits = append(digits, d)
	}
	var events []rtp.Packet
	for _, b := range readUntil(t, socks[0], 12, func(b []byte) bool { return b[1]&0x7f == 101 }) {
		var p rtp.Packet
		require.NoError(t, p.Unmarshal(b))
		events = append(events, p)
	}

	status, body := s.call("GET", "/v1/forks/"+call.UUID, "", "")
	require.Equal(t, 200, status, body)
	var info mediafork.Info
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	require.Len(t, info.Outputs, 2)
	assert.Equal(t, mediafork.ProtocolTLV, info.Outputs[0].Protocol)
	assert.Equal(t, info.StreamID, info.Outputs[0].StreamID)
	assert.Equal(t, mediafork.ProtocolRTP, info.Outputs[1].Protocol)
	require.Len(t, info.Outputs[1].Streams, 2)
	assert.Contains(t, body, `"protocol":"tlv"`)
	assert.Contains(t, body, `"protocol":"rtp"`)
	assert.Equal(t, uint64(3), info.DTMF)

	for i, want := range []byte("12#") {
		d := digits[i]
		assert.Equal(t, want, d.Digit)
		assert.Equal(t, info.StreamID, d.StreamID)
		assert.Equal(t, tlvcodec.RX, d.Direction)
		assert.Equal(t, uint16(250), d.DurationMs, "2000 samples at 8 kHz")
		if i > 0 {
			assert.GreaterOrEqual(t, d.MediaTimeMs, digits[i-1].MediaTimeMs, "on the media clock")
		}
		code := map[byte]byte{'1': 1, '2': 2, '#': 11}[want]
		ev := events[4*i : 4*i+4]
		for k, p := range ev {
			assert.Equal(t, info.Outputs[1].Streams[0].SSRC, p.SSRC, "the RX stream")
			assert.Equal(t, k == 0, p.Marker)
			assert.Equal(t, code, p.Payload[0])
			assert.Equal(t, k > 0, p.Payload[1]&0x80 != 0)
			assert.Equal(t, uint16(2000), be.BigEndian.Uint16(p.Payload[2:]), "250 ms at 8 kHz")
			assert.Equal(t, ev[0].Timestamp, p.Timestamp)
		}
	}

	sw.FsCli("mediafork status " + call.UUID)
	require.Eventually(t, func() bool {
		return countPrefix(sw.Logs(), "[NOTICE] mediafork: "+call.UUID+" stream ") == 1
	}, 5*time.Second, 10*time.Millisecond)
	for _, l := range sw.Logs() {
		if strings.HasPrefix(l, "[NOTICE] mediafork: "+call.UUID+" stream ") {
			assert.Contains(t, l, "endpoints="+tlv.LocalAddr().String()+",rtp://"+base.String())
		}
	}

	// The console names each endpoint with its protocol.
	status, snap := s.call("GET", "/v1/console/snapshot", "", "")
	require.Equal(t, 200, status, snap)
	assert.Contains(t, snap, fmt.Sprintf(`"endpoints":[%q,"rtp://%s"]`, tlv.LocalAddr().String(), base.String()))

	// The RTCP ports are the endpoint's too: labelled by its address, with
	// its protocol.
	status, metrics := s.call("GET", "/metrics", "", "")
	require.Equal(t, 200, status)
	for _, c := range socks {
		c.Close() // nothing listens any more: the sends fail, counted
	}
	require.Eventually(t, func() bool {
		_, metrics = s.call("GET", "/metrics", "", "")
		return strings.Contains(metrics, fmt.Sprintf(`mediafork_send_errors_total{endpoint=%q,profile="multi",protocol="rtp"}`, base.String()))
	}, 10*time.Second, 20*time.Millisecond, "%s", metrics)
	sw.Hangup(call.UUID, "NORMAL_CLEARING")
}

// RTP to ffmpeg through the API: the fork's SDP from GET /v1/forks/{uuid}/sdp
// is all ffmpeg is given; it decodes the simulated call's RX to 1000 Hz and
// TX to 440 Hz and ends on the BYEs of the hangup. The SDP of a fork without
// RTP, or of no fork, is a 404.
func TestRTPThroughTheAPIToFFmpeg(t *testing.T) {
	ffmpeg := rtptest.NeedTool(t, "ffmpeg", "ffmpeg")
	base := rtptest.FreeBase(t, 2)
	s := newStack(t, 1, func(c *conf.Config) {
		c.Profiles["recorder"] = conf.Profile{Endpoints: []string{base.String()},
			Formats: []conf.EndpointFormat{{Encoding: "pcmu"}}, Protocols: []conf.EndpointProtocol{{Protocol: "rtp"}}}
		c.Rules = append([]conf.Rule{{Name: "rec", Match: map[string]string{"Caller-Destination-Number": "^9000$"}, Profile: "recorder"}}, c.Rules...)
	})
	sw := s.switches[0]
	status, body := s.call("GET", "/v1/forks/"+fssim.NewUUID()+"/sdp", "", "")
	assert.Equal(t, 404, status, body)
	plain := sw.Answer(fssim.CallOptions{Dest: "2000"}) // the TLV profile
	s.waitPackets("support-2000-", 2, 1)
	status, body = s.call("GET", "/v1/forks/"+plain.UUID+"/sdp", "", "")
	assert.Equal(t, 404, status, body)
	assert.Contains(t, body, "no rtp endpoint")

	call := sw.Answer(fssim.CallOptions{Dest: "9000", ReadHz: 1000, WriteHz: 440})
	var sdp string
	require.Eventually(t, func() bool {
		status, sdp = s.call("GET", "/v1/forks/"+call.UUID+"/sdp", "", "")
		return status == 200
	}, 10*time.Second, 10*time.Millisecond, sdp)
	assert.Contains(t, sdp, fmt.Sprintf("m=audio %d RTP/AVP 0 101\r\n", base.Port()))
	assert.Contains(t, sdp, fmt.Sprintf("m=audio %d RTP/AVP 0\r\n", base.Port()+2))
	assert.Contains(t, sdp, "a=label:rx\r\n")
	assert.Contains(t, sdp, "a=ssrc:")
	assert.Contains(t, sdp, "cname:"+call.UUID)

	ffm, rx, tx := rtptest.FFmpegRXTX(t, ffmpeg, sdp, base)
	// The call goes on (the simulator sends a frame every 20 ms) until ffmpeg
	// has written 2 s of each side.
	ffm.WaitFiles(t, 60*time.Second, rtptest.WAVBytes(2, 8000), rx, tx)
	sw.Hangup(call.UUID, "NORMAL_CLEARING")
	ffm.WaitExit(t, 30*time.Second)
	rtptest.WAVTone(t, rx, 8000, 2, 1000)
	rtptest.WAVTone(t, tx, 8000, 2, 440)
}
