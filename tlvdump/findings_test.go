package tlvdump

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/tlvcodec"
)

// Issue 20's findings against tlvdump, each on the wire: real UDP sockets to
// a running receiver, and what it printed, wrote and kept. These use only
// what the receiver had before the fix, so they ran (and failed) on b25defe.

// lines is an io.Writer tests can read while the receiver writes to it.
type lines struct{ syncbuf.Buffer }

func (l *lines) count(prefix string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

// running is a receiver on a real socket with its Run goroutine.
type running struct {
	*Receiver
	out    *lines
	cancel context.CancelFunc
	done   chan error
}

func runReceiver(t *testing.T, opts Options) *running {
	t.Helper()
	out := &lines{}
	opts.Out = out
	r, err := Listen("127.0.0.1:0", opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{Receiver: r, out: out, cancel: cancel, done: make(chan error, 1)}
	go func() { rr.done <- r.Run(ctx) }()
	t.Cleanup(func() { rr.stop(t) })
	return rr
}

// stop ends Run (the WAV files are closed when it returns).
func (rr *running) stop(t *testing.T) {
	if rr.cancel == nil {
		return
	}
	rr.cancel()
	rr.cancel = nil
	select {
	case err := <-rr.done:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return")
	}
}

// sender is one UDP source.
func sender(t *testing.T, to *net.UDPAddr) func(p interface{ Marshal() ([]byte, error) }) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return func(p interface{ Marshal() ([]byte, error) }) {
		b, err := p.Marshal()
		require.NoError(t, err)
		_, err = c.Write(b)
		require.NoError(t, err)
	}
}

// waitLines waits until the receiver has printed n lines starting with prefix.
func (rr *running) waitLines(t *testing.T, prefix string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return rr.out.count(prefix) >= n }, 60*time.Second, time.Millisecond,
		"%d %q lines; output ends:\n%s", n, prefix, tail(rr.out.String()))
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

// Finding 2: one spoofed format packet saying 10 MHz, then 2.6 MB of audio.
// The receiver kept 2 s × rate samples (1.3 million here, 40 MB at the cap)
// and its summary scanned rate/2 frequencies over them: it never came. Now
// the format packet is refused with a warning, the samples kept are bounded,
// and the summary comes.
func TestFinding2SpoofedRateDoesNotGrowOrHang(t *testing.T) {
	rr := runReceiver(t, Options{WavDir: t.TempDir()})
	send := sender(t, rr.Addr())
	send(&tlvcodec.Signaling{StreamID: 201, Direction: tlvcodec.RX, ChannelID: "spoofed"})
	send(&tlvcodec.Format{StreamID: 201, Direction: tlvcodec.RX, Encoding: 1, SampleRate: 10_000_000, Channels: 1, FrameMs: 20})
	rr.waitLines(t, "FORMAT", 1)
	for seq := uint32(1); seq <= 100; seq++ {
		send(&tlvcodec.Audio{StreamID: 201, Direction: tlvcodec.RX, Sequence: seq, Payload: bytes.Repeat([]byte{0x11, 0x22}, 13000)})
		rr.waitLines(t, "AUDIO", int(seq))
	}
	// A real 48 kHz call beside it: its analysis is bounded by samples too.
	send(&tlvcodec.Format{StreamID: 202, Direction: tlvcodec.RX, Encoding: 1, SampleRate: 48000, Channels: 1, FrameMs: 20})
	for seq := uint32(1); seq <= 150; seq++ { // 3 s
		send(&tlvcodec.Audio{StreamID: 202, Direction: tlvcodec.RX, Sequence: seq, Payload: tone(960, 1000, 48000)})
		rr.waitLines(t, "AUDIO", 100+int(seq))
	}
	rr.stop(t)

	kept := 0
	for _, s := range rr.Streams() {
		assert.LessOrEqual(t, len(s.samples), 8192, "stream %d: samples kept for the analysis", s.StreamID)
		kept += len(s.samples)
	}
	assert.LessOrEqual(t, kept, 2*8192)
	assert.Regexp(t, `(?m)^REFUSED    stream=201 dir=RX from=\S+: format packet refused: rate 10000000 Hz is not a positive multiple of 8000 up to 48000`,
		rr.out.String()[:min(4000, len(rr.out.String()))], "refused with a warning")

	t.Logf("samples kept for the analysis: %d", kept)
	summary := make(chan string, 1)
	start := time.Now()
	go func() {
		var b bytes.Buffer
		rr.WriteSummary(&b)
		summary <- b.String()
	}()
	select {
	case s := <-summary:
		t.Logf("summary after %s", time.Since(start))
		assert.Contains(t, s, "stream=201")
		assert.Contains(t, s, "warning: format packet refused")
		assert.Regexp(t, `stream=202 .*dominant=1000Hz`, s)
	case <-time.After(60 * time.Second):
		t.Fatal("no summary after 60 s: the analysis is bounded by the claimed rate")
	}
}

