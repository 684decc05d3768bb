package mediafork

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Talk-back (SPEC §9): receivers send audio back into the call — a bot's
// voice, a supervisor's whisper — with marks (tell me when what I sent before
// this has been played) and clear (barge-in: drop what is queued).
//
// A fork whose endpoints may speak has a talkback: its sources are the
// receivers speaking (at most one per party: the far end, the bridged
// party), each with a bounded queue of PCM at the fork's talk-back rate and
// its marks in it; its players, one per leg, are how audio gets into the
// switch: streamed down the fork's WebSocket where the module takes frames
// (jambonz's mod_audio_fork, InjectStream), or cut into files the module
// writes and mixed in with uuid_displace (InjectPlayAudio,
// InjectStreamAudio). One goroutine per fork, started when its first source
// speaks and joined when the fork ends, paces the sources in real time into
// the players and runs the players' timed work; a sender faster than real
// time is buffered up to talkback.max_queue and refused beyond. Marks come
// back from what the switch reports (the module's mark echo, the end of a
// displace), never from a timer.

// MediaConn is a fork's media connection as talk-back writes into it: the
// WebSocket the module connected with (the ingest implements it).
type MediaConn interface {
	// Send queues one message to the module without waiting; false when it
	// was not taken (the connection's outbox is full or it has ended).
	Send(text bool, b []byte) bool
}

// LegControl is what talk-back asks of a fork's switch: esl implements it
// over the event socket.
type LegControl interface {
	// Displace mixes file into what leg sends (uuid_displace <leg> start
	// <file> 0 mux): its far end hears it, the rest of the call untouched.
	Displace(ctx context.Context, leg CallID, file string) error
	// StopDisplace stops it (uuid_displace <leg> stop <file>).
	StopDisplace(ctx context.Context, leg CallID, file string) error
	// BridgedLeg is the channel uuid is bridged to now, "" when none.
	BridgedLeg(ctx context.Context, uuid CallID) (CallID, error)
}

// Talk-back events from the switch (esl makes them; the orchestrator hands
// each to the forks it concerns, off the event reader).
type (
	// TalkbackFileReady: the module wrote a playAudio/streamAudio message of
	// the fork of UUID into File (CUSTOM mod_audio_fork::play_audio,
	// mod_audio_stream::play).
	TalkbackFileReady struct {
		UUID CallID
		File string
		Rate int
		At   time.Time
	}
	// DisplaceStarted / DisplaceStopped: a uuid_displace of File on Leg
	// began, or ended (MEDIA_BUG_START / MEDIA_BUG_STOP, function displace):
	// it stops at the switch's frame where the file ran out.
	DisplaceStarted struct {
		Leg  CallID
		File string
		At   time.Time
	}
	DisplaceStopped struct {
		Leg  CallID
		File string
		At   time.Time
	}
	// LegsBridged / LegsUnbridged: A and B were bridged, or no longer are
	// (CHANNEL_BRIDGE / CHANNEL_UNBRIDGE).
	LegsBridged   struct{ A, B CallID }
	LegsUnbridged struct{ A, B CallID }
)

func (TalkbackFileReady) callEvent() {}
func (DisplaceStarted) callEvent()   {}
func (DisplaceStopped) callEvent()   {}
func (LegsBridged) callEvent()       {}
func (LegsUnbridged) callEvent()     {}

// Errors of talk-back sources.
var (
	ErrTalkbackBusy   = errors.New("talk-back: another receiver speaks to that party")
	ErrTalkbackFull   = errors.New("talk-back: the fork's queue is full (talkback.max_queue)")
	ErrTalkbackParty  = errors.New("talk-back: the endpoint may not speak to that party")
	ErrTalkbackClosed = errors.New("talk-back: the fork has ended")
	ErrTalkbackAudio  = errors.New("talk-back: invalid audio")
	ErrTalkbackMarks  = errors.New("talk-back: too many marks waiting")
)

// Bounds on what a receiver may leave pending.
const (
	// maxPendingMarks bounds one source's marks not yet echoed (jambonz's
	// module takes at most 30 at a time).
	maxPendingMarks = 25
	// MaxMarkName bounds a mark's name.
	MaxMarkName = 128
	// maxTalkbackEvents bounds switch events waiting for the goroutine.
	maxTalkbackEvents = 256
	// talkbackIdle: a source idle this long with nothing queued gives up
	// its parties (a TLV receiver has no connection whose end would).
	talkbackIdle = 10 * time.Second
	// legTimeout bounds each command the players send to the switch.
	legTimeout = 2 * time.Second
)

