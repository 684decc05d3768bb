package mediafork

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// ErrNoSuchCall is returned when no switch knows the uuid.
var ErrNoSuchCall = errors.New("no such call")

// StartRequest is a fork asked for by an operator (HTTP API, CLI).
type StartRequest struct {
	UUID       CallID            `json:"uuid"`
	FreeSWITCH string            `json:"freeswitch,omitempty"` // which switch; the first connected when empty
	Profile    string            `json:"profile,omitempty"`
	To         []string          `json:"to,omitempty"`
	Mix        string            `json:"mix,omitempty"`
	Rate       int               `json:"rate,omitempty"`
	Encoding   string            `json:"encoding,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

// BadRequest marks errors in what the operator asked for.
type BadRequest struct{ Err error }

func (e *BadRequest) Error() string { return e.Err.Error() }
func (e *BadRequest) Unwrap() error { return e.Err }

// StartCall forks a call on request: Policy.Resolve decides, with the
// request's fields over the profile's over the defaults and the channel's data
// (uuid_dump) under the request's metadata. Errors: ErrNoSwitch, ErrNoSuchCall,
// ErrDuplicate, ErrNotAllowed, *BadRequest.
func (o *Orchestrator) StartCall(ctx context.Context, req StartRequest) (Spec, error) {
	p := o.Policy()
	r := Request{Trigger: TriggerAPI, UUID: req.UUID, Ask: Ask{Profile: req.Profile, To: req.To,
		Mix: Mix(req.Mix), Rate: req.Rate, Encoding: Encoding(req.Encoding), Metadata: metadataOf(req.Metadata)}}
	// What was asked is checked before anything reaches the switch.
	if _, err := p.Check(ctx, r); err != nil {
		return Spec{}, err
	}
	sw := o.pickSwitch(req.FreeSWITCH)
	switch {
	case sw == nil && req.FreeSWITCH == "":
		return Spec{}, fmt.Errorf("%w: no switch is connected (GET /readyz shows each one's state)", ErrNoSwitch)
	case sw == nil:
		return Spec{}, fmt.Errorf("%w: %q (not configured, or not connected now)", ErrNoSwitch, req.FreeSWITCH)
	}
	if o.registry.Lookup(req.UUID, p.BugName) != nil || o.pending(req.UUID) {
		return Spec{}, fmt.Errorf("%w: %s", ErrDuplicate, req.UUID)
	}
	h, err := sw.Dump(ctx, req.UUID)
	switch {
	case errors.Is(err, ErrSwitchRefused):
		return Spec{}, fmt.Errorf("%w: %s", ErrNoSuchCall, req.UUID)
	case err != nil:
		return Spec{}, fmt.Errorf("%w: uuid_dump %s: %v", ErrSwitchUnavailable, req.UUID, err)
	}
	r.Server, r.Data = sw.Name(), NewChannelData(h)
	spec, err := p.Resolve(ctx, r)
	if err != nil {
		return Spec{}, err
	}
	if err := o.startOn(ctx, sw, spec, r.Data); err != nil {
		return Spec{}, err
	}
	spec.Server, spec.Bug = sw.Name(), p.BugName
	return spec, nil
}

// metadataOf reads the signaling fields of an API request's metadata.
func metadataOf(m map[string]string) Metadata {
	return Metadata{ChannelID: m["channel_id"], Exten: m["exten"], CallerID: m["caller_id"], CalledID: m["called_id"]}
}

// pending reports whether a fork was requested on the call and has not ended.
func (o *Orchestrator) pending(uuid CallID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls[uuid]
	return c != nil && c.spec != nil
}

func (o *Orchestrator) pickSwitch(name string) Switch {
	o.mu.Lock()
	defer o.mu.Unlock()
	if name != "" {
		return o.switches[name]
	}
	names := make([]string, 0, len(o.switches))
	for n := range o.switches {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil
	}
	return o.switches[names[0]]
}

// Knows reports whether the switch called name is up and set up (alias,
// module, resync under way): forks can be started on it.
func (o *Orchestrator) Knows(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.switches[name] != nil
}

// SwitchDown forgets a switch until it reconnects.
func (o *Orchestrator) SwitchDown(name string) {
	o.mu.Lock()
	delete(o.switches, name)
	o.mu.Unlock()
}

// Forks lists every fork: live ones, requested ones not streaming yet
// (starting, or failed once retries gave up), and the last ones that ended.
func (o *Orchestrator) Forks() []Info {
	live := o.registry.List()
	out := make([]Info, 0, len(live))
	seen := map[CallID]bool{}
	for _, f := range live {
		in := f.Info()
		seen[in.UUID] = true
		out = append(out, in)
	}
	p := o.Policy()
	o.mu.Lock()
	for uuid, c := range o.calls {
		if seen[uuid] || c.spec == nil {
			continue
		}
		in := Info{Spec: *c.spec, State: StateStarting, Endpoints: []string{}}
		in.Server, in.Bug = c.server, p.BugName
		if c.attempts > 0 {
			in.LastError = fmt.Sprintf("retrying (attempt %d)", c.attempts)
		}
		out = append(out, in)
		seen[uuid] = true
	}
	for uuid, f := range o.failed {
		if !seen[uuid] {
			out = append(out, f)
			seen[uuid] = true
		}
	}
	o.mu.Unlock()
	for _, in := range o.registry.Recent() {
		if !seen[in.UUID] {
			out = append(out, in)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// Fork returns the forks of one call, as Forks does.
func (o *Orchestrator) Fork(uuid CallID) []Info {
	var out []Info
	for _, in := range o.Forks() {
		if in.UUID == uuid {
			out = append(out, in)
		}
	}
	return out
}

// WaitStreaming waits until the call has a live fork or ctx ends.
func (o *Orchestrator) WaitStreaming(ctx context.Context, uuid CallID) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		for _, f := range o.registry.Get(uuid) {
			if f.State() == StateStreaming {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ErrNoLiveFork is SDP's answer for a call with no live fork.
var ErrNoLiveFork = errors.New("no live fork")

// SDP is the SDP of the RTP streams of the call's live fork (Fork.SDP): the
// first of its forks that has RTP endpoints. Errors: ErrNoLiveFork, ErrNoRTP.
func (o *Orchestrator) SDP(uuid CallID) (string, error) {
	forks := o.registry.Get(uuid)
	if len(forks) == 0 {
		return "", fmt.Errorf("%w on %s", ErrNoLiveFork, uuid)
	}
	for _, f := range forks {
		if text, err := f.SDP(); err == nil {
			return text, nil
		}
	}
	return "", fmt.Errorf("%w (fork on %s)", ErrNoRTP, uuid)
}
