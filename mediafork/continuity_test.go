package mediafork

import (
	"bytes"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/tlvcodec"
)

// fakeClock is a registry's media clock in a test: frames arrive when the
// test says.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func clockedRegistry(c *fakeClock) *Registry {
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	reg.clock = c.now
	c.ns.Store(int64(time.Hour)) // well after the epoch
	return reg
}

// tlvPacket is one TLV datagram, decoded for the assertions.
type tlvPacket struct {
	Type tlvcodec.Type
	Dir  tlvcodec.Direction
	ID   uint32
	Seq  uint32 // audio's sequence, a gap's next sequence, an end's last
	Gap  tlvcodec.Gap
	Data []byte // audio's payload
	End  tlvcodec.EndReason
}

func decodeTLV(t *testing.T, pkts [][]byte) []tlvPacket {
	t.Helper()
	out := make([]tlvPacket, len(pkts))
	for i, b := range pkts {
		var h tlvcodec.Header
		require.NoError(t, h.Unmarshal(b))
		p := tlvPacket{Type: h.Type, Dir: h.Direction, ID: h.StreamID}
		switch h.Type {
		case tlvcodec.TypeAudio:
			var a tlvcodec.Audio
			require.NoError(t, a.Unmarshal(b))
			p.Seq, p.Data = a.Sequence, bytes.Clone(a.Payload)
		case tlvcodec.TypeGap:
			require.NoError(t, p.Gap.Unmarshal(b))
			p.Seq = p.Gap.NextSequence
		case tlvcodec.TypeEnd:
			var e tlvcodec.End
			require.NoError(t, e.Unmarshal(b))
			p.Seq, p.End = e.LastSequence, e.Reason
		}
		out[i] = p
	}
	return out
}

// kinds is the packets' types, one letter each: s signaling, f format, a
// audio, g gap, e end, d DTMF.
func kinds(ps []tlvPacket) string {
	var b []byte
	for _, p := range ps {
		b = append(b, map[tlvcodec.Type]byte{tlvcodec.TypeSignaling: 's', tlvcodec.TypeFormat: 'f', tlvcodec.TypeAudio: 'a',
			tlvcodec.TypeGap: 'g', tlvcodec.TypeEnd: 'e', tlvcodec.TypeDTMF: 'd'}[p.Type])
	}
	return string(b)
}

// frame20 is 20 ms of 8 kHz stereo: a tone on each side, its samples
// numbered from n so that every frame differs.
func frame20(n int) []byte {
	inter, _, _ := pcmStereo(160 * (n + 1))
	return inter[640*n : 640*(n+1)]
}

// Paused with `nothing`, a fork drops its audio and its digits; the resume is
// a gap (reason 3) of exactly the frames dropped, announced in each direction
// before the next audio, whose sequence continues on the media clock.
func TestPauseNothingIsAGapOfTheFramesDropped(t *testing.T) {
	t.Parallel()
	sink := newUDPSink(t)
	var clk fakeClock
	reg := clockedRegistry(&clk)
	f, err := reg.Claim("p1", "mediafork")
	require.NoError(t, err)
	require.NoError(t, f.Begin(stereoSpec(), TLVTargets(sink.addr())))
	n := 0
	write := func(k int) {
		for ; k > 0; k-- {
			clk.advance(20 * time.Millisecond)
			f.Write(nil, frame20(n))
			n++
		}
	}
	write(5)
	assert.True(t, f.Pause())
	assert.False(t, f.Pause(), "paused already")
	assert.True(t, f.Info().Paused)
	write(3)
	f.DTMF(DTMFReceived{UUID: f.UUID, Digit: '4', Duration: 80 * time.Millisecond}) // keyed during the pause
	write(4)
	assert.True(t, f.Resume())
	assert.False(t, f.Resume(), "not paused")
	write(2)
	f.Finish(EndHangup)

	ps := decodeTLV(t, sink.read(t, 4+10+2+4+2))
	sink.none(t)
	require.Equal(t, "sfsf"+"aaaaaaaaaa"+"gg"+"aaaa"+"ee", kinds(ps))
	for _, p := range ps {
		assert.Equal(t, f.StreamID, p.ID, "one stream")
	}
	for i, p := range ps[4:14] {
		assert.Equal(t, uint32(i/2+1), p.Seq)
	}
	for i, g := range ps[14:16] {
		assert.Equal(t, tlvcodec.Gap{StreamID: f.StreamID, Direction: tlvcodec.Direction(i + 1), NextSequence: 13, MissingFrames: 7,
			Reason: tlvcodec.GapPaused}, g.Gap)
	}
	for i, p := range ps[16:20] {
		assert.Equal(t, uint32(13+i/2), p.Seq, "last + 1 + missing, then on")
	}
	// The audio after the pause is the audio that came after it.
	assert.Equal(t, frame20(12)[0:2], ps[16].Data[0:2])
	assert.Equal(t, uint32(14), ps[20].Seq)
	info := f.Info()
	assert.Equal(t, uint64(1), info.Gaps)
	assert.Equal(t, uint64(7), info.Dropped)
	assert.Zero(t, info.DTMF, "a digit keyed during a pause is not sent")
}

