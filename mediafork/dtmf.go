package mediafork

import (
	"fmt"
	"time"
)

// Digit is one DTMF digit: '0'-'9', '*', '#', 'A'-'D'. ParseDigit is the only
// way to make one from outside input.
type Digit byte

// ParseDigit reads a digit as FreeSWITCH reports it (one character, A-D in
// either case).
func ParseDigit(s string) (Digit, error) {
	if len(s) == 1 {
		c := s[0]
		if c >= 'a' && c <= 'd' {
			c -= 'a' - 'A'
		}
		if c >= '0' && c <= '9' || c == '*' || c == '#' || c >= 'A' && c <= 'D' {
			return Digit(c), nil
		}
	}
	return 0, fmt.Errorf("DTMF digit %q is not one of 0-9 * # A-D", s)
}

func (d Digit) String() string { return string(rune(d)) }

// MaxDTMFDuration bounds a digit's duration: longer ones (a key held down, or
// a bad header) are reported as this long.
const MaxDTMFDuration = time.Minute

// DTMF is a digit the forked channel received from its far end, as an output
// sends it: how long it lasted and where it began on the output's media clock
// (the time since its first audio).
type DTMF struct {
	Digit     Digit
	Duration  time.Duration
	MediaTime time.Duration
}

// DTMFReceived: the forked channel received a digit from its far end
// (FreeSWITCH's DTMF event on that channel).
type DTMFReceived struct {
	UUID     CallID
	Digit    Digit
	Duration time.Duration // at most MaxDTMFDuration
}

func (DTMFReceived) callEvent() {}

// dtmfQueueSize bounds the digits waiting for a fork's media path: a person
// dials a few a second, and the path drains them every frame.
const dtmfQueueSize = 16

// dtmfQueue hands digits from the control side (the ESL reader) to the media
// path: a small ring under its own lock, with an atomic count the media path
// loads once per frame and locks only when it is not zero.
type dtmfQueue struct {
	q   [dtmfQueueSize]DTMFReceived
	n   int // queued, guarded by Fork.dmu
	out [dtmfQueueSize]DTMFReceived
}

// DTMF hands the fork a digit its channel received; the media path sends it
// on every output at its next frame, placed on each output's media clock. A
// full queue drops it (counted in DTMFDrops). Safe from any goroutine; never
// waits for the media path.
func (f *Fork) DTMF(d DTMFReceived) {
	f.dmu.Lock()
	ok := f.dq.n < len(f.dq.q)
	if ok {
		f.dq.q[f.dq.n] = d
		f.dq.n++
		f.ctl.Or(ctlDTMF)
	}
	f.dmu.Unlock()
	if !ok {
		f.DTMFDrops.Add(1)
	}
}

// drainDTMF sends the digits queued, on the goroutine of Write (or Finish,
// after the last Write).
func (f *Fork) drainDTMF() {
	f.dmu.Lock()
	n := copy(f.dq.out[:], f.dq.q[:f.dq.n])
	f.dq.n = 0
	f.ctl.And(^ctlDTMF)
	f.dmu.Unlock()
	for _, d := range f.dq.out[:n] {
		f.DTMFIn.Add(1)
		for _, o := range f.outs {
			o.dtmf(d)
		}
	}
}

// dropDTMF forgets the digits queued: the fork is paused, and what a caller
// keys during a pause is never sent.
func (f *Fork) dropDTMF() {
	f.dmu.Lock()
	f.dq.n = 0
	f.ctl.And(^ctlDTMF)
	f.dmu.Unlock()
}
