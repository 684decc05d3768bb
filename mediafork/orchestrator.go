package mediafork

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Switch is how the domain drives one FreeSWITCH through one media module
// (mod_audio_fork, mod_audio_stream): esl implements one per module over the
// event socket; tests implement it in memory.
type Switch interface {
	Name() string
	// Module names the media module that starts the forks: ModuleAudioFork or
	// ModuleAudioStream.
	Module() string
	StartFork(ctx context.Context, f ForkStart) error
	// StopFork stops the fork of uuid called bug (mod_audio_stream has one
	// per channel and ignores bug).
	StopFork(ctx context.Context, uuid CallID, bug string) error
	SetVar(ctx context.Context, uuid CallID, name, value string) error
	Log(ctx context.Context, level, text string) error
	Dump(ctx context.Context, uuid CallID) (map[string]string, error)
	AnsweredChannels(ctx context.Context) ([]CallID, error)
}

// Media modules a switch can fork with.
const (
	ModuleAudioFork   = "audio_fork"   // drachtio's mod_audio_fork (uuid_audio_fork)
	ModuleAudioStream = "audio_stream" // amigniter's mod_audio_stream (uuid_audio_stream)
	// jambonz's mod_audio_fork: drachtio's api, and bidirectional streaming
	// for talk-back (its arguments `true true <rate>`).
	ModuleAudioForkJambonz = "audio_fork_jambonz"
)

// ForkStart is what a switch is told to start: the module connects to URL and
// streams the call's audio as Mix at Rate. Metadata and Description are for
// its first text frame, the description under DescriptionKey; the module's
// adapter writes them as its command line allows, and refuses (*BadRequest)
// what would be longer than MaxMetadataFrame.
type ForkStart struct {
	UUID        CallID
	URL         string
	Mix         Mix
	Rate        int
	Bug         string // mod_audio_fork's bug name; mod_audio_stream has none
	Metadata    Metadata
	Description string // the signed description (Credential); "" for none
	// StreamBack, when not 0, is the rate talk-back is streamed down the
	// fork's connection at (jambonz's module, started bidirectionally).
	StreamBack int
}

// CallEvent is something that happened on a switch, in the domain's terms:
// esl turns FreeSWITCH's events into these.
type CallEvent interface{ callEvent() }

// The events the orchestrator acts on.
type (
	// CallAnswered: a channel was answered (CHANNEL_ANSWER).
	CallAnswered struct{ Data ChannelData }
	// CallHungUp: a channel is gone (CHANNEL_HANGUP_COMPLETE).
	CallHungUp struct{ UUID CallID }
	// CLICommand: an operator typed `mediafork <args>` in fs_cli.
	CLICommand struct{ Args []string }
	// MediaConnected: the module's WebSocket to the ingest is up.
	MediaConnected struct{ UUID CallID }
	// MediaConnectFailed: the module could not connect to the ingest.
	MediaConnectFailed struct {
		UUID   CallID
		Reason string
	}
	// MediaDisconnected: the module's WebSocket closed or dropped mid-call.
	MediaDisconnected struct {
		UUID   CallID
		Reason string
		// At is when the switch saw the connection end (the event's
		// Event-Date-Timestamp; zero when it has none): where the streams
		// stopped, for an instance that resumes them without knowing more.
		At time.Time
	}
	// BufferOverrun: the module dropped audio because the ingest lags.
	BufferOverrun struct{ UUID CallID }
)

func (CallAnswered) callEvent()       {}
func (CallHungUp) callEvent()         {}
func (CLICommand) callEvent()         {}
func (MediaConnected) callEvent()     {}
func (MediaConnectFailed) callEvent() {}
func (MediaDisconnected) callEvent()  {}
func (BufferOverrun) callEvent()      {}

// CredentialTTL is how long a started fork's URL stays valid: the time the
// module may take to connect, retries included.
const CredentialTTL = 10 * time.Minute

