package mediafork

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"path"
	"strconv"
	"strings"
	"time"
)

// The file player: drachtio's mod_audio_fork and amigniter's
// mod_audio_stream play nothing themselves; each playAudio / streamAudio
// message sent down the fork's WebSocket becomes a file in the switch's temp
// dir, named by a CUSTOM event (../shared/freeswitch/captures/talkback, f01,
// s01). The player cuts the audio into chunks, has the module write each,
// and mixes each into the leg's TX with `uuid_displace <leg> start <file> 0
// mux`: the leg's far end hears it added to what it hears already, the
// other direction untouched. The displace ends itself at the file's end
// (MEDIA_BUG_STOP, at the switch's frame where the file ran out): that is
// when the chunk's marks are echoed.
//
// Seams, measured on the real switch (a 700 Hz tone cut into 200 ms and
// 500 ms chunks, each displaced on a 9000 call, heard at a monitor fork;
// ../shared/freeswitch/dist): starting each chunk on the previous one's
// MEDIA_BUG_STOP loses a frame at every seam (the stop comes about 21 ms
// after the file ran out, whatever the phase of the command); starting it
// a whole chunk's length after the previous one's displace was executed —
// the switch mixes a displaced file from the moment the command runs —
// leaves no gap and no overlap from 10 ms late to 5 ms early (15 ms late:
// a 20 ms gap; 10 ms early: a 20 ms overlap). So each chunk is started by
// the clock, fileSlack after the previous one's length from its execution
// (its MEDIA_BUG_START, which comes within a millisecond of the command).
// The files are the module's: it deletes them when the fork stops or the
// call ends.

// File player timing.
const (
	fileChunk     = 200 * time.Millisecond // a chunk's audio
	fileHold      = 150 * time.Millisecond // the first chunk of a burst waits this long once its file is there: room for the next
	fileLead      = 400 * time.Millisecond // audio taken ahead of real time
	fileIdleFlush = 60 * time.Millisecond  // a partial chunk leaves when no audio came for this long
	fileFrame     = 20 * time.Millisecond  // the leg's frame: a chunk plays whole frames
	fileSlack     = 2 * time.Millisecond   // start a chunk this long after its predecessor's length (the window: 10 ms late to 5 ms early)
	fileLateOK    = 8 * time.Millisecond   // executed later than this after its predecessor's end: a new chain
	fileWait      = 2 * time.Second        // a file or a stop the switch does not report within this is given up
)

type chunkState uint8

const (
	chunkBuilding  chunkState = iota
	chunkRequested            // its message sent; waiting for the module's file
	chunkReady                // the file is there
	chunkStarted              // displaced
	chunkDone
)

type chunk struct {
	pcm     []int16
	samples int
	dur     time.Duration
	file    string
	state   chunkState
	marks   []uint64
	sentAt  time.Time // the message
	readyAt time.Time
	cmdAt   time.Time // the displace sent
	execAt  time.Time // and executed: when its answer came, less a way back
	start   time.Time // on the chain's timeline: its predecessor's end, or its own execution
	end     time.Time // start and its whole frames: the next one's start
	leg     CallID
}

type filePlayer struct {
	tb  *talkback
	leg Leg

	channel CallID // where it plays; the other leg's is found at each burst
	cur     *chunk
	chunks  []*chunk // sent, oldest first, until done
	last    time.Time

	rtt      time.Duration // a displace's round trip, the least seen: a longer one waited in a queue
	chainEnd time.Time     // where the last chunk the switch said ended did end
	dropped  int64
	played   int // chunks
	gaps     int // chunks started after their predecessor ended
}

func newFilePlayer(tb *talkback, leg Leg) *filePlayer { return &filePlayer{tb: tb, leg: leg} }

func (p *filePlayer) samplesDur(n int) time.Duration {
	return time.Duration(int64(n) * int64(time.Second) / int64(p.tb.rate))
}

func (p *filePlayer) play(ctx context.Context, pcm []int16, now time.Time) {
	p.last = now
	max := int(int64(p.tb.rate) * int64(fileChunk) / int64(time.Second))
	for len(pcm) > 0 {
		if p.cur == nil {
			p.cur = &chunk{pcm: make([]int16, 0, max)}
		}
		n := min(len(pcm), max-len(p.cur.pcm))
		p.cur.pcm = append(p.cur.pcm, pcm[:n]...)
		pcm = pcm[n:]
		if len(p.cur.pcm) == max {
			p.flush(ctx, now)
		}
	}
}

