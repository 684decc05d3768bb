package mediafork

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// State is where a fork is in its life.
type State string

// States, as the API reports them.
const (
	StateStarting  State = "starting"  // created; no audio yet
	StateStreaming State = "streaming" // signaling sent, audio flowing
	StateEnded     State = "ended"
	StateFailed    State = "failed"
)

// Spec is everything a fork needs: whose audio, where it goes, how it is encoded
// and what its signaling says.
type Spec struct {
	UUID    CallID `json:"uuid"`
	Bug     string `json:"bug,omitempty"`
	Source  string `json:"source,omitempty"` // the module streaming it: SourceAudioFork (""), SourceAudioStream
	Server  string `json:"server,omitempty"`
	Profile string `json:"profile,omitempty"`
	// Trigger is what asked for the fork; Rule the rule that decided it, if any.
	Trigger Trigger  `json:"trigger,omitempty"`
	Rule    string   `json:"rule,omitempty"`
	To      []string `json:"to,omitempty"` // ad-hoc destinations as asked for
	// Targets are where the audio goes, in which protocol and format: the
	// profile's endpoints and To, resolved and checked once, when the fork was
	// asked for. A fork mediafork started carries them signed, so a later DNS
	// change cannot move its audio. TLV targets whose resolved formats are
	// equal share one output stream.
	Targets  []Target `json:"targets,omitempty"`
	Params            // mix, rate, encoding, frame_ms
	Metadata Metadata `json:"metadata"`
	// Injection is how talk-back gets into the switch, decided by the
	// module that streams the fork (talkback.go): signed with the rest.
	Injection Injection `json:"injection,omitempty"`
	// TalkbackFor is set on a bug mediafork started on the channel bridged
	// to a fork's, only to stream that fork's talk-back into it (jambonz's
	// module): the uuid of the fork it serves. Its own audio goes nowhere.
	TalkbackFor CallID `json:"talkback_for,omitempty"`
	// Pause is what the fork sends while paused (its profile's pause).
	Pause PauseMode `json:"pause,omitempty"`
	// Resume, when set, makes the fork continue the streams of an earlier
	// fork of the call (their identity, sequences and media clock) instead
	// of starting new ones. A credential carries it, signed; where the
	// module's URL has no room for it (mod_audio_fork's 690 bytes), the
	// credential says Resumed only, and the ingest asks the orchestrator
	// that issued it (ContinuationSource).
	Resume  *Continuation `json:"resume,omitempty"`
	Resumed bool          `json:"rs,omitempty"`

	Start Start `json:"-"` // which start of the fork, for forks mediafork started
}

