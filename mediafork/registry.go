package mediafork

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Errors from Claim.
var (
	ErrDuplicate = errors.New("a fork with this uuid and bug is already live")
	ErrFull      = errors.New("too many live forks")
)

type forkKey struct {
	uuid CallID
	bug  string
}

// Registry is the one map of live forks, with the only lock on it. Nothing on the
// per-frame path touches it.
type Registry struct {
	transport Transport
	log       *slog.Logger
	ext       Extensions // TLV's extension packets: fork.end_packet, format_packet, dtmf_packet

	onStreaming  func(*Fork)
	onEnd        func(*Fork, EndReason)
	endObservers []func(*Fork, EndReason) // besides onEnd: the console's
	latency      func(time.Duration)      // ingest-to-send time of sampled frames
	hooks        sync.WaitGroup           // hook calls running

	totals Totals // of the forks that have ended; guarded by mu
	recent []Info // the last ended forks, newest last; guarded by mu

	mu    sync.Mutex
	max   int
	forks map[forkKey]*Fork
	// occupied is closed while forks holds a fork (Occupied), replaced by
	// an open one when the last leaves.
	occupied chan struct{}
	ids      map[uint32]struct{}

	dmu   sync.Mutex // guards dests and held; taken when forks begin and end
	dests map[netip.AddrPort]*dest
	// held are the destinations of suspended forks, kept open for the fork
	// that resumes them: its packets leave from the same sockets, so a
	// receiver that pins a stream to its source address sees nothing move.
	held map[forkKey]heldDests

	metrics metricState // labelled counters (metrics.go)

	clock func() int64 // monoNow; tests set a clock of their own before forks start

	changes atomic.Uint64 // forks begun, ended or suspended: the checkpoint writes when it moves

	// Stream protocols' (stream_output.go): how their connections are made,
	// the configured endpoints credentials refer to, panics recovered on
	// their connections' paths.
	streamDialer    StreamDialer
	streamEndpoints atomic.Pointer[Destinations]
	streamPanics    atomic.Uint64

	// Talk-back's (talkback.go): its bounds, the switches' control of their
	// legs, and how a bug is started on a fork's bridged channel.
	talkbackSettings TalkbackSettings
	legControl       func(server string) LegControl
	talkbackLeg      func(ctx context.Context, f *Fork) (CallID, error)
	tlvTalkback      tlvTalkback
}

// SetTalkback sets the talk-back bounds. Set it before forks start.
func (r *Registry) SetTalkback(s TalkbackSettings) { r.talkbackSettings = s }

// SetLegControl sets how talk-back drives the legs of a fork's switch (by
// its name); without one, the file players cannot play. Set it before forks
// start.
func (r *Registry) SetLegControl(fn func(server string) LegControl) { r.legControl = fn }

// SetTalkbackLeg sets how the bug that streams a fork's talk-back into the
// channel bridged to it is started (jambonz's module); it returns that
// channel. Set it before forks start.
func (r *Registry) SetTalkbackLeg(fn func(ctx context.Context, f *Fork) (CallID, error)) {
	r.talkbackLeg = fn
}

func (r *Registry) legControlFor(server string) LegControl {
	if r.legControl == nil {
		return nil
	}
	return r.legControl(server)
}

// Changes counts the forks that began, ended or suspended so far: what the
// checkpoint is written for at once, besides once a second.
func (r *Registry) Changes() uint64 { return r.changes.Load() }

// now is the media path's clock (monoNow).
func (r *Registry) now() int64 {
	if r.clock != nil {
		return r.clock()
	}
	return monoNow()
}

// SetStreamDialer sets how stream outputs (twilio, audiofork) connect; without
// one, a fork with such an endpoint fails to begin. Set it before forks start.
func (r *Registry) SetStreamDialer(d StreamDialer) { r.streamDialer = d }

