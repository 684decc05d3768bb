package mediafork

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// A stream output: one endpoint of a stream protocol (twilio, audiofork),
// with its own connection. The media path (the owner of Fork.Write) cuts the
// audio (a Packetizer, with a shaper when it picks, mixes or resamples) and
// has the protocol encode each message into a preallocated slot of a bounded
// ring: no allocation, no lock, no syscall; one non-blocking channel send
// per Write wakes the writer. The writer goroutine, the fork's, started at
// Begin and joined when the fork ends, dials, says what the protocol says
// first (hello), drains the ring, and reconnects with backoff while the call
// lives; a reader goroutine per connection reads what the server sends,
// bounded in size and rate, and counts it. No audio waits for a connection
// that is not up: it is dropped and counted, as is audio the ring has no
// room for; a server slower than write_timeout to take a message is dropped
// and dialed again.

// streamWire is a stream protocol's part of its output: its messages.
type streamWire interface {
	// subprotocol is offered with the upgrade ("" for none).
	subprotocol() string
	// slotSize is the room kept in front of a slot's message (for a header
	// the writer puts there) and the largest message the media path writes.
	slotSize() (room, size int)
	// slotsPerFrame is the messages one frame of audio makes.
	slotsPerFrame() int
	// hello sends what a new connection starts with, resetting what the
	// protocol counts per connection (writer goroutine).
	hello(send sendFunc, md Metadata) error
	// audio encodes one packet of dir (the Packetizer's number seq) into s
	// (media path).
	audio(s *slot, dir Direction, seq uint32, payload []byte)
	// sendsDTMF reports whether the protocol has DTMF messages.
	sendsDTMF() bool
	// dtmf encodes a digit into s (media path).
	dtmf(s *slot, d DTMF)
	// message is what s sends, numbered as the protocol numbers (writer
	// goroutine).
	message(s *slot) []byte
	// bye sends what the protocol sends last, before the close (writer
	// goroutine).
	bye(send sendFunc, reason EndReason) error
	// server judges one message from the server: the kind it is counted as
	// and what it asks of talk-back, or why it is refused (reader
	// goroutine).
	server(text bool, b []byte) (kind string, tb talkbackMsg, err error)
	// markEcho is what tells the server that its mark has been played, or
	// cleared (writer goroutine).
	markEcho(name string, cleared bool) []byte
}

// talkbackMsg is what a server's message asks of talk-back.
type talkbackMsg struct {
	op    talkbackOp
	audio []byte // op audio: in the endpoint's format
	name  string // op mark
}

type talkbackOp uint8

const (
	talkNone talkbackOp = iota
	talkAudio
	talkMark
	talkClear
)

// maxEchoes bounds the mark answers waiting for the writer.
const maxEchoes = 2 * maxPendingMarks

// sendFunc sends one message on the connection being set up or closed.
type sendFunc func(text bool, b []byte) error

// slot is one message in the ring.
type slot struct {
	gen  uint32    // the connection it was written for
	dir  Direction // of a media message; 0 for another
	kind uint8     // the protocol's (twilio: media or dtmf)
	text bool
	n    int    // message bytes after the room
	buf  []byte // room + the largest message
}

// body is where the media path writes a message: after the room.
func (s *slot) body(room int) []byte { return s.buf[room:room] }

// slotRing is a bounded single-producer (the media path), single-consumer
// (the writer) ring of slots. Atomics order the hand-over: a slot is
// written before the tail moves past it, and read before the head does.
type slotRing struct {
	slots []slot
	head  atomic.Uint64 // the next slot to read
	tail  atomic.Uint64 // the next slot to write
}

// init makes n slots of size bytes, in one allocation.
func (r *slotRing) init(n, size int) {
	r.slots = make([]slot, n)
	arena := make([]byte, n*size)
	for i := range r.slots {
		r.slots[i].buf = arena[i*size : (i+1)*size : (i+1)*size]
	}
}

// next is the slot to write, or nil when the ring is full (producer).
func (r *slotRing) next() *slot {
	t := r.tail.Load()
	if t-r.head.Load() == uint64(len(r.slots)) {
		return nil
	}
	return &r.slots[t%uint64(len(r.slots))]
}