// Fork is one tap of one call: its identity, outputs, destinations, counters
// and end. The ingest connection that carries its audio owns the per-frame path
// (Write); anyone may ask it to Stop or hand it a DTMF digit.
type Fork struct {
	UUID     CallID
	Bug      string
	StreamID uint32   // Identity.StreamID: its first TLV output's
	Identity Identity // what its outputs' identities derive from

	registry *Registry
	log      *slog.Logger

	mu        sync.Mutex // guards the fields below; never taken per frame
	spec      Spec
	state     State
	started   time.Time
	lastErr   string
	reason    EndReason
	onStop    func(EndReason) // closes the media connection
	finished  bool
	suspended bool          // it ended without ending its streams (Finish)
	cont      *Continuation // where they stood then
	handover  atomic.Bool   // HandOver: suspend whatever the end
	detached  bool          // EndStreams': not in the registry, ends streams that exist

	zeros []byte // silence for a paused fork (PauseSilence), owned by Write's goroutine

	eps     []*dest         // set once by Begin under mu; read freely by the owner of Write after
	epc     []*destCounters // likewise, parallel to eps: each one's counters for this fork, and its label's
	epOwner []Target        // likewise, parallel to eps: the target each was opened for
	outs    []forkOutput    // likewise: one per output (plan order)
	targets []Target        // likewise: the targets it sends to
	ids     []uint32        // likewise: the stream ids claimed for TLV outputs after the first
	streams []*streamOutput // likewise: its stream outputs, whose writers Finish stops and joins
	tb      *talkback       // likewise: its talk-back, when an endpoint may speak
	tlvTB   []*tlvSpeaker   // likewise: its TLV outputs that may speak
	media   MediaConn       // the module's connection, for talk-back (SetMediaConn)

	dmu sync.Mutex // guards dq's queue; never taken per frame unless a digit waits
	dq  dtmfQueue
	// ctl says what the media path must look at (ctl* bits): digits queued,
	// a pause, a gap to announce, a resumed fork's first frame. Its one load
	// per frame is the media path's only look at anything set elsewhere.
	ctl atomic.Uint32

	// Owned by the goroutine that calls Write.
	batch  *Batch   // the batch of the Write under way (nil: send at once)
	qb     *Batch   // the batch qs belong to
	qs     []*queue // eps' queues in qb
	one    [1][]byte
	own    [1]owner
	chans  int   // channels interleaved in Write's PCM, set by Begin
	serves bool  // a talk-back bug (Spec.TalkbackFor): its audio goes nowhere
	meter  meter // level per channel, for the console and the logger
	mc     mediaClock
	// listener, when set, gets a copy of every frame (listen-in): Write
	// checks it once per frame and never waits for it.
	listener atomic.Pointer[Listener]

	FramesIn   atomic.Uint64
	BytesIn    atomic.Uint64
	PacketsOut [3]atomic.Uint64 // by direction RX, TX, MIXED
	BytesOut   [3]atomic.Uint64
	Drops      atomic.Uint64    // packets not sent, per destination
	DropsBy    [3]atomic.Uint64 // Drops by direction RX, TX, MIXED
	SendErrors atomic.Uint64    // of those, the ones that were errors, not a full buffer
	DTMFIn     atomic.Uint64    // digits handed to the outputs
	DTMFDrops  atomic.Uint64    // digits dropped: the queue was full
	Gaps       atomic.Uint64    // gaps announced on the outputs
	Dropped    atomic.Uint64    // frames dropped while paused

	stopReason atomic.Uint32 // a requested end reason, 0 when none
	done       chan struct{}
}

// Info is a snapshot of a fork for the API and logs.
type Info struct {
	Spec
	StreamID  uint32    `json:"stream_id"`
	State     State     `json:"state"`
	StartedAt time.Time `json:"started_at"`
	Endpoints []string  `json:"endpoints"`
	// Outputs are the fork's outputs: TLV streams, one per distinct endpoint
	// format (the first one's stream id is StreamID), and one per RTP
	// endpoint, each with its protocol, identity and endpoints.
	Outputs    []OutputInfo      `json:"outputs,omitempty"`
	FramesIn   uint64            `json:"frames_in"`
	BytesIn    uint64            `json:"bytes_in"`
	PacketsOut map[string]uint64 `json:"packets_out"`
	BytesOut   map[string]uint64 `json:"bytes_out"`
	Drops      uint64            `json:"drops"`
	SendErrors uint64            `json:"send_errors"`
	DTMF       uint64            `json:"dtmf,omitempty"`       // digits sent on the outputs
	DTMFDrops  uint64            `json:"dtmf_drops,omitempty"` // digits dropped (a full queue)
	LastError  string            `json:"last_error,omitempty"`
	EndReason  string            `json:"end_reason,omitempty"`
	// Levels are the audio levels per direction the bug carries.
	Levels []Level `json:"levels,omitempty"`
	// Talkback is what its receivers send back into the call, when its
	// endpoints may.
	Talkback *TalkbackInfo `json:"talkback,omitempty"`
	// Paused: the fork drops its audio (or sends silence) until resumed.
	Paused bool `json:"paused,omitempty"`
	// Resumed: the fork continues the streams of an earlier fork of its
	// call; Suspended: it ended without ending its streams, which a later
	// fork continues.
	Resumed   bool   `json:"resumed,omitempty"`
	Suspended bool   `json:"suspended,omitempty"`
	Gaps      uint64 `json:"gaps,omitempty"`          // gaps announced
	Dropped   uint64 `json:"paused_frames,omitempty"` // frames dropped while paused
}

