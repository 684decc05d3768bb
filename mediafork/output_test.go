package mediafork

import (
	"encoding/json"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// stream is what one receiver saw of one stream id.
type stream struct {
	sig   []tlvcodec.Signaling
	fmt   []tlvcodec.Format
	audio map[tlvcodec.Direction][]tlvcodec.Audio
	sizes map[tlvcodec.Direction][]int // audio datagram sizes
	end   []tlvcodec.End
	order []uint8 // packet types in arrival order
}

// streams parses a receiver's datagrams by stream id.
func streams(t *testing.T, pkts [][]byte) map[uint32]*stream {
	t.Helper()
	out := map[uint32]*stream{}
	for _, p := range pkts {
		var h tlvcodec.Header
		require.NoError(t, h.Unmarshal(p))
		s := out[h.StreamID]
		if s == nil {
			s = &stream{audio: map[tlvcodec.Direction][]tlvcodec.Audio{}, sizes: map[tlvcodec.Direction][]int{}}
			out[h.StreamID] = s
		}
		s.order = append(s.order, uint8(h.Type))
		switch h.Type {
		case tlvcodec.TypeSignaling:
			var x tlvcodec.Signaling
			require.NoError(t, x.Unmarshal(p))
			s.sig = append(s.sig, x)
		case tlvcodec.TypeFormat:
			var x tlvcodec.Format
			require.NoError(t, x.Unmarshal(p))
			s.fmt = append(s.fmt, x)
		case tlvcodec.TypeAudio:
			var x tlvcodec.Audio
			require.NoError(t, x.Unmarshal(p))
			s.audio[x.Direction] = append(s.audio[x.Direction], x)
			s.sizes[x.Direction] = append(s.sizes[x.Direction], len(p))
		case tlvcodec.TypeEnd:
			var x tlvcodec.End
			require.NoError(t, x.Unmarshal(p))
			s.end = append(s.end, x)
		}
	}
	return out
}

// formatted are TLV targets at addrs, each in its format (parallel).
func formatted(formats []EndpointFormat, addrs ...netip.AddrPort) []Target {
	ts := TLVTargets(addrs...)
	for i := range ts {
		ts[i].Format = formats[i]
	}
	return ts
}

func spec16k() Spec {
	s := stereoSpec()
	s.Rate = 16000
	return s
}

// One 16 kHz stereo bug, two endpoints in two formats, on real sockets: A
// takes both sides as pcmu at 8 kHz, B the caller only as l16 at 8 kHz.
// Each gets its own stream, signaled and formatted as its own, with the
// right tones in it.
func TestForkTwoFormatsOnTheWire(t *testing.T) {
	t.Parallel()
	a, b := newUDPSink(t), newUDPSink(t)
	for _, s := range []*udpSink{a, b} {
		s.conn.SetReadBuffer(1 << 20)
	}
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("uuid-2", "mediafork")
	require.NoError(t, err)
	spec := spec16k()
	formats := []EndpointFormat{
		{Encoding: PCMU, Rate: 8000},
		{Directions: DirSetOf(DirRX), Encoding: L16, Rate: 8000},
	}
	require.NoError(t, f.Begin(spec, formatted(formats, a.addr(), b.addr())))

	const frames = 50 // 1 s
	left, right := sine(1000, 16000, 320*frames, 10000), sine(2500, 16000, 320*frames, 10000)
	pcm := interleave(left, right)
	batch := reg.NewSharedBatch()
	for i := 0; i < frames; i++ {
		f.Write(batch, pcm[i*1280:(i+1)*1280])
		batch.Flush()
	}
	info := f.Info()
	f.Finish(EndHangup)

	// A: signaling+format per direction, 50 audio packets per direction, an end per direction.
	sa := streams(t, a.read(t, 2+2+2*frames+2))
	sb := streams(t, b.read(t, 1+1+frames+1))
	a.none(t)
	b.none(t)
	require.Len(t, sa, 1, "one stream to A")
	require.Len(t, sb, 1, "one stream to B")
	var idA, idB uint32
	var A, B *stream
	for id, s := range sa {
		idA, A = id, s
	}
	for id, s := range sb {
		idB, B = id, s
	}
	assert.NotEqual(t, idA, idB, "each format its own stream id")
	assert.Equal(t, f.StreamID, idA, "the first output has the fork's stream id")

	// Signaling: A both directions, B RX only; each followed by its format packet.
	require.Len(t, A.sig, 2)
	assert.Equal(t, []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX}, []tlvcodec.Direction{A.sig[0].Direction, A.sig[1].Direction})
	require.Len(t, B.sig, 1)
	assert.Equal(t, tlvcodec.RX, B.sig[0].Direction, "B is RX only")
	assert.Equal(t, "sofia/internal/1000@x", B.sig[0].ChannelID)
	assert.Equal(t, []uint8{1, 4, 1, 4}, A.order[:4])
	assert.Equal(t, []uint8{1, 4}, B.order[:2])
	assert.Equal(t, []tlvcodec.Format{
		{StreamID: idA, Direction: tlvcodec.RX, Encoding: 3, SampleRate: 8000, Channels: 1, FrameMs: 20},
		{StreamID: idA, Direction: tlvcodec.TX, Encoding: 3, SampleRate: 8000, Channels: 1, FrameMs: 20},
	}, A.fmt)
	assert.Equal(t, []tlvcodec.Format{{StreamID: idB, Direction: tlvcodec.RX, Encoding: 1, SampleRate: 8000, Channels: 1, FrameMs: 20}}, B.fmt)

	// Sizes: 160 bytes of pcmu, 320 of l16, a 12-byte header each; sequences 1..50.
	for _, d := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX} {
		require.Len(t, A.audio[d], frames)
		for i, sz := range A.sizes[d] {
			assert.Equal(t, 12+160, sz)
			assert.Equal(t, uint32(i+1), A.audio[d][i].Sequence)
		}
	}
	require.Len(t, B.audio[tlvcodec.RX], frames)
	assert.Empty(t, B.audio[tlvcodec.TX])
	for _, sz := range B.sizes[tlvcodec.RX] {
		assert.Equal(t, 12+320, sz)
	}

	// Tones: the caller's 1 kHz to both, the callee's 2.5 kHz to A only.
	warm := len(lowPass(2))
	for _, c := range []struct {
		name  string
		got   []int16
		freq  float64
		input []int16
	}{
		{"A RX", decode(t, PCMU.Codec(), A.audio[tlvcodec.RX])[warm:], 1000, left},
		{"A TX", decode(t, PCMU.Codec(), A.audio[tlvcodec.TX])[warm:], 2500, right},
		{"B RX", decode(t, L16.Codec(), B.audio[tlvcodec.RX])[warm:], 1000, left},
	} {
		assert.InDelta(t, c.freq, dominant(c.got, 8000), 10, c.name)
		assert.InDelta(t, 0, dB(rms(c.got)/rms(c.input)), 1, c.name)
	}

	// End packets per direction, after the last audio.
	assert.Equal(t, []tlvcodec.End{
		{StreamID: idA, Direction: tlvcodec.RX, LastSequence: frames, Reason: tlvcodec.ReasonHangup},
		{StreamID: idA, Direction: tlvcodec.TX, LastSequence: frames, Reason: tlvcodec.ReasonHangup},
	}, A.end)
	assert.Equal(t, []tlvcodec.End{{StreamID: idB, Direction: tlvcodec.RX, LastSequence: frames, Reason: tlvcodec.ReasonHangup}}, B.end)
	assert.Equal(t, uint8(3), A.order[len(A.order)-1])

	// Info: endpoints stay addresses; outputs say who gets what.
	assert.Equal(t, []string{a.addr().String(), b.addr().String()}, info.Endpoints)
	require.Len(t, info.Outputs, 2)
	assert.Equal(t, OutputInfo{StreamID: idA, Endpoints: []string{a.addr().String()},
		Format: EndpointFormat{Directions: DirSetOf(DirRX, DirTX), Encoding: PCMU, Rate: 8000, FrameMs: 20}}, info.Outputs[0])
	assert.Equal(t, OutputInfo{StreamID: idB, Endpoints: []string{b.addr().String()},
		Format: EndpointFormat{Directions: DirSetOf(DirRX), Encoding: L16, Rate: 8000, FrameMs: 20}}, info.Outputs[1])
	js, err := json.Marshal(info)
	require.NoError(t, err)
	assert.Contains(t, string(js), `"outputs":[{"stream_id":`)
	assert.Contains(t, string(js), `"format":{"directions":["rx"],"encoding":"l16","rate":8000,"frame_ms":20}`)

	<-f.Done()
	assert.Equal(t, 0, reg.OpenEndpoints())
	reg.mu.Lock()
	assert.Empty(t, reg.ids, "every stream id given back")
	reg.mu.Unlock()
}