// flush sends the chunk being built to the module.
func (p *filePlayer) flush(ctx context.Context, now time.Time) {
	c := p.cur
	p.cur = nil
	if c == nil || len(c.pcm) == 0 {
		return
	}
	if len(p.chunks) == 0 && !p.resolve(ctx) { // a burst: where it plays
		p.dropped += int64(len(c.pcm))
		p.tb.dropped(int64(len(c.pcm)))
		for _, id := range c.marks {
			p.tb.markDone(id, true)
		}
		return
	}
	c.leg = p.channel
	c.samples = len(c.pcm)
	c.dur = p.samplesDur(c.samples)
	c.sentAt, c.state = now, chunkRequested
	if !p.tb.requestFile(p, c) {
		p.dropped += int64(c.samples)
		p.tb.dropped(int64(c.samples))
		for _, id := range c.marks {
			p.tb.markDone(id, true)
		}
		return
	}
	c.pcm = nil
	p.chunks = append(p.chunks, c)
}

// resolve finds the leg's channel for a burst: the fork's own for far; the
// one bridged to it now for other.
func (p *filePlayer) resolve(ctx context.Context) bool {
	if p.leg == LegFar {
		p.channel = p.tb.f.UUID
		return true
	}
	ch, err := p.tb.otherChannel(ctx)
	if err != nil || ch == "" {
		if p.channel != "" || err != nil {
			p.tb.log.Info("talk-back to the other party: the channel is bridged to none", "error", err)
		}
		p.channel = ""
		return false
	}
	p.channel = ch
	return true
}

func (p *filePlayer) mark(ctx context.Context, id uint64, now time.Time) {
	if p.cur != nil && len(p.cur.pcm) > 0 {
		p.cur.marks = append(p.cur.marks, id)
		p.flush(ctx, now)
		return
	}
	if n := len(p.chunks); n > 0 {
		c := p.chunks[n-1]
		c.marks = append(c.marks, id)
		return
	}
	// Everything before it has been played (the switch said so).
	p.tb.markDone(id, false)
}

func (p *filePlayer) clear(ctx context.Context, now time.Time) {
	if p.cur != nil {
		for _, id := range p.cur.marks {
			p.tb.markDone(id, true)
		}
		p.cur = nil
	}
	chunks := p.chunks
	p.chunks = nil
	for _, c := range chunks {
		if c.state == chunkStarted {
			p.stop(ctx, c)
		}
		c.state = chunkDone // a file still to come is ignored (tb.fileReady)
		for _, id := range c.marks {
			p.tb.markDone(id, true)
		}
	}
}

// stop ends a chunk's displace.
func (p *filePlayer) stop(ctx context.Context, c *chunk) {
	cctx, cancel := context.WithTimeout(ctx, legTimeout)
	defer cancel()
	if err := p.tb.control.StopDisplace(cctx, c.leg, c.file); err != nil {
		// It ended by itself meanwhile ("Cannot stop displace session").
		p.tb.log.Debug("talk-back: displace stop", "error", err)
	}
}

// fileReady: the module wrote c into file.
func (p *filePlayer) fileReady(c *chunk, file string, now time.Time) {
	if c.state != chunkRequested {
		return // cleared meanwhile
	}
	c.file, c.readyAt, c.state = file, now, chunkReady
}

func (p *filePlayer) event(ctx context.Context, e any, now time.Time) {
	switch e := e.(type) {
	case DisplaceStopped:
		for i, c := range p.chunks {
			if c.file != e.File || c.leg != e.Leg || c.state != chunkStarted {
				continue
			}
			at := e.At
			if at.IsZero() {
				at = now
			}
			p.tb.log.Debug("talk-back: chunk ended", "leg", p.leg.String(), "file", path.Base(c.file),
				"after_its_end_ms", float64(at.Sub(c.end).Microseconds())/1000)
			c.state = chunkDone
			p.played++
			// Its end as the switch has it: the timeline's, or sooner when
			// the stop came first (its command's answer was slow: it ran
			// before the timeline put it).
			p.chainEnd = c.end
			if at.Before(c.end) {
				p.chainEnd = at
			}
			for _, id := range c.marks {
				p.tb.markDone(id, false)
			}
			// Chunks before it that the switch said nothing of: done too.
			for _, b := range p.chunks[:i] {
				for _, id := range b.marks {
					p.tb.markDone(id, b.state != chunkStarted)
				}
			}
			p.chunks = append(p.chunks[:0], p.chunks[i+1:]...)
			return
		}
	}
}

