package tlvdump

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// The class of issue 20, beyond its numbered findings: idle streams closed
// while the receiver runs, open files bounded, every state bounded under
// arbitrary datagrams from arbitrary sources.

// A stream silent for the idle timeout is closed while the receiver runs:
// its WAV is finalised on disk (a reader sees a whole file), and a packet
// after it opens a new one.
func TestIdleStreamIsFinalisedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	rr := runReceiver(t, Options{WavDir: dir, IdleTimeout: 200 * time.Millisecond})
	send := sender(t, rr.Addr())
	send(&tlvcodec.Format{StreamID: 41, Direction: tlvcodec.RX, Encoding: 1, SampleRate: 8000, Channels: 1, FrameMs: 20})
	for seq := uint32(1); seq <= 3; seq++ {
		send(&tlvcodec.Audio{StreamID: 41, Direction: tlvcodec.RX, Sequence: seq, Payload: tone(160, 440, 8000)})
		rr.waitLines(t, "AUDIO", int(seq))
	}
	rr.waitLines(t, "IDLE       stream=41 dir=RX", 1)
	rate, samples, _ := wavFacts(t, filepath.Join(dir, "stream-41-RX.wav")) // finalised: sizes in the header
	assert.Equal(t, 8000, rate)
	assert.Equal(t, 3*160, samples)

	send(&tlvcodec.Audio{StreamID: 41, Direction: tlvcodec.RX, Sequence: 4, Payload: tone(160, 440, 8000)})
	rr.waitLines(t, "REOPEN     stream=41 dir=RX", 1)
	rr.waitLines(t, "IDLE       stream=41 dir=RX", 2)
	_, samples, _ = wavFacts(t, filepath.Join(dir, "stream-41-RX-2.wav"))
	assert.Equal(t, 160, samples)
	rr.stop(t)
	s := rr.Streams()[0]
	assert.Equal(t, "idle", s.Closed)
	assert.Equal(t, 4, s.Packets)
}

// openWavs counts this process's descriptors open on files in dir.
func openWavs(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}

// Open WAV files are bounded (least recently written closed first, and
// opened again when written): 100 spoofed one-packet streams hold at most
// MaxOpenFiles descriptors, and every file is whole at the end.
func TestOpenWavFilesBounded(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc")
	}
	dir := t.TempDir()
	rr := runReceiver(t, Options{WavDir: dir, MaxOpenFiles: 8})
	spoof, real := sender(t, rr.Addr()), sender(t, rr.Addr())
	real(&tlvcodec.Audio{StreamID: 9, Direction: tlvcodec.RX, Sequence: 1, Payload: tone(160, 440, 8000)})
	rr.waitLines(t, "AUDIO", 1)
	for id := uint32(1); id <= 100; id++ {
		spoof(&tlvcodec.Audio{StreamID: 100 + id, Direction: tlvcodec.RX, Sequence: 1, Payload: make([]byte, 320)})
		rr.waitLines(t, "AUDIO", 1+int(id))
		require.LessOrEqual(t, openWavs(t, dir), 8, "after %d spoofed streams", id)
	}
	// The real stream's file was closed on the way; it is opened again and
	// its audio goes on where it was.
	real(&tlvcodec.Audio{StreamID: 9, Direction: tlvcodec.RX, Sequence: 2, Payload: tone(160, 440, 8000)})
	rr.waitLines(t, "AUDIO", 102)
	rr.stop(t)
	assert.Zero(t, openWavs(t, dir), "every file closed at exit")
	files, _ := filepath.Glob(filepath.Join(dir, "*.wav"))
	assert.Len(t, files, 101)
	for _, f := range files {
		wavFacts(t, f)
	}
	_, samples, _ := wavFacts(t, filepath.Join(dir, "stream-9-RX.wav"))
	assert.Equal(t, 320, samples)
}

// A WAV file replaced while closed (here by a symlink to a file the
// receiver must not touch) is not written through: the stream goes on in a
// new file.
func TestReopenRefusesAReplacedFile(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep"), 0o644))
	r, out := receiver(t, Options{WavDir: dir, MaxOpenFiles: 1})
	handle(t, r, &tlvcodec.Audio{StreamID: 1, Direction: tlvcodec.RX, Sequence: 1, Payload: make([]byte, 320)},
		&tlvcodec.Audio{StreamID: 2, Direction: tlvcodec.RX, Sequence: 1, Payload: make([]byte, 320)}) // closes 1's file
	path := filepath.Join(dir, "stream-1-RX.wav")
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Symlink(victim, path))
	handle(t, r, &tlvcodec.Audio{StreamID: 1, Direction: tlvcodec.RX, Sequence: 2, Payload: make([]byte, 320)})
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "keep", string(b))
	assert.Contains(t, out.String(), "a new WAV file")
	_, err = os.Stat(filepath.Join(dir, "stream-1-RX-2.wav"))
	assert.NoError(t, err)
}