// EndpointNames are the fork's endpoints as operators write them, each with
// its protocol: "127.0.0.1:9000" (tlv), "rtp://127.0.0.1:5000", in the order
// of its targets, each once.
func (in Info) EndpointNames() []string {
	out := []string{}
	seen := map[string]bool{}
	for _, t := range in.Targets {
		if s := t.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	if len(in.Targets) == 0 {
		return append(out, in.Endpoints...)
	}
	return out
}

// Info returns the fork's state and counters.
func (f *Fork) Info() Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := Info{
		Spec: f.spec, StreamID: f.StreamID, State: f.state, StartedAt: f.started, LastError: f.lastErr,
		FramesIn: f.FramesIn.Load(), BytesIn: f.BytesIn.Load(), Drops: f.Drops.Load(), SendErrors: f.SendErrors.Load(),
		DTMF: f.DTMFIn.Load(), DTMFDrops: f.DTMFDrops.Load(),
		PacketsOut: map[string]uint64{}, BytesOut: map[string]uint64{}, Endpoints: []string{},
		Paused: f.Paused(), Resumed: f.spec.Resume != nil, Suspended: f.suspended, Gaps: f.Gaps.Load(), Dropped: f.Dropped.Load(),
	}
	in.Spec.Resume = nil // the continuation is the fork's start, not its description

	dirs := f.spec.Mix.Dirs()
	for _, o := range f.outs {
		oi := o.info(f.eps)
		dirs |= oi.Format.Directions
		in.Outputs = append(in.Outputs, oi)
	}
	for _, d := range dirs.List() {
		in.PacketsOut[d.String()] = f.PacketsOut[d-1].Load()
		in.BytesOut[d.String()] = f.BytesOut[d-1].Load()
	}
	listed := map[string]bool{}
	for _, t := range f.targets {
		if s := t.Addr.String(); !listed[s] { // one address taking two formats
			listed[s] = true
			in.Endpoints = append(in.Endpoints, s)
		}
	}
	for _, ep := range f.eps {
		if e := ep.lastError(); e != "" && in.LastError == "" {
			in.LastError = ep.addr.String() + ": " + e
		}
	}
	if f.reason != 0 {
		in.EndReason = f.reason.String()
	}
	in.Levels = f.appendLevels(nil, time.Now())
	if f.tb != nil {
		in.Talkback = f.tb.info()
	}
	return in
}

// State is the fork's state now.
func (f *Fork) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// Done is closed when the fork has ended.
func (f *Fork) Done() <-chan struct{} { return f.done }

// OnStop sets how Stop reaches the media connection (the ingest closes its
// WebSocket, whose reader then ends the fork).
func (f *Fork) OnStop(fn func(EndReason)) {
	f.mu.Lock()
	f.onStop = fn
	f.mu.Unlock()
}