// Plain endpoints keep the fork's format and stream id; an endpoint whose
// own format comes to the same shares that stream; another address of
// another format gets another.
func TestForkPlainAndFormattedShare(t *testing.T) {
	t.Parallel()
	a, b, c := newUDPSink(t), newUDPSink(t), newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, _ := reg.Claim("u", "b")
	spec := stereoSpec()
	formats := []EndpointFormat{{}, {Encoding: L16, FrameMs: 20}, {Directions: DirSetOf(DirTX)}}
	require.NoError(t, f.Begin(spec, formatted(formats, a.addr(), b.addr(), c.addr())))
	inter, _, right := pcmStereo(160)
	f.Write(nil, inter)
	f.Finish(EndStopped)
	for _, s := range []*udpSink{a, b} {
		got := streams(t, s.read(t, 2+2+2+2))
		require.Contains(t, got, f.StreamID)
		assert.Len(t, got[f.StreamID].audio[tlvcodec.RX], 1)
	}
	got := streams(t, c.read(t, 1+1+1+1))
	require.Len(t, got, 1)
	for id, s := range got {
		assert.NotEqual(t, f.StreamID, id)
		assert.Equal(t, tlvcodec.TX, s.sig[0].Direction)
		assert.Equal(t, right, s.audio[tlvcodec.TX][0].Payload, "a pick of the bug's right channel, as it is")
	}
}