// The options a receiver is started with are checked like a format packet.
func TestListenRefusesImpossibleOptions(t *testing.T) {
	for _, o := range []Options{{Rate: 1_600_000}, {Rate: 11025}, {Rate: -8000}, {FrameMs: 5000, Rate: 48000}, {MaxStreams: -1}, {IdleTimeout: -time.Second}} {
		_, err := Listen("127.0.0.1:0", o)
		assert.Error(t, err, "%+v", o)
	}
	_, err := Listen("127.0.0.1:0", Options{Rate: 1_600_000})
	assert.ErrorContains(t, err, "rate: rate 1600000 Hz is not a positive multiple of 8000 up to 48000")
}

// fuzzInput encodes datagrams for FuzzReceiver: per datagram a byte (the
// source, 0-2; with the top bit set, a clock step of its low bits × 100 ms
// instead), a u16 length and the bytes.
func fuzzInput(steps ...any) []byte {
	var b []byte
	for _, s := range steps {
		switch s := s.(type) {
		case time.Duration:
			b = append(b, 0x80|byte(s/(100*time.Millisecond)))
		case [2]any:
			p := s[1].([]byte)
			b = append(b, byte(s[0].(int)))
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
	}
	return b
}

// FuzzReceiver feeds arbitrary datagrams from three sources, with the clock
// moving, to a receiver writing WAV files, and checks after each that every
// bound holds; at the end, that the bytes on disk are bounded by the bytes
// received and every file is finalised. CI: -fuzztime 20000x.
func FuzzReceiver(f *testing.F) {
	for _, tc := range loadHostile(f).Cases {
		var steps []any
		src := map[string]int{}
		for _, d := range tc.Datagrams {
			if d.AdvanceMs > 0 {
				steps = append(steps, time.Duration(d.AdvanceMs)*time.Millisecond)
				continue
			}
			if _, ok := src[d.From]; !ok {
				src[d.From] = len(src) % 3
			}
			pkts := d.packets(f)
			for i, p := range pkts {
				if i >= 40 || len(p) > 4000 {
					break // seeds stay small
				}
				steps = append(steps, [2]any{src[d.From], p})
			}
		}
		f.Add(fuzzInput(steps...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		const maxStreams, maxOpen = 8, 3
		r, err := newReceiver(Options{WavDir: dir, MaxStreams: maxStreams, MaxOpenFiles: maxOpen, IdleTimeout: time.Second, now: clock.now, Out: io.Discard})
		require.NoError(t, err)
		srcs := []net.Addr{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1001}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1002},
			&net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1001}}
		payload := 0
		var elapsed time.Duration
		for len(data) > 0 {
			op := data[0]
			data = data[1:]
			if op&0x80 != 0 {
				d := time.Duration(op&0x7f) * 100 * time.Millisecond
				clock.advance(d)
				elapsed += d
				r.sweep()
				continue
			}
			if len(data) < 2 {
				break
			}
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			dg := data[2 : 2+n]
			data = data[2+n:]
			payload += len(dg)
			r.Handle(dg, srcs[int(op)%len(srcs)])

			r.mu.Lock()
			require.LessOrEqual(t, len(r.streams), maxStreams)
			require.Equal(t, len(r.streams), r.active.Len())
			require.LessOrEqual(t, r.open.Len(), maxOpen)
			require.LessOrEqual(t, r.kept, MaxAnalysedTotal)
			kept := 0
			for _, s := range r.streams {
				require.LessOrEqual(t, len(s.samples), MaxAnalysedSamples)
				require.LessOrEqual(t, len(s.WavPaths), MaxSegments)
				require.LessOrEqual(t, len(s.Warnings), maxWarnings)
				kept += len(s.samples)
			}
			require.Equal(t, kept, r.kept)
			r.mu.Unlock()
		}
		r.WriteSummary(io.Discard)
		r.close()
		files, err := filepath.Glob(filepath.Join(dir, "*.wav"))
		require.NoError(t, err)
		onDisk := 0
		for _, p := range files {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.GreaterOrEqual(t, len(b), 44)
			require.Equal(t, uint32(len(b)-44), binary.LittleEndian.Uint32(b[40:]), "%s finalised", p)
			onDisk += len(b) - 44
		}
		// Every sample written is a decoded payload byte or two, or silence
		// no longer than the audio beside it: at most 4 bytes per byte in;
		// or silence a gap packet reported, no longer in all, per stream,
		// than the time that passed on the receiver's clock.
		streams := len(r.streams) + r.counts.Evicted
		bound := 4*payload + streams*2*MaxRate*int(elapsed/time.Millisecond)/1000
		require.LessOrEqual(t, onDisk, bound, "bytes on disk for %d bytes received in %s", payload, elapsed)

		require.Zero(t, r.open.Len())
	})
}
