package mediafork

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/tlvcodec"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// udpSink is a real UDP receiver on loopback.
type udpSink struct {
	conn *net.UDPConn
}

func newUDPSink(t *testing.T) *udpSink {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &udpSink{conn: c}
}

func (s *udpSink) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// read returns n datagrams, failing after a few seconds without them.
func (s *udpSink) read(t *testing.T, n int) [][]byte {
	t.Helper()
	out, _ := s.readFrom(t, n)
	return out
}

// readFrom is read with the address each datagram came from.
func (s *udpSink) readFrom(t *testing.T, n int) ([][]byte, []string) {
	t.Helper()
	var out [][]byte
	var from []string
	buf := make([]byte, 65536)
	for len(out) < n {
		s.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		k, a, err := s.conn.ReadFromUDP(buf)
		require.NoError(t, err, "got %d of %d datagrams", len(out), n)
		out = append(out, bytes.Clone(buf[:k]))
		from = append(from, a.String())
	}
	return out, from
}

func (s *udpSink) none(t *testing.T) {
	t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, _, err := s.conn.ReadFromUDP(make([]byte, 100))
	require.Error(t, err, "unexpected datagram")
}

func stereoSpec() Spec {
	return Spec{Params: Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20},
		Metadata: Metadata{ChannelID: "sofia/internal/1000@x", Exten: "2000", CallerID: "1000", CalledID: "2000"}}
}

func TestForkSignalingAudioEndOnTheWire(t *testing.T) {
	t.Parallel()
	a, b := newUDPSink(t), newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("uuid-1", "mediafork")
	require.NoError(t, err)
	require.NotZero(t, f.StreamID)
	before := uint32(time.Now().Unix())
	require.NoError(t, f.Begin(stereoSpec(), TLVTargets(a.addr(), b.addr())))
	assert.Equal(t, StateStreaming, f.State())
	inter, left, right := pcmStereo(200) // 1.25 frames
	f.Write(nil, inter)
	f.Finish(EndHangup)

	for _, sink := range []*udpSink{a, b} {
		pkts := sink.read(t, 10) // signaling+format RX, signaling+format TX, 2+2 audio, 2 end
		var s tlvcodec.Signaling
		require.NoError(t, s.Unmarshal(pkts[0]))
		assert.Equal(t, tlvcodec.RX, s.Direction)
		assert.Equal(t, "sofia/internal/1000@x", s.ChannelID)
		assert.Equal(t, "2000", s.Exten)
		assert.Equal(t, "1000", s.CallerID)
		assert.Equal(t, f.StreamID, s.StreamID)
		assert.GreaterOrEqual(t, s.Timestamp, before)
		require.NoError(t, s.Unmarshal(pkts[2]))
		assert.Equal(t, tlvcodec.TX, s.Direction)
		for i, p := range [][]byte{pkts[1], pkts[3]} { // each right after its signaling
			var fm tlvcodec.Format
			require.NoError(t, fm.Unmarshal(p))
			assert.Equal(t, tlvcodec.Format{StreamID: f.StreamID, Direction: tlvcodec.Direction(i + 1),
				Encoding: 1, SampleRate: 8000, Channels: 1, FrameMs: 20}, fm)
		}

		var rx, tx []byte
		for i, p := range pkts[4:8] {
			var au tlvcodec.Audio
			require.NoError(t, au.Unmarshal(p))
			assert.Equal(t, uint32(i/2+1), au.Sequence)
			if au.Direction == tlvcodec.RX {
				rx = append(rx, au.Payload...)
			} else {
				tx = append(tx, au.Payload...)
			}
		}
		assert.Equal(t, left, rx)
		assert.Equal(t, right, tx)
		for i, p := range pkts[8:] {
			var e tlvcodec.End
			require.NoError(t, e.Unmarshal(p))
			assert.Equal(t, tlvcodec.Direction(i+1), e.Direction)
			assert.Equal(t, uint32(2), e.LastSequence)
			assert.Equal(t, tlvcodec.ReasonHangup, e.Reason)
		}
		sink.none(t)
	}
	<-f.Done()
	assert.Equal(t, 0, reg.Len())
	assert.Equal(t, 0, reg.OpenEndpoints(), "sockets released with the last fork")
	info := f.Info()
	assert.Equal(t, StateEnded, info.State)
	assert.Equal(t, uint64(10), info.PacketsOut["RX"], "signaling, format, 2 audio, end: to 2 endpoints")
	assert.Equal(t, "hangup", info.EndReason)
}

