package mediafork

import (
	"log/slog"
	"net/netip"
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
	// Addrs are where the packets go: the profile's endpoints and To, resolved
	// and checked once, when the fork was asked for. A fork mediafork started
	// carries them signed, so a later DNS change cannot move its audio.
	Addrs []netip.AddrPort `json:"addrs,omitempty"`
	// Formats, when set, are parallel to Addrs: how each endpoint takes the
	// audio (the zero EndpointFormat: the fork's own Params). Endpoints whose
	// resolved formats are equal share one output stream.
	Formats  []EndpointFormat `json:"formats,omitempty"`
	Params                    // mix, rate, encoding, frame_ms
	Metadata Metadata         `json:"metadata"`
	Start    Start            `json:"-"` // which start of the fork, for forks mediafork started
}

// Fork is one tap of one call: its stream id, destinations, Packetizer, counters
// and end. The ingest connection that carries its audio owns the per-frame path
// (Write); anyone may ask it to Stop.
type Fork struct {
	UUID     CallID
	Bug      string
	StreamID uint32

	registry *Registry
	log      *slog.Logger

	mu       sync.Mutex // guards the fields below; never taken per frame
	spec     Spec
	state    State
	started  time.Time
	lastErr  string
	reason   EndReason
	onStop   func(EndReason) // closes the media connection
	finished bool

	eps  []*dest             // set once by Begin under mu; read freely by the owner of Write after
	epc  []*EndpointCounters // likewise, parallel to eps: each one's labelled counters
	outs []*output           // likewise: one per distinct format, outs[0] with StreamID
	ids  []uint32            // likewise: the stream ids of outs[1:]

	// Owned by the goroutine that calls Write.
	batch *Batch   // the batch of the Write under way (nil: send at once)
	qb    *Batch   // the batch qs belong to
	qs    []*queue // eps' queues in qb
	one   [1][]byte
	own   [1]owner
	chans int   // channels interleaved in Write's PCM, set by Begin
	meter meter // level per channel, for the console and the logger
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
	// Outputs are the fork's streams, one per distinct endpoint format, with
	// their stream ids (the first is StreamID) and endpoints.
	Outputs    []OutputInfo      `json:"outputs,omitempty"`
	FramesIn   uint64            `json:"frames_in"`
	BytesIn    uint64            `json:"bytes_in"`
	PacketsOut map[string]uint64 `json:"packets_out"`
	BytesOut   map[string]uint64 `json:"bytes_out"`
	Drops      uint64            `json:"drops"`
	SendErrors uint64            `json:"send_errors"`
	LastError  string            `json:"last_error,omitempty"`
	EndReason  string            `json:"end_reason,omitempty"`
	// Levels are the audio levels per direction the bug carries.
	Levels []Level `json:"levels,omitempty"`
}

// Info returns the fork's state and counters.
func (f *Fork) Info() Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := Info{
		Spec: f.spec, StreamID: f.StreamID, State: f.state, StartedAt: f.started, LastError: f.lastErr,
		FramesIn: f.FramesIn.Load(), BytesIn: f.BytesIn.Load(), Drops: f.Drops.Load(), SendErrors: f.SendErrors.Load(),
		PacketsOut: map[string]uint64{}, BytesOut: map[string]uint64{}, Endpoints: []string{},
	}
	dirs := f.spec.Mix.Dirs()
	for _, o := range f.outs {
		dirs |= o.format.Directions
	}
	for _, d := range dirs.List() {
		in.PacketsOut[d.String()] = f.PacketsOut[d-1].Load()
		in.BytesOut[d.String()] = f.BytesOut[d-1].Load()
	}
	listed := map[*dest]bool{}
	for _, ep := range f.eps {
		if listed[ep] {
			continue // one address taking two formats
		}
		listed[ep] = true
		in.Endpoints = append(in.Endpoints, ep.addr.String())
		if e := ep.lastError(); e != "" && in.LastError == "" {
			in.LastError = ep.addr.String() + ": " + e
		}
	}
	for _, o := range f.outs {
		oi := OutputInfo{StreamID: o.streamID, Format: o.format, Endpoints: make([]string, 0, len(o.eps))}
		for _, i := range o.eps {
			oi.Endpoints = append(oi.Endpoints, f.eps[i].addr.String())
		}
		in.Outputs = append(in.Outputs, oi)
	}
	if f.reason != 0 {
		in.EndReason = f.reason.String()
	}
	in.Levels = f.levels(time.Now())
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