// Finding 5: one-packet spoofed stream ids each kept a WAV file open until
// their end packet (which never comes): under `ulimit -n 128`, 200 of them
// left the next real call with no WAV at all ("too many open files"). The
// receiver runs in a child process with that limit and its default bounds.
func TestFinding5SpoofedIDsDoNotStarveARealCall(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc")
	}
	wavDir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReceiverUnderFileLimit$")
	cmd.Env = append(os.Environ(), "TLVDUMP_HELPER_WAV="+wavDir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	out := &lines{}
	listen := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "HELPER LISTEN "); ok {
				listen <- addr
			}
			fmt.Fprintln(out, sc.Text())
		}
	}()
	var addr string
	select {
	case addr = <-listen:
	case <-time.After(60 * time.Second):
		t.Fatal("the helper did not start")
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	rr := &running{out: out}
	spoof, real := sender(t, ua), sender(t, ua)
	for id := uint32(1); id <= 200; id++ {
		spoof(&tlvcodec.Audio{StreamID: 5000 + id, Direction: tlvcodec.RX, Sequence: 1, Payload: make([]byte, 320)})
		rr.waitLines(t, "AUDIO", int(id))
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
	require.NoError(t, err)
	t.Logf("descriptors open in the receiver after 200 spoofed ids: %d (limit 128)", len(fds))
	assert.LessOrEqual(t, len(fds), 64+16, "descriptors open in the receiver after 200 spoofed ids (limit 128)")

	real(&tlvcodec.Signaling{StreamID: 77, Direction: tlvcodec.RX, ChannelID: "real"})
	real(&tlvcodec.Format{StreamID: 77, Direction: tlvcodec.RX, Encoding: 1, SampleRate: 8000, Channels: 1, FrameMs: 20})
	call := tone(50*160, 440, 8000)
	for seq := uint32(1); seq <= 50; seq++ {
		real(&tlvcodec.Audio{StreamID: 77, Direction: tlvcodec.RX, Sequence: seq, Payload: call[320*(seq-1) : 320*seq]})
		rr.waitLines(t, "AUDIO", 200+int(seq))
	}
	real(&tlvcodec.End{StreamID: 77, Direction: tlvcodec.RX, LastSequence: 50, Reason: tlvcodec.ReasonHangup})
	rr.waitLines(t, "END", 1)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	<-copied
	require.NoError(t, cmd.Wait())
	text := out.String()
	assert.NotContains(t, text, "too many open files")
	assert.Contains(t, text, "TOTAL packets=250")

	wav, err := os.ReadFile(filepath.Join(wavDir, "stream-77-RX.wav"))
	require.NoError(t, err, "the real call has its WAV")
	require.Equal(t, 44+50*160*2, len(wav))
	assert.Equal(t, uint32(50*160*2), binary.LittleEndian.Uint32(wav[40:]), "finalised")
	assert.True(t, bytes.Equal(call, wav[44:]), "the call's audio")
}

// TestHelperReceiverUnderFileLimit is the receiver process of
// TestFinding5SpoofedIDsDoNotStarveARealCall: `ulimit -n 128`, default
// bounds, a line per packet on stdout, the summary at SIGTERM.
func TestHelperReceiverUnderFileLimit(t *testing.T) {
	dir := os.Getenv("TLVDUMP_HELPER_WAV")
	if dir == "" {
		t.Skip("run by TestFinding5SpoofedIDsDoNotStarveARealCall")
	}
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 128, Max: 128}))
	r, err := Listen("127.0.0.1:0", Options{WavDir: dir, Out: os.Stdout})
	require.NoError(t, err)
	fmt.Printf("HELPER LISTEN %s\n", r.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	require.NoError(t, r.Run(ctx))
	r.WriteSummary(os.Stdout)
}