func TestForkStopReasonWinsAndEndPacketsOff(t *testing.T) {
	t.Parallel()
	a := newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, _ := reg.Claim("u", "b")
	spec := stereoSpec()
	spec.Mix = Mono
	require.NoError(t, f.Begin(spec, TLVTargets(a.addr())))
	stopped := make(chan EndReason, 1)
	f.OnStop(func(r EndReason) { stopped <- r })
	f.Stop(EndStopped)
	assert.Equal(t, EndStopped, <-stopped)
	f.Finish(EndHangup)  // the connection closed normally after the stop
	pkts := a.read(t, 3) // signaling, format, end
	var e tlvcodec.End
	require.NoError(t, e.Unmarshal(pkts[2]))
	assert.Equal(t, tlvcodec.ReasonStopped, e.Reason)
	assert.Equal(t, uint32(0), e.LastSequence)

	reg2 := NewRegistry(newTestTransport(), 10, false, quiet)
	g, _ := reg2.Claim("u", "b")
	require.NoError(t, g.Begin(spec, TLVTargets(a.addr())))
	g.Finish(EndHangup)
	a.read(t, 2) // signaling and format only
	a.none(t)
}

// With format_packet (and end_packet) off, a stream is ForkStream's byte for
// byte: built here from the layout, independently of the Framer.
func TestForkFormatPacketOffIsForkStream(t *testing.T) {
	t.Parallel()
	a := newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, false, quiet)
	reg.SetFormatPackets(false)
	f, err := reg.Claim("u", "b")
	require.NoError(t, err)
	spec := stereoSpec()
	spec.Mix, spec.Encoding = Mono, PCMU
	require.NoError(t, f.Begin(spec, TLVTargets(a.addr())))
	pcm := make([]byte, 2*200) // silence: 0xFF in µ-law
	f.Write(nil, pcm)
	f.Finish(EndHangup)
	pkts := a.read(t, 3)
	a.none(t)

	field := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	id := binary.BigEndian.AppendUint32(nil, f.StreamID)
	sig := append([]byte{0x01, 0x00, 0xAC}, id...)
	sig = append(sig, 0x01)
	sig = append(sig, field("sofia/internal/1000@x", 64)...)
	sig = append(sig, field("2000", 32)...)
	sig = append(sig, field("1000", 32)...)
	sig = append(sig, field("2000", 32)...)
	sig = append(sig, pkts[0][168:]...) // the start time
	assert.Equal(t, sig, pkts[0])
	audio := func(seq byte, n int) []byte {
		b := append([]byte{0x02, 0x00, byte(12 + n)}, id...)
		b = append(b, 0x01, 0, 0, 0, seq)
		return append(b, bytes.Repeat([]byte{0xFF}, n)...)
	}
	assert.Equal(t, audio(1, 160), pkts[1])
	assert.Equal(t, audio(2, 40), pkts[2])

	// On, the same stream has one format packet more, after the signaling.
	reg2 := NewRegistry(newTestTransport(), 10, false, quiet)
	g, err := reg2.Claim("u", "b")
	require.NoError(t, err)
	require.NoError(t, g.Begin(spec, TLVTargets(a.addr())))
	g.Write(nil, pcm)
	g.Finish(EndHangup)
	on := a.read(t, 4)
	a.none(t)
	fm := append([]byte{0x04, 0x00, 0x10}, binary.BigEndian.AppendUint32(nil, g.StreamID)...)
	fm = append(fm, 0x01, 0x03, 0x00, 0x00, 0x1F, 0x40, 0x01, 0x00, 0x14)
	assert.Equal(t, fm, on[1], "pcmu, 8000 Hz, 1 channel, 20 ms")
	assert.Equal(t, byte(0x01), on[0][0])
	assert.Equal(t, pkts[1][7:], on[2][7:])
	assert.Equal(t, pkts[2][7:], on[3][7:])
}

// A refusing endpoint (ICMP port unreachable) and one that never reads must not
// cost the live endpoint a single packet; the refused sends are counted.
func TestForkFanOutSurvivesBadEndpoints(t *testing.T) {
	t.Parallel()
	live := newUDPSink(t)
	stalled := newUDPSink(t) // never read: its buffer fills
	closed := newUDPSink(t)  // closed: the kernel answers port unreachable
	refused := closed.addr()
	closed.conn.Close()

	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, _ := reg.Claim("u", "b")
	spec := stereoSpec()
	spec.Mix = Mono
	require.NoError(t, f.Begin(spec, TLVTargets(refused, stalled.addr(), live.addr())))
	frame := make([]byte, 320)
	const frames = 2000 // more than the stalled socket's buffer holds
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < frames; i++ {
			f.Write(nil, frame)
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let ICMP errors come back
			}
		}
	}()
	got := 0
	buf := make([]byte, 2048)
	for got < 1+frames {
		live.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _, err := live.conn.ReadFromUDP(buf)
		require.NoError(t, err, "live endpoint got %d of %d", got, 1+frames)
		got++
	}
	<-done
	f.Finish(EndHangup)
	assert.Greater(t, f.Drops.Load(), uint64(0), "refused sends are counted as drops")
	assert.Contains(t, f.Info().LastError, "refused")
}

