package mediafork

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// How the orchestrator keeps a call's streams going (continuity.go): a fork
// whose media connection is lost is started again continuing its streams
// (its Continuation, kept on the call); after a restart, the resync finds the
// calls this instance served by their channel variables (ResumeVar,
// InstanceVar) and resumes them, placed on the media clock by what the
// instance's checkpoint says (Saved) or, without one, by the record's origin;
// streams that cannot go on are ended properly (EndStreams).

// Position is a live fork's media clock, as the checkpoint keeps it.
type Position struct {
	UUID   CallID
	Bug    string
	Rate   int
	Sent   int64     // the clock (bug samples) at the end of the last audio sent
	Clock  int64     // the clock
	At     time.Time // when the last frame arrived (wall); zero before any
	Why    GapReason // what opened a gap not announced yet (Clock > Sent)
	Digits uint32
	Paused bool
	// Suspended: the fork's media connection was lost and it waits to be
	// resumed: the clock stood still since At.
	Suspended bool
}

// Changes moves whenever a fork begins, ends or suspends, or a suspended
// one's continuation changes: the checkpoint writes then.
func (o *Orchestrator) Changes() uint64 { return o.registry.Changes() + o.contChanges.Load() }

// Positions are where the streams of the calls this orchestrator serves
// stand, for the checkpoint: its live forks' media clocks, and the
// continuations of its calls whose streams are suspended.
func (o *Orchestrator) Positions() []Position {
	ps := o.registry.Positions()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.calls {
		if c.cont == nil || c.spec == nil {
			continue
		}
		k := c.cont
		ps = append(ps, Position{UUID: c.uuid, Bug: c.spec.Bug, Rate: c.spec.Rate, Sent: k.Sent, Clock: k.Clock, At: k.At,
			Why: k.Reason, Digits: k.Digits, Paused: c.paused, Suspended: true})
	}
	return ps
}

// Positions are the media clocks of the live forks mediafork started (the
// ones a restart can resume), for the checkpoint.
func (r *Registry) Positions() []Position {
	forks := r.List()
	out := make([]Position, 0, len(forks))
	for _, f := range forks {
		f.mu.Lock()
		spec, streaming := f.spec, f.state == StateStreaming
		f.mu.Unlock()
		if !streaming || spec.Start.Nonce == "" {
			continue
		}
		clock, sent, at, why := f.mc.pub.load()
		p := Position{UUID: f.UUID, Bug: f.Bug, Rate: spec.Rate, Sent: sent, Clock: clock, Why: why,
			Digits: uint32(f.DTMFIn.Load()), Paused: f.Paused()}
		if r := spec.Resume; r != nil {
			p.Digits += r.Digits
		}
		if at != 0 {
			p.At = time.UnixMicro(at)
		}
		out = append(out, p)
	}
	return out
}

// Saved is what this instance's previous run left in its checkpoint: where
// the forks it served stood, and when it was last alive (it died then, give
// or take the checkpoint's heartbeat).
type Saved struct {
	Alive time.Time
	Forks []Position
}

func (s Saved) find(uuid CallID, bug string) (Position, bool) {
	for _, p := range s.Forks {
		if p.UUID == uuid && p.Bug == bug {
			return p, true
		}
	}
	return Position{}, false
}

// continuationAt is where the streams of a fork that stood at p when the
// checkpoint was written stood when its process died at alive: the frames
// went on coming (and being sent, unless it was paused with mode nothing)
// until then.
func (p Position) continuationAt(rec ResumeRecord, alive time.Time, paused bool) Continuation {
	c := Continuation{Identity: rec.Identity, Origin: rec.Origin, Digits: p.Digits, Paused: paused, At: p.At}
	if c.At.IsZero() {
		c.At = rec.Origin
	}
	if p.Suspended { // nothing came since: the gap began then, for its reason
		c.Sent, c.Clock, c.Reason = p.Sent, p.Clock, p.Why
		if c.Reason == 0 {
			c.Reason = GapMediaLost
		}
		return c
	}

	// The frames that came until the last heartbeat, whole: the clock stays
	// on the frame grid, and At is the last one's arrival.
	if alive.After(c.At) {
		n := (alive.Sub(c.At) + arrivalSlack) / defaultTick
		c.Clock = p.Clock + int64(n)*samplesIn(defaultTick, p.Rate)
		c.At = c.At.Add(n * defaultTick)
	} else {
		c.Clock = p.Clock
	}
	c.Sent, c.Reason = c.Clock, GapRestarted

	if p.Paused && rec.Spec.Pause != PauseSilence {
		c.Sent, c.Reason = p.Sent, firstCause(p.Why, GapPaused)
	} else if p.Clock > p.Sent {
		c.Sent, c.Reason = p.Sent, firstCause(p.Why, GapRestarted)
	}
	return c
}