// Orchestrator decides which calls are forked and drives the switches: rules on
// answer, resync on (re)connect, fs_cli commands, the dialplan socket, retries,
// and the end of forks on hangup.
type Orchestrator struct {
	registry *Registry
	signer   *Signer
	log      *slog.Logger
	policy   atomic.Pointer[Policy]
	// OnLogger, when set, is told of `mediafork logger on|off` (to make sure
	// the summaries' info lines are not filtered out).
	OnLogger  func(on bool)
	summaries *Summaries

	mu       sync.Mutex
	switches map[string]Switch
	calls    map[CallID]*call
	failed   map[CallID]Info // calls whose fork was given up, until they end
	closed   bool
	timers   sync.WaitGroup

	retryCount retryCounters // metrics; guarded by mu
	// callsVersion changes whenever calls gains or loses a call (Calls).
	callsVersion atomic.Uint64
	// tbLegs are the bugs started on channels bridged to forks, to stream
	// their talk-back (talkback_orchestrator.go), by that channel.
	tbLegs map[CallID]*tbLeg

	cluster Cluster       // the instances it shares its switches with; nil: alone (cluster.go)
	quit    chan struct{} // closed by Close

	// Continuity (resume.go); guarded by mu.
	instance string    // this instance's name on the calls it serves
	saved    Saved     // the previous run's checkpoint
	started  time.Time // when this orchestrator was made
	handover bool      // stopping without ending streams

	contChanges atomic.Uint64 // continuations set or dropped (Changes)
	// lostAt: when the switch saw the media connection of a call's fork
	// end (MediaDisconnected), for a fork this process does not serve:
	// where its streams stopped, if this instance comes to resume them.
	// Bounded (maxLost); cleared when the call ends or its fork streams.
	lostAt map[CallID]time.Time
}

// call is an answered channel mediafork knows of.
type call struct {
	uuid     CallID
	server   string
	data     ChannelData
	spec     *Spec  // the fork wanted on it; nil for none
	start    Start  // the start of spec under way: its credential is the one honoured
	desc     string // the description start's credential signed (SignedDescription)
	admitted bool   // that credential has been used
	attempts int
	retry    *time.Timer
	// cont: the fork's streams are suspended (its media connection was
	// lost, or it is being resumed after a restart): the next start
	// continues them from here. paused: the call is paused (PauseFork).
	cont   *Continuation
	paused bool
	record string    // the resume record the call carries, once set
	seen   time.Time // when mediafork learnt of it
	// deciding: answered is applying the rules to it (resync's second
	// listing and the call's CHANNEL_ANSWER may both get there).
	deciding bool
}

// NewOrchestrator drives forks into registry, signing their URLs with signer.
func NewOrchestrator(registry *Registry, signer *Signer, p *Policy, log *slog.Logger) *Orchestrator {
	o := &Orchestrator{registry: registry, signer: signer, log: log.With("component", "orchestrator"),
		switches: map[string]Switch{}, calls: map[CallID]*call{}, failed: map[CallID]Info{}, quit: make(chan struct{}), started: time.Now(),
		lostAt: map[CallID]time.Time{}, tbLegs: map[CallID]*tbLeg{}}
	o.summaries = NewSummaries(registry, summaryEvery, log.With("component", "logger"))
	o.policy.Store(p)
	registry.SetHooks(o.forkStreaming, o.forkEnded)
	registry.SetLegControl(o.legControl)
	registry.SetTalkbackLeg(o.startTalkbackLeg)
	return o
}

// SetPolicy swaps a reloaded policy in; running forks are not touched.
func (o *Orchestrator) SetPolicy(p *Policy) { o.policy.Store(p) }

// Policy is the policy in force.
func (o *Orchestrator) Policy() *Policy { return o.policy.Load() }

// Close stops pending retries and waits for any running, and stops the
// summaries of `mediafork logger on`. Suspended streams end (reason 4),
// unless the orchestrator hands over (HandOver).
func (o *Orchestrator) Close() {
	o.summaries.Close()
	o.mu.Lock()
	if !o.closed {
		close(o.quit)
	}
	o.closed = true
	var suspended []*call
	for _, c := range o.calls {
		if c.retry != nil && c.retry.Stop() {
			o.timers.Done()
		}
		if c.cont != nil && !o.handover {
			suspended = append(suspended, c)
		}
	}
	o.mu.Unlock()
	o.timers.Wait()
	for _, c := range suspended {
		o.endSuspended(c.uuid, EndShutdown)
		o.forget(c.server, c.uuid)
	}
}

func (o *Orchestrator) sw(name string) Switch {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.switches[name]
}

// SwitchUp runs on every (re)connect, once esl has installed the fs_cli alias:
// resync: fork every answered call a rule matches that has no live fork, and
// end what hung up while the connection was down. In a cluster only the
// switch's leader resyncs it (and again when it becomes leader: Lead).
func (o *Orchestrator) SwitchUp(ctx context.Context, sw Switch) {
	name := sw.Name()
	o.mu.Lock()
	o.switches[name] = sw
	o.mu.Unlock()
	if !o.leads(name) {
		o.log.Info("standby for this switch: connected and subscribed; its leader resyncs it", "freeswitch", name)
		return
	}
	o.resync(ctx, sw)
}