// Begin starts streaming: it plans the outputs of targets (spec.Targets as
// resolved, or as pinned in a credential), opens their destinations and has
// each output send what its protocol sends first (TLV: one signaling packet
// per direction, RX before TX, each followed by its format packet). Called
// once, by the media connection.
func (f *Fork) Begin(spec Spec, targets []Target) error {
	if spec.Resume != nil && !f.detached && !f.registry.adopt(f, spec.Resume.Identity) {
		spec.Resume = nil // its identity is taken: new streams
	}
	// Stream targets name configured endpoints: found in this instance's
	// config (the credential carries no URL or header).
	targets, err := f.registry.lookupStreams(targets)
	if err == nil {
		spec.Targets, err = f.registry.lookupStreams(spec.Targets)
	}
	if err != nil {
		f.Fail(err)
		return err
	}
	pl, err := planOutputs(spec, targets)
	if err != nil {
		f.Fail(err)
		return err
	}
	eps, err := f.registry.open(pl.addrs)
	if err != nil {
		f.Fail(err)
		return err
	}
	f.registry.unhold(forkKey{f.UUID, f.Bug}) // a suspended predecessor's: the same sockets, opened above
	epc := newDestCounters(f.registry.endpointCounters(spec.Profile, pl.labels))
	// TLV stream ids: the fork's own for its first TLV output, claimed ones
	// (derived from its identity) for the others.
	var more []int
	firstTLV := -1
	for i, op := range pl.outs {
		if op.proto.Name() == ProtocolTLV {
			if firstTLV < 0 {
				firstTLV = i
			} else {
				more = append(more, i)
			}
		}
	}
	var ids []uint32
	if f.detached {
		// Ending streams that exist already: their ids, claimed or not.
		ids = make([]uint32, len(more))
		copy(ids, f.Identity.IDs)
		for k := range ids {
			if ids[k] == 0 {
				ids[k] = f.Identity.streamIDCandidate(more[k], 0)
			}
		}
	} else {
		ids = f.registry.claimIDs(f.Identity, more)
	}
	outs := make([]forkOutput, len(pl.outs))
	var streams []*streamOutput
	ext := f.registry.extensions()
	for i, op := range pl.outs {
		sid := uint32(0)
		if i == firstTLV {
			sid = f.StreamID
		}
		for k, j := range more {
			if j == i {
				sid = ids[k]
			}
		}
		c := OutputConfig{Identity: f.Identity.output(i, sid), Format: op.format, Mix: spec.Mix, Extensions: ext, Call: f.UUID, Bug: f.Bug, BugRate: spec.Rate}
		if r := spec.Resume; r != nil {
			// Every output completed its last packet when the streams
			// stopped: it stands at Sent in its own frames, rounded up.
			m := int64(max(spec.Rate/op.format.Rate, 1))
			frame := int64(max(op.format.Params(spec.Mix).FrameSamples(), 1))
			c.Resume = &OutputResume{Last: uint32(ceilDiv(ceilDiv(r.Sent, m), frame)), Digits: r.Digits}
		}
		if len(op.targets) > 0 {
			c.Target, c.Options = op.targets[0], op.targets[0].Options
		}
		switch p := op.proto.(type) {
		case DatagramProtocol:
			o := newOutput(f, p, FramerConfig{OutputConfig: c, Dirs: op.format.Directions.List()}, spec.Rate)
			o.targets, o.media, o.control = op.targets, op.media, op.control
			outs[i] = o
		case StreamProtocol:
			if f.detached {
				// Its connection closed when the streams were suspended:
				// there is nothing to end on it.
				continue
			}
			o, err := p.newStreamOutput(f, c)
			if err != nil {
				f.registry.release(eps)
				if !f.detached {
					f.registry.releaseIDs(ids)
				}
				f.Fail(err)
				return err
			}
			if so, ok := o.(*streamOutput); ok {
				so.epc = f.registry.endpointCounters(spec.Profile, op.targets[:1])[0]
				streams = append(streams, so)
			}
			outs[i] = o
		}
	}
	var tb *talkback
	if spec.TalkbackFor == "" && !f.detached && speaks(targets) {
		if spec.Injection == InjectNone {
			spec.Injection = injectionOf(spec.Source)
		}
		tb = newTalkback(f, spec, f.registry.talkbackSettings, f.registry.legControlFor(spec.Server))
	}
	var speakers []*tlvSpeaker
	if tb != nil {
		for _, o := range outs {
			do, ok := o.(*output)
			if !ok || do.protocol != ProtocolTLV || len(do.targets) == 0 {
				continue
			}
			if to := targetTalkback(do.targets[0]); to != TalkbackOff {
				i := do.media[do.dirs[0]][0]
				speakers = append(speakers, &tlvSpeaker{f: f, streamID: do.ident.StreamID, d: eps[i], allowed: to,
					format: do.format, epc: epc[i].label, name: do.targets[0].String()})
			}
		}
	}
	if f.detached {
		outs = slices.DeleteFunc(outs, func(o forkOutput) bool { return o == nil })
	}
	now := time.Now()
	f.mu.Lock()
	f.tb, f.tlvTB = tb, speakers
	if tb != nil && f.media != nil {
		tb.conns[LegFar] = f.media
	}
	spec.UUID, spec.Bug = f.UUID, f.Bug
	f.spec, f.started, f.state = spec, now, StateStreaming
	f.chans = spec.Mix.Channels()
	f.serves = spec.TalkbackFor != ""
	f.meter.start(now)
	f.eps, f.outs, f.ids, f.epc, f.targets = eps, outs, ids, epc, targets // under the lock: Info reads them from API goroutines
	if len(ids) > 0 {
		f.Identity.IDs = ids // a resumed fork takes the same
	}
	f.mc.begin(spec, now)
	f.streams = streams
	f.epOwner = pl.labels
	f.mu.Unlock()
	if spec.Resume != nil {
		f.ctl.Or(ctlResume)
		if spec.Resume.Paused {
			f.Pause()
		}
	}
	if f.detached {
		return nil // EndStreams: nothing starts, nothing is told
	}
	if spec.Resume == nil {
		f.registry.countStarted(spec.Trigger)
	}
	f.registry.changes.Add(1)
	for _, sp := range speakers {
		f.registry.speak(sp)
	}

	for i, o := range outs {
		o.start(spec.Metadata, now)
		if len(outs) > 1 {
			oi := o.info(eps)
			f.log.Info("fork output", "protocol", oi.Protocol, "stream_id", oi.StreamID, "directions", oi.Format.Directions.String(),
				"rate", oi.Format.Rate, "encoding", oi.Format.Encoding, "frame_ms", oi.Format.FrameMs, "endpoints", len(pl.outs[i].targets))
		}
	}
	if spec.Resume != nil {
		f.log.Info("fork resumed", "stream_id", f.StreamID, "outputs", len(outs), "reason", spec.Resume.Reason.String(),
			"sent_ms", durationOf(spec.Resume.Sent, spec.Rate).Milliseconds(), "paused", spec.Resume.Paused)
	}
	f.log.Info("fork streaming", "stream_id", f.StreamID, "mix", spec.Mix, "rate", spec.Rate,
		"encoding", spec.Encoding, "endpoints", len(targets), "outputs", len(outs), "channel_id", spec.Metadata.ChannelID)
	if h := f.registry.onStreaming; h != nil {
		f.registry.runHook(func() { h(f) })
	}
	return nil
}