// startAt is when chunk i is to be displaced (zero: not yet known).
func (p *filePlayer) startAt(i int) time.Time {
	c := p.chunks[i]
	if i > 0 {
		prev := p.chunks[i-1]
		if prev.state != chunkStarted {
			return time.Time{} // in order
		}
		return prev.end.Add(fileSlack)
	}
	if c.readyAt.Before(p.chainEnd) {
		// Ready before its predecessor ended, whose end came sooner than
		// the timeline said: it continues the chain, at once (held, it
		// would leave a gap of the hold).
		return p.chainEnd
	}
	return c.readyAt.Add(fileHold)
}

func (p *filePlayer) tick(ctx context.Context, now time.Time) time.Time {
	next := time.Time{}
	soon := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if p.cur != nil && len(p.cur.pcm) > 0 {
		if due := p.last.Add(fileIdleFlush); now.Before(due) {
			soon(due)
		} else {
			p.flush(ctx, now) // the source paused: what there is plays
		}
	}
	for i := 0; i < len(p.chunks); i++ {
		c := p.chunks[i]
		switch c.state {
		case chunkRequested:
			if now.Sub(c.sentAt) > fileWait {
				p.tb.log.Warn("talk-back: the module did not say where it wrote a chunk", "leg", p.leg.String())
				p.fail(i)
				i--
				continue
			}
			soon(c.sentAt.Add(fileWait))
			return next // in order
		case chunkReady:
			at := p.startAt(i)
			if at.IsZero() {
				return next
			}
			if now.Before(at) {
				soon(at)
				return next
			}
			if i > 0 && now.After(p.chunks[i-1].end) {
				p.gaps++
			}
			late := now.Sub(at)
			if !p.displace(ctx, c) {
				p.fail(i)
				i--
				continue
			}
			p.tb.log.Debug("talk-back: chunk timing", "late_ms", float64(late.Microseconds())/1000, "rtt_ms", float64(time.Since(c.cmdAt).Microseconds())/1000)
		case chunkStarted:
			if now.After(c.end.Add(fileWait)) {
				// The switch never said it ended (an event lost): its
				// marks cannot be said played.
				p.tb.log.Warn("talk-back: no end reported for a displaced chunk", "leg", p.leg.String(), "file", path.Base(c.file))
				for _, id := range c.marks {
					p.tb.markDone(id, true)
				}
				p.chunks = append(p.chunks[:i], p.chunks[i+1:]...)
				i--
				continue
			}
			soon(c.end.Add(fileWait))
		}
	}
	return next
}

// displace starts c on its leg; false when the switch refused.
func (p *filePlayer) displace(ctx context.Context, c *chunk) bool {
	cctx, cancel := context.WithTimeout(ctx, legTimeout)
	defer cancel()
	c.cmdAt = time.Now()
	if err := p.tb.control.Displace(cctx, c.leg, c.file); err != nil {
		p.tb.log.Warn("talk-back: displace refused", "leg", p.leg.String(), "channel", c.leg, "error", err)
		return false
	}
	// When the switch ran it: at the latest, its answer less the quickest
	// way back seen (a command that waited behind others ran late).
	rtt := time.Since(c.cmdAt)
	if p.rtt == 0 || rtt < p.rtt {
		p.rtt = rtt
	}
	c.state = chunkStarted
	c.execAt = c.cmdAt.Add(rtt - p.rtt)
	p.anchor(c)
	p.tb.log.Debug("talk-back: chunk displaced", "leg", p.leg.String(), "file", path.Base(c.file), "ms", c.dur.Milliseconds(),
		"cmd_after_ready_ms", c.cmdAt.Sub(c.readyAt).Milliseconds())
	return true
}

// anchor places a started chunk on the chain's timeline: right after its
// predecessor, when it ran within its window (the timeline keeps the phase
// of the chain's first command: starting each chunk a whole number of
// frames after it, never drifting); else from its own execution (a new
// chain).
func (p *filePlayer) anchor(c *chunk) {
	c.start = c.execAt.Add(-fileSlack)
	for i, x := range p.chunks {
		if x != c || i == 0 {
			continue
		}
		if prev := p.chunks[i-1]; prev.state == chunkStarted && c.execAt.Before(prev.end.Add(fileLateOK)) {
			c.start = prev.end
		}
	}
	frames := (c.dur + fileFrame - 1) / fileFrame
	c.end = c.start.Add(frames * fileFrame)
}