// resync forks every answered call of sw a rule matches that has no live
// fork anywhere, and ends what hung up while the connection was down.
func (o *Orchestrator) resync(ctx context.Context, sw Switch) {
	name := sw.Name()
	live, err := sw.AnsweredChannels(ctx)
	if err != nil {
		o.log.Warn("resync: cannot list channels", "freeswitch", name, "error", err)
		return
	}
	up := map[CallID]bool{}
	for _, uuid := range live {
		up[uuid] = true
	}
	o.mu.Lock()
	var gone []CallID
	for uuid, c := range o.calls {
		if c.server == name && !up[uuid] {
			gone = append(gone, uuid)
		}
	}
	o.mu.Unlock()
	for _, uuid := range gone {
		o.log.Info("resync: call ended while disconnected", "uuid", uuid)
		o.hungUp(uuid)
	}
	forked, resumed := 0, 0
	for _, uuid := range live {
		switch o.resyncCall(ctx, sw, uuid, "") {
		case resyncForked:
			forked++
		case resyncResumed:
			resumed++
		}
	}
	o.log.Info("resync done", "freeswitch", name, "answered", len(live), "forked", forked, "resumed", resumed, "ended", len(gone))
	o.relistLater(name, up)
}

// RelistAfter is when resync lists the channels a second time. FreeSWITCH
// writes its channel table behind CHANNEL_ANSWER (28 ms later on 1.10.12): a
// call answered just before the event subscription is neither heard nor in
// the first listing. Calls answered since the subscription are the events'.
const RelistAfter = time.Second

// relistLater lists the switch's answered channels again after RelistAfter
// and resyncs those in neither that first listing nor heard of since.
func (o *Orchestrator) relistLater(name string, listed map[CallID]bool) {
	o.spawn(func() {
		t := time.NewTimer(RelistAfter)
		defer t.Stop()
		select {
		case <-t.C:
		case <-o.quit:
			return
		}
		sw := o.sw(name) // nil when down meanwhile: its next connection resyncs
		if sw == nil || !o.leads(name) {
			return
		}
		ctx, cancel := o.untilClose(10 * time.Second) // Close waits for this goroutine
		defer cancel()
		live, err := sw.AnsweredChannels(ctx)
		if err != nil {
			return
		}
		forked := 0
		for _, uuid := range live {
			o.mu.Lock()
			known := listed[uuid] || o.calls[uuid] != nil
			o.mu.Unlock()
			if !known && o.resyncCall(ctx, sw, uuid, "") != resyncNothing {
				forked++
			}
		}
		if forked > 0 {
			o.log.Info("resync: forked calls the first listing missed", "freeswitch", name, "forked", forked)
		}
	})
}

// resyncCall forks one answered call of sw that a rule matches and that has
// no live fork, here or (in a cluster) on another live instance; true when
// it started one.
//
// A call carrying a resume record has its fork resumed (resumeFromRecord):
// held is where its streams stood as the cluster knows it ("" unknown).
func (o *Orchestrator) resyncCall(ctx context.Context, sw Switch, uuid CallID, held string) resynced {
	if o.registry.Lookup(uuid, o.Policy().BugName) != nil {
		o.mu.Lock()
		o.track(uuid, sw.Name(), nil) // streaming since before: listed with its fork's data
		o.mu.Unlock()
		return resyncNothing
	}
	if o.servedElsewhere(ctx, uuid) {
		return resyncNothing
	}
	data, err := sw.Dump(ctx, uuid)
	if err != nil {
		return resyncNothing // gone since the list
	}
	d := NewChannelData(data)
	if handled, resumed := o.resumeFromRecord(ctx, sw, d, held); resumed {
		return resyncResumed
	} else if handled {
		return resyncNothing // left to the instance that serves it: never forked twice
	}
	if o.answered(ctx, sw.Name(), d) {
		return resyncForked
	}
	return resyncNothing
}

// What resyncCall did with a call.
type resynced int

const (
	resyncNothing resynced = iota
	resyncForked           // a rule forked it
	resyncResumed          // its fork's streams were resumed
)