// Write takes one WebSocket binary frame of PCM. Its packets go into b, the
// batch of the reader's round, which the reader flushes; with a nil b they are
// sent at once. A fork's writes go through one batch for its life (nil before
// it, at most). The per-frame path: no locks, no allocation.
func (f *Fork) Write(b *Batch, pcm []byte) {
	n := f.FramesIn.Add(1)
	f.BytesIn.Add(uint64(len(pcm)))
	if f.serves {
		return
	}
	var now int64
	if b != nil {
		now = b.now()
	} else {
		now = f.registry.now()
	}

	if b != f.qb && b != nil {
		f.attach(b)
	}
	f.batch = b
	if c := f.ctl.Load(); c&ctlResume != 0 {
		held, ok := f.settle(now, pcm)
		if !ok {
			return // held until the resumed streams' place is known
		}
		for _, h := range held {
			f.write(b, n, now, h)
		}
		return
	}
	f.write(b, n, now, pcm)
}

// write is Write once the frame is counted: frame n of the fork, arrived at
// now.
func (f *Fork) write(b *Batch, n uint64, now int64, pcm []byte) {
	if c := f.ctl.Load(); c != 0 {
		var send bool
		if pcm, send = f.attend(c, now, pcm); !send {
			return
		}
	}
	f.mc.advance(len(pcm), now, true)

	f.meter.observe(pcm, f.chans)
	if l := f.listener.Load(); l != nil {
		l.offer(pcm)
	}

	if obs := f.registry.latency; obs != nil && n%latencySample == 0 {
		// The frame was read just now; its packets have reached the kernel
		// when Write returns (no batch) or when the batch is flushed.
		t0 := time.Now()
		for _, o := range f.outs {
			o.write(pcm)
		}
		if b == nil {
			obs(time.Since(t0))
		} else {
			b.sample(t0)
		}
		return
	}
	for _, o := range f.outs {
		o.write(pcm)
	}
}

