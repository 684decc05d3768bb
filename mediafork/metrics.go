package mediafork

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
)

// Counters for metrics that need labels. They are kept so that the media path
// never looks a label up: a fork finds its endpoints' counters once, when it
// begins, and the packets that fail carry a pointer to them.

// AdhocEndpoint is the endpoint label of every destination that did not come
// from the config (API `to`, fs_cli, channel variables, URL query): those are
// chosen per call, and a label per call would grow without bound.
const AdhocEndpoint = "adhoc"

// MaxKnownEndpoints bounds the addresses KnownEndpoints records: config
// endpoints given by name may resolve to new addresses over time.
const MaxKnownEndpoints = 4096

// KnownEndpoints is the set of addresses the config's endpoints (profiles'
// endpoints, rules' `to`) resolved to, and the profile names seen: what may be
// a metrics label. It lives as long as the process, across reloads, so a
// label does not come and go with them.
type KnownEndpoints struct {
	mu       sync.Mutex
	addrs    map[netip.AddrPort]struct{}
	profiles map[string]struct{}
}

// NewKnownEndpoints returns an empty set.
func NewKnownEndpoints() *KnownEndpoints {
	return &KnownEndpoints{addrs: map[netip.AddrPort]struct{}{}, profiles: map[string]struct{}{}}
}

// add records that a config endpoint of profile ("" for a rule's `to`)
// resolved to a. A nil set records nothing.
func (k *KnownEndpoints) add(profile string, a netip.AddrPort) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if a.IsValid() && len(k.addrs) < MaxKnownEndpoints {
		k.addrs[a] = struct{}{}
	}
	if profile != "" && len(k.profiles) < MaxKnownEndpoints {
		k.profiles[profile] = struct{}{}
	}
}

