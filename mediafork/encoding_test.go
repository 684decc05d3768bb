package mediafork

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every encoding of the table, through the table: names and codes are unique
// and the ones the format packet defines, and decode(encode(x)) gives x back
// (exactly for L16, within G.711's quantisation step for the logarithmic ones).
func TestEveryEncodingThroughTheTable(t *testing.T) {
	t.Parallel()
	wire := map[Encoding]uint8{L16: 1, L16BE: 2, PCMU: 3, PCMA: 4} // SPEC §1, format packet
	require.Len(t, Codecs(), len(wire), "every encoding is in the table, and only those")
	names := []string{}
	for _, c := range Codecs() {
		names = append(names, string(c.Name()))
		assert.Equal(t, wire[c.Name()], c.Code(), c.Name())
		byName, ok := LookupEncoding(c.Name())
		require.True(t, ok)
		assert.Equal(t, c, byName)
		byCode, ok := CodecByCode(c.Code())
		require.True(t, ok)
		assert.Equal(t, c, byCode)
		assert.Equal(t, c.BytesPerSample(), c.Name().BytesPerSample())
		assert.NoError(t, Params{Mix: Mono, Rate: 8000, Encoding: c.Name(), FrameMs: 20}.Validate())
	}
	assert.Equal(t, strings.Join(names, "|"), EncodingNames())
	assert.Equal(t, "l16|l16be|pcmu|pcma", EncodingNames())
	_, ok := LookupEncoding("opus")
	assert.False(t, ok)
	_, ok = CodecByCode(0)
	assert.False(t, ok)
	assert.Nil(t, Encoding("opus").Codec())
	assert.Zero(t, Encoding("opus").BytesPerSample())

	// Every 16-bit value, as mono (stride 2) and as the right channel of stereo
	// (stride 4).
	var all []int16
	for v := -32768; v <= 32767; v++ {
		all = append(all, int16(v))
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	mono := make([]byte, 2*len(all))
	stereo := make([]byte, 4*len(all)) // the values on the right, their complement on the left
	for i, v := range all {
		binary.LittleEndian.PutUint16(mono[2*i:], uint16(v))
		binary.LittleEndian.PutUint16(stereo[4*i:], ^uint16(v))
		binary.LittleEndian.PutUint16(stereo[4*i+2:], uint16(v))
	}
	for _, c := range Codecs() {
		t.Run(string(c.Name()), func(t *testing.T) {
			for _, in := range []struct {
				src    []byte
				stride int
			}{{mono, 2}, {stereo[2:], 4}, {stereo, 4}} {
				enc := make([]byte, len(all)*c.BytesPerSample()+1) // one byte more: Encode writes no further
				enc[len(enc)-1] = 0xA5
				c.Encode(enc, in.src, in.stride, len(all))
				require.Equal(t, byte(0xA5), enc[len(enc)-1])
				dec := make([]int16, len(all))
				require.Equal(t, len(all), c.Decode(dec, enc[:len(enc)-1]))
				for i, want := range all {
					if &in.src[0] == &stereo[0] { // the left channel
						want = int16(^uint16(want))
					}
					step := maxError(c, enc[i*c.BytesPerSample()])
					if d := int(dec[i]) - int(want); d < -step || d > step {
						t.Fatalf("%d came back as %d (stride %d)", want, dec[i], in.stride)
					}
				}
			}
		})
	}
}

// maxError is how far a decoded sample may be from the original: nothing for
// linear PCM; for G.711 one quantisation step of the code's segment (decoding
// gives the middle of the step, and the encoder's truncation to 14 or 13 bits
// and the clipping at the ends stay within it). In 16-bit units µ-law steps
// are 8<<seg, A-law's 16<<(seg-1) with segments 0 and 1 alike.
func maxError(c Codec, code byte) int {
	switch c.Name() {
	case PCMU:
		return 8 << ((^code & 0x70) >> 4)
	case PCMA:
		return 16 << max(int((code^0x55)&0x70>>4)-1, 0)
	}
	return 0
}

// The linear codecs' four-at-a-time paths give what a sample at a time gives
// (little-endian: as it came; big-endian: each sample's bytes swapped), for
// every count, mono and either channel of stereo, and read nothing past the
// source.
func TestL16EncodeEveryLength(t *testing.T) {
	t.Parallel()
	frame := make([]byte, 4*13)
	for i := range frame {
		frame[i] = byte(i*7 + 3)
	}
	for _, c := range []Codec{l16Codec{}, l16beCodec{}} {
		swap := c.Name() == L16BE
		for n := 0; n <= 13; n++ {
			for _, in := range []struct{ stride, ch int }{{2, 0}, {4, 0}, {4, 1}} {
				var src []byte // the channel's first byte to the last sample's end
				if n > 0 {
					src = frame[2*in.ch : in.stride*(n-1)+2*in.ch+2]
				}
				want := make([]byte, 2*n)
				for i := 0; i < n; i++ {
					lo, hi := src[in.stride*i], src[in.stride*i+1]
					if swap {
						lo, hi = hi, lo
					}
					want[2*i], want[2*i+1] = lo, hi
				}
				got := make([]byte, 2*n)
				c.Encode(got, src, in.stride, n)
				require.Equal(t, want, got, "%s n=%d stride %d channel %d", c.Name(), n, in.stride, in.ch)
			}
		}
	}
}

// BenchmarkEncode: one channel of a 20-ms 8 kHz stereo frame, as an
// endpoint's packetizer encodes it.
func BenchmarkEncode(b *testing.B) {
	src := make([]byte, 4*160)
	dst := make([]byte, 2*160)
	for _, c := range Codecs() {
		b.Run(string(c.Name()), func(b *testing.B) {
			b.SetBytes(int64(len(src) / 2))
			for b.Loop() {
				c.Encode(dst, src[2:], 4, 160)
			}
		})
	}
}

func TestEncodingsAllocateNothing(t *testing.T) {
	src := make([]byte, 4*160)
	dst := make([]byte, 2*160)
	pcm := make([]int16, 160)
	for _, c := range Codecs() {
		assert.Zero(t, testing.AllocsPerRun(100, func() {
			c.Encode(dst, src, 4, 160)
			c.Decode(pcm, dst[:160*c.BytesPerSample()])
		}), c.Name())
	}
}