// latencySample: one frame in this many is timed (one a second at 20 ms).
const latencySample = 50

// attach makes b the batch of f's audio packets.
func (f *Fork) attach(b *Batch) {
	f.detach()
	f.qs = f.qs[:0]
	for _, d := range f.eps {
		f.qs = append(f.qs, b.queueFor(d))
	}
	f.qb = b
	for _, o := range f.outs {
		o.setScratch(b.scratch) // nil but for a shared batch
	}
}

// detach sends what f's batch holds for f's destinations and leaves it.
func (f *Fork) detach() {
	if f.qb == nil {
		return
	}
	for i, q := range f.qs {
		f.qb.leave(q)
		f.qs[i] = nil
	}
	f.qs, f.qb, f.batch = f.qs[:0], nil, nil
	for _, o := range f.outs {
		o.setScratch(nil)
	}
}

// sendOne sends pkt to d, f.eps[i], at once.
func (f *Fork) sendOne(i int, d *dest, dir Direction, pkt []byte) {
	f.one[0], f.own[0] = pkt, owner{f, dir, f.epc[i]}
	d.send(f.one[:], f.own[:])
	f.one[0], f.own[0] = nil, owner{}
}

// account counts one packet of dir as sent or dropped.
func (f *Fork) account(dir Direction, size int, err error) {
	if err == nil {
		f.PacketsOut[dir-1].Add(1)
		f.BytesOut[dir-1].Add(uint64(size))
		return
	}
	f.Drops.Add(1)
	f.DropsBy[dir-1].Add(1)
	if err != ErrBufferFull {
		f.SendErrors.Add(1)
	}
}

// Stop asks the fork to end for reason; the media connection finishes it.
func (f *Fork) Stop(reason EndReason) {
	f.stopReason.CompareAndSwap(0, uint32(reason))
	f.mu.Lock()
	fn, started := f.onStop, f.state == StateStreaming
	f.mu.Unlock()
	if fn != nil {
		fn(reason)
	} else if !started {
		f.Finish(reason) // nothing connected yet: nothing to flush
	}
}

// StopRequested is the reason Stop was called with, or 0.
func (f *Fork) StopRequested() EndReason { return EndReason(f.stopReason.Load()) }

