package mediafork

import "time"

// epoch is when the process started: the media path keeps times as
// nanoseconds since it (monotonic: a wall-clock step does not move a gap),
// and converts them to wall time only where they leave the process.
var epoch = time.Now()

// monoNow is the monotonic time now, in nanoseconds since epoch.
func monoNow() int64 { return int64(time.Since(epoch)) }

// monoTime is ns (since epoch) as a time.Time that keeps its monotonic
// reading: subtracting two of them ignores wall-clock steps.
func monoTime(ns int64) time.Time { return epoch.Add(time.Duration(ns)) }

// samplesIn is d of audio at rate, in whole samples, rounded to the nearest.
func samplesIn(d time.Duration, rate int) int64 {
	return (int64(d)*int64(rate) + int64(time.Second)/2) / int64(time.Second)
}

// durationOf is n samples at rate.
func durationOf(n int64, rate int) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(n/int64(rate))*time.Second + time.Duration(n%int64(rate))*time.Second/time.Duration(rate)
}
