package mediafork

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// The stream player: jambonz's mod_audio_fork started with its
// bidirectional arguments (`... <bug> <metadata> true true <rate>`) takes
// binary frames of L16 little-endian mono at <rate> down the fork's own
// WebSocket and mixes them into the channel's TX; `{"type":"mark",...}`
// comes back as {"type": "mark", "data": {"name": ..., "event": "playout"}}
// once the audio sent before it has been played, or "cleared";
// `{"type":"killAudio"}` empties its buffer at the next frame
// (../shared/freeswitch/captures/talkback, j01/j02, and the module's source
// at the commit recorded there).
//
// The module's buffer has quirks the player works around:
//   - A prebuffer: nothing plays until 160 ms have come (80 ms after the
//     first time), counted in samples of <rate>; audio short of it waits
//     for more. The player keeps a model of it and, when its source falls
//     silent, pads with silence so that the last words play, and before a
//     mark or a clear, so that nothing sent before stays behind.
//   - A mark becomes a sample 0xFFFF (-1) in the buffer, put in front of the
//     next binary frame; while marks are in use, any -1 sample of the audio
//     is taken for one. The player sends no -1 sample (-2 instead: the same
//     silence). A mark with nothing after it is echoed when the buffer runs
//     empty: the player sends it after the audio before it has left the
//     prebuffer (padding when needed), so it never comes back early.
//   - After killAudio the names of the marks whose samples it erased stay
//     on a list that swallows that many later marks: the player sends that
//     many -1 samples once the module has answered the kill (its "cleared"
//     echoes), which take them off.
//
// Marks sent to the module are named by the player ("mf<id>"): a receiver's
// own names never reach the switch.

// streamLead is how far ahead of real time the stream player takes audio:
// the module's buffer smooths the pacing timer's jitter.
const streamLead = 60 * time.Millisecond

// streamTailFlush: a source silent this long has its last audio padded out
// of the module's prebuffer.
const streamTailFlush = 100 * time.Millisecond

// streamMarkCarry: audio queued behind a mark is released this far beyond
// the pacing clock, so that the mark leaves with the audio after it (no
// padding inside speech).
const streamMarkCarry = 160 * time.Millisecond

// streamPrebuffer is the module's first prebuffer threshold (160 ms) and the
// later one (80 ms), in samples at 8 kHz; at <rate> it is that many times
// rate/8000.
const (
	streamPrebufferFirst = 1280
	streamPrebufferLater = 640
)

// maxStreamMessage is the most audio one binary frame carries: 100 ms at
// 16 kHz.
const maxStreamMessage = 3200

type streamPlayer struct {
	tb      *talkback
	leg     Leg
	conn    MediaConn
	needBug bool      // the other leg: its bug (on the bridged channel) is started on first use
	asked   bool      // that start was asked for
	retryAt time.Time // after a failed start, not before
	channel CallID

	backlog []op // waiting for the connection

	// The module's prebuffer, as sent: samples it holds and the threshold.
	prebuf, threshold, factor int64
	lastAudio                 time.Time
	// Marks sent and not echoed, in order; whether audio followed each
	// (then its sample is in the module's buffer).
	sent []sentMark
	// Marks whose samples the last kill erased: -1 samples to send once
	// the module has answered it.
	drain     int
	killing   bool
	sentTotal int64 // samples sent (info)
	startedAt time.Time
	buf       []byte
	dropped   int64
}

type sentMark struct {
	id       uint64
	followed bool
}

func newStreamPlayer(tb *talkback, leg Leg, conn MediaConn) *streamPlayer {
	f := int64(max(1, tb.rate/8000))
	return &streamPlayer{tb: tb, leg: leg, conn: conn, factor: f, threshold: streamPrebufferFirst * f}
}

func (p *streamPlayer) ready() bool { return p.conn != nil }