// SetStreamEndpoints sets the configured stream endpoints the targets of
// forks refer to (their profiles; the config's, at start and at each reload):
// a fork begins with the endpoint its credential names, as configured here,
// or fails when its fingerprint says it was configured otherwise where the
// fork was asked for.
func (r *Registry) SetStreamEndpoints(d *Destinations) { r.streamEndpoints.Store(d) }

// StreamPanics is how many panics were recovered on stream connections'
// paths (each ended its connection).
func (r *Registry) StreamPanics() uint64 { return r.streamPanics.Load() }

// NewRegistry holds at most max live forks, sending through transport.
// endPackets turns the end-packet extension on.
func NewRegistry(transport Transport, max int, endPackets bool, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{transport: transport, log: log, ext: Extensions{NoEnd: !endPackets}, max: max,
		forks: map[forkKey]*Fork{}, occupied: make(chan struct{}), ids: map[uint32]struct{}{}, dests: map[netip.AddrPort]*dest{},
		held: map[forkKey]heldDests{}}

}

// open returns the destinations for addrs, opening endpoints as needed: one per
// address, shared by every fork sending there. Every open is paired with a
// release of the same destinations.
func (r *Registry) open(addrs []netip.AddrPort) ([]*dest, error) {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	ds := make([]*dest, 0, len(addrs))
	for _, a := range addrs {
		d := r.dests[a]
		if d == nil {
			ep, err := r.transport.Open(a)
			if err != nil {
				r.releaseLocked(ds)
				return nil, fmt.Errorf("destination %s: %w", a, err)
			}
			d = &dest{addr: a, ep: ep, batch: max(1, ep.BatchSize())}
			r.dests[a] = d
		}
		d.refs++
		ds = append(ds, d)
	}
	return ds, nil
}

// release gives destinations back; the last user closes the endpoint. Nothing
// is pending for it: each fork flushes its batch's packets when it ends.
func (r *Registry) release(ds []*dest) {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	r.releaseLocked(ds)
}

func (r *Registry) releaseLocked(ds []*dest) {
	for _, d := range ds {
		d.refs--
		if d.refs == 0 {
			d.ep.Close()
			delete(r.dests, d.addr)
		}
	}
}

// holdFor is how long a suspended fork's destinations stay open for its
// resume (one that never comes here: another instance resumed it).
const holdFor = 10 * time.Minute

type heldDests struct {
	ds    []*dest
	until time.Time
}

// hold keeps a suspended fork's destinations open until the fork that
// resumes it (or ends its streams) opens them again (unhold), or holdFor.
func (r *Registry) hold(k forkKey, ds []*dest) {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	now := time.Now()
	for key, h := range r.held { // a few entries, a few times a call: no timer needed
		if now.After(h.until) {
			delete(r.held, key)
			r.releaseLocked(h.ds)
		}
	}
	if old, ok := r.held[k]; ok {
		r.releaseLocked(old.ds)
	}
	r.held[k] = heldDests{ds: ds, until: now.Add(holdFor)}
}

// unhold gives back what hold kept for k, once its successor has opened its
// own (the same, when the targets are).
func (r *Registry) unhold(k forkKey) {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	if h, ok := r.held[k]; ok {
		delete(r.held, k)
		r.releaseLocked(h.ds)
	}
}

// OpenEndpoints is the number of destination endpoints open now.
func (r *Registry) OpenEndpoints() int {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	return len(r.dests)
}

// Claim creates the fork for uuid and bug, with a fresh identity.
func (r *Registry) Claim(uuid CallID, bug string) (*Fork, error) {
	return r.ClaimWith(uuid, bug, Identity{})
}

