package mediafork

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/g711"
	"github.com/mediafork/mediafork/tlvcodec"
)

// collector keeps copies of every packet, as a receiver would see them.
type collector struct{ pkts [][]byte }

func (c *collector) SendPacket(_ Direction, pkt []byte) {
	c.pkts = append(c.pkts, bytes.Clone(pkt))
}

// byDir parses the collected packets and returns payloads and sequences per direction.
func (c *collector) byDir(t *testing.T) map[tlvcodec.Direction][]tlvcodec.Audio {
	t.Helper()
	out := map[tlvcodec.Direction][]tlvcodec.Audio{}
	for _, p := range c.pkts {
		var a tlvcodec.Audio
		require.NoError(t, a.Unmarshal(p))
		out[a.Direction] = append(out[a.Direction], a)
	}
	return out
}

// pcmStereo makes n interleaved sample pairs with distinct values per side.
func pcmStereo(n int) (inter, left, right []byte) {
	for i := 0; i < n; i++ {
		l, r := int16(i*3-1000), int16(-i*5+7)
		inter = binary.LittleEndian.AppendUint16(inter, uint16(l))
		inter = binary.LittleEndian.AppendUint16(inter, uint16(r))
		left = binary.LittleEndian.AppendUint16(left, uint16(l))
		right = binary.LittleEndian.AppendUint16(right, uint16(r))
	}
	return
}

// feed writes pcm in randomly sized pieces, cutting through samples and pairs.
func feed(z *Packetizer, pcm []byte, rng *rand.Rand) {
	for len(pcm) > 0 {
		n := min(len(pcm), rng.IntN(1500))
		z.Write(pcm[:n])
		pcm = pcm[n:]
	}
}

func concat(as []tlvcodec.Audio) []byte {
	var b []byte
	for _, a := range as {
		b = append(b, a.Payload...)
	}
	return b
}

func TestPacketizerStereoSplitsAndReframes(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	inter, left, right := pcmStereo(8000 + 37) // 1 s and a bit: the tail is a partial packet
	c := &collector{}
	z := NewPacketizer(Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20}, &TLVFramer{StreamID: 77}, c)
	feed(z, inter, rng)
	z.Flush()

	d := c.byDir(t)
	require.Len(t, d, 2)
	assert.Equal(t, left, concat(d[tlvcodec.RX]), "RX is the left channel")
	assert.Equal(t, right, concat(d[tlvcodec.TX]), "TX is the right channel")
	for _, dir := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX} {
		as := d[dir]
		require.Len(t, as, 51)
		for i, a := range as {
			assert.Equal(t, uint32(i+1), a.Sequence)
			assert.Equal(t, uint32(77), a.StreamID)
			if i < 50 {
				assert.Len(t, a.Payload, 320, "one 20 ms frame per packet")
			}
		}
		assert.Len(t, as[50].Payload, 74, "final partial frame sent as is")
	}
	// RX and TX alternate, RX first.
	for i, p := range c.pkts {
		assert.Equal(t, byte(1+i%2), p[7])
	}
	assert.Equal(t, uint32(51), z.LastSequence(0))
}

func TestPacketizerMonoAndMixed(t *testing.T) {
	t.Parallel()
	for _, mix := range []Mix{Mono, Mixed} {
		t.Run(string(mix), func(t *testing.T) {
			_, pcm, _ := pcmStereo(16000)
			c := &collector{}
			z := NewPacketizer(Params{Mix: mix, Rate: 16000, Encoding: L16, FrameMs: 20}, &TLVFramer{StreamID: 5}, c)
			feed(z, pcm, rand.New(rand.NewPCG(3, 4)))
			z.Flush()
			d := c.byDir(t)
			require.Len(t, d, 1)
			want := tlvcodec.RX
			if mix == Mixed {
				want = tlvcodec.Mixed
			}
			assert.Equal(t, pcm, concat(d[want]))
			assert.Len(t, d[want], 50)
			assert.Len(t, d[want][0].Payload, 640)
		})
	}
}

