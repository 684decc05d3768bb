//go:build linux

package gso

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/transport/udp"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// bigSink is a loopback UDP receiver with a 4 MiB buffer that reads on its own
// goroutine while the test sends, so a burst of 64 KB GSO trains is not lost
// for reasons that have nothing to do with the sender.
type bigSink struct {
	conn    *net.UDPConn
	got     chan []byte
	discard atomic.Bool // read and drop: AllocsPerRun counts the reader's allocations too
}

func newBigSink(t testing.TB) *bigSink {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	require.NoError(t, c.SetReadBuffer(4<<20))
	s := &bigSink{conn: c, got: make(chan []byte, 1<<16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, bench := t.(*testing.B); bench || s.discard.Load() {
				continue // nobody takes them; no allocation in the measurement
			}
			s.got <- bytes.Clone(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
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

// testAudio is the audio packet seq (from 1) of a stream, size bytes long, with
// a payload that differs from packet to packet and stream to stream.
func testAudio(id uint32, dir tlvcodec.Direction, seq uint32, size int) []byte {
	p := make([]byte, size)
	tlvcodec.PutAudioHeader(p, id, dir, seq, size-tlvcodec.AudioHeaderSize)
	for i := tlvcodec.AudioHeaderSize; i < size; i++ {
		p[i] = byte(uint32(i)*7 + seq*13 + id)
	}
	return p
}

func streamKey(p []byte) string { return fmt.Sprintf("%x/%d", p[3:7], p[7]) }

func byStream(pkts [][]byte) map[string][][]byte {
	m := map[string][][]byte{}
	for _, p := range pkts {
		m[streamKey(p)] = append(m[streamKey(p)], p)
	}
	return m
}

// wireStream is one stream's audio packet sizes.
type wireStream []int

// sendByHand sends the streams' packets through one endpoint of tr, the
// streams taking turns to send up to burst packets each, gathered into sends
// as a batch gathers them (BatchSize packets, MaxBatchBytes, back to back in
// one buffer); it returns what the receiver got and the endpoint.
func sendByHand(t *testing.T, tr mediafork.Transport, burst int, streams []wireStream) (map[string][][]byte, mediafork.Endpoint) {
	t.Helper()
	sink := newBigSink(t)
	ep, err := tr.Open(sink.addr())
	require.NoError(t, err)
	defer ep.Close()
	var buf []byte
	var ends []int
	total, longest := 0, 0
	flush := func() {
		var bufs [][]byte
		start := 0
		for _, e := range ends {
			bufs = append(bufs, buf[start:e:e])
			start = e
		}
		n, err := ep.Send(bufs)
		require.NoError(t, err)
		require.Equal(t, len(bufs), n)
		buf, ends = buf[:0], ends[:0]
	}
	for _, st := range streams {
		total += len(st)
		longest = max(longest, len(st))
	}
	for start := 0; start < longest; start += burst {
		for i, st := range streams {
			for seq := start + 1; seq <= min(start+burst, len(st)); seq++ {
				p := testAudio(uint32(0x1000+i), tlvcodec.RX, uint32(seq), st[seq-1])
				if len(ends) > 0 && len(buf)+len(p) > mediafork.MaxBatchBytes {
					flush()
				}
				buf = append(buf, p...)
				ends = append(ends, len(buf))
				if len(ends) == ep.BatchSize() {
					flush()
				}
			}
		}
	}
	if len(ends) > 0 {
		flush()
	}
	return byStream(sink.take(t, total)), ep
}

func repeat(size, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func withLast(s []int, last int) []int { return append(s, last) }

func refused(ep mediafork.Endpoint) int {
	e := ep.(*Endpoint)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.refused
}

// Large packets: a train is capped at 65,507 bytes of UDP payload as well as
// at MaxSegments, and a batch mixing sizes is cut so that only each train's
// last segment is shorter than the rest. Every datagram arrives, byte for byte
// and in order per stream, through the plain and the GSO transport alike, and
// no train needs the one-by-one fallback.
func TestLargePackets(t *testing.T) {
	mixed := []wireStream{
		withLast(repeat(2572, 45), 1000), withLast(repeat(2572, 45), 1000),
		withLast(repeat(332, 90), 100), withLast(repeat(332, 90), 100),
		withLast(repeat(3212, 30), 13),
		{500, 500, 400, 500, 600, 600, 13, 2000, 1999, 2000, 40000, 30000, 30000, 65507, 12, 12},
	}
	for _, tc := range []struct {
		name    string
		burst   int
		streams []wireStream
	}{
		// 20 ms of 64 kHz l16 stereo: 64 packets would be 164 KB.
		{"2560x80", 1, []wireStream{repeat(2560, 40), repeat(2560, 40)}},
		{"3200x40", 1, []wireStream{repeat(3200, 40)}},
		// Around the byte cap: 32 x 2047 = 65,504 fits, 32 x 2048 does not;
		// 3 x 21,835 = 65,505 fits, 3 x 21,836 does not; one 65,507-byte packet.
		{"cap-edges", 100, []wireStream{repeat(2047, 70), repeat(2048, 70), repeat(21835, 7), repeat(21836, 7), {65507}}},
		{"332x200", 200, []wireStream{repeat(332, 200)}},
		{"mixed", 37, mixed},
		{"mixed-interleaved", 1, mixed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, _ := sendByHand(t, udp.New(), tc.burst, tc.streams)
			tr, err := New()
			require.NoError(t, err)
			got, ep := sendByHand(t, tr, tc.burst, tc.streams)
			assert.Zero(t, refused(ep), "every train fits GSO: none falls back to single sends")
			require.Equal(t, len(ref), len(got))
			for k, want := range ref {
				require.Len(t, got[k], len(want), k)
				for i := range want {
					if !bytes.Equal(want[i], got[k][i]) {
						t.Fatalf("%s packet %d differs between the plain and the GSO transport", k, i)
					}
				}
			}
		})
	}
}

// tapTransport remembers the endpoints it opened.
type tapTransport struct {
	mediafork.Transport
	mu  sync.Mutex
	eps []mediafork.Endpoint
}

func (t *tapTransport) Open(a netip.AddrPort) (mediafork.Endpoint, error) {
	ep, err := t.Transport.Open(a)
	t.mu.Lock()
	t.eps = append(t.eps, ep)
	t.mu.Unlock()
	return ep, err
}

func gsoTransport(t testing.TB) *tapTransport {
	tr, err := New()
	require.NoError(t, err)
	return &tapTransport{Transport: tr}
}

// Forks through the real per-frame path (Write into a reader's batch, a
// flush per round) put exactly the same datagrams on the wire with the GSO
// transport as with the plain one: every format, frames of any size, each
// fork ending on a partial packet, several forks to one destination.
func TestForksGSOMatchesPlain(t *testing.T) {
	params := []mediafork.Params{
		{Mix: mediafork.Stereo, Rate: 48000, Encoding: mediafork.L16, FrameMs: 30},  // 2,892-byte packets
		{Mix: mediafork.Mono, Rate: 16000, Encoding: mediafork.L16, FrameMs: 100},   // 3,212-byte packets
		{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},   // 332-byte packets
		{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16BE, FrameMs: 20}, // 332-byte packets
		{Mix: mediafork.Mixed, Rate: 48000, Encoding: mediafork.PCMU, FrameMs: 100}, // 4,812-byte packets
		{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.PCMA, FrameMs: 20},  // 172-byte packets
	}
	for _, chunk := range []int{0, 500} { // 0: 20 ms frames; else frames of that many bytes
		t.Run(fmt.Sprint("chunk", chunk), func(t *testing.T) {
			wire := func(tr mediafork.Transport) (map[string][][]byte, []*mediafork.Fork) {
				sink := newBigSink(t)
				reg := mediafork.NewRegistry(tr, 10, true, quiet)
				reg.SetFormatPackets(false) // ForkStream's packets: the counts below
				batch := reg.NewSharedBatch()
				var forks []*mediafork.Fork
				var pcm [][]byte
				total := 0
				for i, p := range params {
					require.NoError(t, p.Validate())
					f, err := reg.Claim(mediafork.CallID(fmt.Sprintf("u%d", i)), "b")
					require.NoError(t, err)
					f.StreamID = uint32(200 + i) // fixed, to compare the bytes
					spec := mediafork.Spec{Params: p, Metadata: mediafork.Metadata{ChannelID: "c"}}
					require.NoError(t, f.Begin(spec, mediafork.TLVTargets(sink.addr())))
					forks = append(forks, f)
					samples := p.Rate*2 + 7 // 2 s and a bit: ends on a partial packet
					b := make([]byte, samples*p.Mix.Channels()*2)
					for j := range b {
						b[j] = byte(j*31 + i)
					}
					pcm = append(pcm, b)
					packets := (samples + p.FrameSamples() - 1) / p.FrameSamples()
					total += len(p.Mix.Directions()) * (2 + packets)
				}
				// Rounds: every fork writes a few frames, then the round's flush.
				for off := 0; ; off += 3 {
					more := false
					for i, f := range forks {
						n := chunk
						if n == 0 {
							n = params[i].Rate / 50 * params[i].Mix.Channels() * 2
						}
						for j := off; j < off+3 && j*n < len(pcm[i]); j++ {
							f.Write(batch, pcm[i][j*n:min((j+1)*n, len(pcm[i]))])
							more = true
						}
					}
					batch.Flush()
					if !more {
						break
					}
				}
				for _, f := range forks {
					f.Finish(mediafork.EndHangup)
				}
				return byStream(sink.take(t, total)), forks
			}
			ref, refForks := wire(udp.New())
			tap := gsoTransport(t)
			got, gotForks := wire(tap)
			require.Equal(t, len(ref), len(got))
			for k, want := range ref {
				require.Len(t, got[k], len(want), k)
				for i := range want {
					// Signaling timestamps may differ by a second.
					if !bytes.Equal(want[i][:8], got[k][i][:8]) || (want[i][0] != byte(tlvcodec.TypeSignaling) && !bytes.Equal(want[i], got[k][i])) {
						t.Fatalf("%s packet %d differs between the plain and the GSO transport", k, i)
					}
					if want[i][0] == byte(tlvcodec.TypeAudio) {
						assert.Equal(t, uint32(i), binary.BigEndian.Uint32(got[k][i][8:12]), "%s sequence", k)
					}
				}
			}
			for _, ep := range tap.eps {
				assert.Zero(t, refused(ep), "every train fits GSO")
			}
			for i := range params {
				for _, f := range []*mediafork.Fork{refForks[i], gotForks[i]} {
					assert.Zero(t, f.Drops.Load(), "fork %d drops (%s)", i, f.Info().LastError)
				}
				assert.Equal(t, refForks[i].Info().PacketsOut, gotForks[i].Info().PacketsOut, "fork %d packets", i)
				assert.Equal(t, refForks[i].Info().BytesOut, gotForks[i].Info().BytesOut, "fork %d bytes", i)
			}
		})
	}
}

// A train the kernel refuses to send as GSO goes out one packet at a time, not
// one of its packets lost: EMSGSIZE (a train over 65,507 bytes, made here by
// raising the cap) and EINVAL (GSO on a socket with SO_NO_CHECK).
func TestFallsBackWhenGSORefused(t *testing.T) {
	setup := func(t *testing.T) (*bigSink, *Endpoint) {
		sink := newBigSink(t)
		tr, err := New()
		require.NoError(t, err)
		ep, err := tr.Open(sink.addr())
		require.NoError(t, err)
		t.Cleanup(func() { ep.Close() })
		return sink, ep.(*Endpoint)
	}
	send := func(t *testing.T, ep *Endpoint, pkts [][]byte) {
		t.Helper()
		for len(pkts) > 0 {
			n := min(len(pkts), ep.BatchSize())
			sent, err := ep.Send(pkts[:n])
			require.NoError(t, err)
			require.Equal(t, n, sent)
			pkts = pkts[n:]
		}
	}
	check := func(t *testing.T, sink *bigSink, want [][]byte) {
		t.Helper()
		got := sink.take(t, len(want))
		for i, p := range want {
			require.True(t, bytes.Equal(p, got[i]), "packet %d", i+1)
		}
	}

	t.Run("EMSGSIZE", func(t *testing.T) {
		sink, ep := setup(t)
		ep.maxBytes = 1 << 20 // go round the cap
		var want [][]byte
		for seq := uint32(1); seq <= 32; seq++ { // 81,920 bytes: too much for one send
			want = append(want, testAudio(1, tlvcodec.RX, seq, 2560))
		}
		send(t, ep, want)
		check(t, sink, want)
		assert.Equal(t, 1, refused(ep))

		// Later trains of that size go one by one at once; smaller ones still
		// use GSO.
		want = want[:0]
		for seq := uint32(33); seq <= 100; seq++ {
			size := 2560
			if seq > 60 {
				size = 1000
			}
			want = append(want, testAudio(1, tlvcodec.RX, seq, size))
		}
		send(t, ep, want)
		check(t, sink, want)
		assert.Equal(t, 1, refused(ep))
	})

	t.Run("EINVAL", func(t *testing.T) {
		sink, ep := setup(t)
		// The kernel refuses GSO without UDP checksums.
		require.NoError(t, unix.SetsockoptInt(ep.fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1))
		var want [][]byte
		for seq := uint32(1); seq <= 100; seq++ {
			size := 332
			if seq%40 == 0 {
				size = 100
			}
			want = append(want, testAudio(1, tlvcodec.RX, seq, size))
		}
		send(t, ep, want)
		check(t, sink, want)
		assert.Positive(t, refused(ep))
	})
}

// The per-frame path with the GSO transport allocates nothing.
func TestFanOutAllocatesNothing(t *testing.T) {
	sink := newBigSink(t)
	reg := mediafork.NewRegistry(gsoTransport(t), 10, true, quiet)
	reg.SetFormatPackets(false) // ForkStream's packets: the counts below
	sink.discard.Store(true)
	f, _ := reg.Claim("u", "b")
	require.NoError(t, f.Begin(stereoSpec(), mediafork.TLVTargets(sink.addr())))
	batch := reg.NewSharedBatch()
	frame := make([]byte, 640)
	f.Write(batch, frame)
	batch.Flush()
	i := 0
	assert.Zero(t, testing.AllocsPerRun(500, func() {
		f.Write(batch, frame)
		if i++; i%10 == 0 {
			batch.Flush()
		}
	}))
	f.Finish(mediafork.EndHangup)
}

func stereoSpec() mediafork.Spec {
	return mediafork.Spec{Params: mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},
		Metadata: mediafork.Metadata{ChannelID: "sofia/internal/1000@x"}}
}

// BenchmarkFanOut is the per-frame path from a 640-byte stereo frame to the
// socket (two packets per endpoint): split, re-frame, encode and send, plain
// (a sendto per packet) or through the GSO transport with rounds of `round`
// frames (one flush each), to 1 or 3 endpoints.
func BenchmarkFanOut(b *testing.B) {
	for _, tc := range []struct {
		name      string
		endpoints int
		gso       bool
		round     int
		proto     mediafork.Protocol
	}{
		{"1-endpoint-plain", 1, false, 1, mediafork.ProtocolTLV}, {"3-endpoints-plain", 3, false, 1, mediafork.ProtocolTLV},
		{"1-endpoint-gso-round1", 1, true, 1, mediafork.ProtocolTLV}, {"1-endpoint-gso-round16", 1, true, 16, mediafork.ProtocolTLV},
		{"3-endpoints-gso-round16", 3, true, 16, mediafork.ProtocolTLV},
		// An RTP endpoint: RX and TX to their own ports (two destinations),
		// RTCP every 5 s of audio on two more.
		{"1-endpoint-rtp-plain", 1, false, 1, mediafork.ProtocolRTP}, {"1-endpoint-rtp-gso-round16", 1, true, 16, mediafork.ProtocolRTP},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var targets []mediafork.Target
			for i := 0; i < tc.endpoints; i++ {
				if tc.proto == mediafork.ProtocolRTP {
					base, socks := rtptest.Listen(b, 2)
					for _, c := range socks {
						go drain(c)
					}
					targets = append(targets, mediafork.Target{Protocol: mediafork.ProtocolRTP, Addr: base})
					continue
				}
				targets = append(targets, mediafork.Target{Addr: newBigSink(b).addr()})
			}
			var tr mediafork.Transport = udp.New()
			if tc.gso {
				tr = gsoTransport(b)
			}
			reg := mediafork.NewRegistry(tr, 10, true, quiet)
			reg.SetFormatPackets(false) // ForkStream's packets: the counts below
			f, _ := reg.Claim("u", "b")
			require.NoError(b, f.Begin(stereoSpec(), targets))
			batch := reg.NewSharedBatch()
			frame := make([]byte, 640)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f.Write(batch, frame)
				if (i+1)%tc.round == 0 {
					batch.Flush()
				}
			}
			batch.Flush()
			b.StopTimer()
			f.Finish(mediafork.EndHangup)
		})
	}
}