// push hands the slot next returned to the consumer (producer).
func (r *slotRing) push() { r.tail.Store(r.tail.Load() + 1) }

// peek is the oldest slot, or nil when the ring is empty (consumer).
func (r *slotRing) peek() *slot {
	h := r.head.Load()
	if h == r.tail.Load() {
		return nil
	}
	return &r.slots[h%uint64(len(r.slots))]
}

// pop gives the slot peek returned back to the producer (consumer).
func (r *slotRing) pop() { r.head.Store(r.head.Load() + 1) }

// Limits on what a stream's server sends: a message at most this long (a
// longer one ends the connection), and at most serverRate messages a second
// on average (bursts of serverBurst): beyond, the reader waits, so a server
// flooding the connection is slowed down by TCP, not by mediafork's CPU.
const (
	maxServerMessage = 64 << 10
	serverRate       = 200
	serverBurst      = 400
	// Reconnect backoff: the first retry after minBackoff, doubling up to
	// maxBackoff, each ±20% so that many calls do not dial at once after a
	// server restart.
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
	// closeWait: how long the end waits for the server's close frame.
	closeWait = time.Second
)

// streamOutput is one stream endpoint's output.
type streamOutput struct {
	f      *Fork
	wire   streamWire
	proto  Protocol
	format EndpointFormat
	mix    Mix
	dirs   []Direction
	target Target
	ep     *StreamEndpoint
	ident  OutputIdentity
	dialer StreamDialer
	epc    *EndpointCounters
	log    *slog.Logger
	room   int

	// The media path's.
	pk      *Packetizer
	sh      *shaper
	ratio   int64  // bug samples per output sample
	seq     uint32 // the Packetizer's number of the packet SendPacket is given
	pending bool   // slots pushed since the writer was woken

	ring   slotRing
	gen    atomic.Uint32 // odd while a connection is up: the slots it takes carry it
	wake   chan struct{}
	ctx    context.Context // done when the fork ends
	cancel context.CancelFunc
	done   chan struct{} // closed when the writer has returned
	md     Metadata      // set by start, before the writer starts
	reason atomic.Uint32 // the end's, set before cancel
	// suspended: the fork suspended its streams (stream_continuity.go); the
	// connection closes without the protocol's end. Set before cancel.
	suspended atomic.Bool

	// Counters, any goroutine.
	sent, drops, connects, failures, disconnects, serverMsgs, serverRefused atomic.Uint64

	connected   atomic.Bool
	serverEnded atomic.Bool // the server closed normally: not dialed again
	mu          sync.Mutex
	lastErr     string
	echoes      []echo // mark answers for the writer, of connection echoGen; guarded by mu
	echoGen     uint32

	// Talk-back: who the server may speak to, and in which format.
	talk     TalkbackTo
	talkEnc  Encoding
	talkRate int
}

// echo is a mark's answer waiting for the writer.
type echo struct {
	name    string
	cleared bool
}

// streamConfig is what a stream protocol makes its output from.
type streamConfig struct {
	OutputConfig
	wire     streamWire
	cutAudio func(o *streamOutput) // makes o.pk (and o.sh) for the protocol
}