// Begin starts streaming: it opens the destinations and, for each output
// (one per distinct endpoint format, spec.Formats being parallel to addrs),
// sends one signaling packet per direction, RX before TX, each followed by
// its format packet. Called once, by the media connection.
func (f *Fork) Begin(spec Spec, addrs []netip.AddrPort) error {
	pl, err := planOutputs(spec, addrs)
	if err != nil {
		f.Fail(err)
		return err
	}
	eps, err := f.registry.open(pl.addrs)
	if err != nil {
		f.Fail(err)
		return err
	}
	epc := f.registry.endpointCounters(spec.Profile, pl.addrs)
	ids := f.registry.claimIDs(len(pl.formats) - 1)
	outs := make([]*output, len(pl.formats))
	for i, fm := range pl.formats {
		id := f.StreamID
		if i > 0 {
			id = ids[i-1]
		}
		outs[i] = newOutput(f, id, spec.Mix, fm, spec.Rate)
	}
	for i, k := range pl.outOf {
		outs[k].eps = append(outs[k].eps, i)
	}
	now := time.Now()
	f.mu.Lock()
	spec.UUID, spec.Bug = f.UUID, f.Bug
	f.spec, f.started, f.state = spec, now, StateStreaming
	f.chans = spec.Mix.Channels()
	f.meter.start(now)
	f.eps, f.outs, f.ids, f.epc = eps, outs, ids, epc // under the lock: Info reads them from API goroutines
	f.mu.Unlock()
	f.registry.countStarted(spec.Trigger)

	format := f.registry.formatPackets()
	for _, o := range outs {
		fr := o.pk.Framer()
		buf := make([]byte, fr.MaxControlSize())
		for _, d := range o.dirs {
			o.sendNow(d, fr.Signaling(buf, d, spec.Metadata, now))
			if format { // right after its signaling, before its first audio
				o.sendNow(d, fr.Format(buf, d, o.format.Params(spec.Mix)))
			}
		}
		if len(outs) > 1 {
			f.log.Info("fork output", "stream_id", o.streamID, "directions", o.format.Directions.String(),
				"rate", o.format.Rate, "encoding", o.format.Encoding, "frame_ms", o.format.FrameMs, "endpoints", len(o.eps))
		}
	}
	f.log.Info("fork streaming", "stream_id", f.StreamID, "mix", spec.Mix, "rate", spec.Rate,
		"encoding", spec.Encoding, "endpoints", len(eps), "outputs", len(outs), "channel_id", spec.Metadata.ChannelID)
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
	f.meter.observe(pcm, f.chans)
	if l := f.listener.Load(); l != nil {
		l.offer(pcm)
	}
	if b != f.qb && b != nil {
		f.attach(b)
	}
	f.batch = b
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
		o.pk.scratch = b.scratch // nil but for a shared batch
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
		o.pk.scratch = nil
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

// Finish ends the fork: the last partial packet, one end packet per direction
// that had signaling, then its sockets go back. A reason given to Stop earlier
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

	if streaming {
		for _, o := range f.outs {
			o.flush()
		}
		if f.registry.endPackets {
			for _, o := range f.outs {
				fr := o.pk.Framer()
				buf := make([]byte, fr.MaxControlSize())
				for i, d := range o.dirs {
					o.sendNow(d, fr.End(buf, d, o.pk.LastSequence(i), reason))
				}
			}
		}
	}
	f.mu.Lock()
	if f.state != StateFailed {
		f.state = StateEnded
	}
	f.reason = reason
	f.mu.Unlock()
	f.detach()
	f.registry.release(f.eps)
	f.registry.releaseIDs(f.ids)
	f.registry.remove(f, f.Info())
	f.log.Info("fork ended", "stream_id", f.StreamID, "reason", reason.String(), "frames_in", f.FramesIn.Load(), "drops", f.Drops.Load())
	close(f.done)
	if h := f.registry.onEnd; h != nil {
		f.registry.runHook(func() { h(f, reason) })
	}
	for _, h := range f.registry.endObservers {
		f.registry.runHook(func() { h(f, reason) })
	}
}

// Fail marks the fork failed with err; Finish still has to be called.
func (f *Fork) Fail(err error) {
	f.mu.Lock()
	f.state, f.lastErr = StateFailed, err.Error()
	f.mu.Unlock()
	f.log.Warn("fork failed", "error", err)
}