// HandleEvent acts on one event of the switch called server. Events of one
// switch arrive one at a time, in order.
//
// In a cluster every instance hears every event of its switches; only the
// switch's leader acts on answers, fs_cli commands and media failures (the
// others' forks end with their calls all the same).
func (o *Orchestrator) HandleEvent(ctx context.Context, server string, e CallEvent) {
	switch e := e.(type) {
	case CallAnswered:
		if o.leads(server) {
			o.answered(ctx, server, e.Data)
		}
	case CallHungUp:
		o.hungUp(e.UUID)
	case CLICommand:
		if o.leads(server) {
			o.command(ctx, server, e.Args)
		}
	case MediaConnected:
		o.log.Debug("the module connected to the ingest", "uuid", e.UUID)
	case MediaConnectFailed:
		if !o.leads(server) {
			return
		}
		o.log.Warn("the module could not connect to the ingest", "uuid", e.UUID, "reason", e.Reason)
		if !o.wanted(e.UUID) {
			o.takeOver(e.UUID, server)
			return
		}
		o.retry(e.UUID, RetryConnectFailed)
	case MediaDisconnected:
		// Its WebSocket closed or dropped; when it was ours, the ingest's end
		// of the fork decides about a retry (forkEnded). A fork served by
		// another instance is only seen here.
		if len(o.registry.Get(e.UUID)) != 0 {
			return
		}
		o.noteLost(e.UUID, e.At)
		if !o.leads(server) {
			return
		}
		if !o.wanted(e.UUID) {
			o.takeOver(e.UUID, server)
			return
		}
		o.retry(e.UUID, RetryDisconnected)
	case BufferOverrun:
		o.log.Warn("buffer overrun: the ingest is not keeping up", "uuid", e.UUID)
	case DTMFReceived:
		// Handed to the call's forks' media paths (a bounded queue each:
		// nothing here waits for them).
		for _, f := range o.registry.Get(e.UUID) {
			f.DTMF(e)
		}
	case TalkbackFileReady, DisplaceStarted, DisplaceStopped, LegsBridged, LegsUnbridged:
		o.talkbackEvent(e)
	}
}

// answered applies the rules to an answered call; true when it started a fork.
func (o *Orchestrator) answered(ctx context.Context, server string, d ChannelData) bool {
	uuid := d.UUID()
	if uuid == "" {
		return false
	}
	o.mu.Lock()
	c := o.track(uuid, server, d)
	busy := c.spec != nil || c.deciding
	if !busy {
		c.deciding = true
	}
	o.mu.Unlock()
	if busy {
		return false
	}
	defer func() {
		o.mu.Lock()
		c.deciding = false
		o.mu.Unlock()
	}()
	sw := o.sw(server)
	if sw == nil {
		return false
	}
	spec, rule, err := o.Policy().resolve(ctx, Request{Trigger: TriggerRule, Server: server, Data: d}, true)
	if errors.Is(err, ErrNoRule) {
		return false
	}
	if err != nil {
		o.log.Warn("rule matched but the fork cannot be made", "uuid", uuid, "freeswitch", server, "error", err)
		return false
	}
	o.log.Info("rule matched", "rule", rule.Name, "uuid", uuid, "freeswitch", server)
	return o.startOn(ctx, sw, spec, d) == nil
}

func (o *Orchestrator) hungUp(uuid CallID) {
	o.endSuspended(uuid, EndHangup)
	o.mu.Lock()
	c := o.calls[uuid]
	if c != nil {
		delete(o.calls, uuid)
		o.callsVersion.Add(1)
	}
	delete(o.failed, uuid)
	delete(o.lostAt, uuid)
	if c != nil && c.retry != nil && c.retry.Stop() {
		o.timers.Done()
	}
	o.mu.Unlock()
	for _, f := range o.registry.Get(uuid) {
		f.Stop(EndHangup) // mod_audio_fork closes too; whichever comes first
	}
}

// Errors of the switches.
var (
	ErrNoSwitch          = errors.New("freeswitch not connected")
	ErrSwitchRefused     = errors.New("freeswitch refused the command")     // it answered -ERR
	ErrSwitchUnavailable = errors.New("freeswitch did not answer")          // connection lost, timed out
	ErrNotLeader         = errors.New("another instance leads this switch") // in a cluster
)

// startOn records spec, resolved by the policy, as the fork wanted on its call
// and starts it on sw. d is the call's data, when known.
func (o *Orchestrator) startOn(ctx context.Context, sw Switch, spec Spec, d ChannelData) error {
	spec.Server, spec.Bug = sw.Name(), o.Policy().BugName
	// A new fork starts new streams: any the call had suspended end first.
	o.endSuspended(spec.UUID, EndStopped)
	o.mu.Lock()
	c := o.track(spec.UUID, sw.Name(), d)
	c.spec, c.attempts = &spec, 0
	o.mu.Unlock()
	err := o.launch(ctx, sw, spec)
	if err != nil {
		o.mu.Lock()
		if c.spec == &spec { // not started again since
			c.spec, c.start = nil, Start{}
		}
		o.mu.Unlock()
	}
	return err
}