// continuationFromOrigin is the best guess without a checkpoint: the streams
// ran from the origin until this process started (the earliest the old one
// can have died is unknown; the gap reported is then the time from this
// process's start to the first audio, a lower bound).
func continuationFromOrigin(rec ResumeRecord, started time.Time, paused bool) Continuation {
	clock := int64(0)
	if d := started.Sub(rec.Origin); d > 0 {
		frame := samplesIn(defaultTick, rec.Spec.Rate)
		clock = samplesIn(d, rec.Spec.Rate) / frame * frame
	}
	c := Continuation{Identity: rec.Identity, Origin: rec.Origin, Sent: clock, Clock: clock, At: started, Reason: GapRestarted, Paused: paused}
	if paused && rec.Spec.Pause != PauseSilence {
		c.Reason = GapPaused
	}
	return c
}

// continuationFromLoss is where the streams stood when the switch saw their
// media connection end at lost: the frames that began by then, the first at
// the origin (taking a frame in flight for sent rather than sending a
// number twice: a receiver may then be told one frame fewer missing than
// the numbers skipped).
func continuationFromLoss(rec ResumeRecord, lost time.Time, paused bool) Continuation {
	c := continuationFromOrigin(rec, lost, paused)
	if d := lost.Sub(rec.Origin); d >= 0 {
		frame := samplesIn(defaultTick, rec.Spec.Rate)
		c.Clock = (int64(d/defaultTick) + 1) * frame
		c.Sent = c.Clock
	}
	return c
}

// SetInstance names this instance on the calls it serves (InstanceVar).
// Set it before the switches connect.
func (o *Orchestrator) SetInstance(name string) {
	o.mu.Lock()
	o.instance = name
	o.mu.Unlock()
}

// SetSaved gives the orchestrator its previous run's checkpoint, for the
// resync to resume those forks. Set it before the switches connect.
func (o *Orchestrator) SetSaved(s Saved) {
	o.mu.Lock()
	o.saved = s
	o.mu.Unlock()
}

// HandOver makes the orchestrator leave every stream to the instance that
// comes next (mediafork restarting): Close ends no suspended stream, and the
// forks, handed over (Registry.HandOverAll), end none either.
func (o *Orchestrator) HandOver() {
	o.mu.Lock()
	o.handover = true
	o.mu.Unlock()
}

// resumeFromRecord looks at a live call the resync found without a fork:
// when it carries a resume record of this cluster (signed with its key)
// that this instance may resume, the fork is started again continuing its
// streams (resumed); handled when the call was such a call (resumed, or
// left to the instance serving it). Alone, an instance resumes the calls it served
// (InstanceVar, or its checkpoint says so); in a cluster, the caller has
// made sure no live instance serves the fork.
func (o *Orchestrator) resumeFromRecord(ctx context.Context, sw Switch, d ChannelData, held string) (handled, resumed bool) {
	uuid := d.UUID()
	v := d.Get("variable_" + ResumeVar)
	if v == "" {
		return false, false
	}
	rec, err := o.signer.OpenRecord(v, uuid)
	if err != nil {
		o.log.Warn("resync: the call's resume record is refused", "uuid", uuid, "error", err)
		return false, false
	}
	p := o.Policy()
	o.mu.Lock()
	instance, saved, started := o.instance, o.saved, o.started
	c := o.calls[uuid]
	busy := c != nil && (c.spec != nil || c.cont != nil)
	o.mu.Unlock()
	if busy {
		return true, false // its fork is starting, or being resumed already
	}
	rec.Spec.Server, rec.Spec.Bug = sw.Name(), p.BugName
	pos, inSaved := saved.find(uuid, rec.Spec.Bug)
	if by := d.Get("variable_" + InstanceVar); by != instance && !inSaved && o.clusterOf() == nil {
		o.log.Info("resync: the call's fork is served by another instance; left alone", "uuid", uuid, "instance", by)
		return true, false
	}
	paused := d.Get("variable_"+PausedVar) == "true"
	var cont Continuation
	from := "checkpoint"
	if inSaved {
		cont = pos.continuationAt(rec, saved.Alive, paused)
	} else {
		cont, from = o.continuationOf(uuid, rec, held, paused, started)
	}
	o.log.Info("resync: resuming the call's fork", "uuid", uuid, "stream_id", rec.Identity.StreamID, "from", from,
		"continuation", cont.String())
	spec := rec.Spec
	o.mu.Lock()
	c = o.track(uuid, sw.Name(), d)
	c.spec, c.cont, c.paused, c.attempts, c.record = &spec, &cont, paused, 0, v
	o.contChanges.Add(1)
	o.mu.Unlock()
	if err := o.launch(ctx, sw, spec); err != nil {
		o.retry(uuid, RetryStartFailed)
	}
	return true, true
}