// Finding 6: a second format packet mid-stream switched the decoding
// silently: the rest of the call went into the same WAV as µ-law read at the
// first format. Now it is warned about and starts a new file in its format.
func TestFinding6FormatChangeWarnsAndStartsANewFile(t *testing.T) {
	dir := t.TempDir()
	rr := runReceiver(t, Options{WavDir: dir})
	send := sender(t, rr.Addr())
	send(&tlvcodec.Signaling{StreamID: 31, Direction: tlvcodec.RX, ChannelID: "c"})
	send(&tlvcodec.Format{StreamID: 31, Direction: tlvcodec.RX, Encoding: 1, SampleRate: 8000, Channels: 1, FrameMs: 20})
	l16 := tone(5*160, 440, 8000)
	for i := 0; i < 5; i++ {
		send(&tlvcodec.Audio{StreamID: 31, Direction: tlvcodec.RX, Sequence: uint32(i + 1), Payload: l16[320*i : 320*(i+1)]})
	}
	rr.waitLines(t, "AUDIO", 5)
	send(&tlvcodec.Format{StreamID: 31, Direction: tlvcodec.RX, Encoding: 2, SampleRate: 16000, Channels: 1, FrameMs: 20})
	be := make([]byte, 640)
	for i := range be {
		be[i] = byte(i)
	}
	for i := 0; i < 3; i++ {
		send(&tlvcodec.Audio{StreamID: 31, Direction: tlvcodec.RX, Sequence: uint32(6 + i), Payload: be})
	}
	send(&tlvcodec.End{StreamID: 31, Direction: tlvcodec.RX, LastSequence: 8, Reason: tlvcodec.ReasonHangup})
	rr.waitLines(t, "END", 1)
	rr.stop(t)

	assert.Regexp(t, `(?m)^WARNING    stream=31 dir=RX format changes from l16 at 8000 Hz to l16be at 16000 Hz after 5 audio packets: a new WAV file$`, rr.out.String())
	first, err := os.ReadFile(filepath.Join(dir, "stream-31-RX.wav"))
	require.NoError(t, err)
	assert.Equal(t, uint32(8000), binary.LittleEndian.Uint32(first[24:]))
	assert.True(t, bytes.Equal(l16, first[44:]), "the first file holds the l16 audio only")
	second, err := os.ReadFile(filepath.Join(dir, "stream-31-RX-2.wav"))
	require.NoError(t, err, "the new format's audio is in a file of its own")
	assert.Equal(t, uint32(16000), binary.LittleEndian.Uint32(second[24:]))
	require.Equal(t, 44+3*640, len(second))
	for i := 0; i < 640; i += 2 {
		assert.Equal(t, be[i+1], second[44+i], "l16be decoded to little-endian")
		assert.Equal(t, be[i], second[44+i+1])
	}
	var sum bytes.Buffer
	rr.WriteSummary(&sum)
	assert.Contains(t, sum.String(), "warning: format changes from l16 at 8000 Hz to l16be at 16000 Hz")
}

var _ io.Writer = (*lines)(nil)