func TestPacketizerEncodings(t *testing.T) {
	t.Parallel()
	inter, left, right := pcmStereo(320)
	for _, tc := range []struct {
		enc  Encoding
		conv func([]byte) []byte
	}{
		{L16BE, func(le []byte) []byte {
			out := make([]byte, len(le))
			for i := 0; i < len(le); i += 2 {
				out[i], out[i+1] = le[i+1], le[i]
			}
			return out
		}},
		{PCMU, func(le []byte) []byte {
			var out []byte
			for i := 0; i < len(le); i += 2 {
				out = append(out, g711.LinearToULaw(int16(binary.LittleEndian.Uint16(le[i:]))))
			}
			return out
		}},
		{PCMA, func(le []byte) []byte {
			var out []byte
			for i := 0; i < len(le); i += 2 {
				out = append(out, g711.LinearToALaw(int16(binary.LittleEndian.Uint16(le[i:]))))
			}
			return out
		}},
	} {
		t.Run(string(tc.enc), func(t *testing.T) {
			c := &collector{}
			z := NewPacketizer(Params{Mix: Stereo, Rate: 8000, Encoding: tc.enc, FrameMs: 20}, &TLVFramer{StreamID: 9}, c)
			feed(z, inter, rand.New(rand.NewPCG(5, 6)))
			d := c.byDir(t)
			assert.Equal(t, tc.conv(left), concat(d[tlvcodec.RX]))
			assert.Equal(t, tc.conv(right), concat(d[tlvcodec.TX]))
			if tc.enc != L16BE {
				assert.Len(t, d[tlvcodec.RX][0].Payload, 160, "G.711: 160 bytes per 20 ms at 8 kHz")
			}
		})
	}
}

func TestPacketizerOtherFrameSizes(t *testing.T) {
	t.Parallel()
	inter, left, _ := pcmStereo(8000)
	c := &collector{}
	z := NewPacketizer(Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 30}, &TLVFramer{StreamID: 9}, c)
	z.Write(inter) // one big frame, as the module sends under load
	d := c.byDir(t)
	assert.Len(t, d[tlvcodec.RX], 33)
	assert.Len(t, d[tlvcodec.RX][0].Payload, 480)
	assert.Equal(t, left[:33*480], concat(d[tlvcodec.RX]))
}

func TestPacketizerDropsDanglingByte(t *testing.T) {
	t.Parallel()
	c := &collector{}
	z := NewPacketizer(Params{Mix: Mono, Rate: 8000, Encoding: L16, FrameMs: 20}, &TLVFramer{StreamID: 9}, c)
	z.Write([]byte{1, 2, 3})
	z.Flush()
	d := c.byDir(t)
	assert.Equal(t, []byte{1, 2}, concat(d[tlvcodec.RX]))
}

func TestParamsValidate(t *testing.T) {
	t.Parallel()
	ok := Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20}
	require.NoError(t, ok.Validate())
	for _, tc := range []struct {
		p    Params
		want string
	}{
		{Params{Mix: "quad", Rate: 8000, Encoding: L16, FrameMs: 20}, "mix"},
		{Params{Mix: Mono, Rate: 11025, Encoding: L16, FrameMs: 20}, "rate"},
		{Params{Mix: Mono, Rate: 8000, Encoding: "opus", FrameMs: 20}, "encoding"},
		{Params{Mix: Mono, Rate: 8000, Encoding: L16, FrameMs: 0}, "frame_ms"},
		{Params{Mix: Mono, Rate: 48000, Encoding: L16, FrameMs: 1000}, "frame_ms"}, // 96000 bytes
		// Above 48 kHz: refused, not sent on in a format packet (issue 20).
		{Params{Mix: Mono, Rate: 1600000, Encoding: L16, FrameMs: 20}, "rate: 1600000 Hz is above 48000 Hz"},
		{Params{Mix: Mono, Rate: 56000, Encoding: PCMU, FrameMs: 20}, "rate: 56000 Hz is above 48000 Hz"},
	} {
		err := tc.p.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
	for _, hz := range []int{8000, 16000, 24000, 32000, 40000, 48000} {
		require.NoError(t, Params{Mix: Mono, Rate: hz, Encoding: L16, FrameMs: 20}.Validate(), hz)
	}
	r, err := ParseRate("16k")
	require.NoError(t, err)
	assert.Equal(t, 16000, r)
	r, err = ParseRate("48000")
	require.NoError(t, err)
	assert.Equal(t, 48000, r)
	for in, want := range map[string]string{
		"16kk":                  `rate: "16kk" is not a sample rate`,
		"-8k":                   `rate: "-8k" is not a sample rate`,
		"+8000":                 `rate: "+8000" is not a sample rate`,
		"1600k":                 "rate: 1600k is above 48000 Hz, the highest rate FreeSWITCH runs a channel at",
		"49000":                 "rate: 49000 is above 48000 Hz",
		"9223372036854775807k":  "rate: 9223372036854775807k is above 48000 Hz",
		"99999999999999999999k": "is not a sample rate",
	} {
		_, err = ParseRate(in)
		assert.ErrorContains(t, err, want, in)
	}
}