// MIXED made from a stereo bug: L+R, saturated.
func TestForkMixedFromStereo(t *testing.T) {
	t.Parallel()
	a := newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, _ := reg.Claim("u", "b")
	spec := stereoSpec()
	formats := []EndpointFormat{{Directions: DirSetOf(DirMixed)}}
	require.NoError(t, f.Begin(spec, formatted(formats, a.addr())))
	l := []int16{0, 100, -100, 30000, -30000, 32767, -32768, 1234}
	r := []int16{0, 23, -23, 30000, -30000, 1, -1, -1234}
	var left, right []int16
	for len(left) < 160 {
		left, right = append(left, l...), append(right, r...)
	}
	f.Write(nil, interleave(left, right))
	f.Finish(EndHangup)
	got := streams(t, a.read(t, 4))
	s := got[f.StreamID]
	require.NotNil(t, s)
	require.Len(t, s.sig, 1)
	assert.Equal(t, tlvcodec.Mixed, s.sig[0].Direction)
	assert.Equal(t, tlvcodec.Mixed, s.fmt[0].Direction)
	mixed := decode(t, L16.Codec(), s.audio[tlvcodec.Mixed])
	require.Len(t, mixed, 160)
	for i := range mixed {
		want := max(min(int32(left[i])+int32(right[i]), math.MaxInt16), math.MinInt16)
		require.Equal(t, int16(want), mixed[i], "sample %d", i)
	}
}

// What a bug cannot feed is refused when the fork begins (a signed spec is
// checked again).
func TestForkRefusesUnproducibleFormats(t *testing.T) {
	t.Parallel()
	a := newUDPSink(t)
	for _, c := range []struct {
		mix Mix
		fm  EndpointFormat
		err string
	}{
		{Mono, EndpointFormat{Directions: DirSetOf(DirTX)}, "directions: tx cannot be made from a mono bug"},
		{Mixed, EndpointFormat{Directions: DirSetOf(DirRX)}, "directions: rx cannot be made from a mixed bug"},
		{Stereo, EndpointFormat{Rate: 16000}, "rate: 16000 Hz is above the bug's 8000 Hz"},
		{Stereo, EndpointFormat{Encoding: "opus"}, "encoding"},
	} {
		reg := NewRegistry(newTestTransport(), 10, true, quiet)
		f, _ := reg.Claim("u", "b")
		spec := stereoSpec()
		spec.Mix = c.mix
		formats := []EndpointFormat{c.fm}
		assert.ErrorContains(t, f.Begin(spec, formatted(formats, a.addr())), c.err)
		f.Finish(EndHangup)
		assert.Equal(t, StateFailed, f.Info().State)
	}
	a.none(t)
}