// ensure asks for the other leg's bug once.
func (p *streamPlayer) ensure(ctx context.Context) {
	if p.conn != nil || !p.needBug || p.asked || time.Now().Before(p.retryAt) {
		return
	}
	p.asked = true
	if h := p.tb.f.registry.talkbackLeg; h != nil {
		p.tb.f.registry.runHook(func() {
			ch, err := h(ctx, p.tb.f)
			if err != nil {
				p.tb.log.Warn("talk-back to the other party: cannot start its stream", "error", err)
				p.tb.event(legFailed{leg: LegOther, err: err})
				return
			}
			p.tb.event(legChannel{leg: LegOther, channel: ch})
		})
	} else {
		p.tb.event(legFailed{leg: LegOther})
	}
}

type (
	legFailed struct {
		leg Leg
		err error
	}
	legChannel struct {
		leg     Leg
		channel CallID
	}
)

func (p *streamPlayer) play(ctx context.Context, pcm []int16, now time.Time) {
	if !p.ready() {
		p.ensure(ctx)
		p.backlog = append(p.backlog, op{leg: p.leg, pcm: pcm})
		return
	}
	p.send(pcm, now)
}

// send writes pcm as binary frames, no -1 sample in them.
func (p *streamPlayer) send(pcm []int16, now time.Time) {
	for len(pcm) > 0 {
		n := min(len(pcm), maxStreamMessage)
		b := p.buf[:0]
		for _, v := range pcm[:n] {
			if v == -1 {
				v = -2
			}
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		}
		p.buf = b
		if !p.conn.Send(false, b) {
			p.dropped += int64(n)
		}
		p.fed(int64(n))
		pcm = pcm[n:]
	}
	for i := range p.sent {
		p.sent[i].followed = true
	}
	if p.startedAt.IsZero() {
		p.startedAt = now
	}
	p.lastAudio = now
}

// fed models n samples (markers included) arriving in the prebuffer.
func (p *streamPlayer) fed(n int64) {
	p.sentTotal += n
	p.prebuf += n
	if p.prebuf >= p.threshold {
		p.prebuf %= p.factor // what does not divide by the factor waits
		p.threshold = streamPrebufferLater * p.factor
	}
}

// pad sends silence that takes the prebuffer over its threshold (nothing
// when it is empty).
func (p *streamPlayer) pad(now time.Time) {
	if p.prebuf == 0 {
		return
	}
	n := p.threshold - p.prebuf
	if n <= 0 {
		return
	}
	p.send(make([]int16, n), now)
}

func (p *streamPlayer) mark(ctx context.Context, id uint64, now time.Time) {
	if !p.ready() {
		p.ensure(ctx)
		p.backlog = append(p.backlog, op{leg: p.leg, mark: id})
		return
	}
	p.sendMark(id, now)
}

// sendMark sends a mark after the audio sent so far. When no audio follows
// it at once, the prebuffer is padded out first: the module echoes a mark
// with nothing behind it when its buffer runs empty, which must be after
// the audio before it.
func (p *streamPlayer) sendMark(id uint64, now time.Time) {
	if !p.tb.more(p.leg) {
		p.pad(now)
	}
	msg := `{"type":"mark","data":{"name":"mf` + strconv.FormatUint(id, 10) + `"}}`
	if !p.conn.Send(true, []byte(msg)) {
		p.tb.markDone(id, true)
		return
	}
	p.sent = append(p.sent, sentMark{id: id})
	if p.prebuf == 0 && p.tb.more(p.leg) {
		// The mark's sample goes in front of the next frame: the prebuffer
		// counts it.
		p.prebuf++
	}
}

func (p *streamPlayer) clear(ctx context.Context, now time.Time) {
	p.backlog = p.backlog[:0]
	if !p.ready() {
		return
	}
	// What the prebuffer holds goes into the buffer the kill empties.
	p.pad(now)
	p.prebuf = 0
	if !p.conn.Send(true, []byte(`{"type":"killAudio"}`)) {
		return
	}
	p.killing = true
	for _, m := range p.sent {
		if m.followed {
			p.drain++
		}
	}
}

