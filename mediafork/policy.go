package mediafork

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Policy is the reloadable part of the configuration the orchestrator and the
// ingest apply: rules, profiles and destinations, fork defaults. Resolve is the
// one place a fork's parameters are decided.
type Policy struct {
	Rules         []Rule
	Destinations  *Destinations
	Defaults      Params
	IngestURL     string // ws://host:port, as FreeSWITCH reaches the ingest
	BugName       string
	RetryAttempts int
	RetryBackoff  time.Duration
}

// Trigger is what asked for a fork.
type Trigger string

// Triggers.
const (
	TriggerRule   Trigger = "rule"   // a rule matched an answered call (CHANNEL_ANSWER, resync)
	TriggerAPI    Trigger = "api"    // POST /v1/forks, mediafork fork start
	TriggerCLI    Trigger = "fs_cli" // mediafork start <uuid> [profile | host:port ...]
	TriggerSocket Trigger = "socket" // the dialplan socket application's channel variables
	TriggerIngest Trigger = "ingest" // a fork typed by hand that reached the ingest without a credential
	// TriggerTalkback: the bug mediafork starts on the channel bridged to a
	// fork's, to stream its talk-back to that party (jambonz's module).
	TriggerTalkback Trigger = "talkback"
)

// Ask is what one source asked for; zero values ask nothing.
type Ask struct {
	Profile  string
	To       []string // host:port, ad hoc unless they came from the config
	Mix      Mix
	Rate     int
	Encoding Encoding
	FrameMs  int
	Metadata Metadata // signaling fields; empty ones ask nothing
}

// names reports whether a reports a destination.
func (a Ask) names() bool { return a.Profile != "" || len(a.To) > 0 }

// Request is a fork asked for: by which trigger, for which call, and what each
// source said, highest first.
type Request struct {
	Trigger Trigger
	UUID    CallID // the call; Data's Unique-ID when empty
	Server  string // the switch the call is on
	// Ask is what the trigger asked for: the API body, fs_cli's arguments, the
	// socket's channel variables, the ingest's first text frame.
	Ask Ask
	// Fallback are further sources below Ask, highest first: the ingest's URL
	// query, then what the call lookup found (mediafork_profile / mediafork_to,
	// uuid_dump's metadata).
	Fallback []Ask
	// Data is the channel's headers and variables when known (an event, uuid_dump,
	// the socket's connect reply): rules match on it, templates and default
	// metadata read it.
	Data ChannelData
}

// ErrNoRule is Resolve's answer when nothing was asked for and no rule matches
// the call: nothing is to be forked.
var ErrNoRule = errors.New("no rule matches")

// Resolve decides a fork: where it goes, how, and what its signaling says. One
// precedence for every trigger:
//
//   - Destinations: the first source that names any (Ask, then each Fallback
//     in order: first found wins); else, for rule, fs_cli and socket triggers,
//     the first rule that matches Data (ErrNoRule when none does); else an API
//     request is refused (give a profile or to) and an ingest fork has none.
//     Destinations from a source are ad hoc (checked against the allow list);
//     a profile's and a rule's are config, trusted.
//   - Params, field by field: the first source that sets it, then the rule's
//     (itself rule over profile over defaults), else the named profile's, else
//     the fork defaults. They are the media bug's; a profile endpoint with its
//     own format (directions, encoding, rate, frame_ms) takes its own from
//     that bug, and is refused when the bug cannot feed it.
//   - Metadata, field by field: the first source that sets it, then the rule's
//     templates, then the channel data's defaults (Channel-Name, ...), and
//     channel_id = the uuid last. Cut to what signaling holds.
//
// Destinations are resolved and checked here, once: the Spec's Targets are
// what the fork sends to for its whole life. Errors: ErrNoRule, ErrNotAllowed,
// *BadRequest (unknown profile, bad parameter or destination).
func (p *Policy) Resolve(ctx context.Context, r Request) (Spec, error) {
	spec, _, err := p.resolve(ctx, r, true)
	return spec, err
}