func TestEndpointFormatResolve(t *testing.T) {
	t.Parallel()
	bug := Params{Mix: Stereo, Rate: 48000, Encoding: L16, FrameMs: 20}
	got, err := EndpointFormat{Directions: DirSetOf(DirMixed), Rate: 16000}.Resolve(bug)
	require.NoError(t, err)
	assert.Equal(t, EndpointFormat{Directions: DirSetOf(DirMixed), Encoding: L16, Rate: 16000, FrameMs: 20}, got)
	got, err = EndpointFormat{}.Resolve(Params{Mix: Mixed, Rate: 8000, Encoding: PCMA, FrameMs: 30})
	require.NoError(t, err)
	assert.Equal(t, EndpointFormat{Directions: DirSetOf(DirMixed), Encoding: PCMA, Rate: 8000, FrameMs: 30}, got)
	for fm, want := range map[EndpointFormat]string{
		{Rate: 96000}:                        "rate: 96000 Hz is above",
		{Rate: 32000}:                        "rate: 32000 Hz is not the bug's 48000 Hz divided by a whole number",
		{Rate: 12000}:                        "rate: 12000 is not a multiple of 8000",
		{Rate: -8000}:                        "rate: -8000 is not a sample rate",
		{Rate: 8000, FrameMs: 1}:             "",
		{FrameMs: 1000 * 4}:                  "frame_ms: 4000 ms of l16 at 48000 Hz is 384000 bytes, more than one UDP datagram",
		{Encoding: "g729"}:                   "encoding: \"g729\" is not one of l16|l16be|pcmu|pcma",
		{Directions: DirSet(8)}:              "directions:",
		{Directions: DirSetOf(DirRX, DirTX)}: "",
	} {
		_, rerr := fm.Resolve(bug)
		if want == "" {
			assert.NoError(t, rerr, "%+v", fm)
		} else {
			assert.ErrorContains(t, rerr, want, "%+v", fm)
		}
	}
	_, err = EndpointFormat{Rate: 8000, FrameMs: 1}.Resolve(Params{Mix: Stereo, Rate: 48000, Encoding: L16, FrameMs: 20})
	assert.NoError(t, err, "8 samples at 8 kHz")
	_, err = EndpointFormat{FrameMs: 3}.Resolve(Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20})
	assert.NoError(t, err)
	_, err = EndpointFormat{Rate: 8000, FrameMs: 1}.Resolve(Params{Mix: Stereo, Rate: 16000, Encoding: L16, FrameMs: 20})
	assert.NoError(t, err)
}

func TestDirSetJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(DirSetOf(DirMixed, DirRX))
	require.NoError(t, err)
	assert.Equal(t, `["rx","mixed"]`, string(b))
	var s DirSet
	require.NoError(t, json.Unmarshal([]byte(`["TX","rx"]`), &s))
	assert.Equal(t, DirSetOf(DirRX, DirTX), s)
	assert.Error(t, json.Unmarshal([]byte(`["both"]`), &s))
	assert.Equal(t, "rx+tx", s.String())
}

// A fork's signed credential keeps each endpoint's format with its pinned
// address.
func TestCredentialCarriesFormats(t *testing.T) {
	t.Parallel()
	s := NewSigner([]byte("k"))
	spec := spec16k()
	spec.UUID = "u1"
	spec.Targets = formatted([]EndpointFormat{{}, {Directions: DirSetOf(DirRX), Rate: 8000}},
		netip.MustParseAddrPort("127.0.0.1:9"), netip.MustParseAddrPort("127.0.0.2:9"))
	got := opened(t, s, s.Sign(spec, time.Now().Add(time.Minute)), "u1")
	assert.Equal(t, spec.Addrs(), got.Addrs())
	assert.Equal(t, spec.Formats(), got.Formats())
	assert.Equal(t, spec.Targets, got.Targets)
	plain := stereoSpec()
	plain.UUID = "u1"
	plain.Targets = TLVTargets(netip.MustParseAddrPort("127.0.0.1:9"))
	cred := s.Sign(plain, time.Now().Add(time.Minute))
	got = opened(t, s, cred, "u1")
	assert.Nil(t, got.Formats(), "a plain fork's credential has no formats")
	body, _ := b64.DecodeString(cred.Description)
	assert.Contains(t, string(body), `"targets":["127.0.0.1:9"]`, "a plain TLV target is its address alone")
}

// Each output's packets go through the reader's batch; nothing allocates.
func TestFanOutTwoFormatsAllocatesNothing(t *testing.T) {
	a, b := newUDPSink(t), newUDPSink(t)
	a.conn.SetReadBuffer(4 << 20)
	b.conn.SetReadBuffer(4 << 20)
	for _, batch := range []int{0, 1, 64} {
		reg := NewRegistry(testTransport{batch: max(1, batch)}, 10, true, quiet)
		f, _ := reg.Claim("u", "b")
		spec := spec16k()
		formats := []EndpointFormat{{Encoding: PCMU, Rate: 8000}, {Directions: DirSetOf(DirMixed)}, {}}
		require.NoError(t, f.Begin(spec, formatted(formats, a.addr(), b.addr(), a.addr())))
		require.Len(t, f.Info().Outputs, 3)
		var bt *Batch
		if batch > 0 {
			bt = reg.NewSharedBatch()
		}
		frame := interleave(sine(1000, 16000, 320, 8000), sine(300, 16000, 320, 8000))
		f.Write(bt, frame)
		i := 0
		assert.Zero(t, testing.AllocsPerRun(300, func() {
			f.Write(bt, frame)
			if i++; bt != nil && i%7 == 0 {
				bt.Flush()
			}
		}), "batch %d", batch)
		f.Finish(EndHangup)
		assert.Zero(t, reg.OpenEndpoints())
	}
}