// Finish ends the fork: each output's last partial packets and its protocol's
// end (TLV: one end packet per direction that had signaling), then its
// sockets go back. A reason given to Stop earlier
// wins over reason. Called by the owner of Write, once it has stopped writing.
func (f *Fork) Finish(reason EndReason) {
	if r := f.StopRequested(); r != 0 {
		reason = r
	}
	f.mu.Lock()
	if f.finished {
		f.mu.Unlock()
		return
	}
	f.finished = true
	streaming := f.state == StateStreaming
	f.mu.Unlock()

	why := f.suspendFor(reason)
	var cont Continuation
	if streaming {
		if f.ctl.Load()&ctlDTMF != 0 {
			if f.Paused() {
				f.dropDTMF()
			} else {
				f.drainDTMF() // digits that came after the last frame
			}
		}
		if why != 0 {
			// The streams go on in a later fork: each output completes its
			// packet under way (on the frame grid) and ends nothing.
			for _, o := range f.outs {
				o.complete()
			}
			cont = f.continuation(why)
		} else {
			for _, o := range f.outs {
				o.finish(reason)
			}
		}
	}
	for _, o := range f.streams {
		if streaming && why != 0 {
			o.suspend() // completed: its connection closes without the protocol's end
		} else {
			o.stop(reason) // did finish, or the fork failed after it began
		}
	}
	f.mu.Lock()
	tb := f.tb
	f.mu.Unlock()
	if tb != nil {
		tb.close() // nothing stays queued after the call's end
	}
	f.talkbackLegEnded()
	f.mu.Lock()
	if f.state != StateFailed {
		f.state = StateEnded
	}
	f.reason = reason
	if streaming && why != 0 {
		f.suspended, f.cont = true, &cont
	}
	f.mu.Unlock()
	f.detach()
	f.registry.silence(f.tlvTB)
	if streaming && why != 0 {
		f.registry.hold(forkKey{f.UUID, f.Bug}, f.eps)
	} else {
		f.registry.release(f.eps)
	}
	if f.detached {
		f.log.Info("fork's streams ended", "stream_id", f.StreamID, "reason", reason.String())
		f.closeDone()
		return
	}
	f.registry.releaseIDs(f.ids)
	f.registry.remove(f, f.Info())
	f.registry.changes.Add(1)
	if streaming && why != 0 {
		f.log.Info("fork suspended", "stream_id", f.StreamID, "reason", reason.String(), "gap_reason", cont.Reason.String(),
			"sent_ms", durationOf(cont.Sent, f.spec.Rate).Milliseconds(), "clock_ms", durationOf(cont.Clock, f.spec.Rate).Milliseconds(),
			"frames_in", f.FramesIn.Load(), "drops", f.Drops.Load())
	} else {
		f.log.Info("fork ended", "stream_id", f.StreamID, "reason", reason.String(), "frames_in", f.FramesIn.Load(), "drops", f.Drops.Load())
	}
	f.closeDone()
	if h := f.registry.onEnd; h != nil {
		f.registry.runHook(func() { h(f, reason) })
	}
	for _, h := range f.registry.endObservers {
		f.registry.runHook(func() { h(f, reason) })
	}
}

// closeDone closes done: at once, or once every stream connection has said
// its last (stop, close) and its goroutines have returned, and talk-back has
// stopped what it plays — never on the media path, which is free again now.
func (f *Fork) closeDone() {
	f.mu.Lock()
	tb := f.tb
	f.mu.Unlock()
	if len(f.streams) == 0 && tb == nil {
		close(f.done)
		return
	}
	f.registry.runHook(func() {
		for _, o := range f.streams {
			o.wait()
		}
		if tb != nil {
			tb.wait()
		}
		close(f.done)
	})
}

// suspendFor says whether a fork ending for reason suspends its streams
// rather than ending them, and why (0: it ends them). A fork handed over
// suspends (GapRestarted); one whose media connection was lost (not closed)
// does when mediafork started it (its start can be resumed, by the
// orchestrator that started it or by any instance from the channel
// variables); one typed by hand ends.
func (f *Fork) suspendFor(reason EndReason) GapReason {
	if f.detached {
		return 0
	}
	if f.handover.Load() {

		return GapRestarted
	}
	f.mu.Lock()
	resumable := f.spec.Start.Nonce != "" && f.state == StateStreaming
	f.mu.Unlock()
	if reason == EndMediaLost && resumable && f.StopRequested() == 0 {
		return GapMediaLost
	}
	return 0
}

// HandOver stops the fork without ending its streams: its media connection
// closes (as for a shutdown) and its continuation is kept (Continuation) for
// the instance that resumes it.
func (f *Fork) HandOver() {
	f.handover.Store(true)
	f.Stop(EndShutdown)
}

// Continuation is where the fork's streams stood when it ended without
// ending them (a suspended fork); false for any other.
func (f *Fork) Continuation() (Continuation, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cont == nil {
		return Continuation{}, false
	}
	return *f.cont, true
}

// Fail marks the fork failed with err; Finish still has to be called.
func (f *Fork) Fail(err error) {
	f.mu.Lock()
	f.state, f.lastErr = StateFailed, err.Error()
	f.mu.Unlock()
	f.log.Warn("fork failed", "error", err)
}
