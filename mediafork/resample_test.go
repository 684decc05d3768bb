package mediafork

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// sine is n samples of a sine of freq Hz at rate, amplitude amp.
func sine(freq float64, rate, n int, amp float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(math.Round(amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return out
}

// interleave makes L16 little-endian PCM of one or two channels.
func interleave(chans ...[]int16) []byte {
	var b []byte
	for i := range chans[0] {
		for _, c := range chans {
			b = binary.LittleEndian.AppendUint16(b, uint16(c[i]))
		}
	}
	return b
}

// decode turns packets' payloads of codec back into samples, in order.
func decode(t *testing.T, codec Codec, as []tlvcodec.Audio) []int16 {
	t.Helper()
	var out []int16
	for _, a := range as {
		s := make([]int16, len(a.Payload)/codec.BytesPerSample())
		require.Equal(t, len(s), codec.Decode(s, a.Payload))
		out = append(out, s...)
	}
	return out
}

func rms(x []int16) float64 {
	sum := 0.0
	for _, v := range x {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(len(x)))
}

func dB(ratio float64) float64 { return 20 * math.Log10(ratio) }

// dominant is the frequency (in steps of 1 Hz, up to Nyquist) where x's
// Hann-windowed spectrum peaks.
func dominant(x []int16, rate int) float64 {
	w := make([]float64, len(x))
	for i, v := range x {
		w[i] = float64(v) * (0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(len(x)-1)))
	}
	best, bestF := 0.0, 0.0
	for f := 1.0; f < float64(rate)/2; f++ {
		// A Goertzel filter: the power at f, with no table.
		c := 2 * math.Cos(2*math.Pi*f/float64(rate))
		var s1, s2 float64
		for _, v := range w {
			s1, s2 = v+c*s1-s2, s1
		}
		if p := s1*s1 + s2*s2 - c*s1*s2; p > best {
			best, bestF = p, f
		}
	}
	return bestF
}

// downsampled runs pcm (stereo at 16 kHz) through an RX-only, 8 kHz l16
// output's shaper and Packetizer, fed in pieces of random size, and returns
// the decoded audio with the filter's warm-up cut off.
func downsampled(t *testing.T, pcm []byte, rng *rand.Rand) []int16 {
	t.Helper()
	c := &collector{}
	dirs := []Direction{DirRX}
	pk := newPacketizer(2, dirs, []int{0}, 160, L16.Codec(), &TLVFramer{StreamID: 1}, c)
	sh := newShaper(Stereo, dirs, 2, pk)
	for len(pcm) > 0 {
		n := min(len(pcm), 1+rng.IntN(1500))
		sh.Write(pcm[:n])
		pcm = pcm[n:]
	}
	out := decode(t, L16.Codec(), c.byDir(t)[tlvcodec.RX])
	return out[len(lowPass(2)):]
}

// 16 kHz → 8 kHz: a 1 kHz tone passes, a 6 kHz one (above the new 4 kHz
// Nyquist: without the filter it would alias to 2 kHz) is stopped.
func TestDownsampleTones(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const n, amp = 16000, 12000.0
	quiet := make([]int16, n)

	pass := sine(1000, 16000, n, amp)
	out := downsampled(t, interleave(pass, quiet), rng)
	assert.InDelta(t, 7900, len(out), 100, "half the samples")
	gain := dB(rms(out) / rms(pass))
	assert.InDelta(t, 0, gain, 1, "1 kHz passes within 1 dB: %.2f dB", gain)
	assert.InDelta(t, 1000, dominant(out, 8000), 10)

	stop := sine(6000, 16000, n, amp)
	out = downsampled(t, interleave(stop, quiet), rng)
	gain = dB(rms(out) / rms(stop))
	assert.Less(t, gain, -40.0, "6 kHz stopped by at least 40 dB: %.1f dB", gain)

	// The control: keeping one sample in two without the filter aliases it.
	naive := make([]int16, 0, n/2)
	for i := 0; i < n; i += 2 {
		naive = append(naive, stop[i])
	}
	assert.InDelta(t, 2000, dominant(naive, 8000), 10)
	assert.Greater(t, dB(rms(naive)/rms(stop)), -1.0)

	// Both at once: the 1 kHz tone is what is left.
	both := make([]int16, n)
	for i := range both {
		both[i] = pass[i]/2 + stop[i]/2
	}
	out = downsampled(t, interleave(both, quiet), rng)
	assert.InDelta(t, 1000, dominant(out, 8000), 10)
}

// The filter's state is carried across frames: any cut of the input gives
// the same output as one piece.
func TestDownsampleStateAcrossFrames(t *testing.T) {
	t.Parallel()
	l, r := sine(700, 48000, 4800, 9000), sine(3100, 48000, 4800, 9000)
	pcm := interleave(l, r)
	run := func(pieces func([]byte) [][]byte) [][]byte {
		c := &collector{}
		dirs := []Direction{DirRX, DirTX, DirMixed}
		pk := newPacketizer(6, dirs, []int{0, 2, 4}, 160, L16.Codec(), &TLVFramer{StreamID: 1}, c)
		sh := newShaper(Stereo, dirs, 6, pk) // 48 → 8 kHz
		for _, p := range pieces(pcm) {
			sh.Write(p)
		}
		return c.pkts
	}
	whole := run(func(b []byte) [][]byte { return [][]byte{b} })
	rng := rand.New(rand.NewPCG(3, 4))
	cut := run(func(b []byte) [][]byte {
		var out [][]byte
		for len(b) > 0 {
			n := min(len(b), 1+rng.IntN(700))
			out, b = append(out, b[:n]), b[n:]
		}
		return out
	})
	require.Len(t, whole, 15, "4800 samples at 48 kHz: 800 at 8 kHz, 5 packets a direction")
	assert.Equal(t, whole, cut)
}

func TestLowPassTaps(t *testing.T) {
	t.Parallel()
	for m := 2; m <= 8; m++ {
		h := lowPass(m)
		assert.Len(t, h, 32*m-1)
		sum := float32(0)
		for i := range h {
			sum += h[i]
			assert.InDelta(t, h[i], h[len(h)-1-i], 1e-7, "symmetric: linear phase")
		}
		assert.InDelta(t, 1, sum, 1e-5, "unit gain at DC")
	}
}

func TestShaperAllocatesNothing(t *testing.T) {
	pcm := interleave(sine(1000, 16000, 320, 8000), sine(300, 16000, 320, 8000))
	dirs := []Direction{DirRX, DirMixed}
	pk := newPacketizer(4, dirs, []int{0, 2}, 160, PCMU.Codec(), &TLVFramer{StreamID: 1}, &nopSink{})
	sh := newShaper(Stereo, dirs, 2, pk)
	assert.Zero(t, testing.AllocsPerRun(200, func() { sh.Write(pcm[:333]); sh.Write(pcm[333:]) }))
}

func BenchmarkShaper16kTo8k(b *testing.B) {
	pcm := interleave(sine(1000, 16000, 320, 8000), sine(300, 16000, 320, 8000)) // 20 ms stereo 16 kHz
	dirs := []Direction{DirRX, DirTX}
	pk := newPacketizer(4, dirs, []int{0, 2}, 160, PCMU.Codec(), &TLVFramer{StreamID: 1}, &nopSink{})
	sh := newShaper(Stereo, dirs, 2, pk)
	b.ReportAllocs()
	b.SetBytes(int64(len(pcm)))
	for i := 0; i < b.N; i++ {
		sh.Write(pcm)
	}
}
