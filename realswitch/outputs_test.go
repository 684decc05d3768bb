package realswitch

import (
	"bytes"
	be "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/internal/testport"
	"github.com/mediafork/mediafork/tlvcodec"
)

// withAPI gives cfg an API listener and returns its address.
func withAPI(t *testing.T, cfg config) string {
	api := testport.Reserved(t)
	cfg["api"] = map[string]any{"listen": api}
	return api
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRealSwitchRTPThroughTheSDP forks a real call by a rule to a TLV and
// an RTP endpoint at once: the TLV receiver gets both directions with their
// tones as always, and ffmpeg, given nothing but the API's SDP of the fork,
// decodes the RTP streams into WAVs with 1000 Hz in RX and 440 Hz in TX, and
// ends on the BYEs when the call hangs up.
func TestRealSwitchRTPThroughTheSDP(t *testing.T) {
	ffmpeg := rtptest.NeedTool(t, "ffmpeg", "ffmpeg")
	sw := useSwitch(t)
	tlv := listenUDP(t, "127.0.0.1:0")
	base := rtptest.FreeBase(t, 2)
	cfg := baseConfig("audio_stream")
	api := withAPI(t, cfg)
	cfg["profiles"] = map[string]any{"rs-rtp": map[string]any{"endpoints": []any{
		tlv.Addr(),
		map[string]any{"address": base.String(), "protocol": "rtp", "encoding": "pcmu"},
	}}}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-rtp"})}
	d := startDaemon(t, cfg)
	c := sw.Originate("9000")
	assertBLegAudio(t, tlv.WaitAudio(2, packets), "9000")

	status, sdp := httpGet(t, "http://"+api+"/v1/forks/"+c.B+"/sdp")
	require.Equal(t, 200, status, sdp)
	assert.Contains(t, sdp, fmt.Sprintf("m=audio %d RTP/AVP 0 101\r\n", base.Port()))
	assert.Contains(t, sdp, "cname:"+c.B)
	ffm, rx, tx := rtptest.FFmpegRXTX(t, ffmpeg, sdp, base)
	ffm.WaitFiles(t, 60*time.Second, rtptest.WAVBytes(2, 8000), rx, tx) // 2 s of each side
	sw.Kill(c)
	ffm.WaitExit(t, 30*time.Second)
	rtptest.WAVTone(t, rx, 8000, 2, toneA)
	rtptest.WAVTone(t, tx, 8000, 2, toneB)
	assertEnded(t, tlv.WaitEnds(2), tlvcodec.ReasonHangup)
	d.WaitLog("fork ended", msg("fork ended", "uuid", c.B, "reason", "hangup"))
}

// TestRealSwitchDTMF: the digits uuid_send_dtmf sends from a call's A leg are
// received by its B leg, which FreeSWITCH reports in DTMF events; mediafork,
// forking the B leg, sends each on every output of the fork: a DTMF packet
// (RX, 250 ms, on the stream's media clock) to the TLV endpoint, an RFC 4733
// event on the RX stream of the RTP endpoint.
func TestRealSwitchDTMF(t *testing.T) {
	sw := useSwitch(t)
	tlv := listenUDP(t, "127.0.0.1:0")
	base, socks := rtptest.Listen(t, 2)
	cfg := baseConfig("audio_stream")
	cfg["profiles"] = map[string]any{"rs-dtmf": map[string]any{"endpoints": []any{
		tlv.Addr(),
		map[string]any{"address": base.String(), "protocol": "rtp", "encoding": "pcmu"},
	}}}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-dtmf"})}
	startDaemon(t, cfg)
	c := sw.Originate("9000")
	tlv.WaitAudio(2, 5)

	rxs := sendDigits(t, sw, c, tlv)
	require.Len(t, rxs.DTMF, 3)
	for i, digit := range []byte("12#") {
		d := rxs.DTMF[i]
		assert.Equal(t, digit, d.Digit)
		assert.Equal(t, rxs.ID, d.StreamID)
		assert.Equal(t, uint16(250), d.DurationMs, "DTMF-Duration 2000 samples at 8 kHz")
		if i > 0 {
			assert.GreaterOrEqual(t, d.MediaTimeMs, rxs.DTMF[i-1].MediaTimeMs)
		}
		assert.Less(t, d.MediaTimeMs, uint32(60_000))
	}

	var events []rtp.Packet
	buf := make([]byte, 2048)
	for len(events) < 12 {
		socks[0].SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := socks[0].Read(buf)
		require.NoError(t, err, "%d RFC 4733 packets of 12", len(events))
		var p rtp.Packet
		require.NoError(t, p.Unmarshal(bytes.Clone(buf[:n]))) // the payload aliases its input
		if p.PayloadType == 101 {
			events = append(events, p)
		}
	}
	for i, code := range []byte{1, 2, 11} {
		for k, p := range events[4*i : 4*i+4] {
			assert.Equal(t, code, p.Payload[0])
			assert.Equal(t, k == 0, p.Marker)
			assert.Equal(t, k > 0, p.Payload[1]&0x80 != 0)
			assert.Equal(t, uint16(2000), be.BigEndian.Uint16(p.Payload[2:]))
		}
	}
	drain(socks)
	sw.Kill(c)
	assertEnded(t, tlv.WaitEnds(2), tlvcodec.ReasonHangup)
}

// sendDigits has uuid_send_dtmf send 12# from the call's A leg and returns
// the RX stream of the TLV receiver (of the B leg's fork) once its three
// DTMF packets have come.
func sendDigits(t *testing.T, sw *fsSwitch, c *call, tlv *receiver) stream {
	t.Helper()
	out := sw.API("uuid_send_dtmf " + c.A + " 12#")
	require.True(t, strings.HasPrefix(out, "+OK"), out)
	ss := tlv.Wait("three DTMF packets", func(ss []stream) bool {
		for _, s := range ss {
			if s.Dir == tlvcodec.RX && len(s.DTMF) >= 3 {
				return true
			}
		}
		return false
	})
	return byDir(t, ss, tlvcodec.RX)
}

// drain reads what is left on the sockets until they close with the test,
// so that the sender's datagrams are not refused meanwhile.
func drain(socks []*net.UDPConn) {
	for _, c := range socks {
		go func() {
			b := make([]byte, 2048)
			for {
				c.SetReadDeadline(time.Time{})
				if _, err := c.Read(b); err != nil {
					return
				}
			}
		}()
	}
}