// launch asks the switch's module to start the fork, with a signed URL.
func (o *Orchestrator) launch(ctx context.Context, sw Switch, spec Spec) error {
	p := o.Policy()
	spec.Start = o.signer.NewStart()
	if sw.Module() == ModuleAudioStream { // the ingest reads the connection as this module's
		spec.Source = SourceAudioStream
	}
	streamBack := 0
	if speaks(spec.Targets) { // how its talk-back gets into the switch: signed with the rest
		switch sw.Module() {
		case ModuleAudioForkJambonz:
			spec.Injection, streamBack = InjectStream, TalkbackRate(spec.Rate)
		case ModuleAudioStream:
			spec.Injection = InjectStreamAudio
		default:
			spec.Injection = InjectPlayAudio
		}
	}
	// A call whose streams are suspended continues them.
	o.mu.Lock()
	if c := o.calls[spec.UUID]; c != nil && c.cont != nil {
		cont := *c.cont
		cont.Paused = c.paused
		spec.Resume = &cont
	}
	o.mu.Unlock()
	// The URL carries only the credential's token (about 200 bytes); the
	// description goes in the metadata frame (credential.go).
	cred := o.signer.Sign(spec, time.Now().Add(CredentialTTL))
	u := fmt.Sprintf("%s/fork/%s?cred=%s", strings.TrimRight(p.IngestURL, "/"), spec.UUID, cred.Token)
	if max := MaxForkURLOf(sw.Module()); len(u) > max {
		// Only an ingest.url of hundreds of bytes gets here now.
		err := &BadRequest{fmt.Errorf("fork URL of %d bytes is over the %d that %s takes: ingest.url (%d bytes) is too long", len(u), max, sw.Module(), len(p.IngestURL))}
		o.log.Warn("fork start failed", "uuid", spec.UUID, "freeswitch", sw.Name(), "module", sw.Module(), "error", err)
		return err
	}
	// Known before the command goes out: the module may connect before the
	// reply arrives.
	o.mu.Lock()
	if c := o.calls[spec.UUID]; c != nil {
		c.start, c.admitted, c.desc = spec.Start, false, cred.Description
	}
	o.mu.Unlock()
	if cl := o.clusterOf(); cl != nil {
		// The one start that may connect, recorded while this instance
		// leads the switch; the ingest that the module reaches claims it.
		if err := cl.Issue(ctx, sw.Name(), spec.UUID, spec.Bug, spec.Start); err != nil {
			o.log.Warn("fork start failed: not recorded in the cluster", "uuid", spec.UUID, "freeswitch", sw.Name(), "error", err)
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
	}
	fs := ForkStart{UUID: spec.UUID, URL: u, Mix: spec.Mix, Rate: spec.Rate, Bug: spec.Bug, Metadata: spec.Metadata, Description: cred.Description,
		StreamBack: streamBack}
	err := o.startFork(ctx, sw, fs)
	var bad *BadRequest
	if errors.As(err, &bad) && spec.Resume != nil {
		// No room in the metadata frame for the continuation: the
		// credential says Resumed only, and the ingest asks this
		// orchestrator (ContinuationSource).
		spec.Resume, spec.Resumed = nil, true
		cred = o.signer.Sign(spec, time.Now().Add(CredentialTTL))
		fs.URL = fmt.Sprintf("%s/fork/%s?cred=%s", strings.TrimRight(p.IngestURL, "/"), spec.UUID, cred.Token)
		fs.Description = cred.Description
		err = o.startFork(ctx, sw, fs)
	}
	if err != nil {
		o.log.Warn("fork start failed", "uuid", spec.UUID, "freeswitch", sw.Name(), "module", sw.Module(), "error", err)
		return err
	}
	o.log.Info("fork requested", "uuid", spec.UUID, "freeswitch", sw.Name(), "module", sw.Module(), "profile", spec.Profile, "to", len(spec.To))
	return nil
}

// startFork has the switch start fs; a start the module refuses because our
// fork is still attached from before (a mediafork restart, a dropped
// WebSocket: the module keeps it after its connection ends) stops that one
// and starts again. Other applications' forks are left alone.
func (o *Orchestrator) startFork(ctx context.Context, sw Switch, fs ForkStart) error {
	err := sw.StartFork(ctx, fs)
	if errors.Is(err, ErrSwitchRefused) && attachedIsOurs(ctx, sw, fs.UUID) {
		if sw.StopFork(ctx, fs.UUID, fs.Bug) == nil {
			err = sw.StartFork(ctx, fs)
		}
	}
	return err
}

// attachedIsOurs says whether the fork a refused start collided with may be
// stopped. mod_audio_fork's is ours by its bug name (stopping by name touches
// no other). mod_audio_stream has one unnamed stream per channel, which may
// be another application's: it is taken for ours only when a mediafork fork
// has streamed on the channel (mediafork_stream_id is set), i.e. one left
// attached by a server close or a mediafork restart.
func attachedIsOurs(ctx context.Context, sw Switch, uuid CallID) bool {
	if sw.Module() != ModuleAudioStream {
		return true
	}
	d, err := sw.Dump(ctx, uuid)
	return err == nil && d["variable_"+StreamIDVar] != ""
}

// StreamIDVar is the channel variable a fork's stream id is set in once it
// streams.
const StreamIDVar = "mediafork_stream_id"

// MaxForkURL is the longest fork URL a module takes: mod_audio_stream's
// libwsc, and mod_audio_fork's buffers, hold 4096 bytes.
const MaxForkURL = 4096

// MaxAudioForkURL is the longest fork URL mediafork gives mod_audio_fork.
// The module (drachtio 88e1465) splits the URL with std::regex, whose
// recursion overflows the stack of the thread running the api command from
// about 710 bytes (704 to 716 after the scheme, by content, whether api or
// bgapi): FreeSWITCH 1.10.12 segfaults and every call on it drops. Measured on
// the real switch (realswitch tests); the margin keeps clear of it. Hence the
// fork's description travels in the metadata, not the URL: a fork URL is
// ingest.url plus about 250 bytes, and only an ingest.url of hundreds of
// bytes can reach this bound.
const MaxAudioForkURL = 690

// MaxForkURLOf is the longest fork URL for module (jambonz's mod_audio_fork
// splits it with the same regex).
func MaxForkURLOf(module string) int {
	if module == ModuleAudioFork || module == ModuleAudioForkJambonz {
		return MaxAudioForkURL
	}
	return MaxForkURL
}

// ErrStillEnding: a fork was asked to stop and had not ended when Stop gave
// up waiting (StopWait, or the caller's deadline).
var ErrStillEnding = errors.New("the fork was asked to stop and has not ended yet")

// StopWait bounds how long Stop waits for the forks it stopped to end: the
// ingest closes their WebSocket and stops reading a few seconds later at the
// latest, whatever the module does.
const StopWait = 5 * time.Second

// Stop ends the forks of a call on request (end reason 2), stops its bug and
// waits until those forks have ended: their end packets sent and the uuid
// free, so that the call can be forked again as soon as Stop returns (a
// DELETE answered, then a POST for the same uuid). Errors: ErrStillEnding
// when they have not ended within StopWait or ctx.
func (o *Orchestrator) Stop(ctx context.Context, uuid CallID) error {
	wait, err := o.stop(ctx, uuid)
	if err == nil {
		err = wait(ctx)
	}
	return err
}

// stop is Stop but the wait: wait waits for the forks it stopped to end
// (within StopWait or ctx).
func (o *Orchestrator) stop(ctx context.Context, uuid CallID) (wait func(context.Context) error, err error) {
	o.endSuspended(uuid, EndStopped)
	forget := false
	o.mu.Lock()
	c := o.calls[uuid]
	server := ""
	if c != nil {
		server = c.server
		c.spec, c.start, c.paused = nil, Start{}, false
		if c.retry != nil && c.retry.Stop() {
			o.timers.Done()
		}
		c.retry = nil
		if c.record != "" {
			// Its streams end here for good: no instance may resume them.
			c.record = ""
			forget = true
		}
	}
	o.mu.Unlock()
	finish := func() {
		if forget {
			o.forget(server, uuid)
		}
	}

	forks := o.registry.Get(uuid)
	for _, f := range forks {
		f.Stop(EndStopped)
		if server == "" {
			server = f.Info().Server
		}
	}
	if sw := o.sw(server); sw != nil {
		if err := sw.StopFork(ctx, uuid, o.Policy().BugName); err != nil && len(forks) == 0 {
			finish()
			return nil, err
		}
	} else if len(forks) == 0 {
		finish()
		return nil, fmt.Errorf("no fork on %s", uuid)
	}
	// The fork leaves the registry once its end packets have gone (Finish):
	// answering before that would refuse a new start of the call with
	// ErrDuplicate, and a receiver could see the new fork's signaling before
	// the old one's end.
	return func(ctx context.Context) error {
		defer finish()
		wctx, cancel := context.WithTimeout(ctx, StopWait)
		defer cancel()
		for _, f := range forks {
			select {
			case <-f.Done():
			case <-wctx.Done():
				return fmt.Errorf("%w: %s", ErrStillEnding, uuid)
			}
		}
		return nil
	}, nil
}

// spawn runs fn on a goroutine of its own, which Close waits for; false (fn
// not run) once closed.
func (o *Orchestrator) spawn(fn func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.timers.Add(1)
	go func() {
		defer o.timers.Done()
		fn()
	}()
	return true
}

// retry starts a call's fork again after the backoff, while the call is up and
// attempts remain. why is one of RetryReasonList.
func (o *Orchestrator) retry(uuid CallID, why string) {
	p := o.Policy()
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls[uuid]
	if o.closed || c == nil || c.spec == nil || c.retry != nil {
		return
	}
	if o.cluster != nil && !o.cluster.Leads(c.server) {
		return // the switch's leader retries
	}
	if c.attempts >= p.RetryAttempts {
		o.log.Warn("fork given up", "uuid", uuid, "why", why, "attempts", c.attempts)
		o.retryCount.count(true, why)
		in := Info{Spec: *c.spec, State: StateFailed, Endpoints: []string{},
			LastError: fmt.Sprintf("%s; gave up after %d retries", why, c.attempts)}
		in.Server = c.server
		in.Spec.Resume = nil
		o.failed[uuid] = in
		if c.cont != nil || c.record != "" {
			// Its streams end: no instance may resume them.
			spec, cont, server := *c.spec, c.cont, c.server
			c.cont, c.record = nil, ""
			o.contChanges.Add(1)
			o.timers.Add(1)
			go func() {
				defer o.timers.Done()
				if cont != nil {
					o.registry.EndStreams(spec, *cont, EndMediaLost)
				}
				o.forget(server, uuid)
			}()
		}
		c.spec = nil
		return

	}

	c.attempts++
	o.retryCount.count(false, why)
	o.log.Info("fork will be retried", "uuid", uuid, "why", why, "attempt", c.attempts, "in", p.RetryBackoff)
	o.timers.Add(1)
	c.retry = time.AfterFunc(p.RetryBackoff, func() {
		defer o.timers.Done()
		o.mu.Lock()
		c.retry = nil
		spec := c.spec
		live := o.calls[uuid] == c
		o.mu.Unlock()
		sw := o.sw(c.server)
		if spec == nil || !live || sw == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cl := o.clusterOf(); cl != nil {
			// Not while a live instance serves it: its connection may be
			// ending there, or its instance dying (its claim then lapses
			// with its lease).
			wctx, wcancel := o.untilClose(cl.TTL() + 5*time.Second)
			held, err := cl.WaitUnserved(wctx, uuid, spec.Bug)
			wcancel()
			if err != nil || !o.leads(c.server) {
				o.log.Info("retry dropped: the fork is served elsewhere, or this instance no longer leads", "uuid", uuid, "error", err)
				return
			}
			o.recoverStreams(ctx, sw, uuid, held)
		}
		sw.StopFork(ctx, uuid, spec.Bug) // the failed bug may still be attached
		if err := o.launch(ctx, sw, *spec); err != nil {
			o.retry(uuid, RetryStartFailed)
		}
	})
}

// Admit implements CallLookup: a credential this process issued is honoured
// once, for the start of the fork it still wants. One issued by another
// mediafork sharing the key is that one's to judge (SECURITY.md).
func (o *Orchestrator) Admit(uuid CallID, _ string, st Start) error {
	if !o.signer.Issued(st) {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if l := o.tbLegs[uuid]; l != nil && l.start == st {
		if l.admitted {
			return fmt.Errorf("%w: already used", ErrStaleCredential)
		}
		l.admitted = true
		return nil
	}
	c := o.calls[uuid]
	switch {
	case c == nil:
		return fmt.Errorf("%w: call %s is gone", ErrStaleCredential, uuid)
	case c.spec == nil || c.start != st:
		return fmt.Errorf("%w: that fork of %s has ended or was started again", ErrStaleCredential, uuid)
	case c.admitted:
		return fmt.Errorf("%w: already used", ErrStaleCredential)
	}
	c.admitted = true
	return nil
}

// SignedDescription is the description this instance signed for the start
// st of uuid's fork ("" when it signed none, or the fork started again since).
func (o *Orchestrator) SignedDescription(uuid CallID, st Start) string {
	if !o.signer.Issued(st) {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if c := o.calls[uuid]; c != nil && c.start == st {
		return c.desc
	}
	return ""
}

// mine returns the call f is the wanted fork of, or nil: a fork typed by hand
// on the same uuid, or an old start, is not.
func (o *Orchestrator) mine(f *Fork) *call {
	st := f.Info().Start
	c := o.calls[f.UUID]
	if c == nil || st.Nonce == "" || c.start != st {
		return nil
	}
	return c
}

// forkStreaming: a fork's WebSocket is up and its signaling sent.
func (o *Orchestrator) forkStreaming(f *Fork) {
	info := f.Info()
	if info.TalkbackFor != "" {
		return // a talk-back bug: nothing of it on the channel
	}
	o.mu.Lock()
	c := o.mine(f)
	delete(o.lostAt, f.UUID)
	var record, instance string
	if info.Start.Nonce != "" {
		// A fork mediafork started, whichever instance started it: the
		// call carries what any instance needs to continue new streams,
		// and who serves them.
		if !info.Resumed {
			record = o.signer.SealRecord(ResumeRecord{Spec: info.Spec, Identity: f.Identity, Origin: f.origin()})
		}
		instance = o.instance
	}
	if c != nil {
		c.attempts = 0
		c.cont = nil // its streams go on: nothing is suspended now
		o.contChanges.Add(1)
		if record != "" {
			c.record = record
		}
		if c.paused != f.Paused() { // paused or resumed while it started
			if c.paused {
				f.Pause()
			} else {
				f.Resume()
			}
		}
	}
	o.mu.Unlock()
	sw := o.sw(info.Server)
	if sw == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	vars := [][2]string{{StreamIDVar, fmt.Sprint(f.StreamID)}, {ResumeVar, record}, {InstanceVar, instance}}
	for _, v := range vars {
		if v[1] == "" {
			continue
		}
		if err := sw.SetVar(ctx, f.UUID, v[0], v[1]); err != nil {
			o.log.Debug("uuid_setvar failed", "uuid", f.UUID, "var", v[0], "error", err)
		}
	}
	if info.Resumed {
		sw.Log(ctx, "NOTICE", fmt.Sprintf("mediafork: fork %s resumed, stream %d, %d endpoint(s)", f.UUID, f.StreamID, len(info.Endpoints)))
		return
	}
	sw.Log(ctx, "NOTICE", fmt.Sprintf("mediafork: fork %s started, stream %d, %d endpoint(s)", f.UUID, f.StreamID, len(info.Endpoints)))
}

// forkEnded: when the fork that ended is the one wanted on its call, a
// WebSocket lost mid-call is retried while the call is up; one that closed
// normally is no longer wanted. Any other fork on the uuid (typed by hand, a
// failed upgrade, an old start) changes nothing.
//
// A fork that suspended its streams (its media connection lost, or handed
// over) leaves its continuation on the call: the retry continues them.
func (o *Orchestrator) forkEnded(f *Fork, reason EndReason) {
	o.talkbackForkEnded(f)
	cont, suspended := f.Continuation()
	o.mu.Lock()
	c := o.mine(f)
	if c != nil && suspended {
		c.cont = &cont
		o.contChanges.Add(1)
	}

	if c != nil && reason != EndMediaLost && reason != EndShutdown {
		c.spec, c.start, c.record = nil, Start{}, ""
	}
	server := ""
	if c != nil {
		server = c.server
	}
	o.mu.Unlock()
	switch {
	case c == nil:
	case reason == EndMediaLost:
		o.retry(f.UUID, RetryMediaLost)
	case reason == EndShutdown && !suspended:
		// Ended for good by a shutdown: the next instance must not resume
		// what the receivers saw end.
		o.forget(server, f.UUID)
	}
}

// LookupCall finds a call's data for forks typed by hand (CallLookup).
func (o *Orchestrator) LookupCall(ctx context.Context, uuid CallID) (CallInfo, error) {
	o.mu.Lock()
	var data ChannelData
	server := ""
	if c := o.calls[uuid]; c != nil && c.data != nil {
		data, server = c.data, c.server
	}
	sws := make([]Switch, 0, len(o.switches))
	for _, sw := range o.switches {
		sws = append(sws, sw)
	}
	o.mu.Unlock()
	if data == nil {
		for _, sw := range sws {
			if h, err := sw.Dump(ctx, uuid); err == nil {
				data, server = NewChannelData(h), sw.Name()
				break
			}
		}
	}
	if data == nil {
		return CallInfo{}, fmt.Errorf("no switch knows call %s", uuid)
	}
	info := CallInfo{Server: server, Metadata: data.DefaultMetadata(), Profile: data.Get("variable_mediafork_profile")}
	if to := data.Get("variable_mediafork_to"); to != "" {
		info.To = splitList(to)
	}
	return info, nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
}