// Paused with `silence`, the streams go on with silent audio in place of
// the call's, without a gap; digits are dropped all the same.
func TestPauseSilenceSendsSilence(t *testing.T) {
	t.Parallel()
	sink := newUDPSink(t)
	var clk fakeClock
	reg := clockedRegistry(&clk)
	f, err := reg.Claim("p2", "mediafork")
	require.NoError(t, err)
	spec := stereoSpec()
	spec.Pause = PauseSilence
	require.NoError(t, f.Begin(spec, TLVTargets(sink.addr())))
	for n := 0; n < 6; n++ {
		if n == 2 {
			f.Pause()
			f.DTMF(DTMFReceived{UUID: f.UUID, Digit: '7', Duration: 80 * time.Millisecond})
		}
		if n == 5 {
			f.Resume()
		}
		clk.advance(20 * time.Millisecond)
		f.Write(nil, frame20(n))
	}
	f.Finish(EndHangup)
	ps := decodeTLV(t, sink.read(t, 4+12+2))
	sink.none(t)
	require.Equal(t, "sfsf"+"aaaaaaaaaaaa"+"ee", kinds(ps))
	zero := make([]byte, 320)
	for i, p := range ps[4:16] {
		assert.Equal(t, uint32(i/2+1), p.Seq, "no gap")
		if seq := i/2 + 1; seq >= 3 && seq <= 5 {
			assert.Equal(t, zero, p.Data, "seq %d is silent", seq)
		} else {
			assert.NotEqual(t, zero, p.Data, "seq %d carries the call", seq)
		}
	}
	assert.Zero(t, f.Info().DTMF)
}

