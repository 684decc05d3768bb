package mediafork

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/rtptest"
)

// Real RTP peers: stock tools read the fork's SDP, receive its streams and
// decode each direction to its tone (1000 Hz RX, 440 Hz TX, as the
// simulator's calls), the DTMF events in the RX streams notwithstanding.

// peerFork begins a fork of a 16 kHz stereo bug whose RTP targets are at the
// free port blocks bases (formats parallel), writes its SDP to dir and
// returns it with the fork and the RTP/RTCP ports the receivers must bind.
func peerFork(t *testing.T, dir string, formats []EndpointFormat) (*Fork, *Registry, string, []netip.AddrPort) {
	t.Helper()
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("peer-call", "mediafork")
	require.NoError(t, err)
	var targets []Target
	var ports []netip.AddrPort
	for _, fm := range formats {
		base := rtptest.FreeBase(t, 2)
		targets = append(targets, Target{Protocol: ProtocolRTP, Addr: base, Format: fm})
		for i := range uint16(4) {
			ports = append(ports, netip.AddrPortFrom(base.Addr(), base.Port()+i))
		}
	}
	spec := spec16k()
	require.NoError(t, f.Begin(spec, targets))
	text, err := f.SDP()
	require.NoError(t, err)
	path := filepath.Join(dir, "fork.sdp")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	t.Logf("SDP:\n%s", text)
	return f, reg, path, ports
}

// sendTones writes 3 s of 1000 Hz RX / 440 Hz TX at 16 kHz into f, a frame
// every 20 ms as FreeSWITCH does (the receivers map RTP time to wall-clock
// time through the sender reports, as they would from a call), with a DTMF
// digit 1 s in, and ends the fork (RTCP BYE).
func sendTones(f *Fork, reg *Registry) {
	const frames = 150
	l, r := sine(1000, 16000, 320*frames, 12000), sine(440, 16000, 320*frames, 12000)
	pcm := interleave(l, r)
	b := reg.NewSharedBatch()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < frames; i++ {
		if i == 50 {
			f.DTMF(DTMFReceived{UUID: f.UUID, Digit: '7', Duration: 100 * time.Millisecond})
		}
		f.Write(b, pcm[i*1280:(i+1)*1280])
		b.Flush()
		<-tick.C
	}
	f.Finish(EndHangup)
}

// checkTone asserts that a decoded WAV holds about 3 s of freq at rate.
func checkTone(t *testing.T, path string, rate int, freq float64) {
	t.Helper()
	w, err := rtptest.ReadWAV(path)
	require.NoError(t, err, path)
	assert.Equal(t, rate, w.Rate, path)
	secs := float64(len(w.Samples)) / float64(w.Rate)
	assert.InDelta(t, 3.0, secs, 0.5, "%s: %.2f s of audio", path, secs)
	require.Greater(t, len(w.Samples), w.Rate/2, path)
	mid := w.Samples[len(w.Samples)/4 : 3*len(w.Samples)/4]
	assert.InDelta(t, freq, dominant(mid, w.Rate), 5, path)
	assert.Greater(t, rms(mid), 2000.0, "%s: audible", path)
}

// ffmpeg reads the SDP, receives a pcmu endpoint at 8 kHz and an l16 one at
// 16 kHz (four streams), and ends on the BYEs.
func TestRTPPeerFFmpeg(t *testing.T) {
	ffmpeg := rtptest.NeedTool(t, "ffmpeg", "ffmpeg")
	t.Parallel()
	dir := t.TempDir()
	f, reg, sdpPath, ports := peerFork(t, dir, []EndpointFormat{{Encoding: PCMU, Rate: 8000}, {Encoding: L16}})
	outs := []string{"a_rx.wav", "a_tx.wav", "b_rx.wav", "b_tx.wav"}
	args := []string{"-nostdin", "-hide_banner", "-loglevel", "warning", "-protocol_whitelist", "file,udp,rtp",
		"-reorder_queue_size", "0", "-i", sdpPath}
	for i, o := range outs {
		args = append(args, "-map", fmt.Sprintf("0:%d", i), "-c:a", "pcm_s16le", filepath.Join(dir, o))
	}
	ffm := rtptest.StartReceiver(t, ffmpeg, args...)
	rtptest.WaitBound(t, 20*time.Second, ports...)
	sendTones(f, reg)
	ffm.WaitExit(t, 30*time.Second)
	t.Logf("ffmpeg: %s", ffm.Output())
	checkTone(t, filepath.Join(dir, "a_rx.wav"), 8000, 1000)
	checkTone(t, filepath.Join(dir, "a_tx.wav"), 8000, 440)
	checkTone(t, filepath.Join(dir, "b_rx.wav"), 16000, 1000)
	checkTone(t, filepath.Join(dir, "b_tx.wav"), 16000, 440)
}

// GStreamer's sdpdemux reads the same SDP and its pipeline decodes both
// directions of a pcmu endpoint; it ends on the BYEs.
func TestRTPPeerGStreamer(t *testing.T) {
	gst := rtptest.NeedTool(t, "gst-launch-1.0", "gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad")
	if out, err := exec.Command("gst-inspect-1.0", "sdpdemux").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("GStreamer's sdpdemux is missing (gstreamer1.0-plugins-bad): %s", out)
		}
		t.Skip("GStreamer's sdpdemux is missing: apt-get install gstreamer1.0-plugins-bad")
	}
	t.Parallel()
	dir := t.TempDir()
	f, reg, sdpPath, ports := peerFork(t, dir, []EndpointFormat{{Encoding: PCMU, Rate: 8000}})
	rx, tx := filepath.Join(dir, "rx.wav"), filepath.Join(dir, "tx.wav")
	branch := func(pad, out string) []string {
		return []string{"d." + pad, "!", "queue", "!", "rtppcmudepay", "!", "mulawdec", "!", "audioconvert", "!",
			"audio/x-raw,format=S16LE", "!", "wavenc", "!", "filesink", "location=" + out}
	}
	args := []string{"-q", "-e", "filesrc", "location=" + sdpPath, "!", "sdpdemux", "name=d", "latency=100"}
	args = append(args, branch("stream_0", rx)...)
	args = append(args, branch("stream_1", tx)...)
	gstl := rtptest.StartReceiver(t, gst, args...)
	rtptest.WaitBound(t, 20*time.Second, ports[0], ports[2])
	sendTones(f, reg)
	// sdpdemux ends its streams (EOS) on their RTCP BYEs, and gst-launch
	// with them, the WAV headers written.
	gstl.WaitExit(t, 30*time.Second)
	checkTone(t, rx, 8000, 1000)
	checkTone(t, tx, 8000, 440)
}
