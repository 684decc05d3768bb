package mediafork

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/tlvcodec"
)

// bigSink is a loopback UDP receiver with a 4 MiB buffer that reads on its own
// goroutine while the test sends, so a burst of 64 KB GSO trains is not lost
// for reasons that have nothing to do with the sender.
type bigSink struct {
	conn *net.UDPConn
	got  chan []byte
}

func newBigSink(t *testing.T) *bigSink {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	require.NoError(t, c.SetReadBuffer(4<<20))
	s := &bigSink{conn: c, got: make(chan []byte, 1<<16)}
	go func() {
		defer close(s.got)
		buf := make([]byte, 1<<16)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			s.got <- bytes.Clone(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return s
}

func (s *bigSink) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// take returns n datagrams, failing when 3 s pass without one; then it checks
// that no further datagram follows.
func (s *bigSink) take(t *testing.T, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for len(out) < n {
		select {
		case p := <-s.got:
			out = append(out, p)
		case <-time.After(3 * time.Second):
			require.FailNow(t, "datagrams missing", "got %d of %d", len(out), n)
		}
	}
	select {
	case p := <-s.got:
		require.FailNow(t, "unexpected datagram", "%d bytes after the %d expected", len(p), n)
	case <-time.After(100 * time.Millisecond):
	}
	return out
}

// wireFork is one fork the test drives by hand: the sizes of the audio packets
// (whole datagrams) of each of its directions, RX then TX (mono: RX only).
type wireFork struct {
	rx, tx []int
}

// testAudio is the audio packet seq (from 1) of a stream, size bytes long, with
// a payload that differs from packet to packet and stream to stream.
func testAudio(id uint32, dir Direction, seq uint32, size int) []byte {
	p := make([]byte, size)
	tlvcodec.PutAudioHeader(p, id, tlvcodec.Direction(dir), seq, size-tlvcodec.AudioHeaderSize)
	for i := tlvcodec.AudioHeaderSize; i < size; i++ {
		p[i] = byte(uint32(i)*7 + seq*13 + id)
	}
	return p
}

func streamKey(p []byte) string { return fmt.Sprintf("%x/%d", p[3:7], p[7]) }

// sendByHand sends the forks' packets through s to one receiver, the streams
// taking turns to send up to burst packets each, and returns what the
// receiver got, by stream. It checks that every packet arrived, in order and
// byte for byte, and that the forks counted every packet sent and none dropped.
func sendByHand(t *testing.T, s *Sender, burst int, forks []wireFork) map[string][][]byte {
	t.Helper()
	sink := newBigSink(t)
	reg := NewRegistry(s, 100, true, quiet)
	reg.SetFormatPackets(false) // ForkStream\'s packets: these tests are about batching
	type stream struct {
		f     *Fork
		dir   Direction
		sizes []int
	}
	var streams []stream
	var fs []*Fork
	want := map[string][][]byte{}
	total, longest := 0, 0
	for i, wf := range forks {
		f, err := reg.Claim(CallID(fmt.Sprintf("u%d", i)), "b")
		require.NoError(t, err)
		f.StreamID = uint32(0x1000 + i) // fixed, to compare runs
		spec := stereoSpec()
		spec.Mix = Mono
		if wf.tx != nil {
			spec.Mix = Stereo
		}
		require.NoError(t, f.Begin(spec, []netip.AddrPort{sink.addr()}))
		fs = append(fs, f)
		streams = append(streams, stream{f, DirRX, wf.rx})
		if wf.tx != nil {
			streams = append(streams, stream{f, DirTX, wf.tx})
		}
	}
	for _, st := range streams {
		total += 2 + len(st.sizes) // signaling, audio, end
		longest = max(longest, len(st.sizes))
	}
	for start := 0; start < longest; start += burst {
		for _, st := range streams {
			for seq := start + 1; seq <= min(start+burst, len(st.sizes)); seq++ {
				p := testAudio(st.f.StreamID, st.dir, uint32(seq), st.sizes[seq-1])
				k := streamKey(p)
				want[k] = append(want[k], p)
				st.f.SendPacket(st.dir, p)
			}
		}
	}
	for _, f := range fs {
		f.Finish(EndHangup)
	}
	s.Close()
	for _, f := range fs {
		assert.Zero(t, f.Drops.Load(), "fork %08x drops (%s)", f.StreamID, f.Info().LastError)
	}
	ep := fs[0].eps[0]
	assert.Zero(t, ep.Drops.Load(), "endpoint drops")
	assert.Zero(t, refusedGSO(ep), "every batch fits GSO: none falls back to single sends")

	got := map[string][][]byte{}
	for _, p := range sink.take(t, total) {
		got[streamKey(p)] = append(got[streamKey(p)], p)
	}
	require.Len(t, got, len(streams))
	for _, st := range streams {
		k := fmt.Sprintf("%08x/%d", st.f.StreamID, st.dir)
		g := got[k]
		require.Len(t, g, 2+len(st.sizes), "stream %s", k)
		assert.Equal(t, byte(tlvcodec.TypeSignaling), g[0][0], "stream %s starts with signaling", k)
		for i, p := range want[k] {
			if !bytes.Equal(p, g[1+i]) {
				t.Fatalf("stream %s: audio packet %d (%d bytes) arrived as %d bytes %x...", k, i+1, len(p), len(g[1+i]), g[1+i][:min(len(g[1+i]), 12)])
			}
		}
		var e tlvcodec.End
		require.NoError(t, e.Unmarshal(g[len(g)-1]), "stream %s ends with an end packet", k)

		bytesOut := uint64(tlvcodec.SignalingSize + tlvcodec.EndSize)
		for _, n := range st.sizes {
			bytesOut += uint64(n)
		}
		assert.Equal(t, uint64(2+len(st.sizes)), st.f.PacketsOut[st.dir-1].Load(), "stream %s packets counted", k)
		assert.Equal(t, bytesOut, st.f.BytesOut[st.dir-1].Load(), "stream %s bytes counted", k)
	}
	return got
}

func repeat(size, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func withLast(s []int, last int) []int { return append(s, last) }

// Large packets: a batch is capped at 65,507 bytes of UDP payload as well as
// at maxSegments, and a batch mixing sizes is cut so that only its last
// segment is shorter than the rest. Every datagram arrives, byte for byte and
// in order per stream, through the plain and the batching sender alike.
func TestBatchingSenderLargePackets(t *testing.T) {
	// Forks of different frame sizes to one destination, each with a final
	// partial packet, and a fork whose packets shrink and grow.
	mixed := []wireFork{
		{rx: withLast(repeat(2572, 45), 1000), tx: withLast(repeat(2572, 45), 1000)},
		{rx: withLast(repeat(332, 90), 100), tx: withLast(repeat(332, 90), 100)},
		{rx: withLast(repeat(3212, 30), 13)},
		{rx: []int{500, 500, 400, 500, 600, 600, 13, 2000, 1999, 2000, 40000, 30000, 30000, 65507, 12, 12}},
	}
	for _, tc := range []struct {
		name  string
		burst int // packets a stream sends before the next takes its turn
		forks []wireFork
	}{
		// 20 ms of 64 kHz l16 stereo: 32 packets would be 82 KB.
		{"2560x80", 1, []wireFork{{rx: repeat(2560, 40), tx: repeat(2560, 40)}}},
		// frame_ms 100 at 16 kHz l16.
		{"3200x40", 1, []wireFork{{rx: repeat(3200, 40)}}},
		// Around the byte cap: 32 x 2047 = 65,504 fits, 32 x 2048 does not;
		// 3 x 21,835 = 65,505 fits, 3 x 21,836 does not; one 65,507-byte packet.
		{"cap-edges", 100, []wireFork{
			{rx: repeat(2047, 70)}, {rx: repeat(2048, 70)},
			{rx: repeat(21835, 7), tx: repeat(21836, 7)}, {rx: []int{65507}},
		}},
		{"mixed", 37, mixed},
		{"mixed-interleaved", 1, mixed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := sendByHand(t, NewSender(), tc.burst, tc.forks)
			got := sendByHand(t, NewBatchingSender(time.Hour), tc.burst, tc.forks) // batches leave by their caps only
			// Same datagrams per stream; signaling timestamps may differ by a second.
			require.Equal(t, len(ref), len(got))
			for k, want := range ref {
				require.Len(t, got[k], len(want), k)
				for i := range want {
					if !bytes.Equal(want[i][:8], got[k][i][:8]) || (want[i][0] != 1 && !bytes.Equal(want[i], got[k][i])) {
						t.Fatalf("%s packet %d differs between the plain and the batching sender", k, i)
					}
				}
			}
		})
	}
}

// Forks whose frames make large packets, through the real per-frame path
// (Write): 64 kHz l16 stereo at 20 ms, 16 kHz l16 mono at 100 ms, 8 kHz l16
// stereo at 20 ms and 48 kHz pcmu mixed at 100 ms, all to one destination,
// each ending on a partial frame.
func TestBatchingSenderLargeFramesFromForks(t *testing.T) {
	params := []Params{
		{Mix: Stereo, Rate: 64000, Encoding: L16, FrameMs: 20},  // 2,572-byte packets
		{Mix: Mono, Rate: 16000, Encoding: L16, FrameMs: 100},   // 3,212-byte packets
		{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20},   // 332-byte packets
		{Mix: Mixed, Rate: 48000, Encoding: PCMU, FrameMs: 100}, // 4,812-byte packets
	}
	wire := func(s *Sender) (map[string][][]byte, []*Fork) {
		sink := newBigSink(t)
		reg := NewRegistry(s, 10, true, quiet)
		reg.SetFormatPackets(false) // ForkStream\'s packets: these tests are about batching
		var forks []*Fork
		var pcm [][]byte
		total := 0
		for i, p := range params {
			require.NoError(t, p.Validate())
			f, err := reg.Claim(CallID(fmt.Sprintf("u%d", i)), "b")
			require.NoError(t, err)
			f.StreamID = uint32(200 + i)
			spec := stereoSpec()
			spec.Params = p
			require.NoError(t, f.Begin(spec, []netip.AddrPort{sink.addr()}))
			forks = append(forks, f)
			// 2 s of audio and a bit: 40 packets per direction at 20 ms, plus a partial one.
			samples := p.Rate*2 + 7
			b := make([]byte, samples*p.Mix.Channels()*2)
			for j := range b {
				b[j] = byte(j*31 + i)
			}
			pcm = append(pcm, b)
			packets := (samples + p.FrameSamples() - 1) / p.FrameSamples()
			total += len(p.Mix.Directions()) * (2 + packets)
		}
		// 20 ms WebSocket frames, the forks taking turns to write a second of
		// them (mod_audio_stream's burst of audio queued before the upgrade).
		for off := 0; ; off += 50 {
			more := false
			for i, f := range forks {
				p := params[i]
				n := p.Rate / 50 * p.Mix.Channels() * 2
				for j := off; j < off+50 && j*n < len(pcm[i]); j++ {
					f.Write(pcm[i][j*n : min((j+1)*n, len(pcm[i]))])
					more = true
				}
			}
			if !more {
				break
			}
		}
		for _, f := range forks {
			f.Finish(EndHangup)
		}
		s.Close()
		got := map[string][][]byte{}
		for _, p := range sink.take(t, total) {
			got[streamKey(p)] = append(got[streamKey(p)], p)
		}
		return got, forks
	}
	ref, refForks := wire(NewSender())
	got, gotForks := wire(NewBatchingSender(time.Hour))
	require.Len(t, ref, 6)
	require.Equal(t, len(ref), len(got))
	for k, want := range ref {
		require.Len(t, got[k], len(want), k)
		for i := range want {
			if !bytes.Equal(want[i][:8], got[k][i][:8]) || (want[i][0] != 1 && !bytes.Equal(want[i], got[k][i])) {
				t.Fatalf("%s packet %d differs between the plain and the batching sender", k, i)
			}
			if want[i][0] == byte(tlvcodec.TypeAudio) {
				assert.Equal(t, uint32(i), binary.BigEndian.Uint32(got[k][i][8:12]), "%s sequence", k)
			}
		}
	}
	assert.Zero(t, refusedGSO(gotForks[0].eps[0]), "every batch fits GSO")
	for i := range params {
		for _, f := range []*Fork{refForks[i], gotForks[i]} {
			assert.Zero(t, f.Drops.Load(), "fork %d drops (%s)", i, f.Info().LastError)
		}
		assert.Equal(t, refForks[i].Info().PacketsOut, gotForks[i].Info().PacketsOut, "fork %d packets", i)
		assert.Equal(t, refForks[i].Info().BytesOut, gotForks[i].Info().BytesOut, "fork %d bytes", i)
	}
}

func refusedGSO(e *Endpoint) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.refusedGSO
}

// A batch the kernel refuses to send as GSO goes out one packet at a time, not
// one of its packets lost: EMSGSIZE (a train over 65,507 bytes, made here by
// going round the caps) and EINVAL (GSO on a socket with SO_NO_CHECK).
func TestBatchingSenderFallsBackWhenGSORefused(t *testing.T) {
	setup := func(t *testing.T) (*bigSink, *Sender, *Fork, *Endpoint) {
		sink := newBigSink(t)
		s := NewBatchingSender(time.Hour)
		reg := NewRegistry(s, 10, true, quiet)
		reg.SetFormatPackets(false) // ForkStream\'s packets: these tests are about batching
		f, err := reg.Claim("u", "b")
		require.NoError(t, err)
		spec := stereoSpec()
		spec.Mix = Mono
		require.NoError(t, f.Begin(spec, []netip.AddrPort{sink.addr()}))
		require.Len(t, sink.take(t, 1), 1) // signaling
		return sink, s, f, f.eps[0]
	}
	// check takes the last n packets of want from the wire.
	check := func(t *testing.T, sink *bigSink, f *Fork, want [][]byte, n int) {
		t.Helper()
		got := sink.take(t, n)
		for i, p := range want[len(want)-n:] {
			require.True(t, bytes.Equal(p, got[i]), "packet %d", len(want)-n+i+1)
		}
		assert.Zero(t, f.Drops.Load(), f.Info().LastError)
		assert.Equal(t, uint64(1+len(want)), f.PacketsOut[0].Load(), "all packets counted, signaling too")
	}

	t.Run("EMSGSIZE", func(t *testing.T) {
		sink, s, f, ep := setup(t)
		defer s.Close()
		var want [][]byte
		ep.mu.Lock()
		ep.seg, ep.first = 2560, time.Now()
		for seq := uint32(1); seq <= maxSegments; seq++ { // 81,920 bytes: too much for one send
			p := testAudio(f.StreamID, DirRX, seq, 2560)
			want = append(want, p)
			ep.buf = append(ep.buf, p...)
			ep.owners = append(ep.owners, owner{f, DirRX})
		}
		ep.flushLocked()
		ep.mu.Unlock()
		check(t, sink, f, want, len(want))
		assert.Equal(t, 1, refusedGSO(ep))

		// Later batches of that size go one by one at once; smaller ones still
		// try GSO.
		for seq := uint32(len(want) + 1); seq <= 100; seq++ {
			size := 2560
			if seq > 60 {
				size = 1000
			}
			p := testAudio(f.StreamID, DirRX, seq, size)
			want = append(want, p)
			f.SendPacket(DirRX, p)
		}
		s.FlushAll()
		check(t, sink, f, want, len(want)-maxSegments)
		assert.Equal(t, 1, refusedGSO(ep))
	})

	t.Run("EINVAL", func(t *testing.T) {
		sink, s, f, ep := setup(t)
		defer s.Close()
		// The kernel refuses GSO without UDP checksums.
		require.NoError(t, unix.SetsockoptInt(ep.fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1))
		var want [][]byte
		for seq := uint32(1); seq <= 100; seq++ {
			size := 332
			if seq%40 == 0 {
				size = 100
			}
			p := testAudio(f.StreamID, DirRX, seq, size)
			want = append(want, p)
			f.SendPacket(DirRX, p)
		}
		s.FlushAll()
		check(t, sink, f, want, len(want))
		assert.Positive(t, refusedGSO(ep))
	})
}