// A fork mediafork started whose media connection is lost suspends: its
// outputs end nothing, and its continuation says where the streams stand. A
// fork resumed from it (in any process: the continuation goes through its
// text form) continues every output with the same identity, its first audio
// placed on the media clock by the time that passed, after a gap (reason 1)
// of those frames: TLV's gap packets and sequence, RTP's SSRC, sequence
// number, timestamp and marker.
func TestSuspendedForkResumesItsStreams(t *testing.T) {
	t.Parallel()
	tlv := newUDPSink(t)
	base, socks := rtptest.Listen(t, 2)
	rxRTP, txRTP := socks[0], socks[2]
	var clk fakeClock
	reg := clockedRegistry(&clk)
	spec := stereoSpec()
	spec.Start = Start{Issuer: "me", Nonce: "n1"}
	targets := []Target{{Addr: tlv.addr()}, {Protocol: ProtocolRTP, Addr: base, Format: EndpointFormat{Encoding: PCMU}}}
	f, err := reg.Claim("s1", "mediafork")
	require.NoError(t, err)
	require.NoError(t, f.Begin(spec, targets))
	for n := 0; n < 10; n++ {
		clk.advance(20 * time.Millisecond)
		f.Write(nil, frame20(n))
		if n == 4 {
			f.DTMF(DTMFReceived{UUID: f.UUID, Digit: '9', Duration: 60 * time.Millisecond})
		}
	}
	f.Finish(EndMediaLost)
	cont, ok := f.Continuation()
	require.True(t, ok, "suspended")
	assert.True(t, f.Info().Suspended)
	assert.Equal(t, f.Identity.StreamID, cont.Identity.StreamID)
	assert.Equal(t, int64(1600), cont.Sent)
	assert.Equal(t, cont.Sent, cont.Clock)
	assert.Equal(t, GapMediaLost, cont.Reason)
	assert.Equal(t, uint32(1), cont.Digits)
	first := decodeTLV(t, tlv.read(t, 4+20+1))
	tlv.none(t) // no end packets
	assert.Equal(t, "sfsf"+"aaaaaaaaaa"+"d"+"aaaaaaaaaa", kinds(first))
	rx1 := parseRTP(t, readN(t, rxRTP, 10+4))
	tx1 := parseRTP(t, readN(t, txRTP, 10))

	// Through its text form, as a credential carries it.
	text, err := cont.MarshalText()
	require.NoError(t, err)
	var back Continuation
	require.NoError(t, back.UnmarshalText(text))
	spec.Resume, spec.Start = &back, Start{Issuer: "other", Nonce: "n2"}
	g, err := reg.ClaimWith("s1", "mediafork", back.Identity)
	require.NoError(t, err)
	assert.Equal(t, f.StreamID, g.StreamID)
	require.NoError(t, g.Begin(spec, targets))
	// The first frame of the new connection comes 1 s after the last one.
	clk.advance(1000 * time.Millisecond)
	for n := 60; n < 63; n++ {
		g.Write(nil, frame20(n))
		clk.advance(20 * time.Millisecond)
	}
	g.Finish(EndHangup)

	// 1 s from the last frame's arrival to this one's, less its 20 ms: 49
	// frames missing; the next sequence is 11 + 49.
	ps := decodeTLV(t, tlv.read(t, 2+6+2))
	tlv.none(t)
	require.Equal(t, "gg"+"aaaaaa"+"ee", kinds(ps), "no signaling again")
	for i, p := range ps[:2] {
		assert.Equal(t, tlvcodec.Gap{StreamID: f.StreamID, Direction: tlvcodec.Direction(i + 1), NextSequence: 60, MissingFrames: 49,
			Reason: tlvcodec.GapMediaLost}, p.Gap)
	}
	for i, p := range ps[2:8] {
		assert.Equal(t, f.StreamID, p.ID)
		assert.Equal(t, uint32(60+i/2), p.Seq)
	}
	assert.Equal(t, uint32(62), ps[8].Seq, "end after the last")

	for name, s := range map[string]struct{ before, after []rtp.Packet }{
		"rx": {rx1, parseRTP(t, readN(t, rxRTP, 3))}, "tx": {tx1, parseRTP(t, readN(t, txRTP, 3))},
	} {
		last := s.before[len(s.before)-1]
		for i, p := range s.after {
			assert.Equal(t, last.SSRC, p.SSRC, "%s: the same SSRC", name)
			assert.Equal(t, last.SequenceNumber+50+uint16(i), p.SequenceNumber, "%s %d: 49 numbers skipped", name, i)
			assert.Equal(t, last.Timestamp+160*50+160*uint32(i), p.Timestamp, "%s %d: the timestamps too", name, i)
			assert.Equal(t, i == 0, p.Marker, "%s %d: the marker after the gap", name, i)
		}
	}
	assert.Equal(t, uint64(1), g.Info().Gaps)
	assert.True(t, g.Info().Resumed)
}

// A gap that is not a whole number of an output's frames keeps the audio
// after it on the clock to the sample: the packet under way is completed
// with silence, the whole frames missing are skipped, and the silence left
// over begins the next packet.
func TestSkipKeepsTheClockToTheSample(t *testing.T) {
	t.Parallel()
	var sunk [][]byte
	sink := sinkFunc(func(_ Direction, pkt []byte) { sunk = append(sunk, bytes.Clone(pkt)) })
	fr := &TLVFramer{StreamID: 7}
	z := newPacketizer(2, []Direction{DirRX}, []int{0}, 160, L16.Codec(), fr, sink)
	ones := bytes.Repeat([]byte{1, 0}, 100)
	z.Write(ones) // 100 samples under way
	next, missing := z.Skip(60 + 3*160 + 40)
	assert.Equal(t, uint32(5), next)
	assert.Equal(t, uint32(3), missing)
	require.Len(t, sunk, 1, "the packet under way, completed")
	assert.Equal(t, bytes.Repeat([]byte{1, 0}, 100), sunk[0][12:212])
	assert.Equal(t, make([]byte, 120), sunk[0][212:])
	z.Write(bytes.Repeat([]byte{2, 0}, 120))
	require.Len(t, sunk, 2)
	var a tlvcodec.Audio
	require.NoError(t, a.Unmarshal(sunk[1]))
	assert.Equal(t, uint32(5), a.Sequence)
	assert.Equal(t, make([]byte, 80), a.Payload[:80], "40 samples of silence first")
	assert.Equal(t, bytes.Repeat([]byte{2, 0}, 120), a.Payload[80:])
	assert.Equal(t, int64(5*160), z.Position())

	// Less than the room left: silence in the packet, nothing missing.
	z.Write(bytes.Repeat([]byte{3, 0}, 10))
	next, missing = z.Skip(20)
	assert.Equal(t, uint32(6), next)
	assert.Zero(t, missing)
	z.Complete()
	require.Len(t, sunk, 3)
	require.NoError(t, a.Unmarshal(sunk[2]))
	assert.Equal(t, uint32(6), a.Sequence)
	assert.Len(t, a.Payload, 320, "completed to a whole frame")
}

