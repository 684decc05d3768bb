package mediafork

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mediafork/mediafork/tlvcodec"
)

// A fork's streams live as long as its call: when the media connection is
// lost and made again, when mediafork restarts, when the call is paused, the
// outputs keep their identity (Identity: TLV stream ids, RTP SSRCs, ...) and
// their sequences follow the media clock, so a receiver sees missing audio,
// announced by a gap (TLV gap packet 0x06, an RTP marker), never a new
// stream or a shorter call.
//
// The media clock counts the bug's samples (at the fork's rate): the audio
// the module delivered, plus the gaps. Within one media connection it
// advances with each frame (a channel that produces no audio, parked or on
// hold, delivers no frames: the clock waits with it). Across a break it
// advances by the time that passed, in whole frames: from the arrival of the
// last frame before the break to the arrival of the first one after, less
// that frame's length. While paused it advances by the frames dropped.

// GapReason says why a stream misses audio: the reasons of the TLV gap
// packet (SPEC §1), which every output protocol reports its own way.
type GapReason = tlvcodec.GapReason

// Gap reasons.
const (
	GapMediaLost = tlvcodec.GapMediaLost // the media connection was lost and made again
	GapRestarted = tlvcodec.GapRestarted // mediafork restarted or failed over
	GapPaused    = tlvcodec.GapPaused    // the fork was paused
	GapDropped   = tlvcodec.GapDropped   // dropped by mediafork: a queue was full
)

// Continuation is where a fork's streams stand when its media connection
// ended while its call went on: what a later fork of the same call, in this
// process or another, continues from. It travels signed, in the credential
// of the fork that resumes (Spec.Resume), and in the checkpoint.
type Continuation struct {
	Identity Identity
	// Origin is the wall time of the media clock's zero: the stream's first
	// audio.
	Origin time.Time
	// Sent is the media clock (bug samples) at the end of the last audio
	// sent; Clock is where the clock stood when the streams stopped: Sent,
	// plus what was dropped while paused.
	Sent, Clock int64
	// At is when the clock stood at Clock: the arrival of the last frame.
	At time.Time
	// Reason is what opened the gap: GapPaused when the fork was paused,
	// else why the streams stopped (GapMediaLost, GapRestarted).
	Reason GapReason
	// Digits is how many DTMF digits the outputs sent (RTP numbers each
	// digit's packets among its audio).
	Digits uint32
	// Paused: the fork is paused (it resumes paused).
	Paused bool
}

// continuationVersion is the first field of a Continuation as text.
const continuationVersion = "1"

// maxIdentityIDs bounds the further TLV stream ids an identity carries (one
// per TLV output beyond the first; a fork has at most MaxDestinationsLimit
// endpoints).
const maxIdentityIDs = 64

// MarshalText writes c compactly (it travels in a fork's URL):
// 1.<stream id>.<seed hex>.<ids>.<origin ms>.<sent>.<clock>.<at µs>.<reason>.<digits>.<paused>
// with ids the further TLV stream ids, comma-separated.
func (c Continuation) MarshalText() ([]byte, error) {
	ids := make([]string, len(c.Identity.IDs))
	for i, id := range c.Identity.IDs {
		ids[i] = strconv.FormatUint(uint64(id), 10)
	}
	p := "0"
	if c.Paused {
		p = "1"
	}
	s := strings.Join([]string{continuationVersion,
		strconv.FormatUint(uint64(c.Identity.StreamID), 10), strconv.FormatUint(c.Identity.Seed, 16), strings.Join(ids, ","),
		strconv.FormatInt(c.Origin.UnixMilli(), 10), strconv.FormatInt(c.Sent, 10), strconv.FormatInt(c.Clock, 10),
		strconv.FormatInt(c.At.UnixMicro(), 10), strconv.Itoa(int(c.Reason)), strconv.FormatUint(uint64(c.Digits), 10), p}, ".")
	return []byte(s), nil
}

// ErrBadContinuation: a continuation that does not parse or holds
// impossible values.
var ErrBadContinuation = errors.New("bad continuation")