// continuationOf is where the streams of a call's fork that no instance
// serves stand, the best this instance knows, and what that is from:
//   - held: the instance that served it suspended its streams and said
//     where they stood (a cluster's, as its claim was released): exact;
//   - lost: the switch said when the fork's connection ended (its
//     disconnect event, heard here): the streams ran from their origin to
//     then, in whole frames (exact to a frame or two: the origin is when
//     the fork began, the end the switch's clock);
//   - origin: they ran from their origin until since (this process's
//     start): the gap reported is then a lower bound.
func (o *Orchestrator) continuationOf(uuid CallID, rec ResumeRecord, held string, paused bool, since time.Time) (Continuation, string) {
	var h Continuation
	if held != "" && h.UnmarshalText([]byte(held)) == nil && h.Identity.StreamID == rec.Identity.StreamID &&
		h.Identity.Seed == rec.Identity.Seed {
		h.Paused = paused
		return h, "held"
	}
	o.mu.Lock()
	at, lost := o.lostAt[uuid]
	o.mu.Unlock()
	if lost && at.After(rec.Origin) {
		return continuationFromLoss(rec, at, paused), "lost"
	}
	return continuationFromOrigin(rec, since, paused), "origin"
}

// maxLost bounds lostAt: beyond, a disconnect is not remembered (its fork,
// if resumed here, is placed from its origin).
const maxLost = 100000

// noteLost remembers when the switch saw the media connection of a fork
// this process does not serve end (MediaDisconnected).
func (o *Orchestrator) noteLost(uuid CallID, at time.Time) {
	if at.IsZero() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.lostAt[uuid]; ok || len(o.lostAt) < maxLost {
		o.lostAt[uuid] = at
	}
}

// recoverStreams gives a call this leader retries, and whose fork another
// instance served, the continuation of its streams: held as the cluster
// knows it, else from the call's resume record (continuationOf). Without a
// record, the retry starts new streams.
func (o *Orchestrator) recoverStreams(ctx context.Context, sw Switch, uuid CallID, held string) {
	o.mu.Lock()
	c := o.calls[uuid]
	own := c == nil || c.cont != nil
	o.mu.Unlock()
	if own {
		return
	}
	h, err := sw.Dump(ctx, uuid)
	if err != nil {
		return
	}
	d := NewChannelData(h)
	v := d.Get("variable_" + ResumeVar)
	if v == "" {
		return
	}
	rec, err := o.signer.OpenRecord(v, uuid)
	if err != nil {
		o.log.Warn("retry: the call's resume record is refused; new streams", "uuid", uuid, "error", err)
		return
	}
	paused := d.Get("variable_"+PausedVar) == "true"
	cont, from := o.continuationOf(uuid, rec, held, paused, time.Now())
	o.log.Info("retry: continuing the streams another instance served", "uuid", uuid, "stream_id", rec.Identity.StreamID,
		"from", from, "continuation", cont.String())
	o.mu.Lock()
	if c == o.calls[uuid] && c.cont == nil {
		c.cont, c.paused, c.record = &cont, paused, v
		o.contChanges.Add(1)
	}
	o.mu.Unlock()
}

// endSuspended ends the streams of a call's suspended fork for reason (its
// call is gone, its resume was given up, it was stopped), and forgets them.
// Called without o.mu.
func (o *Orchestrator) endSuspended(uuid CallID, reason EndReason) {
	o.mu.Lock()
	c := o.calls[uuid]
	var spec *Spec
	var cont *Continuation
	if c != nil && c.cont != nil && c.spec != nil {
		spec, cont = c.spec, c.cont
		c.cont = nil
		o.contChanges.Add(1)
	}
	o.mu.Unlock()
	if cont != nil {
		o.registry.EndStreams(*spec, *cont, reason)
	}
}

// forget unsets a call's resume record once its streams have ended for good
// while the call goes on: no instance may resume them.
func (o *Orchestrator) forget(server string, uuid CallID) {
	sw := o.sw(server)
	if sw == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sw.SetVar(ctx, uuid, ResumeVar, ""); err != nil {
		o.log.Debug("cannot unset the resume record", "uuid", uuid, "error", err)
	}
}

// Errors of PauseFork.
var ErrNotLive = errors.New("no fork streams on the call")