type nopSink struct{ n int }

func (s *nopSink) SendPacket(_ Direction, pkt []byte) { s.n += len(pkt) }

// framers are a Framer of every datagram protocol for p's stream, started.
func framers(p Params) map[Protocol]Framer {
	out := map[Protocol]Framer{}
	for _, op := range Protocols() {
		dp, ok := op.(DatagramProtocol)
		if !ok {
			continue // a stream protocol's output has no Framer of its own
		}
		fm, _ := op.Format(EndpointFormat{}, nil, p)
		fr := dp.NewFramer(FramerConfig{OutputConfig: OutputConfig{Identity: Identity{Seed: 1}.output(0, 1), Format: fm, Mix: p.Mix,
			Call: "u"}, Dirs: p.Mix.Directions()})
		fr.Start(nopEmitter{}, p.Mix.Directions(), Metadata{}, p, time.Now())
		out[op.Name()] = fr
	}
	return out
}

func TestPacketizerWriteAllocatesNothing(t *testing.T) {
	inter, _, _ := pcmStereo(160)
	for _, enc := range []Encoding{L16, L16BE, PCMU, PCMA} {
		p := Params{Mix: Stereo, Rate: 8000, Encoding: enc, FrameMs: 20}
		for name, fr := range framers(p) {
			z := NewPacketizer(p, fr, &nopSink{})
			// 400 frames: 8 s of audio, an RTP sender report on the way.
			assert.Zero(t, testing.AllocsPerRun(400, func() { z.Write(inter[:333]); z.Write(inter[333:]) }), "%s %s", name, enc)
		}
	}
}

func BenchmarkPacketizer(b *testing.B) {
	inter, _, _ := pcmStereo(160) // one 640-byte stereo 8 kHz frame
	for _, enc := range []Encoding{L16, PCMU} {
		p := Params{Mix: Stereo, Rate: 8000, Encoding: enc, FrameMs: 20}
		for _, proto := range []Protocol{ProtocolTLV, ProtocolRTP} {
			b.Run(proto.String()+"-stereo8k-"+string(enc), func(b *testing.B) {
				z := NewPacketizer(p, framers(p)[proto], &nopSink{})
				b.ReportAllocs()
				b.SetBytes(int64(len(inter)))
				for i := 0; i < b.N; i++ {
					z.Write(inter)
				}
			})
		}
	}
}

// FuzzPacketizer: any PCM cut into any frame sizes comes out as exactly the
// left channel in RX and the right in TX, in whole packets but the last.
func FuzzPacketizer(f *testing.F) {
	raw, err := os.ReadFile("../testdata/freeswitch/captures/t01_stereo_8k/ws/conn01/audio.raw")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw[:6400], uint64(640))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7}, uint64(3))
	f.Fuzz(func(t *testing.T, pcm []byte, seed uint64) {
		c := &collector{}
		z := NewPacketizer(Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20}, &TLVFramer{StreamID: 1}, c)
		feed(z, pcm, rand.New(rand.NewPCG(seed, seed>>7)))
		z.Flush()
		var left, right []byte
		for i := 0; i+4 <= len(pcm); i += 4 {
			left = append(left, pcm[i:i+2]...)
			right = append(right, pcm[i+2:i+4]...)
		}
		var rx, tx []byte
		for i, p := range c.pkts {
			var a tlvcodec.Audio
			if err := a.Unmarshal(p); err != nil {
				t.Fatal(err)
			}
			if i < len(c.pkts)-2 && len(a.Payload) != 320 {
				t.Fatalf("packet %d holds %d bytes, not 20 ms", i, len(a.Payload))
			}
			if a.Direction == tlvcodec.RX {
				rx = append(rx, a.Payload...)
			} else {
				tx = append(tx, a.Payload...)
			}
		}
		if !bytes.Equal(rx, left) || !bytes.Equal(tx, right) {
			t.Fatalf("channels differ: %d/%d RX bytes, %d/%d TX", len(rx), len(left), len(tx), len(right))
		}
	})
}

