package tlvdump

import "math"

// dominantHz finds the strongest frequency between 50 Hz and the Nyquist limit,
// in 5 Hz steps, by correlating with sines (a plain DFT at chosen bins): enough
// to tell a 440 Hz side from a 1000 Hz one.
func dominantHz(x []int16, rate int) int {
	if len(x) < rate/50 || rate == 0 {
		return 0
	}
	best, bestHz := 0.0, 0
	for hz := 50; hz < rate/2; hz += 5 {
		w := 2 * math.Pi * float64(hz) / float64(rate)
		// Goertzel recurrence: one multiply-add per sample.
		coeff := 2 * math.Cos(w)
		var s1, s2 float64
		for _, v := range x {
			s0 := float64(v) + coeff*s1 - s2
			s2, s1 = s1, s0
		}
		p := s1*s1 + s2*s2 - coeff*s1*s2
		if p > best {
			best, bestHz = p, hz
		}
	}
	return bestHz
}