// Check is Resolve for a request whose destination may still come from a
// later source (the ingest checks its URL before the first text frame): what
// is asked must be valid, but none need be named. The Spec is as far as it
// could be decided.
func (p *Policy) Check(ctx context.Context, r Request) (Spec, error) {
	spec, _, err := p.resolve(ctx, r, false)
	return spec, err
}

// resolve is Resolve; it also returns the rule that decided, if any.
func (p *Policy) resolve(ctx context.Context, r Request, needDest bool) (Spec, *Rule, error) {
	uuid := r.UUID
	if uuid == "" {
		uuid = r.Data.UUID()
	}
	if _, err := ParseCallID(string(uuid)); err != nil {
		return Spec{}, nil, &BadRequest{err}
	}
	sources := append([]Ask{r.Ask}, r.Fallback...)
	spec := Spec{UUID: uuid, Server: r.Server, Bug: p.BugName, Trigger: r.Trigger}

	// Destinations, and the params they bring.
	var rule *Rule
	adhoc := true
	base := p.Defaults
	for _, s := range sources {
		if s.names() {
			spec.Profile, spec.To = s.Profile, s.To
			break
		}
	}
	switch {
	case spec.Profile != "" || len(spec.To) > 0:
	case r.Trigger == TriggerRule || r.Trigger == TriggerCLI || r.Trigger == TriggerSocket:
		if rule = FirstMatch(p.Rules, r.Data); rule == nil {
			return Spec{}, nil, ErrNoRule
		}
		spec.Profile, spec.To, base, adhoc = rule.Profile, rule.To, rule.Params, false
		spec.Rule = rule.Name
	case r.Trigger == TriggerAPI:
		return Spec{}, nil, &BadRequest{errors.New("give a profile or to")}
	}
	if rule == nil && spec.Profile != "" {
		prof, ok := p.Destinations.Profiles[spec.Profile]
		if !ok {
			return Spec{}, nil, &BadRequest{fmt.Errorf("unknown profile %q", spec.Profile)}
		}
		base = prof.Params
	}

	// Params, field by field.
	spec.Params = base
	for i := len(sources) - 1; i >= 0; i-- { // the first source set last wins
		s := sources[i]
		if s.Mix != "" {
			spec.Mix = s.Mix
		}
		if s.Rate != 0 {
			spec.Rate = s.Rate
		}
		if s.Encoding != "" {
			spec.Encoding = s.Encoding
		}
		if s.FrameMs != 0 {
			spec.FrameMs = s.FrameMs
		}
	}
	if err := spec.Params.Validate(); err != nil {
		return Spec{}, nil, &BadRequest{err}
	}

	// Metadata, field by field: first found wins.
	for _, s := range sources {
		spec.Metadata.Fill(s.Metadata)
	}
	if rule != nil {
		spec.Metadata.Fill(rule.metadata(r.Data))
	}
	spec.Metadata.Fill(r.Data.DefaultMetadata())
	spec.Metadata.Fill(Metadata{ChannelID: string(uuid)})
	spec.Metadata = spec.Metadata.Truncated()

	if !needDest && spec.Profile == "" && len(spec.To) == 0 {
		return spec, rule, nil
	}
	targets, err := p.Destinations.ResolveTargets(ctx, spec.Profile, spec.To, adhoc)
	switch {
	case errors.Is(err, ErrNotAllowed):
		return Spec{}, nil, err
	case err != nil:
		return Spec{}, nil, &BadRequest{err}
	}
	// Every endpoint's own format must be one this fork's bug can feed, in its
	// protocol (the params asked for may have changed the profile's mix or
	// rate), and its routes must fit: the outputs are planned now as Begin
	// will plan them.
	if _, err := planOutputs(spec, targets); err != nil {
		return Spec{}, nil, &BadRequest{fmt.Errorf("profile %q %w", spec.Profile, err)}
	}
	spec.Targets = targets
	if prof, ok := p.Destinations.Profiles[spec.Profile]; ok && spec.Profile != "" {
		spec.Pause = prof.Pause
	}
	return spec, rule, nil
}