// talkback is one fork's talk-back.
type talkback struct {
	f        *Fork
	inject   Injection
	rate     int   // PCM into the switch
	maxQueue int64 // samples, over every source
	control  LegControl
	log      *slog.Logger

	mu      sync.Mutex
	sources []*TalkbackSource
	holder  [2]*TalkbackSource // by Leg
	queued  int64              // samples over every source
	events  []any              // for the goroutine, bounded
	clears  [2]bool            // a clear for each leg's player, for the goroutine
	closed  bool
	running bool
	marks   map[uint64]*pendingMark
	next    uint64 // mark ids
	other   otherLeg
	conns   [2]MediaConn // the stream players' connections (far: the fork's own)
	// Counters, in samples (guarded by mu; the metrics read them through
	// the endpoint counters as well).
	played, cleared, refused int64
	refusedMsgs              uint64
	lastMark                 string

	wake   chan struct{}
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	legInfo [2]TalkbackLegInfo // the players', published by the goroutine

	// The goroutine's.
	players   [2]legPlayer
	completed []markDone
	files     []fileRequest // chunks whose file the module is writing, in order
	ops       []op          // the round's, for more
	opAt      int
}

// otherLeg is what is known of the channel the fork's is bridged to.
type otherLeg struct {
	uuid  CallID
	known bool // from a bridge event: an unbridge makes it none
}

type markDone struct {
	id      uint64
	cleared bool
}

// pendingMark is a source's mark handed to its players, until every one of
// them has said the audio before it was played (or cleared).
type pendingMark struct {
	src     *TalkbackSource
	name    string
	legs    int
	cleared bool
}