// newStreamOutput makes the output of one stream endpoint of f: its target's
// options hold the configured endpoint (Begin looked it up).
func newStreamOutputOf(f *Fork, c streamConfig) (*streamOutput, error) {
	so, ok := c.Options.(StreamOptions)
	if !ok || so.ep == nil {
		return nil, fmt.Errorf("%w: %s target %s has no configured endpoint", ErrStreamEndpoint, c.Target.Protocol, c.Target.Addr)
	}
	d := f.registry.streamDialer
	if d == nil {
		return nil, fmt.Errorf("%s endpoint %s: this process has no stream dialer", c.Target.Protocol, so.ep.Shown())
	}
	o := &streamOutput{f: f, wire: c.wire, proto: c.Target.Protocol, format: c.Format, mix: c.Mix, dirs: c.Format.Directions.List(),
		target: c.Target, ep: so.ep, ident: c.Identity, dialer: d, wake: make(chan struct{}, 1), done: make(chan struct{}),
		log: f.log.With("protocol", c.Target.Protocol.String(), "url", so.ep.Shown())}
	room, size := c.wire.slotSize()
	o.room = room
	frames := (so.ep.QueueMs + c.Format.FrameMs - 1) / c.Format.FrameMs
	o.ring.init(frames*c.wire.slotsPerFrame()+dtmfQueueSize, room+size)
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.talk, o.talkEnc, o.talkRate = so.ep.Talkback, c.Format.Encoding, c.Format.Rate
	c.cutAudio(o)
	o.ratio = int64(max(c.BugRate/c.Format.Rate, 1))
	o.resumeAt(c.Resume)
	return o, nil
}

// start starts the writer: it dials at once. md is what hello says.
func (o *streamOutput) start(md Metadata, _ time.Time) {
	o.md = md
	go o.run()
}

// write takes one WebSocket frame of the bug's PCM (media path).
func (o *streamOutput) write(pcm []byte) {
	if o.sh != nil {
		o.sh.Write(pcm)
	} else {
		o.pk.Write(pcm)
	}
	o.kick()
}

// kick wakes the writer when slots were pushed.
func (o *streamOutput) kick() {
	if o.pending {
		o.pending = false
		select {
		case o.wake <- struct{}{}:
		default: // awake already
		}
	}
}

func (o *streamOutput) setScratch(b []byte) { o.pk.scratch = b }

// The output is the Packetizer's Framer (no header: the protocol frames the
// payload when it is queued) and its sink.

func (o *streamOutput) AudioHeaderSize() int { return 0 }
func (o *streamOutput) MaxControlSize() int  { return 0 }
func (o *streamOutput) Audio(b []byte, _ Direction, seq uint32, payloadLen int) []byte {
	o.seq = seq
	return b[:payloadLen]
}
func (o *streamOutput) Start(Emitter, []Direction, Metadata, Params, time.Time) {}
func (o *streamOutput) DTMF(Emitter, Direction, DTMF)                           {}
func (o *streamOutput) End(Emitter, []Direction, []uint32, EndReason)           {}

// SendPacket queues one packet of dir for the connection that is up, or
// drops it (no connection, no room).
func (o *streamOutput) SendPacket(dir Direction, payload []byte) {
	g := o.gen.Load()
	var s *slot
	if g&1 == 1 {
		s = o.ring.next()
	}
	if s == nil {
		o.dropped(dir, 1)
		return
	}
	s.gen, s.dir = g, dir
	o.wire.audio(s, dir, o.seq, payload)
	o.ring.push()
	o.pending = true
}

// dtmf queues a digit, placed on the output's media clock (which only
// ordering in the stream shows: the digit goes before the audio after it).
func (o *streamOutput) dtmf(d DTMFReceived) {
	if !o.wire.sendsDTMF() {
		return
	}
	g := o.gen.Load()
	var s *slot
	if g&1 == 1 {
		s = o.ring.next()
	}
	if s == nil {
		o.dropped(0, 1) // no connection up, or no room: counted on the output
		return
	}
	at := o.pk.MediaTime(o.format.Rate) - d.Duration
	s.gen, s.dir = g, 0
	o.wire.dtmf(s, DTMF{Digit: d.Digit, Duration: d.Duration, MediaTime: max(at, 0)})
	o.ring.push()
	o.pending = true
	o.kick()
}

// dropped counts n messages of dir that did not go (dir 0: not audio).
func (o *streamOutput) dropped(dir Direction, n uint64) {
	o.drops.Add(n)
	if o.epc != nil {
		o.epc.Drops.Add(n)
	}
	if dir != 0 {
		o.f.Drops.Add(n)
		o.f.DropsBy[dir-1].Add(n)
	}
}

