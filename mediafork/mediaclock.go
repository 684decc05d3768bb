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
	hold   heldFrames
	pub    clockCell
	frames uint32 // since the last publish
	// The clock's anchor: when its zero was captured, as the frames' arrivals
	// say at the earliest (arrival − the clock at the frame's end) over the
	// last one or two windows of anchorWindow frames: a frame that comes late
	// (a burst, a slow round) does not move it; a channel that stalls
	// (parked: no frames) moves it within two windows.
	anchorMin, anchorPrev int64
	anchorN               int
	anchorFull            bool // anchorPrev holds a whole window
}

// anchorWindow is the frames of one window of the clock's anchor (1 s).
const anchorWindow = 50

// anchor is the clock's anchor (monoNow terms); ok false before any frame.
func (m *mediaClock) anchor() (int64, bool) {
	switch {
	case m.anchorN == 0 && !m.anchorFull:
		return 0, false
	case !m.anchorFull:
		return m.anchorMin, true
	case m.anchorN == 0:
		return m.anchorPrev, true
	}
	return min(m.anchorMin, m.anchorPrev), true
}

// lastAt is when the audio up to the clock came, at the earliest the
// frames' arrivals say (the anchor), in monoNow terms; m.at before any.
func (m *mediaClock) lastAt() int64 {
	if a, ok := m.anchor(); ok {
		return a + int64(durationOf(m.clock, m.rate))
	}
	return m.at
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
	if a := now - int64(durationOf(m.clock, m.rate)); m.anchorN == 0 || a < m.anchorMin {
		m.anchorMin = a
	}
	if m.anchorN++; m.anchorN >= anchorWindow {
		m.anchorPrev, m.anchorN, m.anchorFull = m.anchorMin, 0, true
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
		at = monoTime(m.lastAt()).UnixMicro()
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
		c.At = monoTime(m.lastAt())
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

// Bounds of the frames a resumed fork holds while it finds where they go.
const (
	maxHeldFrames = 64        // mod_audio_stream queues at most 1 s (libwsc's connect timeout)
	maxHeldBytes  = 512 << 10 // 64 frames of 20 ms of 48 kHz stereo is 245 KB
	// holdGap: a frame that comes this long or more after the one before
	// comes as it was captured (every 20 ms), not from a queue flushed at
	// once (mod_audio_stream's burst after its connect: 0.1 ms apart, s09c).
	holdGap = 5 * time.Millisecond
)

// settle takes the first frames of a resumed fork, which arrived at now,
// until it can tell when the first of them was captured, and places them
// on the media clock then. mod_audio_stream sends the audio it captured
// while connecting in a burst, so a frame's arrival says when it was
// captured only once the frames come at their own pace: the first began at
// the earliest of (arrival − the audio up to and with it) over the frames
// held. It returns the frames to write, in order, and true once placed;
// false while it holds them (no audio is held longer than the burst and one
// frame: 20 ms of latency once, at a resume).
func (f *Fork) settle(now int64, pcm []byte) ([][]byte, bool) {
	m := &f.mc
	h := &m.hold
	gapped := len(h.frames) > 0 && now-h.last >= int64(holdGap)
	h.frames = append(h.frames, append([]byte(nil), pcm...))
	h.bytes += len(pcm)
	h.samples += int64(len(pcm) / m.unit)
	if start := now - int64(durationOf(h.samples, m.rate)); len(h.frames) == 1 || start < h.start {
		h.start = start
	}
	h.last = now
	if !gapped && len(h.frames) < maxHeldFrames && h.bytes < maxHeldBytes {
		return nil, false
	}
	f.ctl.And(^ctlResume)
	if r := m.cont; r != nil {
		tick := durationOf(int64(len(h.frames[0])/m.unit), m.rate)
		if tick < minTick || tick > maxTick {
			tick = defaultTick
		}
		if clock := r.clockAt(monoTime(h.start), tick, m.rate); clock > m.clock {
			m.clock = clock
		}
		// Once per resume, off the frames' path proper: what placed them.
		f.log.Info("resumed streams placed", "gap_ms", durationOf(m.clock-r.Sent, m.rate).Milliseconds(),
			"since_last_ms", monoTime(h.start).Sub(r.At).Milliseconds(), "held_frames", len(h.frames), "tick_ms", tick.Milliseconds())

		if m.clock > m.sent {
			m.why = firstCause(m.why, r.Reason)
			f.ctl.Or(ctlGap)
		}
		m.cont = nil
	}
	held := h.frames
	*h = heldFrames{}
	return held, true
}

// heldFrames are a resumed fork's first frames (settle).
type heldFrames struct {
	frames      [][]byte
	bytes       int
	samples     int64
	start, last int64 // monoNow: the first frame's capture as estimated, the last arrival
}