// newTalkback makes a fork's talk-back; it starts when a source speaks.
func newTalkback(f *Fork, spec Spec, s TalkbackSettings, control LegControl) *talkback {
	maxQ := s.MaxQueue
	if maxQ <= 0 {
		maxQ = DefaultTalkbackMaxQueue
	}
	rate := TalkbackRate(spec.Rate)
	tb := &talkback{f: f, inject: spec.Injection, rate: rate, maxQueue: int64(maxQ.Seconds() * float64(rate)),
		control: control, log: f.log.With("component", "talkback"), marks: map[uint64]*pendingMark{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	tb.ctx, tb.cancel = context.WithCancel(context.Background())
	return tb
}

// samplesMs is n samples at the talk-back rate in ms.
func (tb *talkback) samplesMs(n int64) int64 { return n * 1000 / int64(tb.rate) }

func (tb *talkback) kick() {
	select {
	case tb.wake <- struct{}{}:
	default:
	}
}

// TalkbackSource is one receiver speaking into a fork: an endpoint's
// output, from its first talk-back message until its connection ends (or,
// for a TLV receiver, it falls silent for a while). Its methods are called
// by the goroutine reading that receiver, one at a time.
type TalkbackSource struct {
	tb       *talkback
	endpoint string // as shown
	to       TalkbackTo
	allowed  TalkbackTo
	dec      *talkbackDecoder
	echo     func(name string, cleared bool)
	epc      *EndpointCounters
	scratch  []int16
	loose    bool // no connection of its own: let go when idle

	// Guarded by tb.mu.
	q        []int16 // queued PCM, oldest first (q[qh:])
	qh       int
	written  int64 // samples ever queued
	released int64 // samples ever released to the players
	qmarks   []queuedMark
	pending  int       // marks not yet echoed
	t0       time.Time // the pacing clock's start: released-burst at t0 plays at t0
	burst    int64     // samples released since t0
	last     time.Time // last message
	claimed  bool
	closed   bool
	lastMark string
}

type queuedMark struct {
	at   int64 // written when it came: the audio before it
	name string
}

// TalkbackEndpoint describes a receiver that may speak: who, to whom, in
// which format, and how its marks are echoed (called off any lock, from the
// fork's talk-back goroutine or the receiver's reader).
type TalkbackEndpoint struct {
	Name     string // the endpoint as logs and the API show it
	Allowed  TalkbackTo
	Encoding Encoding
	Rate     int
	Echo     func(name string, cleared bool)
	Counters *EndpointCounters
	// Connectionless: the receiver has no connection whose end would end
	// its talk-back (TLV): idle for a while, it gives its parties up.
	Connectionless bool
}

// NewTalkbackSource makes the source of a receiver of f that may speak to
// e.Allowed; nil when the fork has no talk-back (its endpoints may not
// speak). It claims its parties at its first message.
func (f *Fork) NewTalkbackSource(e TalkbackEndpoint) (*TalkbackSource, error) {
	tb := f.talkback()
	if tb == nil || e.Allowed == TalkbackOff {
		return nil, nil
	}
	dec, err := newTalkbackDecoder(e.Encoding, e.Rate, tb.rate)
	if err != nil {
		return nil, err
	}
	return &TalkbackSource{tb: tb, endpoint: e.Name, allowed: e.Allowed, to: e.Allowed, dec: dec, echo: e.Echo, epc: e.Counters,
		loose: e.Connectionless}, nil
}

// talkback is f's talk-back, nil when none of its endpoints may speak.
func (f *Fork) talkback() *talkback {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tb
}

// claim takes the source's parties (to) for it, once; an error when another
// source holds one of them or the fork has ended. Under tb.mu.
func (s *TalkbackSource) claimLocked(to TalkbackTo, now time.Time) error {
	tb := s.tb
	if tb.closed || s.closed {
		return ErrTalkbackClosed
	}
	if s.claimed && to == s.to {
		return nil
	}
	if !to.Within(s.allowed) {
		return fmt.Errorf("%w: %s (it may speak to %s)", ErrTalkbackParty, to, s.allowed)
	}
	for _, leg := range []Leg{LegFar, LegOther} {
		if h := tb.holder[leg]; to.Has(leg) && h != nil && h != s {
			return fmt.Errorf("%w (%s: %s)", ErrTalkbackBusy, leg, h.endpoint)
		}
	}
	if s.claimed { // a TLV receiver switching parties: only while it has nothing pending
		if s.queuedLocked() > 0 || s.pending > 0 {
			return fmt.Errorf("%w: it has audio or marks pending for %s", ErrTalkbackParty, s.to)
		}
		for _, leg := range []Leg{LegFar, LegOther} {
			if s.to.Has(leg) {
				tb.holder[leg] = nil
			}
		}
	}
	for _, leg := range []Leg{LegFar, LegOther} {
		if to.Has(leg) {
			tb.holder[leg] = s
		}
	}
	if !s.claimed {
		tb.sources = append(tb.sources, s)
		// The audit line: who speaks into which call, to whom.
		tb.log.Info("talk-back started", "endpoint", s.endpoint, "to", to.String(), "injection", string(tb.inject), "rate", tb.rate)
	}
	s.claimed, s.to, s.last = true, to, now
	tb.startLocked()
	return nil
}

func (s *TalkbackSource) queuedLocked() int64 { return int64(len(s.q) - s.qh) }

// startLocked starts the goroutine once.
func (tb *talkback) startLocked() {
	if tb.running {
		return
	}
	tb.running = true
	go tb.run()
}

// refuse counts a refused message (and its samples).
func (s *TalkbackSource) refuse(samples int64) {
	tb := s.tb
	tb.mu.Lock()
	tb.refused += samples
	tb.refusedMsgs++
	tb.mu.Unlock()
	if s.epc != nil {
		s.epc.TalkbackRefused.Add(1)
		s.epc.TalkbackRefusedMs.Add(uint64(tb.samplesMs(samples)))
	}
}

// Audio queues one message of audio for to (a subset of the endpoint's
// parties), in the receiver's encoding and rate: whole samples, at most
// one message of its protocol. Refused: another source holds the party, the
// queue would exceed talkback.max_queue (the message is dropped whole), the
// bytes are not whole samples.
func (s *TalkbackSource) Audio(to TalkbackTo, b []byte) error {
	pcm, err := s.dec.decode(s.scratch[:0], b)
	if err != nil {
		s.refuse(0)
		return fmt.Errorf("%w: %v", ErrTalkbackAudio, err)
	}
	s.scratch = pcm[:0]
	tb := s.tb
	now := time.Now()
	tb.mu.Lock()
	if err := s.claimLocked(to, now); err != nil {
		tb.mu.Unlock()
		s.refuse(int64(len(pcm)))
		return err
	}
	s.last = now
	if tb.queued+int64(len(pcm)) > tb.maxQueue {
		tb.mu.Unlock()
		s.refuse(int64(len(pcm)))
		return ErrTalkbackFull
	}
	if s.qh > 0 && s.qh >= len(s.q)/2 { // reuse the front
		s.q = s.q[:copy(s.q, s.q[s.qh:])]
		s.qh = 0
	}
	s.q = append(s.q, pcm...)
	s.written += int64(len(pcm))
	tb.queued += int64(len(pcm))
	tb.mu.Unlock()
	tb.kick()
	return nil
}

// Mark queues a mark after the audio sent so far: echoed once that audio
// has been played (or cleared). name is the receiver's, at most MaxMarkName
// bytes.
func (s *TalkbackSource) Mark(to TalkbackTo, name string) error {
	if len(name) > MaxMarkName {
		s.refuse(0)
		return fmt.Errorf("%w: a mark name of %d bytes (at most %d)", ErrTalkbackAudio, len(name), MaxMarkName)
	}
	tb := s.tb
	now := time.Now()
	tb.mu.Lock()
	if err := s.claimLocked(to, now); err != nil {
		tb.mu.Unlock()
		s.refuse(0)
		return err
	}
	if s.pending >= maxPendingMarks {
		tb.mu.Unlock()
		s.refuse(0)
		return ErrTalkbackMarks
	}
	s.last = now
	s.pending++
	s.qmarks = append(s.qmarks, queuedMark{at: s.written, name: name})
	tb.mu.Unlock()
	tb.kick()
	return nil
}

// Clear drops what the source has queued and what its parties' players
// hold, at once (barge-in); every pending mark is echoed cleared.
func (s *TalkbackSource) Clear() {
	tb := s.tb
	tb.mu.Lock()
	if !s.claimed || s.closed {
		tb.mu.Unlock()
		return
	}
	s.last = time.Now()
	echoes := s.clearLocked()
	tb.mu.Unlock()
	s.echoAll(echoes)
	tb.kick()
}

// clearLocked drops the queue and asks the players of its parties to clear;
// it returns the queued marks to echo as cleared.
func (s *TalkbackSource) clearLocked() []string {
	tb := s.tb
	n := s.queuedLocked()
	tb.queued -= n
	tb.cleared += n
	if s.epc != nil {
		s.epc.TalkbackClearedMs.Add(uint64(tb.samplesMs(n)))
	}
	s.q, s.qh = s.q[:0], 0
	s.released = s.written
	var names []string
	for _, m := range s.qmarks {
		names = append(names, m.name)
	}
	s.pending -= len(s.qmarks)
	s.qmarks = s.qmarks[:0]
	s.t0, s.burst = time.Time{}, 0
	for _, leg := range []Leg{LegFar, LegOther} {
		if s.to.Has(leg) {
			tb.clears[leg] = true
		}
	}
	return names
}

func (s *TalkbackSource) echoAll(names []string) {
	for _, n := range names {
		s.echoOne(n, true)
	}
}

func (s *TalkbackSource) echoOne(name string, cleared bool) {
	tb := s.tb
	tb.mu.Lock()
	s.lastMark = markState(name, cleared)
	tb.lastMark = s.lastMark
	tb.mu.Unlock()
	if s.echo != nil {
		s.echo(name, cleared)
	}
}

func markState(name string, cleared bool) string {
	if cleared {
		return name + " cleared"
	}
	return name + " played"
}

// Close ends the source (its receiver's connection ended): its audio is
// dropped, its parties are free for another.
func (s *TalkbackSource) Close() {
	if s == nil {
		return
	}
	tb := s.tb
	tb.mu.Lock()
	if s.closed {
		tb.mu.Unlock()
		return
	}
	var names []string
	if s.claimed {
		names = s.clearLocked()
	}
	s.closed = true
	tb.releaseLocked(s)
	tb.mu.Unlock()
	s.echoAll(names)
	tb.kick()
}

// releaseLocked frees s's parties.
func (tb *talkback) releaseLocked(s *TalkbackSource) {
	for leg := range tb.holder {
		if tb.holder[leg] == s {
			tb.holder[leg] = nil
		}
	}
	for i, x := range tb.sources {
		if x == s {
			tb.sources = append(tb.sources[:i], tb.sources[i+1:]...)
			break
		}
	}
	if s.claimed {
		tb.log.Info("talk-back ended", "endpoint", s.endpoint, "to", s.to.String())
	}
	s.claimed = false
	s.t0, s.burst = time.Time{}, 0
}

// event hands a switch event to the goroutine (never waits: beyond the
// bound it is dropped and logged).
func (tb *talkback) event(e any) {
	tb.mu.Lock()
	if tb.closed || len(tb.events) >= maxTalkbackEvents {
		full := !tb.closed
		tb.mu.Unlock()
		if full {
			tb.log.Warn("talk-back event dropped: too many waiting", "event", fmt.Sprintf("%T", e))
		}
		return
	}
	tb.events = append(tb.events, e)
	bridge := false
	switch e := e.(type) {
	case LegsBridged:
		tb.other = otherLeg{uuid: e.peer(tb.f.UUID), known: true}
		bridge = true
	case LegsUnbridged:
		if p := e.peer(tb.f.UUID); p == tb.other.uuid || !tb.other.known {
			tb.other = otherLeg{known: true}
		}
		bridge = true
	}
	run := tb.running
	tb.mu.Unlock()
	if run || !bridge {
		tb.kick()
	}
}

func (e LegsBridged) peer(u CallID) CallID {
	if e.A == u {
		return e.B
	}
	return e.A
}

func (e LegsUnbridged) peer(u CallID) CallID {
	if e.A == u {
		return e.B
	}
	return e.A
}

// setConn gives the stream player of leg its connection (far: the fork's
// own media connection).
func (tb *talkback) setConn(leg Leg, c MediaConn) {
	tb.mu.Lock()
	tb.conns[leg] = c
	tb.events = append(tb.events, connReady{leg})
	tb.mu.Unlock()
	tb.kick()
}

type connReady struct{ leg Leg }

// close ends talk-back with the fork: every source closed, nothing left
// queued; the goroutine stops (wait joins it).
func (tb *talkback) close() {
	tb.mu.Lock()
	if tb.closed {
		tb.mu.Unlock()
		return
	}
	var echoes []func()
	for _, s := range append([]*TalkbackSource(nil), tb.sources...) {
		names := s.clearLocked()
		s.closed = true
		tb.releaseLocked(s)
		for _, n := range names {
			echoes = append(echoes, func() { s.echoOne(n, true) })
		}
	}
	tb.closed = true
	running := tb.running
	tb.mu.Unlock()
	for _, e := range echoes {
		e()
	}
	tb.cancel()
	if !running {
		close(tb.done)
	}
}

// wait returns once the goroutine has stopped (after close).
func (tb *talkback) wait() { <-tb.done }

// run paces the sources into the players until the fork ends.
func (tb *talkback) run() {
	defer close(tb.done)
	defer func() {
		if r := recover(); r != nil {
			tb.log.Error("talk-back goroutine panicked; talk-back stops for this fork", "panic", r)
		}
		for _, p := range tb.players {
			if p != nil {
				p.close(tb.ctx)
			}
		}
		tb.finishMarks()
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := tb.step(time.Now())
		if tb.ctx.Err() != nil {
			return
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
		}
		select {
		case <-tb.ctx.Done():
			return
		case <-tb.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// op is one thing a player is to do, in the order the sources made them.
type op struct {
	leg  Leg
	pcm  []int16
	mark uint64 // a mark after what came before (pcm nil)
}

// step does one round: switch events, clears, the sources' due audio and
// marks into the players, the players' timed work. It returns when it
// wants to run again (zero: when woken).
func (tb *talkback) step(now time.Time) time.Time {
	tb.mu.Lock()
	events := tb.events
	tb.events = nil
	clears := tb.clears
	tb.clears = [2]bool{}
	conns := tb.conns
	other := tb.other
	var ops []op
	next := time.Time{}
	soon := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, s := range append([]*TalkbackSource(nil), tb.sources...) {
		o, due := tb.releaseLocked2(s, now)
		ops = append(ops, o...)
		soon(due)
		if s.queuedLocked() == 0 && s.pending == 0 && now.Sub(s.last) > talkbackIdle && s.idleRelease() {
			tb.releaseLocked(s) // its next message claims again
		}
	}
	tb.mu.Unlock()

	for _, e := range events {
		switch e := e.(type) {
		case TalkbackFileReady:
			tb.fileReady(e, now)
			continue
		case connReady:
			if p := tb.players[e.leg]; p != nil {
				p.event(tb.ctx, e, now)
			}
			continue
		}
		for _, p := range tb.players {
			if p != nil {
				p.event(tb.ctx, e, now)
			}
		}
	}
	for leg, c := range clears {
		if c && tb.players[leg] != nil {
			tb.players[leg].clear(tb.ctx, now)
		}
	}
	tb.ops = ops
	for i, o := range ops {
		tb.opAt = i
		p := tb.player(o.leg, conns, other)
		if p == nil {
			if o.pcm == nil {
				tb.completed = append(tb.completed, markDone{o.mark, true})
			} else {
				tb.dropped(int64(len(o.pcm)))
			}
			continue
		}
		if o.pcm != nil {
			p.play(tb.ctx, o.pcm, now)
		} else {
			p.mark(tb.ctx, o.mark, now)
		}
	}
	tb.ops, tb.opAt = nil, 0
	var infos [2]TalkbackLegInfo
	for leg, p := range tb.players {
		if p != nil {
			soon(p.tick(tb.ctx, time.Now()))
			infos[leg] = p.info()
		}
	}
	tb.mu.Lock()
	tb.legInfo = infos
	tb.mu.Unlock()
	tb.resolveMarks()
	if tb.idleSources() {
		// Sources idle past talkbackIdle give up their parties.
		soon(now.Add(talkbackIdle))
	}
	return next
}

// idleSources reports whether a source may be released for idleness later.
func (tb *talkback) idleSources() bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, s := range tb.sources {
		if s.idleRelease() {
			return true
		}
	}
	return false
}

// idleRelease: only a receiver without a connection of its own (TLV) is let
// go for idleness; a stream receiver holds its parties while connected.
func (s *TalkbackSource) idleRelease() bool { return s.loose }

// player is the player of leg, made at first use: a stream player when the
// fork's module streams (far: the fork's own connection; other: the bug
// started on the bridged channel), else a file player on the leg's channel.
func (tb *talkback) player(leg Leg, conns [2]MediaConn, other otherLeg) legPlayer {
	if p := tb.players[leg]; p != nil {
		return p
	}
	var p legPlayer
	switch tb.inject {
	case InjectStream:
		if leg == LegFar {
			p = newStreamPlayer(tb, leg, conns[leg])
		} else {
			p = newStreamPlayer(tb, leg, conns[leg])
			p.(*streamPlayer).needBug = true
		}
	case InjectPlayAudio, InjectStreamAudio:
		if tb.control == nil {
			return nil
		}
		p = newFilePlayer(tb, leg)
	default:
		return nil
	}
	tb.players[leg] = p
	return p
}

// dropped counts audio no player could take.
func (tb *talkback) dropped(n int64) {
	tb.mu.Lock()
	tb.refused += n
	tb.mu.Unlock()
}

// releaseLocked2 releases what of s's queue is due now (real time, from its
// pacing clock, plus the players' lead), with its marks, as ops for its
// parties' players; it returns when more is due.
func (tb *talkback) releaseLocked2(s *TalkbackSource, now time.Time) ([]op, time.Time) {
	var ops []op
	q := s.queuedLocked()
	// Marks at the front: the audio before them has been released.
	carry := int64(0)
	emitMarks := func() {
		for len(s.qmarks) > 0 && s.qmarks[0].at <= s.released {
			if tb.inject == InjectStream {
				// The audio queued behind it leaves with it (streamMarkCarry).
				carry = int64(streamMarkCarry.Seconds() * float64(tb.rate))
			}
			m := s.qmarks[0]
			s.qmarks = s.qmarks[1:]
			id := tb.newMarkLocked(s, m.name)
			for _, leg := range []Leg{LegFar, LegOther} {
				if s.to.Has(leg) {
					ops = append(ops, op{leg: leg, mark: id})
					tb.marks[id].legs++
				}
			}
		}
	}
	emitMarks()
	if q == 0 {
		return ops, time.Time{}
	}
	rate := float64(tb.rate)
	lead := tb.lead()
	// A new burst when nothing released before still plays.
	if s.t0.IsZero() || now.After(s.t0.Add(time.Duration(float64(s.burst)/rate*float64(time.Second)))) {
		s.t0, s.burst = now, 0
	}
	allowed := int64((now.Sub(s.t0)+lead).Seconds()*rate) - s.burst
	for (allowed > 0 || carry > 0) && s.queuedLocked() > 0 {
		allowed = max(allowed, carry)
		carry = 0
		n := min(allowed, s.queuedLocked())
		if len(s.qmarks) > 0 { // up to the next mark
			n = min(n, s.qmarks[0].at-s.released)
		}
		if n > 0 {
			pcm := append([]int16(nil), s.q[s.qh:s.qh+int(n)]...)
			s.qh += int(n)
			s.released += n
			s.burst += n
			allowed -= n
			tb.queued -= n
			for _, leg := range []Leg{LegFar, LegOther} {
				if s.to.Has(leg) {
					ops = append(ops, op{leg: leg, pcm: pcm})
				}
			}
			tb.played += n
			if s.epc != nil {
				s.epc.TalkbackPlayedMs.Add(uint64(tb.samplesMs(n)))
			}
		}
		emitMarks()
	}
	if s.queuedLocked() == 0 {
		s.q, s.qh = s.q[:0], 0
		return ops, time.Time{}
	}
	// The next frame's worth is due then.
	at := s.t0.Add(time.Duration(float64(s.burst+int64(tb.rate)/50)/rate*float64(time.Second)) - lead)
	return ops, at
}

// lead is how far ahead of real time the players take audio: the streaming
// module buffers (and plays out) what it gets; the file player cuts chunks
// ahead of their turn.
func (tb *talkback) lead() time.Duration {
	if tb.inject == InjectStream {
		return streamLead
	}
	return fileLead
}

func (tb *talkback) newMarkLocked(s *TalkbackSource, name string) uint64 {
	tb.next++
	tb.marks[tb.next] = &pendingMark{src: s, name: name}
	return tb.next
}

// markDone is what a player says of a mark: the audio before it was played
// (or cleared). Called on the goroutine.
func (tb *talkback) markDone(id uint64, cleared bool) {
	tb.completed = append(tb.completed, markDone{id, cleared})
}

// resolveMarks echoes the marks every player of has answered.
func (tb *talkback) resolveMarks() {
	if len(tb.completed) == 0 {
		return
	}
	type echo struct {
		s       *TalkbackSource
		name    string
		cleared bool
	}
	var echoes []echo
	tb.mu.Lock()
	for _, d := range tb.completed {
		m := tb.marks[d.id]
		if m == nil {
			continue
		}
		m.cleared = m.cleared || d.cleared
		m.legs--
		if m.legs > 0 {
			continue
		}
		delete(tb.marks, d.id)
		m.src.pending--
		if !m.src.closed {
			echoes = append(echoes, echo{m.src, m.name, m.cleared})
		}
	}
	tb.completed = tb.completed[:0]
	tb.mu.Unlock()
	for _, e := range echoes {
		e.s.echoOne(e.name, e.cleared)
	}
}

// finishMarks echoes every mark still pending as cleared (the fork ended).
func (tb *talkback) finishMarks() {
	tb.mu.Lock()
	marks := tb.marks
	tb.marks = map[uint64]*pendingMark{}
	tb.mu.Unlock()
	for _, m := range marks {
		if m.src.echo != nil && !m.src.closed {
			m.src.echo(m.name, true)
		}
	}
}

// legPlayer is how one leg's audio gets into the switch. Its methods run on
// the fork's talk-back goroutine, in order.
type legPlayer interface {
	// play takes the next audio (PCM at the talk-back rate).
	play(ctx context.Context, pcm []int16, now time.Time)
	// mark: tell markDone(id) once what was played before it was heard.
	mark(ctx context.Context, id uint64, now time.Time)
	// clear drops everything it holds and stops what plays, at once; every
	// pending mark is done, cleared.
	clear(ctx context.Context, now time.Time)
	// event is a switch event of the fork (or connReady).
	event(ctx context.Context, e any, now time.Time)
	// tick does timed work; it returns when it wants to tick again (zero:
	// when something happens).
	tick(ctx context.Context, now time.Time) time.Time
	// close stops what plays, for good.
	close(ctx context.Context)
	// info describes the player for the API.
	info() TalkbackLegInfo
}

// TalkbackInfo is a fork's talk-back state, for the API, the console and
// fs_cli.
type TalkbackInfo struct {
	Injection string               `json:"injection"`
	Rate      int                  `json:"rate"`
	QueuedMs  int64                `json:"queued_ms"`
	PlayedMs  int64                `json:"played_ms"`
	ClearedMs int64                `json:"cleared_ms"`
	RefusedMs int64                `json:"refused_ms"`
	Refused   uint64               `json:"refused"` // messages refused
	LastMark  string               `json:"last_mark,omitempty"`
	Sources   []TalkbackSourceInfo `json:"sources"`
	Legs      []TalkbackLegInfo    `json:"legs,omitempty"`
}

// TalkbackSourceInfo is one receiver speaking.
type TalkbackSourceInfo struct {
	Endpoint string `json:"endpoint"`
	To       string `json:"to"`
	QueuedMs int64  `json:"queued_ms"`
	Marks    int    `json:"marks_pending"`
	LastMark string `json:"last_mark,omitempty"`
}

// TalkbackLegInfo is one leg's player.
type TalkbackLegInfo struct {
	Leg        string `json:"leg"`
	Channel    string `json:"channel,omitempty"`
	Player     string `json:"player"` // stream | file
	InFlightMs int64  `json:"in_flight_ms"`
	State      string `json:"state,omitempty"`
}

// info is the talk-back's state (any goroutine).
func (tb *talkback) info() *TalkbackInfo {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	in := &TalkbackInfo{Injection: string(tb.inject), Rate: tb.rate, QueuedMs: tb.samplesMs(tb.queued), PlayedMs: tb.samplesMs(tb.played),
		ClearedMs: tb.samplesMs(tb.cleared), RefusedMs: tb.samplesMs(tb.refused), Refused: tb.refusedMsgs, LastMark: tb.lastMark,
		Sources: []TalkbackSourceInfo{}}
	if in.Injection == "" {
		in.Injection = "none"
	}
	for _, s := range tb.sources {
		in.Sources = append(in.Sources, TalkbackSourceInfo{Endpoint: s.endpoint, To: s.to.String(), QueuedMs: tb.samplesMs(s.queuedLocked()),
			Marks: s.pending, LastMark: s.lastMark})
	}
	for _, li := range tb.legInfo {
		if li.Player != "" {
			in.Legs = append(in.Legs, li)
		}
	}
	return in
}

// more reports whether audio for leg follows in the round under way.
func (tb *talkback) more(leg Leg) bool {
	for _, o := range tb.ops[tb.opAt+1:] {
		if o.leg == leg && o.pcm != nil {
			return true
		}
	}
	return false
}

// speaks reports whether any of targets may talk back.
func speaks(targets []Target) bool {
	for _, t := range targets {
		if targetTalkback(t) != TalkbackOff {
			return true
		}
	}
	return false
}

// targetTalkback is who a target's receiver may speak to.
func targetTalkback(t Target) TalkbackTo {
	switch o := t.Options.(type) {
	case TLVOptions:
		return o.Talkback
	case StreamOptions:
		if o.ep != nil {
			return o.ep.Talkback
		}
	}
	return TalkbackOff
}

// injectionOf is how a fork of a module that did not say (typed by hand)
// plays talk-back: as files, which both modules write.
func injectionOf(source string) Injection {
	if source == SourceAudioStream {
		return InjectStreamAudio
	}
	return InjectPlayAudio
}

// SetMediaConn gives the fork the module's connection, which talk-back
// writes into (the ingest, once the fork has begun).
func (f *Fork) SetMediaConn(c MediaConn) {
	f.mu.Lock()
	f.media = c
	tb, serves := f.tb, f.spec.TalkbackFor
	f.mu.Unlock()
	if tb != nil {
		tb.setConn(LegFar, c)
	}
	if serves != "" {
		if o := f.registry.talkbackOwner(f); o != nil {
			o.setConn(LegOther, c)
		}
	}
}

// ModuleText is a text message the module sent after the fork began
// (jambonz's mark echoes).
func (f *Fork) ModuleText(b []byte) {
	f.mu.Lock()
	tb, serves := f.tb, f.spec.TalkbackFor
	f.mu.Unlock()
	leg := LegFar
	if serves != "" {
		tb, leg = f.registry.talkbackOwner(f), LegOther
	}
	if tb != nil {
		tb.event(moduleText{leg: leg, b: append([]byte(nil), b...)})
	}
}

// TalkbackEvent hands the fork a switch event of its talk-back (off the
// event reader: it never waits).
func (f *Fork) TalkbackEvent(e CallEvent) {
	if tb := f.talkback(); tb != nil {
		tb.event(e)
	}
}

// talkbackLegEnded: a bug serving a fork's other leg has ended.
func (f *Fork) talkbackLegEnded() {
	f.mu.Lock()
	serves := f.spec.TalkbackFor
	f.mu.Unlock()
	if serves == "" {
		return
	}
	if o := f.registry.talkbackOwner(f); o != nil {
		o.setConn(LegOther, nil)
	}
}

// talkbackOwner is the talk-back of the fork that f, a bug on its bridged
// channel, serves.
func (r *Registry) talkbackOwner(f *Fork) *talkback {
	f.mu.Lock()
	owner := f.spec.TalkbackFor
	f.mu.Unlock()
	for _, o := range r.Get(owner) {
		if tb := o.talkback(); tb != nil {
			return tb
		}
	}
	return nil
}

// Summary is the talk-back state in one line (fs_cli's status):
// "talk-back stream 8000 Hz: queued 1.2s played 34.5s cleared 2.0s refused 0.0s (0); far: twilio+wss://bot/media; last mark m7 played".
func (in *TalkbackInfo) Summary() string {
	s := fmt.Sprintf("talk-back %s %d Hz: queued %.1fs played %.1fs cleared %.1fs refused %.1fs (%d)", in.Injection, in.Rate,
		float64(in.QueuedMs)/1000, float64(in.PlayedMs)/1000, float64(in.ClearedMs)/1000, float64(in.RefusedMs)/1000, in.Refused)
	for _, src := range in.Sources {
		s += fmt.Sprintf("; %s: %s queued %.1fs marks %d", src.To, src.Endpoint, float64(src.QueuedMs)/1000, src.Marks)
	}
	for _, l := range in.Legs {
		s += fmt.Sprintf("; %s leg %s %s", l.Leg, l.Player, l.State)
		if l.Channel != "" {
			s += " " + l.Channel
		}
	}
	if in.LastMark != "" {
		s += "; last mark " + in.LastMark
	}
	return s
}