// ClaimWith creates the fork for uuid and bug with identity id (its outputs'
// stream ids, SSRCs, ... derive from it), chosen by whoever creates the fork;
// the zero Identity draws a fresh one. A stream id another live fork uses
// cannot be shared (receivers tell streams apart by it): the fork then gets a
// fresh identity, logged.
func (r *Registry) ClaimWith(uuid CallID, bug string, id Identity) (*Fork, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := forkKey{uuid, bug}
	if _, ok := r.forks[k]; ok {
		return nil, ErrDuplicate
	}
	if len(r.forks) >= r.max {
		return nil, ErrFull
	}
	if _, used := r.ids[id.StreamID]; used && id.StreamID != 0 {
		r.log.Warn("stream id in use by another fork: a fresh identity", "uuid", uuid, "stream_id", id.StreamID)
		id = Identity{}
	}
	for id.StreamID == 0 {
		id = NewIdentity()
		if _, used := r.ids[id.StreamID]; used {
			id.StreamID = 0
		}
	}
	f := &Fork{UUID: uuid, Bug: bug, StreamID: id.StreamID, Identity: id, registry: r, state: StateStarting,
		done: make(chan struct{}), log: r.log.With("uuid", uuid, "bug", bug)}
	f.spec.UUID, f.spec.Bug = uuid, bug
	r.forks[k] = f
	r.ids[id.StreamID] = struct{}{}
	if len(r.forks) == 1 {
		close(r.occupied)
	}
	return f, nil
}

// Occupied is closed while the registry holds a fork: what a periodic
// sampler of the forks waits on instead of ticking on an idle daemon.
func (r *Registry) Occupied() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.occupied
}

// adopt gives f, claimed and not begun, the identity of the streams it
// resumes (its signed description carries it; the claim, made before the
// description came, drew another). A stream id another live fork uses
// cannot be shared: f keeps its own (false), logged.
func (r *Registry) adopt(f *Fork, id Identity) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id.StreamID == 0 {
		return false
	}
	if id.StreamID != f.StreamID {
		if _, used := r.ids[id.StreamID]; used {
			r.log.Warn("stream id in use by another fork: new streams", "uuid", f.UUID, "stream_id", id.StreamID)
			return false
		}
		delete(r.ids, f.StreamID)
		r.ids[id.StreamID] = struct{}{}
	}
	f.mu.Lock()
	f.StreamID, f.Identity = id.StreamID, id
	f.mu.Unlock()
	return true
}

// SetFormatPackets turns the format-packet extension on (the default) or off:
// off, a stream is ForkStream's byte for byte (with end and DTMF packets off
// too). Set it before forks start.
func (r *Registry) SetFormatPackets(on bool) { r.ext.NoFormat = !on }

// SetGapPackets turns the gap-packet extension on (the default) or off
// (fork.gap_packet). Set it before forks start.
func (r *Registry) SetGapPackets(on bool) { r.ext.NoGap = !on }

// SetDTMFPackets turns the DTMF-packet extension on (the default) or off
// (fork.dtmf_packet). Set it before forks start.
func (r *Registry) SetDTMFPackets(on bool) { r.ext.NoDTMF = !on }

// extensions are the TLV extension packets r's forks send.
func (r *Registry) extensions() Extensions { return r.ext }

// RecentEnded is how many ended forks the registry remembers for the API.
const RecentEnded = 100

func (r *Registry) remove(f *Fork, last Info) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := forkKey{f.UUID, f.Bug}
	if r.forks[k] == f {
		delete(r.forks, k)
		delete(r.ids, f.StreamID)
		if len(r.forks) == 0 {
			r.occupied = make(chan struct{})
		}
	}
	r.totals.add(f, last)
	outcome := last.EndReason
	if last.State == StateFailed {
		outcome = string(StateFailed)
	}
	r.totals.Ended[outcome]++
	if len(r.recent) == RecentEnded {
		r.recent = append(r.recent[:0], r.recent[1:]...)
	}
	r.recent = append(r.recent, last)
}

// Totals are counters summed over forks.
type Totals struct {
	FramesIn, BytesIn, Drops, SendErrors uint64
	PacketsOut, BytesOut                 [3]uint64         // by direction RX, TX, MIXED
	Ended                                map[string]uint64 // ended forks by outcome (end reason, or "failed")
}