type sinkFunc func(Direction, []byte)

func (s sinkFunc) SendPacket(d Direction, p []byte) { s(d, p) }

// A continuation's text form holds every field, and a hostile one is refused.
func TestContinuationText(t *testing.T) {
	t.Parallel()
	c := Continuation{Identity: Identity{StreamID: 42, Seed: 0xdeadbeef01, IDs: []uint32{7, 9}}, Origin: time.UnixMilli(1796650830123),
		Sent: 48000, Clock: 56000, At: time.UnixMicro(1796650900123456), Reason: GapPaused, Digits: 3, Paused: true}
	b, err := json.Marshal(struct {
		R *Continuation `json:"r"`
	}{&c})
	require.NoError(t, err)
	assert.Equal(t, `{"r":"1.42.deadbeef01.7,9.1796650830123.48000.56000.1796650900123456.3.3.1"}`, string(b))
	var back struct {
		R *Continuation `json:"r"`
	}
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, c.Identity, back.R.Identity)
	assert.True(t, c.Origin.Equal(back.R.Origin) && c.At.Equal(back.R.At))
	assert.Equal(t, []any{c.Sent, c.Clock, c.Reason, c.Digits, c.Paused}, []any{back.R.Sent, back.R.Clock, back.R.Reason, back.R.Digits, back.R.Paused})
	for _, bad := range []string{
		"", "2.42.1..0.0.0.0.1.0.0", "1.0.1..0.0.0.0.1.0.0", "1.42.zz..0.0.0.0.1.0.0", "1.42.1.0..0.0.0.1.0.0",
		"1.42.1..0.10.5.0.1.0.0", "1.42.1..0.0.0.0.5.0.0", "1.42.1..0.0.0.0.0.0.0", "1.42.1..0.0.0.0.1.0.2",
		"1.42.1..-1.0.0.0.1.0.0", "1.42.1..0.0.0.0.1.0", "1.42.1..0.0.0.0.1.0.0.0", "1.4294967296.1..0.0.0.0.1.0.0",
	} {
		var v Continuation
		assert.ErrorIs(t, v.UnmarshalText([]byte(bad)), ErrBadContinuation, "%q", bad)
	}
	var v Continuation
	assert.NoError(t, v.UnmarshalText([]byte("1.42.1..0.0.0.0.1.0.0")))
}

// The frames after a break go where the time that passed puts them, in whole
// frames of their length: arrival jitter under half a frame costs nothing.
func TestResumeClock(t *testing.T) {
	t.Parallel()
	at := time.Unix(1000, 0)
	c := Continuation{Clock: 8000, At: at}
	for _, tc := range []struct {
		after time.Duration
		n     int64
		want  int64
	}{
		{20 * time.Millisecond, 160, 8000},            // the next frame: no gap
		{29 * time.Millisecond, 160, 8000},            // late by 9 ms: still none
		{31 * time.Millisecond, 160, 8160},            // a frame missing
		{1000 * time.Millisecond, 160, 8000 + 49*160}, // 49
		{1009 * time.Millisecond, 160, 8000 + 49*160},
		{1500 * time.Millisecond, 8000, 8000 + 25*160}, // a 1 s burst: the 0.5 s before it, in 20 ms frames
		{-time.Second, 160, 8000},                      // a clock that went back
	} {
		assert.Equal(t, tc.want, c.resumeClock(at.Add(tc.after), tc.n, 8000), "%s, %d samples", tc.after, tc.n)
	}
}
