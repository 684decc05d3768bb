package mediafork

import (
	"fmt"
	"math"
)

// Talk-back audio arrives in each receiver's format (its stream's encoding
// and rate) and goes into the switch as 16-bit linear PCM at the fork's
// talk-back rate: a receiver's samples are decoded, then resampled by a
// rational factor with a polyphase windowed-sinc filter whose state carries
// from one message to the next.

// TalkbackRate is the rate talk-back goes into the switch at for a fork at
// rate: 16 kHz for a wideband fork, else 8 kHz — the rates every module
// takes (mod_audio_fork's files .r8 and .r16; jambonz's streamed audio is
// resampled to the channel's rate by the module).
func TalkbackRate(forkRate int) int {
	if forkRate >= 16000 {
		return 16000
	}
	return 8000
}

// resampler converts a stream of samples from one rate to another by l/m
// (the ratio of the rates in lowest terms).
type resampler struct {
	l, m  int
	taps  [][]float32 // per phase, nt taps each, scaled by l
	nt    int
	hist  []float32 // the last nt inputs, twice over (one contiguous window)
	pos   int
	nIn   int64 // inputs pushed
	kOutM int64 // the next output's position, in 1/l of an input sample
}

// maxResampleFactor bounds l and m: rates are whole kHz multiples of each
// other in practice (8, 12, 16, 24, 32, 48 kHz).
const maxResampleFactor = 64

// newResampler converts from rate in to rate out; nil when they are equal.
func newResampler(in, out int) (*resampler, error) {
	if in <= 0 || out <= 0 {
		return nil, fmt.Errorf("resample %d Hz to %d Hz: not sample rates", in, out)
	}
	if in == out {
		return nil, nil
	}
	g := gcd(in, out)
	l, m := out/g, in/g
	if l > maxResampleFactor || m > maxResampleFactor {
		return nil, fmt.Errorf("resample %d Hz to %d Hz: the ratio %d/%d is too fine", in, out, l, m)
	}
	nt := 16*((m+l-1)/l) + 8
	n := nt * l
	// Cutoff a little below the lower Nyquist frequency, in cycles per
	// sample of the upsampled stream (in*l).
	fc := 0.45 * float64(min(in, out)) / float64(in*l)
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
		h[i] = sinc * bessel0(firKaiserBeta*math.Sqrt(max(0, 1-r*r))) / bessel0(firKaiserBeta)
		sum += h[i]
	}
	r := &resampler{l: l, m: m, nt: nt, taps: make([][]float32, l), hist: make([]float32, 2*nt)}
	for p := 0; p < l; p++ {
		r.taps[p] = make([]float32, nt)
		for j := 0; j < nt; j++ {
			r.taps[p][j] = float32(h[p+j*l] / sum * float64(l))
		}
	}
	return r, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// process appends the resampled in to out.
func (r *resampler) process(out []int16, in []int16) []int16 {
	l64, m64 := int64(r.l), int64(r.m)
	for _, x := range in {
		// The window: hist[pos..pos+nt) holds the newest nt inputs, newest
		// first.
		r.pos--
		if r.pos < 0 {
			r.pos = r.nt - 1
		}
		r.hist[r.pos], r.hist[r.pos+r.nt] = float32(x), float32(x)
		r.nIn++
		// Every output whose position falls on this input.
		for r.kOutM < r.nIn*l64 {
			p := r.kOutM % l64
			w := r.hist[r.pos : r.pos+r.nt]
			var acc float32
			for j, t := range r.taps[p] {
				acc += t * w[j]
			}
			out = append(out, saturate(int32(math.Round(float64(acc)))))
			r.kOutM += m64
		}
	}
	return out
}

// talkbackDecoder turns one receiver's audio messages into PCM at the
// fork's talk-back rate: whole samples of its encoding, resampled.
type talkbackDecoder struct {
	codec Codec
	rs    *resampler
	pcm   []int16 // decoded, before resampling (reused)
}

func newTalkbackDecoder(e Encoding, rate, outRate int) (*talkbackDecoder, error) {
	c, ok := LookupEncoding(e)
	if !ok {
		return nil, fmt.Errorf("talk-back: unknown encoding %q", e)
	}
	rs, err := newResampler(rate, outRate)
	if err != nil {
		return nil, err
	}
	return &talkbackDecoder{codec: c, rs: rs}, nil
}

// decode appends b's samples, converted, to out. b must hold whole samples.
func (d *talkbackDecoder) decode(out []int16, b []byte) ([]int16, error) {
	bps := d.codec.BytesPerSample()
	if len(b)%bps != 0 {
		return out, fmt.Errorf("%d bytes is not a whole number of %s samples", len(b), d.codec.Name())
	}
	n := len(b) / bps
	if d.rs == nil {
		start := len(out)
		out = append(out, make([]int16, n)...)
		d.codec.Decode(out[start:], b)
		return out, nil
	}
	if cap(d.pcm) < n {
		d.pcm = make([]int16, n)
	}
	d.pcm = d.pcm[:n]
	d.codec.Decode(d.pcm, b)
	return d.rs.process(out, d.pcm), nil
}