func TestRegistryClaimLimits(t *testing.T) {
	t.Parallel()
	reg := NewRegistry(newTestTransport(), 2, true, quiet)
	a, err := reg.Claim("u1", "mediafork")
	require.NoError(t, err)
	_, err = reg.Claim("u1", "mediafork")
	assert.ErrorIs(t, err, ErrDuplicate)
	b, err := reg.Claim("u1", "other")
	require.NoError(t, err, "another bug on the same call is another fork")
	assert.NotEqual(t, a.StreamID, b.StreamID)
	_, err = reg.Claim("u2", "mediafork")
	assert.ErrorIs(t, err, ErrFull)
	assert.Len(t, reg.Get("u1"), 2)
	assert.Same(t, a, reg.Lookup("u1", "mediafork"))

	// A fork that never started streaming ends at once on Stop.
	a.Stop(EndShutdown)
	<-a.Done()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b.OnStop(func(r EndReason) { go b.Finish(0) })
	require.NoError(t, reg.StopAll(ctx, EndShutdown))
	assert.Equal(t, 0, reg.Len())
	_, err = reg.Claim("u2", "mediafork")
	assert.NoError(t, err)
}

func TestDestinations(t *testing.T) {
	t.Parallel()
	d := &Destinations{
		Profiles: map[string]Profile{"analytics": {Endpoints: []string{"8.8.8.8:9000"}}},
		Allow:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}
	ctx := context.Background()
	got, err := d.Resolve(ctx, "analytics", []string{"127.0.0.1:9001", "[::1]:9002", "127.0.0.1:9001"}, true)
	require.NoError(t, err)
	assert.Equal(t, []netip.AddrPort{netip.MustParseAddrPort("8.8.8.8:9000"), netip.MustParseAddrPort("127.0.0.1:9001"),
		netip.MustParseAddrPort("[::1]:9002")}, got, "profiles are trusted, duplicates collapse")
	_, err = d.Resolve(ctx, "", []string{"8.8.4.4:9000"}, true)
	assert.ErrorIs(t, err, ErrNotAllowed)
	_, err = d.Resolve(ctx, "", []string{"8.8.4.4:9000"}, false)
	assert.NoError(t, err, "a rule's destinations come from the config")
	_, err = d.Resolve(ctx, "nope", nil, true)
	assert.ErrorContains(t, err, "unknown profile")
	_, err = d.Resolve(ctx, "", nil, true)
	assert.ErrorIs(t, err, ErrBadDestination)
	for _, bad := range []string{"localhost", "127.0.0.1:0", "127.0.0.1:65536", "0.0.0.0:9", "[ff02::1]:9", "127.0.0.1:x"} {
		_, err = d.Resolve(ctx, "", []string{bad}, true)
		assert.ErrorIs(t, err, ErrBadDestination, bad)
	}
	_, err = d.Resolve(ctx, "", []string{"[::ffff:8.8.8.8]:1"}, true)
	assert.ErrorIs(t, err, ErrNotAllowed, "a v4-mapped address is checked as v4")
	many := make([]string, DefaultMaxDestinations+1)
	for i := range many {
		many[i] = fmt.Sprintf("127.0.0.1:%d", 9000+i)
	}
	_, err = d.Resolve(ctx, "", many, true)
	assert.ErrorIs(t, err, ErrBadDestination, "more than fork.max_destinations")
	_, err = d.Resolve(ctx, "", many[:DefaultMaxDestinations], true)
	assert.NoError(t, err)
}

// The per-frame path allocates nothing, sending at once or through a batch
// flushed every frame or every few, in every datagram protocol, with DTMF
// and (RTP) the sender reports every 5 s of audio on the way. (transport/gso
// holds the same test for GSO, and BenchmarkFanOut.)
func TestFanOutAllocatesNothing(t *testing.T) {
	sink := newUDPSink(t)
	sink.conn.SetReadBuffer(4 << 20)
	base, _ := rtptest.Listen(t, 2)
	for _, proto := range Protocols() {
		if _, ok := proto.(DatagramProtocol); !ok {
			continue // stream protocols: TestStreamWriteAllocatesNothing
		}
		for _, batch := range []int{0, 1, 64} {
			reg := NewRegistry(testTransport{batch: max(1, batch)}, 10, true, quiet)
			f, _ := reg.Claim("u", "b")
			target := Target{Protocol: proto.Name(), Addr: sink.addr()}
			if proto.Name() == ProtocolRTP {
				target.Addr = base
			}
			require.NoError(t, f.Begin(stereoSpec(), []Target{target}))
			var b *Batch
			if batch > 0 {
				b = reg.NewSharedBatch()
			}
			frame, _, _ := pcmStereo(160)
			f.Write(b, frame) // the batch's queue is made at the first write
			i := 0
			assert.Zero(t, testing.AllocsPerRun(500, func() {
				if i%100 == 50 {
					f.DTMF(DTMFReceived{UUID: "u", Digit: '#', Duration: 80 * time.Millisecond})
				}
				f.Write(b, frame)
				if i++; b != nil && i%7 == 0 {
					b.Flush()
				}
			}), "%s batch %d", proto.Name(), batch)
			assert.Equal(t, uint64(5), f.DTMFIn.Load(), "%s batch %d", proto.Name(), batch)
			f.Finish(EndHangup)
		}
	}
}