// PauseFork pauses (on) or resumes the fork of a call: its audio (and DTMF)
// stops leaving mediafork at its next frame, or goes on after a gap of reason
// 3; with the profile's pause: silence, silence is sent meanwhile. The pause
// holds across a lost media connection and a restart (PausedVar). by says
// who asked, for the audit log line. It returns whether the state changed.
func (o *Orchestrator) PauseFork(ctx context.Context, uuid CallID, on bool, by string) (bool, error) {
	forks := o.registry.Get(uuid)
	o.mu.Lock()
	c := o.calls[uuid]
	suspended := c != nil && c.cont != nil
	changed := false
	server := ""
	if c != nil && (c.spec != nil || suspended) {
		changed = c.paused != on
		c.paused, server = on, c.server
		if suspended {
			c.cont.Paused = on
		}
	}
	o.mu.Unlock()
	if len(forks) == 0 && !suspended {
		return false, fmt.Errorf("%w: %s", ErrNotLive, uuid)
	}
	streams := []uint32{}
	for _, f := range forks {
		if on {
			changed = f.Pause() || changed
		} else {
			changed = f.Resume() || changed
		}
		streams = append(streams, f.StreamID)
		if server == "" {
			server = f.Info().Server
		}
	}
	what := "resumed"
	if on {
		what = "paused"
	}
	// The audit trail: who, which call, which streams, when (the line's time).
	o.log.Info("audit: fork "+what, "uuid", uuid, "by", by, "stream_ids", streams, "changed", changed)
	if sw := o.sw(server); sw != nil {
		if err := sw.SetVar(ctx, uuid, PausedVar, fmt.Sprint(on)); err != nil {
			o.log.Warn("cannot record the pause on the call", "uuid", uuid, "error", err)
		}
		sw.Log(ctx, "NOTICE", fmt.Sprintf("mediafork: fork %s %s by %s", uuid, what, by))
	}
	return changed, nil
}

// EndStreams ends the streams of a fork that no longer runs, from its spec
// and continuation alone (any process can): each output sends its end after
// its last packet (TLV end packets, RTP's BYE). A suspended fork whose call
// hung up, whose resume was given up or that was stopped ends so.
func (r *Registry) EndStreams(spec Spec, cont Continuation, reason EndReason) {
	f := &Fork{UUID: spec.UUID, Bug: spec.Bug, StreamID: cont.Identity.StreamID, Identity: cont.Identity, registry: r,
		state: StateStarting, detached: true, done: make(chan struct{}), log: r.log.With("uuid", spec.UUID, "bug", spec.Bug)}
	spec.Resume = &cont
	if err := f.Begin(spec, spec.Targets); err != nil {
		f.log.Warn("cannot end the suspended fork's streams", "error", err)
		return
	}
	f.Finish(reason)
}

// ContinuationSource gives the ingest the continuation of a resumed fork
// whose credential does not carry it (Spec.Resumed): the orchestrator.
type ContinuationSource interface {
	ContinuationOf(ctx context.Context, uuid CallID, st Start) (Continuation, error)
}

// ContinuationOf implements ContinuationSource: this orchestrator's own
// continuation of the call's streams (exact) when it issued st; else one made
// from the call's channel variables (its resume record and pause; placed by
// the time: the streams are taken to have run until now, so the gap
// reported is the time to the first audio, a lower bound). HA can do better
// (the module's disconnect event says when the streams stopped).
func (o *Orchestrator) ContinuationOf(ctx context.Context, uuid CallID, st Start) (Continuation, error) {
	o.mu.Lock()
	c := o.calls[uuid]
	if c != nil && c.start == st && c.cont != nil {
		k := *c.cont
		k.Paused = c.paused
		o.mu.Unlock()
		return k, nil
	}
	sws := make([]Switch, 0, len(o.switches))
	for _, sw := range o.switches {
		sws = append(sws, sw)
	}
	o.mu.Unlock()
	for _, sw := range sws {
		h, err := sw.Dump(ctx, uuid)
		if err != nil {
			continue
		}
		d := NewChannelData(h)
		rec, err := o.signer.OpenRecord(d.Get("variable_"+ResumeVar), uuid)
		if err != nil {
			return Continuation{}, err
		}
		return continuationFromOrigin(rec, time.Now(), d.Get("variable_"+PausedVar) == "true"), nil
	}
	return Continuation{}, fmt.Errorf("no switch knows call %s", uuid)
}

// arrivalSlack: a frame that arrived this much after its time still counts
// as arrived by then (the jitter of the module's frames).
const arrivalSlack = 5 * time.Millisecond