// finish sends the last partial packet and ends the connection: the writer
// sends what is queued, the protocol's bye and a close (1000) within
// write_timeout; when no connection is up, it stops dialing.
func (o *streamOutput) finish(reason EndReason) {
	if o.sh != nil {
		o.sh.Flush()
	}
	o.pk.Flush()
	o.kick()
	o.stop(reason)
}

// stop has the writer end (idempotent); wait joins it.
func (o *streamOutput) stop(reason EndReason) {
	o.reason.CompareAndSwap(0, uint32(reason))
	o.cancel()
}

// wait returns once the writer (and its reader) have returned.
func (o *streamOutput) wait() { <-o.done }

// run is the writer: dial, serve, again with backoff, until the fork ends.
func (o *streamOutput) run() {
	defer close(o.done)
	backoff := minBackoff
	for {
		if o.ctx.Err() != nil {
			o.discard()
			return
		}
		conn, err := o.dial()
		if err != nil {
			msg := "connect: " + o.ep.scrub(err.Error())
			// The first failure, and each that says something new, at warn:
			// a server down for a thousand calls is a line per call, not one
			// per call per retry.
			level := slog.LevelWarn
			if msg == o.lastError() {
				level = slog.LevelDebug
			}
			// The error before the count: whoever sees a failure counted
			// reads what it was.
			o.setError(msg)
			o.failures.Add(1)
			o.count(func(c *EndpointCounters) { c.ConnectFailures.Add(1) })
			o.log.Log(context.Background(), level, "stream connect failed", "error", msg, "retry_in", backoff, "attempts", o.failures.Load())
		} else if o.serve(conn) {
			backoff = minBackoff // it was up: the next failure starts the backoff over
		}
		if o.serverEnded.Load() {
			return // the media path drops (and counts) what comes after
		}
		if !o.sleep(backoff) {
			o.discard()
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// dial connects within connect_timeout (sooner if the fork ends).
func (o *streamOutput) dial() (conn StreamConn, err error) {
	defer func() {
		if r := recover(); r != nil {
			o.f.registry.streamPanics.Add(1)
			conn, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(o.ctx, o.ep.ConnectTimeout)
	defer cancel()
	room, size := o.wire.slotSize()
	return o.dialer.Dial(ctx, StreamDial{URL: o.ep.url, Addr: o.target.Addr, Header: o.ep.Header, Subprotocol: o.wire.subprotocol(),
		MessageSize: room + size, CAFile: o.ep.CAFile, InsecureSkipVerify: o.ep.InsecureSkipVerify})
}

// sleep waits d, ±20%, or until the fork ends (false).
func (o *streamOutput) sleep(d time.Duration) bool {
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-o.ctx.Done():
		return false
	}
}

// serve runs one connection until it fails or the fork ends, and closes it.
// It reports whether the connection came up.
func (o *streamOutput) serve(conn StreamConn) (up bool) {
	readDone := make(chan error, 1)
	reading := false
	defer func() {
		if r := recover(); r != nil {
			o.f.registry.streamPanics.Add(1)
			o.setError(fmt.Sprintf("panic: %v", r))
			o.log.Error("stream writer panicked; the connection is dropped", "panic", r)
		}
		if o.gen.Load()&1 == 1 {
			o.gen.Add(1) // down: the media path stops queueing
		}
		o.connected.Store(false)
		conn.Close()
		if reading {
			<-readDone
		}
		o.discard()
	}()
	o.discard() // what the last connection left
	// Up from now: what the media path queues goes after the hello, which
	// this goroutine sends first.
	g := o.gen.Add(1)
	deadline := time.Now().Add(o.ep.WriteTimeout)
	send := func(text bool, b []byte) error { return conn.WriteMessage(text, b, deadline) }
	err := o.wire.hello(send, o.md)
	if err == nil {
		err = conn.Flush(deadline)
	}
	if err != nil {
		o.setError("hello: " + err.Error())
		o.failures.Add(1)
		o.count(func(c *EndpointCounters) { c.ConnectFailures.Add(1) })
		o.log.Warn("stream hello failed", "error", o.ep.scrub(err.Error()))
		return false
	}
	o.connected.Store(true)
	o.connects.Add(1)
	o.count(func(c *EndpointCounters) { c.Connects.Add(1) })
	o.log.Info("stream connected", "stream_sid", o.ident.StreamSid, "connects", o.connects.Load())
	reading = true
	go o.read(conn, readDone)
	for {
		select {
		case <-o.wake:
			deadline := time.Now().Add(o.ep.WriteTimeout)
			err = o.drain(conn, g, deadline)
			if err == nil {
				err = o.sendEchoes(conn, g, deadline)
			}
			if err != nil {
				o.lost(err)
				return true
			}
		case err = <-readDone:
			reading = false
			var closed *StreamClosed
			if errors.As(err, &closed) && closed.Code == 1000 {
				// The server ended the stream, as a Twilio or mod_audio_fork
				// server ends one: no dialing again for this call.
				o.serverEnded.Store(true)
				o.setError(fmt.Sprintf("closed by the server (%d)", closed.Code))
				o.log.Info("stream closed by the server; not dialed again for this call", "reason", o.ep.scrub(closed.Reason))
				return true
			}
			o.lost(err)
			return true
		case <-o.ctx.Done():
			o.end(conn, g, readDone)
			reading = false
			return true
		}
	}
}

// lost notes a connection that failed while up.
func (o *streamOutput) lost(err error) {
	o.disconnects.Add(1)
	o.setError("connection: " + err.Error())
	o.count(func(c *EndpointCounters) { c.Disconnects.Add(1); c.SendErrors.Add(1) })
	o.log.Warn("stream connection lost; dialing again", "error", o.ep.scrub(err.Error()))
}

// end finishes a connection as the fork ends: what is queued, the
// protocol's bye, a close frame, and the server's close awaited briefly.
func (o *streamOutput) end(conn StreamConn, g uint32, readDone <-chan error) {
	deadline := time.Now().Add(o.ep.WriteTimeout)
	err := o.drain(conn, g, deadline)
	code := 1000
	if o.suspended.Load() {
		code = 1001 // going away: the stream goes on in a later connection
	} else if err == nil {
		err = o.wire.bye(func(text bool, b []byte) error { return conn.WriteMessage(text, b, deadline) }, EndReason(o.reason.Load()))
	}
	if err == nil {
		err = conn.Flush(deadline)
	}
	if err == nil {
		err = conn.SendClose(code, "", time.Now().Add(min(closeWait, o.ep.WriteTimeout)))
	}
	if err != nil {
		o.setError("end: " + err.Error())
		o.log.Warn("stream end not delivered", "error", o.ep.scrub(err.Error()))
		conn.Close()
	}
	<-readDone // the server's close, the read deadline SendClose set, or Close
}

// drain sends every queued slot of connection g, then flushes.
func (o *streamOutput) drain(conn StreamConn, g uint32, deadline time.Time) error {
	sent := false
	for s := o.ring.peek(); s != nil; s = o.ring.peek() {
		if s.gen != g {
			o.dropped(s.dir, 1) // written for an earlier connection
			o.ring.pop()
			continue
		}
		b := o.wire.message(s)
		if err := conn.WriteMessage(s.text, b, deadline); err != nil {
			o.dropped(s.dir, 1)
			o.ring.pop()
			return err
		}
		o.sentOne(s, len(b))
		o.ring.pop()
		sent = true
	}
	if !sent {
		return nil
	}
	return conn.Flush(deadline)
}

// sentOne counts a message sent: a media message under its directions.
func (o *streamOutput) sentOne(s *slot, size int) {
	o.sent.Add(1)
	switch {
	case s.dir != 0:
		o.f.account(s.dir, size, nil)
	case s.kind == slotInterleaved:
		for _, d := range o.dirs {
			o.f.account(d, size/len(o.dirs), nil)
		}
	}
}

// slotInterleaved marks a slot carrying every direction of the output at
// once (audiofork's frames).
const slotInterleaved = 0xff

// discard drops every queued slot (writer goroutine, no connection up).
func (o *streamOutput) discard() {
	for s := o.ring.peek(); s != nil; s = o.ring.peek() {
		o.dropped(s.dir, 1)
		o.ring.pop()
	}
}

// read reads what the server sends until the connection ends: each message
// bounded (maxServerMessage), the rate bounded (serverRate), each judged by
// the protocol and counted, a summary logged at most once a second.
func (o *streamOutput) read(conn StreamConn, done chan<- error) {
	var err error
	var src *TalkbackSource // the connection's talk-back: it ends with it
	g := o.gen.Load()
	defer func() {
		src.Close()
		if r := recover(); r != nil {
			o.f.registry.streamPanics.Add(1)
			err = fmt.Errorf("reader panic: %v", r)
			conn.Close()
		}
		done <- err
	}()
	tokens, last := float64(serverBurst), time.Now()
	var logged time.Time
	var since, refusedSince uint64
	var lastKind, lastRefusal string
	for {
		var text bool
		var b []byte
		text, b, err = conn.ReadMessage(maxServerMessage)
		if err != nil {
			return
		}
		now := time.Now()
		tokens = min(serverBurst, tokens+now.Sub(last).Seconds()*serverRate)
		last = now
		if tokens < 1 {
			wait := time.Duration((1 - tokens) / serverRate * float64(time.Second))
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-o.ctx.Done():
				t.Stop()
			}
			tokens, last = 1, time.Now()
		}
		tokens--
		kind, tm, jerr := o.wire.server(text, b)
		if jerr == nil && tm.op != talkNone {
			jerr = o.talkback(&src, g, tm)
		}
		since++
		if jerr != nil {
			o.serverRefused.Add(1)
			o.count(func(c *EndpointCounters) { c.ServerRefused.Add(1) })
			refusedSince++
			lastRefusal = jerr.Error()
		} else {
			o.serverMsgs.Add(1)
			o.count(func(c *EndpointCounters) { c.ServerMessages.Add(1) })
			lastKind = kind
		}
		if now.Sub(logged) >= time.Second {
			// At most a line a second per connection: at debug while the
			// server says what it may, at warn when it sent what was refused.
			level := slog.LevelDebug
			if refusedSince > 0 {
				level = slog.LevelWarn
			}
			o.log.Log(context.Background(), level, "stream server messages", "since_last", since, "refused", refusedSince, "last_kind", lastKind,
				"last_refusal", lastRefusal, "total", o.serverMsgs.Load()+o.serverRefused.Load())
			logged, since, refusedSince, lastRefusal = now, 0, 0, ""
		}
	}
}

// queueEcho has the writer answer a mark on connection g (any goroutine,
// never waiting: beyond maxEchoes the answer is dropped).
func (o *streamOutput) queueEcho(g uint32, name string, cleared bool) {
	o.mu.Lock()
	if o.echoGen != g {
		o.echoes, o.echoGen = o.echoes[:0], g
	}
	full := len(o.echoes) >= maxEchoes
	if !full {
		o.echoes = append(o.echoes, echo{name, cleared})
	}
	o.mu.Unlock()
	if full {
		o.log.Warn("talk-back: mark answer dropped: too many waiting")
		return
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// sendEchoes sends the mark answers waiting for connection g.
func (o *streamOutput) sendEchoes(conn StreamConn, g uint32, deadline time.Time) error {
	o.mu.Lock()
	var es []echo
	if o.echoGen == g {
		es = append(es, o.echoes...)
	}
	o.echoes = o.echoes[:0]
	o.mu.Unlock()
	for _, e := range es {
		if err := conn.WriteMessage(true, o.wire.markEcho(e.name, e.cleared), deadline); err != nil {
			return err
		}
	}
	if len(es) == 0 {
		return nil
	}
	return conn.Flush(deadline)
}

// talkback acts on what a server's message asks of talk-back, on the
// connection's source (made at its first talk-back message).
func (o *streamOutput) talkback(src **TalkbackSource, g uint32, m talkbackMsg) error {
	if o.talk == TalkbackOff {
		return fmt.Errorf("talk-back is off for this endpoint (talkback: true)")
	}
	if *src == nil {
		s, err := o.f.NewTalkbackSource(TalkbackEndpoint{Name: o.target.String(), Allowed: o.talk, Encoding: o.talkEnc, Rate: o.talkRate,
			Echo: func(name string, cleared bool) { o.queueEcho(g, name, cleared) }, Counters: o.epc})
		if err != nil {
			return err
		}
		if s == nil {
			return fmt.Errorf("talk-back: the fork takes none")
		}
		*src = s
	}
	switch m.op {
	case talkAudio:
		return (*src).Audio(o.talk, m.audio)
	case talkMark:
		return (*src).Mark(o.talk, m.name)
	case talkClear:
		(*src).Clear()
	}
	return nil
}

// count counts on the endpoint's labelled counters (off the media path).
func (o *streamOutput) count(fn func(*EndpointCounters)) {
	if o.epc != nil {
		fn(o.epc)
	}
}

func (o *streamOutput) setError(s string) {
	s = o.ep.scrub(s)
	o.mu.Lock()
	o.lastErr = s
	o.mu.Unlock()
}

func (o *streamOutput) lastError() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastErr
}

// StreamInfo is a stream output's connection, for the API.
type StreamInfo struct {
	URL            string `json:"url"` // scheme://host/path: never the query or the headers
	StreamSid      string `json:"stream_sid,omitempty"`
	Connected      bool   `json:"connected"`
	Connects       uint64 `json:"connects"`        // connections that came up
	ConnectFailed  uint64 `json:"connect_failed"`  // dials (or hellos) that failed
	Disconnects    uint64 `json:"disconnects"`     // connections lost while up
	MessagesSent   uint64 `json:"messages_sent"`   // media (and dtmf) messages sent
	Drops          uint64 `json:"drops"`           // messages not sent: no connection up, a full queue, a failed write
	ServerMessages uint64 `json:"server_messages"` // messages the server sent, accepted
	ServerRefused  uint64 `json:"server_refused"`  // and refused (invalid)
	LastError      string `json:"last_error,omitempty"`
}

func (o *streamOutput) info(_ []*dest) OutputInfo {
	return OutputInfo{Protocol: o.proto, Format: o.format, Endpoints: []string{o.target.String()},
		Stream: &StreamInfo{URL: o.ep.Shown(), StreamSid: o.ident.StreamSid, Connected: o.connected.Load(),
			Connects: o.connects.Load(), ConnectFailed: o.failures.Load(), Disconnects: o.disconnects.Load(),
			MessagesSent: o.sent.Load(), Drops: o.drops.Load(), ServerMessages: o.serverMsgs.Load(),
			ServerRefused: o.serverRefused.Load(), LastError: o.lastError()}}
}

// errNoMessage is a server message a protocol refuses for its frame type.
var errNoMessage = errors.New("binary frame where a text message is expected")

// lookupStreams returns targets with each stream target's configured
// endpoint looked up (StreamOptions.lookup) in the endpoints SetStreamEndpoints
// set; targets without one are as they are. targets is not changed.
func (r *Registry) lookupStreams(targets []Target) ([]Target, error) {
	var out []Target
	for i, t := range targets {
		so, ok := t.Options.(StreamOptions)
		if !ok || so.ep != nil {
			continue
		}
		if out == nil {
			out = append([]Target(nil), targets...)
		}
		found, err := so.lookup(r.streamEndpoints.Load())
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", t, err)
		}
		out[i].Options = found
	}
	if out == nil {
		return targets, nil
	}
	return out, nil
}

// StreamsConnected is how many stream outputs of live forks have their
// connection up now, by protocol (every stream protocol present).
func (r *Registry) StreamsConnected() map[Protocol]int {
	out := map[Protocol]int{}
	for _, op := range protocols {
		if _, ok := op.(StreamProtocol); ok {
			out[op.Name()] = 0
		}
	}
	for _, f := range r.List() {
		f.mu.Lock()
		streams := f.streams
		f.mu.Unlock()
		for _, o := range streams {
			if o.connected.Load() {
				out[o.proto]++
			}
		}
	}
	return out
}