func (t *Totals) add(f *Fork, in Info) {
	t.FramesIn += f.FramesIn.Load()
	t.BytesIn += f.BytesIn.Load()
	t.Drops += f.Drops.Load()
	t.SendErrors += f.SendErrors.Load()
	for i := range t.PacketsOut {
		t.PacketsOut[i] += f.PacketsOut[i].Load()
		t.BytesOut[i] += f.BytesOut[i].Load()
	}
	if t.Ended == nil {
		t.Ended = map[string]uint64{}
	}
}

// Totals returns the counters of every fork, live and ended, for metrics.
func (r *Registry) Totals() Totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.totals
	t.Ended = map[string]uint64{}
	for k, v := range r.totals.Ended {
		t.Ended[k] = v
	}
	for _, f := range r.forks {
		t.add(f, Info{})
	}
	return t
}

// Recent returns the last ended forks, newest last.
func (r *Registry) Recent() []Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Info(nil), r.recent...)
}

// SetLatencyObserver sets what is told, for sampled frames, the time from
// the frame's read to its packets' hand-off to the kernel (metrics). Set it before forks start.
func (r *Registry) SetLatencyObserver(fn func(time.Duration)) { r.latency = fn }

// SetHooks sets what is told when a fork starts streaming and when it ends.
// They run on their own goroutine, off the media path. Set them before forks
// start.
func (r *Registry) SetHooks(onStreaming func(*Fork), onEnd func(*Fork, EndReason)) {
	r.onStreaming, r.onEnd = onStreaming, onEnd
}

// ObserveEnd adds fn to what is told when a fork ends, besides the hook
// SetHooks set (the orchestrator's). It runs off the media path. Add
// observers before forks start.
func (r *Registry) ObserveEnd(fn func(*Fork, EndReason)) {
	r.endObservers = append(r.endObservers, fn)
}

// runHook calls a hook off the media path.
func (r *Registry) runHook(fn func()) {
	r.hooks.Add(1)
	go func() {
		defer r.hooks.Done()
		fn()
	}()
}

// WaitHooks waits for the hook calls under way (at shutdown).
func (r *Registry) WaitHooks() { r.hooks.Wait() }

// SetMax changes the live fork limit (reload).
func (r *Registry) SetMax(n int) {
	r.mu.Lock()
	r.max = n
	r.mu.Unlock()
}

// Get returns the live forks of a call.
func (r *Registry) Get(uuid CallID) []*Fork {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Fork
	for k, f := range r.forks {
		if k.uuid == uuid {
			out = append(out, f)
		}
	}
	return out
}

// Lookup returns the live fork of uuid and bug.
func (r *Registry) Lookup(uuid CallID, bug string) *Fork {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forks[forkKey{uuid, bug}]
}

// List returns every live fork.
func (r *Registry) List() []*Fork {
	r.mu.Lock()
	n := len(r.forks)
	r.mu.Unlock()
	return r.AppendForks(make([]*Fork, 0, n))
}

// AppendForks appends every live fork to dst (a periodic sampler reuses one
// slice).
func (r *Registry) AppendForks(dst []*Fork) []*Fork {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.forks {
		dst = append(dst, f)
	}
	return dst
}

// Len is the number of live forks.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.forks)
}

// HandOverAll stops every live fork without ending its streams (HandOver)
// and waits until they have stopped, or ctx is done.
func (r *Registry) HandOverAll(ctx context.Context) error {
	forks := r.List()
	for _, f := range forks {
		f.HandOver()
	}
	return waitDone(ctx, forks)
}

// StopAll asks every live fork to end for reason and waits until they have, or
// ctx is done.
func (r *Registry) StopAll(ctx context.Context, reason EndReason) error {
	forks := r.List()
	for _, f := range forks {
		f.Stop(reason)
	}
	return waitDone(ctx, forks)
}

func waitDone(ctx context.Context, forks []*Fork) error {

	for _, f := range forks {
		select {
		case <-f.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