// fail drops chunk i (and its marks, cleared).
func (p *filePlayer) fail(i int) {
	c := p.chunks[i]
	c.state = chunkDone // its file, should it come, is ignored
	for _, id := range c.marks {
		p.tb.markDone(id, true)
	}
	p.dropped += int64(c.samples)
	p.chunks = append(p.chunks[:i], p.chunks[i+1:]...)
}

func (p *filePlayer) close(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.Background(), legTimeout)
	defer cancel()
	for _, c := range p.chunks {
		if c.state == chunkStarted && ctx.Err() == nil {
			p.stop(cctx, c)
		}
		for _, id := range c.marks {
			p.tb.markDone(id, true)
		}
	}
	p.chunks = nil
}

func (p *filePlayer) info() TalkbackLegInfo {
	li := TalkbackLegInfo{Leg: p.leg.String(), Player: "file", Channel: string(p.channel)}
	var ms time.Duration
	for _, c := range p.chunks {
		ms += c.dur
	}
	if p.cur != nil {
		ms += p.samplesDur(len(p.cur.pcm))
	}
	li.InFlightMs = ms.Milliseconds()
	li.State = "idle"
	if len(p.chunks) > 0 {
		li.State = "playing"
	}
	return li
}

// fileRequest is a chunk whose file the module is writing: the module's
// events come in the order of the messages (one connection).
type fileRequest struct {
	p *filePlayer
	c *chunk
}

// requestFile sends c to the module as playAudio (mod_audio_fork) or
// streamAudio (mod_audio_stream), raw L16 at the talk-back rate: the rate
// declared is the audio's (the module names the file by it, and the
// extension alone decides how fast it plays).
func (tb *talkback) requestFile(p *filePlayer, c *chunk) bool {
	tb.mu.Lock()
	conn := tb.conns[LegFar]
	tb.mu.Unlock()
	if conn == nil {
		return false
	}
	raw := make([]byte, 2*len(c.pcm))
	for i, v := range c.pcm {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(v))
	}
	var b strings.Builder
	b.Grow(base64.StdEncoding.EncodedLen(len(raw)) + 128)
	rate := strconv.Itoa(tb.rate)
	if tb.inject == InjectStreamAudio {
		b.WriteString(`{"type":"streamAudio","data":{"audioDataType":"raw","sampleRate":` + rate + `,"audioData":"`)
	} else {
		b.WriteString(`{"type":"playAudio","data":{"audioContentType":"raw","sampleRate":` + rate + `,"audioContent":"`)
	}
	enc := base64.NewEncoder(base64.StdEncoding, &b)
	enc.Write(raw)
	enc.Close()
	b.WriteString(`"}}`)
	if !conn.Send(true, []byte(b.String())) {
		return false
	}
	tb.files = append(tb.files, fileRequest{p, c})
	return true
}

// fileReady matches the module's file event to the oldest chunk waiting.
// A chunk cleared or given up on meanwhile still takes its file (ignored).
func (tb *talkback) fileReady(e TalkbackFileReady, now time.Time) {
	if len(tb.files) == 0 {
		return // not ours: another application's playAudio on the channel
	}
	r := tb.files[0]
	tb.files = tb.files[1:]
	if r.c.state != chunkRequested {
		return
	}
	if e.Rate != 0 && e.Rate != tb.rate {
		tb.log.Warn("talk-back: the module wrote a chunk at another rate", "rate", e.Rate, "want", tb.rate)
	}
	r.p.fileReady(r.c, e.File, now)
}

// otherChannel is the channel bridged to the fork's now: from the bridge
// events seen, else asked of the switch.
func (tb *talkback) otherChannel(ctx context.Context) (CallID, error) {
	tb.mu.Lock()
	o := tb.other
	tb.mu.Unlock()
	if o.known {
		return o.uuid, nil
	}
	if tb.control == nil {
		return "", nil
	}
	cctx, cancel := context.WithTimeout(ctx, legTimeout)
	defer cancel()
	return tb.control.BridgedLeg(cctx, tb.f.UUID)
}

// FileOwner is the uuid of the fork whose module wrote a talk-back file:
// mod_audio_fork and mod_audio_stream name them <uuid>_<n>.tmp.r8 (or .r16,
// ...) in the switch's temp dir. "" when the name is not such a file's.
func FileOwner(file string) CallID {
	base := path.Base(file)
	i := strings.LastIndexByte(base, '_')
	if i <= 0 || !strings.Contains(base[i:], ".tmp.") {
		return ""
	}
	id, err := ParseCallID(base[:i])
	if err != nil {
		return ""
	}
	return id
}
