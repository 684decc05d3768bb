// Package tone measures how much of a signal is one tone: the check the
// demo, the tests and the receivers' analyses make on audio that crossed
// mediafork ("is the caller's 1000 Hz still 1000 Hz?").
package tone

import "math"

// Share is the part of x's energy at hz (Goertzel), for x sampled at rate:
// 1 for a pure tone at hz over whole periods, 0 for none of it, 0 for
// silence.
func Share(x []int16, rate int, hz float64) float64 {
	w := 2 * math.Pi * hz / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2, energy float64
	for _, v := range x {
		f := float64(v)
		energy += f * f
		s1, s2 = f+coeff*s1-s2, s1
	}
	if energy == 0 {
		return 0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * power / (float64(len(x)) * energy)
}