// event: the module's text messages (mark echoes) and the leg's connection.
func (p *streamPlayer) event(ctx context.Context, e any, now time.Time) {
	switch e := e.(type) {
	case connReady:
		p.tb.mu.Lock()
		p.conn = p.tb.conns[p.leg]
		p.tb.mu.Unlock()
		if p.conn == nil {
			// The leg's bug ended (an unbridge, a hangup): a new one when
			// it is spoken to again; what it held is gone.
			p.asked, p.channel = false, ""
			p.prebuf, p.threshold = 0, streamPrebufferFirst*p.factor
			for _, m := range p.sent {
				p.tb.markDone(m.id, true)
			}
			p.sent, p.drain, p.killing = nil, 0, false
			return
		}
		// A new connection: the module's buffer starts empty.
		p.prebuf, p.threshold = 0, streamPrebufferFirst*p.factor
		backlog := p.backlog
		p.backlog = nil
		for _, o := range backlog {
			if o.pcm != nil {
				p.send(o.pcm, now)
			} else {
				p.sendMark(o.mark, now)
			}
		}
	case legChannel:
		if e.leg == p.leg {
			p.channel = e.channel
		}
	case legFailed:
		if e.leg == p.leg {
			p.asked, p.retryAt = false, now.Add(2*time.Second)
			for _, o := range p.backlog {
				if o.pcm == nil {
					p.tb.markDone(o.mark, true)
				} else {
					p.dropped += int64(len(o.pcm))
				}
			}
			p.backlog = nil
		}
	case moduleText:
		if e.leg != p.leg {
			return
		}
		name, event, ok := parseModuleMark(e.b)
		if !ok {
			return
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(name, "mf"), 10, 64)
		if err != nil || !strings.HasPrefix(name, "mf") {
			return
		}
		for i, m := range p.sent {
			if m.id == id {
				p.sent = append(p.sent[:i], p.sent[i+1:]...)
				p.tb.markDone(id, event != "playout")
				break
			}
		}
		if p.killing && len(p.sent) == 0 {
			// The kill is answered: take the erased marks' names off the
			// module's list with as many -1 samples (they wait in its
			// prebuffer for the next audio, which they go in front of).
			p.killing = false
			if p.drain > 0 {
				b := make([]byte, 2*p.drain)
				for i := range b {
					b[i] = 0xff
				}
				p.conn.Send(false, b)
				p.fed(int64(p.drain))
				p.drain = 0
			}
		}
	}
}

// parseModuleMark reads the module's mark echo: its name and event.
func parseModuleMark(b []byte) (name, event string, ok bool) {
	if len(b) > 1024 {
		return "", "", false
	}
	var m struct {
		Type string `json:"type"`
		Data struct {
			Name  string `json:"name"`
			Event string `json:"event"`
		} `json:"data"`
	}
	if json.Unmarshal(b, &m) != nil || m.Type != "mark" || m.Data.Name == "" {
		return "", "", false
	}
	return m.Data.Name, m.Data.Event, true
}

// moduleText is a text message the module sent on the connection of leg.
type moduleText struct {
	leg Leg
	b   []byte
}

func (p *streamPlayer) tick(ctx context.Context, now time.Time) time.Time {
	if !p.ready() || p.prebuf == 0 || p.lastAudio.IsZero() {
		return time.Time{}
	}
	if due := p.lastAudio.Add(streamTailFlush); now.Before(due) {
		return due
	}
	// The source fell silent: its last words out of the prebuffer.
	p.pad(now)
	return time.Time{}
}

func (p *streamPlayer) close(context.Context) {
	for _, m := range p.sent {
		p.tb.markDone(m.id, true)
	}
	p.sent = nil
	for _, o := range p.backlog {
		if o.pcm == nil {
			p.tb.markDone(o.mark, true)
		}
	}
	p.backlog = nil
}

func (p *streamPlayer) info() TalkbackLegInfo {
	li := TalkbackLegInfo{Leg: p.leg.String(), Player: "stream", Channel: string(p.channel)}
	switch {
	case p.conn == nil && p.needBug:
		li.State = "starting"
	case p.conn == nil:
		li.State = "no connection"
	default:
		li.State = "streaming"
	}
	return li
}