// drain reads c until it is closed (at the test's end).
func drain(c *net.UDPConn) {
	buf := make([]byte, 1<<16)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// BenchmarkFloorSend is what the kernel takes for one send on loopback: one
// sendto of a 332-byte datagram, and one GSO sendmsg of n 332-byte segments
// (the cost per packet is ns/op divided by n).
func BenchmarkFloorSend(b *testing.B) {
	for _, n := range []int{1, 8, 16, 32, 64} {
		b.Run(fmt.Sprintf("segments-%d", n), func(b *testing.B) {
			sink := newBigSink(b)
			tr, _ := New()
			ep, err := tr.Open(sink.addr())
			require.NoError(b, err)
			defer ep.Close()
			buf := make([]byte, 332*n)
			bufs := make([][]byte, n)
			for i := range bufs {
				bufs[i] = buf[i*332 : (i+1)*332 : (i+1)*332]
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ep.Send(bufs)
			}
		})
	}
}

// The endpoint's socket is made by hand (out of Go's netpoller): IPv4, IPv6
// and IPv4-mapped destinations work, a train arrives as its datagrams, and a
// second Close does nothing (the descriptor's number may be someone else's).
func TestOpenFamiliesAndClose(t *testing.T) {
	v6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	defer v6.Close()
	v4 := newBigSink(t)
	port6 := v6.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	for _, tc := range []struct {
		to   netip.AddrPort
		read func() []byte
	}{
		{v4.addr(), func() []byte { return <-v4.got }},
		{netip.AddrPortFrom(netip.IPv6Loopback(), port6), func() []byte {
			buf := make([]byte, 2048)
			v6.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := v6.Read(buf)
			require.NoError(t, err)
			return buf[:n]
		}},
		{netip.AddrPortFrom(netip.AddrFrom16(v4.addr().Addr().As16()), v4.addr().Port()), func() []byte { return <-v4.got }},
	} {
		ep, err := Transport{}.Open(tc.to)
		require.NoError(t, err, tc.to)
		pkts := [][]byte{bytes.Repeat([]byte{1}, 300), bytes.Repeat([]byte{2}, 300), bytes.Repeat([]byte{3}, 100)}
		n, err := ep.Send(pkts)
		require.NoError(t, err, tc.to)
		require.Equal(t, 3, n)
		for _, want := range pkts {
			assert.Equal(t, want, tc.read(), tc.to)
		}
		require.NoError(t, ep.Close())
		require.NoError(t, ep.Close(), "a second Close")
		_, err = ep.Send(pkts[:1])
		assert.Error(t, err, "a Send after Close fails")
	}
}

// A broadcast destination works, as with the net package's sockets (which set
// SO_BROADCAST on every UDP socket): connect() refuses one without it.
func TestBroadcastDestination(t *testing.T) {
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	require.NoError(t, err)
	defer l.Close()
	port := l.LocalAddr().(*net.UDPAddr).Port
	ep, err := Transport{}.Open(netip.AddrPortFrom(netip.MustParseAddr("127.255.255.255"), uint16(port)))
	require.NoError(t, err, "open a broadcast destination")
	defer ep.Close()
	_, err = ep.Send([][]byte{[]byte("hello")})
	require.NoError(t, err)
	buf := make([]byte, 100)
	l.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := l.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
}
