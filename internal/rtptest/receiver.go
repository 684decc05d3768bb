package rtptest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediafork/mediafork/internal/tone"
)

// Receiver is a stock program receiving a fork's RTP (ffmpeg, gst-launch)
// that a test started: it ends by itself on the streams' RTCP BYEs, or is
// killed and waited for when the test ends.
type Receiver struct {
	name   string
	cmd    *exec.Cmd
	output bytes.Buffer  // stdout and stderr: the program's until exited is closed
	err    error         // how it ended, once exited is closed
	exited chan struct{} // closed once the program has ended and its output is read
}

// StartReceiver starts the program at path with args (90 s at the most).
func StartReceiver(t testing.TB, path string, args ...string) *Receiver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	r := &Receiver{name: filepath.Base(path), cmd: exec.CommandContext(ctx, path, args...), exited: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = &r.output, &r.output
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", r.name, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.exited
	})
	return r
}

// FFmpegRXTX has ffmpeg receive an RTP endpoint's first two streams (RX
// and TX, its ports from base) given nothing but sdp, decoding each into a
// WAV file as it comes (rx.wav and tx.wav in a directory of the test's). It
// returns once ffmpeg has bound the streams' RTP ports.
func FFmpegRXTX(t testing.TB, ffmpeg, sdp string, base netip.AddrPort) (r *Receiver, rx, tx string) {
	t.Helper()
	dir := t.TempDir()
	sdpPath := filepath.Join(dir, "fork.sdp")
	if err := os.WriteFile(sdpPath, []byte(sdp), 0o644); err != nil {
		t.Fatal(err)
	}
	rx, tx = filepath.Join(dir, "rx.wav"), filepath.Join(dir, "tx.wav")
	r = StartReceiver(t, ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file,udp,rtp",
		"-i", sdpPath, "-map", "0:0", "-flush_packets", "1", rx, "-map", "0:1", "-flush_packets", "1", tx)
	WaitBound(t, 30*time.Second, base, netip.AddrPortFrom(base.Addr(), base.Port()+2))
	return r, rx, tx
}

// WAVBytes is the size of a mono 16-bit WAV file holding seconds of audio at
// rate, its 44-byte header included: what ffmpeg has written by then.
func WAVBytes(seconds, rate int) int64 { return int64(44 + seconds*rate*2) }

// WaitFiles waits until each of paths holds at least size bytes, and fails
// if the program ends before, or after timeout.
func (r *Receiver) WaitFiles(t testing.TB, timeout time.Duration, size int64, paths ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !allAtLeast(size, paths) {
		select {
		case <-r.exited:
			t.Fatalf("%s ended early (%v): %s", r.name, r.err, r.output.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.cmd.Process.Kill()
			<-r.exited
			t.Fatalf("%s wrote %s of %d bytes each within %s: %s", r.name, sizes(paths), size, timeout, r.output.String())
		}
	}
}

// WaitExit waits for the program to end by itself, successfully, and fails
// if it has not within timeout (it is interrupted then).
func (r *Receiver) WaitExit(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-r.exited:
		if r.err != nil {
			t.Fatalf("%s: %v: %s", r.name, r.err, r.output.String())
		}
	case <-time.After(timeout):
		r.cmd.Process.Signal(syscall.SIGINT)
		<-r.exited
		t.Fatalf("%s did not end on the BYEs within %s: %s", r.name, timeout, r.output.String())
	}
}

// Output is what the program wrote to stdout and stderr; empty until it has
// ended.
func (r *Receiver) Output() string {
	select {
	case <-r.exited:
		return r.output.String()
	default:
		return ""
	}
}

// WAVTone fails unless the WAV file a receiver decoded is at rate, holds at
// least minSeconds of audio, and the middle half of it (clear of the start
// and the end) is the tone hz: 90 % of its energy at least.
func WAVTone(t testing.TB, path string, rate int, minSeconds float64, hz float64) {
	t.Helper()
	w, err := ReadWAV(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if w.Rate != rate {
		t.Errorf("%s: %d Hz, not %d", path, w.Rate, rate)
	}
	if n := len(w.Samples); float64(n) < minSeconds*float64(w.Rate) {
		t.Fatalf("%s: %d samples at %d Hz, not %.1f s", path, n, w.Rate, minSeconds)
	}
	x := w.Samples[len(w.Samples)/4 : 3*len(w.Samples)/4]
	if share := tone.Share(x, w.Rate, hz); share < 0.9 {
		t.Errorf("%s: %.0f Hz is %.0f%% of the energy", path, hz, 100*share)
	}
}

func allAtLeast(size int64, paths []string) bool {
	for _, p := range paths {
		if fileSize(p) < size {
			return false
		}
	}
	return true
}

func sizes(paths []string) string {
	s := make([]string, len(paths))
	for i, p := range paths {
		s[i] = fmt.Sprint(fileSize(p))
	}
	return strings.Join(s, " and ")
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
