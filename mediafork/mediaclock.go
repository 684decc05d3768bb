package mediafork

import (
	"sync/atomic"
	"time"
)

// Bits of Fork.ctl.
const (
	ctlDTMF   uint32 = 1 << iota // digits are queued
	ctlPaused                    // the fork is paused
	ctlGap                       // a gap is open: announce it before the next audio
	ctlResume                    // a resumed fork's first frame: place it on the media clock
)

// mediaClock is a fork's media clock (continuity.go), kept by the goroutine
// that calls Write, and published for the checkpoint.
type mediaClock struct {
	rate   int       // the bug's
	unit   int       // bytes of one input sample (pair)
	origin time.Time // the clock's zero, wall time
	clock  int64     // bug samples delivered, or missed, so far
	sent   int64     // the clock at the end of the last audio sent
	at     int64     // monoNow when the last frame arrived (0: none yet)
	part   int       // bytes of a partial sample (pair) not counted yet
	why    GapReason // what opened the gap between sent and clock (0: none)
	cont   *Continuation
	pub    clockCell
	frames uint32 // since the last publish
}

// begin starts the clock of a fork of spec beginning at now: at zero, or
// where a resumed fork's continuation left it (placed at the first frame).
func (m *mediaClock) begin(spec Spec, now time.Time) {
	m.rate, m.unit, m.origin = spec.Rate, 2*spec.Mix.Channels(), now
	if r := spec.Resume; r != nil {
		c := *r
		m.cont, m.origin = &c, r.Origin
		m.clock, m.sent, m.why = r.Clock, r.Sent, 0
		if r.Clock > r.Sent {
			m.why = r.Reason
		}
	}
	m.publish()
}

// advance counts a frame of n bytes that arrived at now, sent or dropped.
func (m *mediaClock) advance(n int, now int64, sent bool) {
	total := m.part + n
	m.part = total % m.unit
	m.clock += int64(total / m.unit)
	m.at = now
	if sent {
		m.sent = m.clock
	}
	if m.frames++; m.frames >= publishEvery {
		m.publish()
	}
}

// publishEvery: the clock is published for the checkpoint every this many
// frames (and at every pause, gap and stop).
const publishEvery = 8

func (m *mediaClock) publish() {
	at := int64(0)
	if m.at != 0 {
		at = monoTime(m.at).UnixMicro()
	}
	m.pub.store(m.clock, m.sent, at, m.why)
	m.frames = 0
}

// clockCell is a fork's clock as the checkpoint reads it, from any goroutine:
// written by the media path under a sequence count (odd while writing), read
// until the count is the same, even, before and after.
type clockCell struct {
	seq                  atomic.Uint64
	clock, sent, atMicro atomic.Int64
	why                  atomic.Uint32
}

func (c *clockCell) store(clock, sent, atMicro int64, why GapReason) {
	c.seq.Add(1)
	c.clock.Store(clock)
	c.sent.Store(sent)
	c.atMicro.Store(atMicro)
	c.why.Store(uint32(why))
	c.seq.Add(1)
}

func (c *clockCell) load() (clock, sent, atMicro int64, why GapReason) {
	for {
		s := c.seq.Load()
		if s%2 == 0 {
			clock, sent, atMicro, why = c.clock.Load(), c.sent.Load(), c.atMicro.Load(), GapReason(c.why.Load())
			if c.seq.Load() == s {
				return
			}
		}
	}
}

// attend does what ctl asks before a frame of pcm that arrived at now is
// written: place a resumed fork's first frame, drop (or silence) a paused
// fork's audio, announce a gap, send queued digits. It returns the PCM to
// write, and false when the frame is dropped.
func (f *Fork) attend(c uint32, now int64, pcm []byte) ([]byte, bool) {
	m := &f.mc
	if c&ctlResume != 0 {
		f.ctl.And(^ctlResume)
		if r := m.cont; r != nil {
			clock := r.resumeClock(monoTime(now), int64(len(pcm)/m.unit), m.rate)
			if clock > m.clock {
				m.clock = clock
			}
			if m.clock > m.sent {
				m.why = firstCause(m.why, r.Reason)
				c = f.ctl.Or(ctlGap) | ctlGap
			}
			m.cont = nil
		}
	}
	if c&ctlPaused != 0 {
		if f.spec.Pause != PauseSilence {
			m.advance(len(pcm), now, false)
			m.why = firstCause(m.why, GapPaused)
			f.ctl.Or(ctlGap)
			f.Dropped.Add(1)
			if c&ctlDTMF != 0 {
				f.dropDTMF()
			}
			m.publish()
			return nil, false
		}
		pcm = f.silence(len(pcm))
		if c&ctlDTMF != 0 {
			f.dropDTMF()
			c &^= ctlDTMF
		}
	}
	if c&ctlGap != 0 {
		f.ctl.And(^ctlGap)
		if m.clock > m.sent {
			for _, o := range f.outs {
				o.seek(m.clock, m.why)
			}
			f.Gaps.Add(1)
			m.sent = m.clock
		}
		m.why = 0
		m.publish()
	}
	if c&ctlDTMF != 0 {
		f.drainDTMF()
	}
	return pcm, true
}

// silence is n bytes of silent PCM, in place of a paused fork's audio.
func (f *Fork) silence(n int) []byte {
	if cap(f.zeros) < n {
		f.zeros = make([]byte, n) // once per frame size, bounded by ingest.max_message_bytes
	}
	return f.zeros[:n]
}

// continuation is where f's streams stand, to continue after it ends: for
// why (GapMediaLost, GapRestarted) unless a gap was open already. Called by
// the owner of Write, once it has stopped writing.
func (f *Fork) continuation(why GapReason) Continuation {
	m := &f.mc
	if m.cont != nil { // resumed, and ended before its first frame: as it was
		c := *m.cont
		c.Digits += uint32(f.DTMFIn.Load())
		c.Paused = f.Paused()
		return c
	}

	c := Continuation{Identity: f.Identity, Origin: m.origin, Sent: m.sent, Clock: m.clock, Digits: uint32(f.DTMFIn.Load()), Paused: f.Paused()}
	if r := f.spec.Resume; r != nil {
		c.Digits += r.Digits
	}
	c.At = time.Now()
	if m.at != 0 {
		c.At = monoTime(m.at)
	}
	c.Reason = why
	if m.clock > m.sent {
		c.Reason = firstCause(m.why, why)
	}
	return c
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

// origin is the wall time of the fork's media clock's zero.
func (f *Fork) origin() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mc.origin
}