// UnmarshalText reads what MarshalText wrote, checking every field.
func (c *Continuation) UnmarshalText(b []byte) error {
	if len(b) > 1024 {
		return fmt.Errorf("%w: %d bytes", ErrBadContinuation, len(b))
	}
	f := strings.Split(string(b), ".")
	if len(f) != 11 || f[0] != continuationVersion {
		return fmt.Errorf("%w: %d fields or an unknown version", ErrBadContinuation, len(f))
	}
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrBadContinuation, what) }
	var v Continuation
	sid, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || sid == 0 {
		return bad("stream id")
	}
	if v.Identity.Seed, err = strconv.ParseUint(f[2], 16, 64); err != nil {
		return bad("seed")
	}
	v.Identity.StreamID = uint32(sid)
	if f[3] != "" {
		list := strings.Split(f[3], ",")
		if len(list) > maxIdentityIDs {
			return bad("too many stream ids")
		}
		for _, s := range list {
			id, perr := strconv.ParseUint(s, 10, 32)
			if perr != nil || id == 0 {
				return bad("stream ids")
			}
			v.Identity.IDs = append(v.Identity.IDs, uint32(id))
		}
	}
	nums := make([]int64, 4)
	for i, k := range []int{4, 5, 6, 7} {
		if nums[i], err = strconv.ParseInt(f[k], 10, 64); err != nil || nums[i] < 0 {
			return bad("a time or position")
		}
	}
	v.Origin, v.Sent, v.Clock, v.At = time.UnixMilli(nums[0]), nums[1], nums[2], time.UnixMicro(nums[3])
	if v.Sent > v.Clock {
		return bad("sent beyond the clock")
	}
	r, err := strconv.ParseUint(f[8], 10, 8)
	if err != nil || r < uint64(GapMediaLost) || r > uint64(GapDropped) {
		return bad("reason")
	}
	v.Reason = GapReason(r)
	d, err := strconv.ParseUint(f[9], 10, 32)
	if err != nil {
		return bad("digits")
	}
	v.Digits = uint32(d)
	switch f[10] {
	case "0":
	case "1":
		v.Paused = true
	default:
		return bad("paused")
	}
	*c = v
	return nil
}

// String is c for logs.
func (c Continuation) String() string {
	b, _ := c.MarshalText()
	return string(b)
}

// Frame lengths a module's frames are taken to have when a gap is measured
// in them: the first frame after the break, within these bounds (20 ms,
// mod_audio_fork's and mod_audio_stream's, otherwise: one out of them is a
// burst of queued audio or a trickle).
const (
	minTick     = 10 * time.Millisecond
	maxTick     = 60 * time.Millisecond
	defaultTick = 20 * time.Millisecond
)

// resumeClock is where on the media clock a frame of n samples (at rate)
// that arrived at at begins, the first after the break c describes: the
// clock as it stood, plus the time from the last frame's arrival to this
// frame's start, in whole frames of this one's length (so the jitter of the
// two arrivals, under half a frame, costs nothing).
func (c *Continuation) resumeClock(at time.Time, n int64, rate int) int64 {
	d := durationOf(n, rate)
	tick := d
	if tick < minTick || tick > maxTick {
		tick = defaultTick
	}
	return c.clockAt(at.Add(-d), tick, rate)
}

// clockAt is where on the media clock audio captured from start goes, after
// the break c describes: the clock as it stood, plus the time from the last
// frame's arrival to start, in whole ticks (the module's frames).
func (c *Continuation) clockAt(start time.Time, tick time.Duration, rate int) int64 {
	elapsed := start.Sub(c.At)
	if elapsed <= tick/2 {
		return c.Clock
	}
	k := (elapsed + tick/2) / tick
	return c.Clock + samplesIn(k*tick, rate)
}

// firstCause is the reason of a gap that opened for why when one may be
// open already for open (0: none): a gap keeps the reason it opened with
// (a pause interrupted by a restart is a pause).
func firstCause(open, why GapReason) GapReason {
	if open != 0 {
		return open
	}
	return why
}
