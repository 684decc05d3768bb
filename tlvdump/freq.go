package tlvdump

import (
	"math"
	"math/cmplx"
)

// dominantHz finds the strongest frequency between 50 Hz and the Nyquist
// limit, to 5 Hz: enough to tell a 440 Hz side from a 1000 Hz one. An FFT of
// at most MaxAnalysedSamples finds the peak; Goertzel filters on the 5 Hz grid
// around it pick the answer. The work is bounded by samples whatever the rate
// claims (a scan of every 5 Hz bin up to rate/2 was not: issue 20).
func dominantHz(x []int16, rate int) int {
	n := 1
	for n*2 <= min(len(x), MaxAnalysedSamples) {
		n *= 2
	}
	if rate <= 0 || n < 256 || len(x) < rate/50 {
		return 0
	}
	x = x[:n]
	spec := make([]complex128, n)
	for i, v := range x {
		spec[i] = complex(float64(v), 0)
	}
	fft(spec)
	lo := max(1, int(math.Ceil(50*float64(n)/float64(rate))))
	k := -1 // none: silence has no dominant frequency
	for i, best := lo, 0.0; i < n/2; i++ {
		if p := cmplx.Abs(spec[i]); p > best {
			best, k = p, i
		}
	}
	if k < 0 {
		return 0
	}
	binHz := float64(rate) / float64(n)
	from := max(50, int(float64(k-2)*binHz)/5*5)
	to := min(int(float64(k+2)*binHz)/5*5+5, (rate-1)/2)
	best, bestHz := -1.0, 0
	for hz := from; hz <= to; hz += 5 {
		if p := goertzel(x, float64(hz)/float64(rate)); p > best {
			best, bestHz = p, hz
		}
	}
	return bestHz
}

// goertzel is the power of x at f cycles per sample.
func goertzel(x []int16, f float64) float64 {
	coeff := 2 * math.Cos(2*math.Pi*f)
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = float64(v)+coeff*s1-s2, s1
	}
	return s1*s1 + s2*s2 - coeff*s1*s2
}

// fft transforms x in place; len(x) is a power of 2.
func fft(x []complex128) {
	n := len(x)
	for i, j := 1, 0; i < n; i++ { // bit-reversal permutation
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j |= bit
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		half := size / 2
		step := cmplx.Exp(complex(0, -2*math.Pi/float64(size)))
		for start := 0; start < n; start += size {
			w := complex(1, 0)
			for k := 0; k < half; k++ {
				a, b := x[start+k], x[start+k+half]*w
				x[start+k], x[start+k+half] = a+b, a-b
				w *= step
			}
		}
	}
}
