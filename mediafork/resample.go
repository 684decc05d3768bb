package mediafork

import (
	"encoding/binary"
	"math"
)

// Downsampling by a whole factor M: a windowed-sinc low-pass FIR (Kaiser
// window) with its cutoff a little below the new Nyquist frequency, then one
// sample kept in M. The filter runs only for the samples kept (M times fewer
// multiply-adds than filtering every input sample).

// firTapsPerFactor: the filter has this many taps per unit of M, less one
// (63 taps for 16 → 8 kHz): the transition band is then about 1 kHz wide at
// the output, whatever M.
const firTapsPerFactor = 32 // odd tap counts: a centre tap, the rest in symmetric pairs

// firCutoff is the cutoff as a fraction of the output rate (0.5 is Nyquist):
// 3.6 kHz at 8 kHz, where the passband (telephone audio ends at 3.4 kHz) is
// flat and what is above 4 kHz is down by the stopband attenuation.
const firCutoff = 0.45

// firKaiserBeta sets the stopband attenuation: about 60 dB.
const firKaiserBeta = 6.0

// lowPass returns the taps of a linear-phase low-pass FIR for decimating by m,
// normalised to unit gain at DC.
func lowPass(m int) []float32 {
	n := firTapsPerFactor*m - 1
	fc := firCutoff / float64(m) // cycles per input sample
	h := make([]float64, n)
	mid := float64(n-1) / 2
	sum := 0.0
	for i := range h {
		x := float64(i) - mid
		sinc := 2 * fc
		if x != 0 {
			sinc = math.Sin(2*math.Pi*fc*x) / (math.Pi * x)
		}
		r := 2*float64(i)/float64(n-1) - 1
		h[i] = sinc * bessel0(firKaiserBeta*math.Sqrt(1-r*r)) / bessel0(firKaiserBeta)
		sum += h[i]
	}
	out := make([]float32, n)
	for i := range h {
		out[i] = float32(h[i] / sum)
	}
	return out
}

// bessel0 is the modified Bessel function of the first kind, order 0 (its
// power series), for the Kaiser window.
func bessel0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 50; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < 1e-12*sum {
			break
		}
	}
	return sum
}

// fir is one channel's filter state: the last len(taps) input samples, kept
// twice over in hist so the window is always one contiguous slice.
type fir struct {
	taps []float32 // shared, read only
	hist []float32 // 2*len(taps)
	pos  int
}

func newFIR(taps []float32) fir {
	return fir{taps: taps, hist: make([]float32, 2*len(taps))}
}

// push adds one input sample.
func (f *fir) push(x float32) {
	n := len(f.taps)
	f.hist[f.pos], f.hist[f.pos+n] = x, x
	if f.pos++; f.pos == n {
		f.pos = 0
	}
}

// out is the filter's output at the last sample pushed. The taps are
// symmetric (odd in number), so the window's order does not matter and each
// tap is applied to the sum of the two samples it weighs alike.
func (f *fir) out() int16 {
	n := len(f.taps)
	w := f.hist[f.pos : f.pos+n]
	half := n / 2
	lo, hi, h := w[:half], w[n-half:], f.taps[:half]
	hi = hi[:len(lo)]
	acc := f.taps[half] * w[half]
	for i, t := range h {
		acc += t * (lo[i] + hi[half-1-i])
	}
	if acc >= 0 {
		acc += 0.5
	} else {
		acc -= 0.5
	}
	return saturate(int32(max(min(acc, math.MaxInt16+1), math.MinInt16-1)))
}

func saturate(v int32) int16 {
	return int16(min(max(v, math.MinInt16), math.MaxInt16))
}

// source is where one output direction's samples come from in the bug's PCM.
type source uint8

const (
	srcLeft  source = iota // channel 0: RX of a stereo or mono bug, MIXED of a mixed one
	srcRight               // channel 1 of a stereo bug: TX
	srcSum                 // L+R of a stereo bug, saturated: MIXED made by mediafork
)

// shaper turns the bug's PCM into one output's: it picks or mixes the
// directions the output carries and downsamples by a whole factor, writing
// interleaved L16 little-endian (one channel per output direction) into the
// output's Packetizer. Owned by the goroutine that writes the fork; allocates
// nothing after newShaper.
type shaper struct {
	unit  int // bytes of one input sample (pair)
	srcs  []source
	m     int   // decimation factor (1: none)
	phase int   // input samples since the last one kept
	firs  []fir // one per output direction when m > 1
	carry sampleCarry
	out   []byte // one chunk of output, flushed into next
	w     int
	next  *Packetizer
}

// shaperChunk is the output sample (pair)s gathered before they go to the
// Packetizer.
const shaperChunk = 256

func newShaper(mix Mix, dirs []Direction, m int, next *Packetizer) *shaper {
	s := &shaper{unit: 2 * mix.Channels(), m: m, next: next, out: make([]byte, shaperChunk*2*len(dirs))}
	for _, d := range dirs {
		src := srcLeft
		switch {
		case d == DirTX:
			src = srcRight
		case d == DirMixed && mix == Stereo:
			src = srcSum
		}
		s.srcs = append(s.srcs, src)
	}
	if m > 1 {
		taps := lowPass(m)
		for range dirs {
			s.firs = append(s.firs, newFIR(taps))
		}
	}
	return s
}

// Write takes one WebSocket frame of the bug's PCM, of any size.
func (s *shaper) Write(pcm []byte) {
	s.carry.feed(pcm, s.unit, s)
	s.flush()
}

func (s *shaper) samples(pcm []byte) {
	for ; len(pcm) >= s.unit; pcm = pcm[s.unit:] {
		keep := true
		if s.m > 1 {
			s.phase++
			keep = s.phase == s.m
			if keep {
				s.phase = 0
			}
		}
		for c, src := range s.srcs {
			v := s.sample(pcm, src)
			if s.m > 1 {
				s.firs[c].push(float32(v))
				if keep {
					v = s.firs[c].out()
				}
			}
			if keep {
				binary.LittleEndian.PutUint16(s.out[s.w:], uint16(v))
				s.w += 2
			}
		}
		if s.w == len(s.out) {
			s.flush()
		}
	}
}

func (s *shaper) sample(pcm []byte, src source) int16 {
	l := int16(binary.LittleEndian.Uint16(pcm))
	switch src {
	case srcRight:
		return int16(binary.LittleEndian.Uint16(pcm[2:]))
	case srcSum:
		return saturate(int32(l) + int32(int16(binary.LittleEndian.Uint16(pcm[2:]))))
	}
	return l
}

func (s *shaper) flush() {
	if s.w > 0 {
		s.next.Write(s.out[:s.w])
		s.w = 0
	}
}

// Flush drops a dangling partial sample; the filter's last few input samples
// (its delay, under 2 ms) are not sent.
func (s *shaper) Flush() { s.carry.n = 0 }