// AddConfig records the literal addresses of p's profiles and rules, so that
// forks this process did not resolve itself (a credential from before a
// restart) are labelled by them too. Names are recorded when they resolve.
func (k *KnownEndpoints) AddConfig(p *Policy) {
	if k == nil || p == nil {
		return
	}
	add := func(profile, hp string) {
		if ap, err := netip.ParseAddrPort(hp); err == nil {
			k.add(profile, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
	if p.Destinations != nil {
		for name, prof := range p.Destinations.Profiles {
			k.add(name, netip.AddrPort{}) // the profile name, whatever its endpoints
			for _, hp := range prof.Endpoints {
				add(name, hp)
			}
		}
	}
	for _, r := range p.Rules {
		for _, hp := range r.To {
			add(r.Profile, hp)
		}
	}
}

// Label is the (profile, endpoint) pair of a fork of profile sending to a:
// the endpoint is the address when the config named it, else AdhocEndpoint;
// the profile is "" unless the config named it.
func (k *KnownEndpoints) Label(profile string, a netip.AddrPort) (string, string) {
	if k == nil {
		return "", AdhocEndpoint
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.profiles[profile]; !ok {
		profile = ""
	}
	if _, ok := k.addrs[a]; !ok {
		return profile, AdhocEndpoint
	}
	return profile, a.String()
}

// EndpointCounters count what did not reach one (profile, endpoint,
// protocol) label. Every destination of an endpoint (an RTP endpoint's
// streams and RTCP ports) counts under the endpoint's configured address.
type EndpointCounters struct {
	Profile, Endpoint string
	Protocol          Protocol      // bounded: the protocols table
	Drops             atomic.Uint64 // packets not sent: errors and full buffers
	SendErrors        atomic.Uint64 // of those, the errors (refused, unreachable)

	// A stream protocol's connections (twilio, audiofork): those that came
	// up, dials (and hellos) that failed, connections lost while up; and the
	// server's messages, accepted and refused.
	Connects, ConnectFailures, Disconnects atomic.Uint64
	ServerMessages, ServerRefused          atomic.Uint64

	// Talk-back from the endpoint's receiver: audio played (handed to the
	// switch), cleared (dropped by a clear or the call's end) and refused
	// (beyond talkback.max_queue, or not its party), in ms; and messages
	// refused.
	TalkbackPlayedMs, TalkbackClearedMs, TalkbackRefusedMs atomic.Uint64
	TalkbackRefused                                        atomic.Uint64
}

// count notes one packet that was not sent for err. c may be nil.
func (c *EndpointCounters) count(err error) {
	if c == nil {
		return
	}
	c.Drops.Add(1)
	if err != ErrBufferFull {
		c.SendErrors.Add(1)
	}
}

type endpointKey struct {
	profile, endpoint string
	protocol          Protocol
}

// metricState is the registry's labelled counters; guarded by its own lock,
// taken when forks begin and at scrapes, never per packet.
type metricState struct {
	mu        sync.Mutex
	known     *KnownEndpoints
	endpoints map[endpointKey]*EndpointCounters
	started   map[Trigger]uint64
}

// SetKnownEndpoints sets what decides the endpoint labels (nil: every
// endpoint is AdhocEndpoint). Set it before forks start.
func (r *Registry) SetKnownEndpoints(k *KnownEndpoints) {
	r.metrics.mu.Lock()
	r.metrics.known = k
	r.metrics.mu.Unlock()
}

// endpointCounters returns the counters of each destination for a fork of
// profile, by the target it was opened for (owners), making them as needed.
// They are never removed: the labels are bounded by the config and the
// protocols table.
func (r *Registry) endpointCounters(profile string, owners []Target) []*EndpointCounters {
	m := &r.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.endpoints == nil {
		m.endpoints = map[endpointKey]*EndpointCounters{}
	}
	out := make([]*EndpointCounters, len(owners))
	for i, t := range owners {
		p, e := m.known.Label(profile, t.Addr)
		k := endpointKey{p, e, t.Protocol}
		c := m.endpoints[k]
		if c == nil {
			c = &EndpointCounters{Profile: p, Endpoint: e, Protocol: t.Protocol}
			m.endpoints[k] = c
		}
		out[i] = c
	}
	return out
}

// Endpoints returns every endpoint label's counters, sorted.
func (r *Registry) Endpoints() []*EndpointCounters {
	m := &r.metrics
	m.mu.Lock()
	out := make([]*EndpointCounters, 0, len(m.endpoints))
	for _, c := range m.endpoints {
		out = append(out, c)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Profile != out[j].Profile {
			return out[i].Profile < out[j].Profile
		}
		if out[i].Endpoint != out[j].Endpoint {
			return out[i].Endpoint < out[j].Endpoint
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out
}

// Triggers are every Trigger, in the order metrics list them.
var Triggers = []Trigger{TriggerRule, TriggerSocket, TriggerCLI, TriggerAPI, TriggerIngest, TriggerTalkback}

// TriggerOther labels a fork whose trigger is not known (its credential came
// from a mediafork that did not say).
const TriggerOther Trigger = "other"

// countStarted counts a fork that began streaming.
func (r *Registry) countStarted(t Trigger) {
	known := false
	for _, k := range Triggers {
		known = known || k == t
	}
	if !known {
		t = TriggerOther // bounded whatever a credential says
	}
	m := &r.metrics
	m.mu.Lock()
	if m.started == nil {
		m.started = map[Trigger]uint64{}
	}
	m.started[t]++
	m.mu.Unlock()
}

// Started returns the forks that began streaming, by trigger: every trigger
// of Triggers and TriggerOther, zero or not.
func (r *Registry) Started() map[Trigger]uint64 {
	m := &r.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[Trigger]uint64{TriggerOther: 0}
	for _, t := range Triggers {
		out[t] = 0
	}
	for t, n := range m.started {
		out[t] = n
	}
	return out
}

// RetryReasons are why the orchestrator starts a fork again, as metrics label
// them.
const (
	RetryConnectFailed = "connect_failed" // the module could not connect to the ingest
	RetryDisconnected  = "disconnected"   // the module's WebSocket closed, on another instance
	RetryStartFailed   = "start_failed"   // the switch refused or did not answer the start
	RetryMediaLost     = "media_lost"     // the ingest lost the media connection mid-call
)

// RetryReasonList is every retry reason, in the order metrics list them.
var RetryReasonList = []string{RetryConnectFailed, RetryDisconnected, RetryStartFailed, RetryMediaLost}

// RetryStats are the orchestrator's retries: started again, and given up
// when the attempts ran out, by reason.
type RetryStats struct {
	Retries, GivenUp map[string]uint64
}

// retryCounters counts retries by reason; guarded by Orchestrator.mu.
type retryCounters struct {
	retries, givenUp map[string]uint64
}

func (c *retryCounters) count(givenUp bool, reason string) {
	m := &c.retries
	if givenUp {
		m = &c.givenUp
	}
	if *m == nil {
		*m = map[string]uint64{}
	}
	(*m)[reason]++
}

// RetryStats returns the retries so far, every reason present.
func (o *Orchestrator) RetryStats() RetryStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := RetryStats{Retries: map[string]uint64{}, GivenUp: map[string]uint64{}}
	for _, r := range RetryReasonList {
		s.Retries[r], s.GivenUp[r] = o.retryCount.retries[r], o.retryCount.givenUp[r]
	}
	return s
}