// tagFramer is a second Framer: a 3-byte header (direction, sequence, length).
// The Packetizer leaves it room and lets it finish every audio packet.
type tagFramer struct{ TLVFramer }

func (*tagFramer) AudioHeaderSize() int { return 3 }
func (*tagFramer) Audio(b []byte, dir Direction, seq uint32, n int) []byte {
	b[0], b[1], b[2] = byte(dir), byte(seq), byte(n)
	return b[:3+n]
}

func TestPacketizerUsesItsFramer(t *testing.T) {
	t.Parallel()
	c := &collector{}
	z := NewPacketizer(Params{Mix: Stereo, Rate: 8000, Encoding: PCMA, FrameMs: 10}, &tagFramer{}, c)
	inter, left, right := pcmStereo(100)
	z.Write(inter)
	z.Flush()
	require.Len(t, c.pkts, 4)
	enc := func(le []byte) []byte {
		out := make([]byte, len(le)/2)
		PCMA.Codec().Encode(out, le, 2, len(out))
		return out
	}
	l, r := enc(left), enc(right)
	assert.Equal(t, append([]byte{1, 1, 80}, l[:80]...), c.pkts[0])
	assert.Equal(t, append([]byte{2, 1, 80}, r[:80]...), c.pkts[1])
	assert.Equal(t, append([]byte{1, 2, 20}, l[80:]...), c.pkts[2])
	assert.Equal(t, append([]byte{2, 2, 20}, r[80:]...), c.pkts[3])
}

// A Packetizer with a scratch buffer (the reader's, set by the Fork) sends the
// same packets as one without, whatever the writes: whole packets, parts of
// packets, several packets at once, in every mix, encoding and frame length.
func TestPacketizerScratchSameBytes(t *testing.T) {
	t.Parallel()
	inter, _, _ := pcmStereo(8000*3 + 77)
	for _, mix := range []Mix{Stereo, Mono, Mixed} {
		for _, enc := range []Encoding{L16, L16BE, PCMU, PCMA} {
			for _, ms := range []int{10, 20, 30} {
				p := Params{Mix: mix, Rate: 8000, Encoding: enc, FrameMs: ms}
				unit := 2 * mix.Channels()
				whole := unit * p.FrameSamples()
				sizes := []int{whole, whole, whole / 2, whole / 2, whole, 3 * whole, whole + 3, whole - 3, whole, 1, whole, whole}
				plain, warm := &collector{}, &collector{}
				a := NewPacketizer(p, &TLVFramer{StreamID: 3}, plain)
				b := NewPacketizer(p, &TLVFramer{StreamID: 3}, warm)
				b.scratch = bytes.Repeat([]byte{0xAA}, batchScratch)
				pcm := inter
				if mix != Stereo {
					pcm = inter[:len(inter)/2]
				}
				for i := 0; len(pcm) > 0; i++ {
					n := min(len(pcm), sizes[i%len(sizes)])
					a.Write(pcm[:n])
					b.Write(pcm[:n])
					pcm = pcm[n:]
				}
				a.Flush()
				b.Flush()
				name := fmt.Sprintf("%s %s %d ms", mix, enc, ms)
				require.Equal(t, plain.pkts, warm.pkts, name)
				require.NotEqual(t, bytes.Repeat([]byte{0xAA}, batchScratch), b.scratch, "%s: the scratch was never used", name)
			}
		}
	}
}
