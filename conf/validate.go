package conf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// Validate checks every value once, at load, naming the first bad key.
func (c *Config) Validate() error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &Error{"log.level", fmt.Sprintf("%q is not one of debug|info|warn|error", c.Log.Level)}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return &Error{"log.format", fmt.Sprintf("%q is not one of text|json", c.Log.Format)}
	}
	names := map[string]bool{}
	for i, fs := range c.FreeSWITCH {
		key := fmt.Sprintf("freeswitch[%d]", i)
		if fs.Name == "" {
			return &Error{key + ".name", "is empty"}
		}
		if names[fs.Name] {
			return &Error{key + ".name", fmt.Sprintf("%q is used twice", fs.Name)}
		}
		names[fs.Name] = true
		if err := hostPort(fs.Address); err != nil {
			return &Error{key + ".address", err.Error()}
		}
		switch fs.Module {
		case ModuleAudioFork, ModuleAudioStream, ModuleAuto, "": // "" is auto
		default:
			return &Error{key + ".module", fmt.Sprintf("%q is not one of audio_fork|audio_stream|auto", fs.Module)}
		}
	}
	if c.Outbound.Listen != "" {
		if err := hostPort(c.Outbound.Listen); err != nil {
			return &Error{"outbound.listen", err.Error()}
		}
	}
	if err := hostPort(c.Ingest.Listen); err != nil {
		return &Error{"ingest.listen", err.Error()}
	}
	if !strings.HasPrefix(c.Ingest.URL, "ws://") && !strings.HasPrefix(c.Ingest.URL, "wss://") {
		return &Error{"ingest.url", fmt.Sprintf("%q must start with ws:// or wss://", c.Ingest.URL)}
	}
	if strings.ContainsAny(c.Ingest.URL, " ?#") {
		return &Error{"ingest.url", "must have no spaces, query or fragment"}
	}
	if c.Ingest.MaxForks < 1 {
		return &Error{"ingest.max_forks", "must be at least 1"}
	}
	if c.Ingest.MaxMessageBytes < 1024 {
		return &Error{"ingest.max_message_bytes", "must be at least 1024"}
	}
	if c.API.Listen != "" {
		if err := hostPort(c.API.Listen); err != nil {
			return &Error{"api.listen", err.Error()}
		}
		if c.API.Token == "" && !IsLoopback(c.API.Listen) {
			return &Error{"api.token", fmt.Sprintf("is required when api.listen (%s) is not a loopback address: the API starts and stops call taps", c.API.Listen)}
		}
	}
	if c.API.ListenIn && (c.API.Listen == "" || c.API.Token == "") {
		return &Error{"api.listen_in", "needs api.listen and api.token: listening in to calls is never open to anyone who reaches the port"}
	}
	if err := c.Fork.Params().Validate(); err != nil {
		return paramErr("fork.", err)
	}
	if c.Fork.BugName == "" || strings.ContainsAny(c.Fork.BugName, " {[") {
		return &Error{"fork.bug_name", "must be a non-empty word not starting with { or ["}
	}
	if c.Fork.MaxDest < 1 || c.Fork.MaxDest > 1024 {
		return &Error{"fork.max_destinations", "must be between 1 and 1024"}
	}
	if c.Fork.Retry.Attempts < 0 {
		return &Error{"fork.retry.attempts", "must not be negative"}
	}
	if c.Fork.Retry.Backoff < 0 {
		return &Error{"fork.retry.backoff", "must not be negative"}
	}
	if c.Limits.ESLEventQueue < 100 {
		return &Error{"limits.esl_event_queue", "must be at least 100"}
	}
	if c.Limits.ESLEventQueueBytes < 1<<20 {
		return &Error{"limits.esl_event_queue_bytes", "must be at least 1048576 (1 MiB)"}
	}
	if c.Limits.OutboundConnections < 1 {
		return &Error{"limits.outbound_connections", "must be at least 1"}
	}
	if c.Limits.IngestMediaTimeout < Duration(time.Second) {
		return &Error{"limits.ingest_media_timeout", "must be at least 1s"}
	}
	if _, err := c.Destinations.Prefixes(); err != nil {
		return err
	}
	for name, p := range c.Profiles {
		key := "profiles." + name
		if len(p.Endpoints) == 0 {
			return &Error{key + ".endpoints", "needs at least one host:port"}
		}
		if len(p.Formats) != 0 && len(p.Formats) != len(p.Endpoints) {
			return &Error{key + ".endpoints", fmt.Sprintf("%d formats for %d endpoints", len(p.Formats), len(p.Endpoints))}
		}
		for i, e := range p.Endpoints {
			if err := hostPort(e); err != nil {
				if p.FormatOf(i).IsZero() {
					return &Error{key + ".endpoints", err.Error()}
				}
				return &Error{fmt.Sprintf("%s.endpoints[%d].address", key, i), err.Error()}
			}
		}
		pp := c.ProfileParams(p)
		if err := pp.Validate(); err != nil {
			return paramErr(key+".", err)
		}
		for i := range p.Endpoints {
			if _, err := endpointFormat(p.FormatOf(i), pp); err != nil {
				return paramErr(fmt.Sprintf("%s.endpoints[%d].", key, i), err)
			}
		}
	}
	for i, r := range c.Rules {
		key := fmt.Sprintf("rules[%d]", i)
		if r.Name != "" {
			key = fmt.Sprintf("rules[%d](%s)", i, r.Name)
		}
		if len(r.Match) == 0 {
			return &Error{key + ".match", "needs at least one header: regex"}
		}
		for h, re := range r.Match {
			if _, err := regexp.Compile(re); err != nil {
				return &Error{key + ".match." + h, err.Error()}
			}
		}
		if r.Profile == "" && len(r.To) == 0 {
			return &Error{key, "needs a profile or to"}
		}
		if r.Profile != "" {
			if _, ok := c.Profiles[r.Profile]; !ok {
				return &Error{key + ".profile", fmt.Sprintf("no profile named %q", r.Profile)}
			}
		}
		rp := c.RuleParams(r)
		for _, e := range r.To {
			if err := hostPort(e); err != nil {
				return &Error{key + ".to", err.Error()}
			}
		}
		if err := rp.Validate(); err != nil {
			return paramErr(key+".", err)
		}
		// The rule's params are the bug's: the profile's endpoints with their
		// own format must still be fed by it.
		p := c.Profiles[r.Profile]
		for i := range p.Endpoints {
			if _, err := endpointFormat(p.FormatOf(i), rp); err != nil {
				field, msg, _ := strings.Cut(err.Error(), ": ")
				return &Error{key, fmt.Sprintf("profile %q endpoints[%d] (%s) cannot be fed by this rule's bug (%s %d Hz): %s: %s",
					r.Profile, i, p.Endpoints[i], rp.Mix, rp.Rate, field, msg)}
			}
		}
	}
	return nil
}

// endpointFormat is f as a domain value, resolved against the bug's params:
// refused when that bug cannot feed it. Errors start with the field's name.
func endpointFormat(f EndpointFormat, bug mediafork.Params) (mediafork.EndpointFormat, error) {
	dm, err := f.Domain()
	if err != nil {
		return dm, err
	}
	_, err = dm.Resolve(bug)
	return dm, err
}

// Domain is f as the domain's value: directions parsed, no repeats.
func (f EndpointFormat) Domain() (mediafork.EndpointFormat, error) {
	out := mediafork.EndpointFormat{Encoding: mediafork.Encoding(f.Encoding), Rate: f.Rate, FrameMs: f.FrameMs}
	if f.Directions != nil && len(f.Directions) == 0 {
		return out, errors.New("directions: is empty; leave it out for the bug's own directions")
	}
	for _, s := range f.Directions {
		d, err := mediafork.ParseDirection(s)
		if err != nil {
			return out, fmt.Errorf("directions: %w", err)
		}
		if out.Directions.Has(d) {
			return out, fmt.Errorf("directions: %s is listed twice", s)
		}
		out.Directions |= mediafork.DirSetOf(d)
	}
	if f.Rate < 0 {
		return out, fmt.Errorf("rate: %d is not a sample rate", f.Rate)
	}
	if f.FrameMs < 0 {
		return out, fmt.Errorf("frame_ms: %d is not a frame length", f.FrameMs)
	}
	return out, nil
}

// Params are the fork defaults as domain values.
func (f Fork) Params() mediafork.Params { return f.With("", 0, "", 0) }

// With returns the fork defaults with every non-zero value given replaced.
func (f Fork) With(mix string, rate int, enc string, frameMs int) mediafork.Params {
	p := mediafork.Params{Mix: mediafork.Mix(f.Mix), Rate: f.Rate, Encoding: mediafork.Encoding(f.Encoding), FrameMs: f.FrameMs}
	if mix != "" {
		p.Mix = mediafork.Mix(mix)
	}
	if rate != 0 {
		p.Rate = rate
	}
	if enc != "" {
		p.Encoding = mediafork.Encoding(enc)
	}
	if frameMs != 0 {
		p.FrameMs = frameMs
	}
	return p
}

// ProfileParams are a profile's parameters over the fork defaults.
func (c *Config) ProfileParams(p Profile) mediafork.Params {
	return c.Fork.With(p.Mix, p.Rate, p.Encoding, p.FrameMs)
}

// RuleParams are a rule's parameters over its profile's over the fork defaults.
func (c *Config) RuleParams(r Rule) mediafork.Params {
	base := c.Fork
	if p, ok := c.Profiles[r.Profile]; ok {
		pp := c.ProfileParams(p)
		base.Mix, base.Rate, base.Encoding, base.FrameMs = string(pp.Mix), pp.Rate, string(pp.Encoding), pp.FrameMs
	}
	return base.With(r.Mix, r.Rate, r.Encoding, r.FrameMs)
}

// paramErr names the key of a mediafork.Params error ("rate: ...") under prefix.
func paramErr(prefix string, err error) *Error {
	k, msg, _ := strings.Cut(err.Error(), ": ")
	return &Error{prefix + k, msg}
}

// Prefixes parses the allow list.
func (d Destinations) Prefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(d.Allow))
	for i, s := range d.Allow {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, &Error{fmt.Sprintf("destinations.allow[%d]", i), fmt.Sprintf("%q is not a CIDR prefix", s)}
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// DomainDestinations is the destination policy for the domain.
func (c *Config) DomainDestinations() *mediafork.Destinations {
	allow, _ := c.Destinations.Prefixes()
	d := &mediafork.Destinations{Allow: allow, Profiles: map[string]mediafork.Profile{}, Max: c.Fork.MaxDest}
	for name, p := range c.Profiles {
		dp := mediafork.Profile{Endpoints: p.Endpoints, Params: c.ProfileParams(p)}
		for i := range p.Formats {
			fm, _ := p.Formats[i].Domain() // checked in Validate already
			dp.Formats = append(dp.Formats, fm)
		}
		d.Profiles[name] = dp
	}
	return d
}

// IsLoopback reports whether a listen address only takes connections from
// this host: a loopback IP or localhost. "" and 0.0.0.0 listen everywhere.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func hostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "0" {
		return fmt.Errorf("%q has no valid port", s)
	}
	return nil
}

// Policy is what the orchestrator applies: rules compiled, destinations, defaults.
func (c *Config) Policy() *mediafork.Policy {
	p := &mediafork.Policy{
		Destinations:  c.DomainDestinations(),
		Defaults:      c.Fork.Params(),
		IngestURL:     c.Ingest.URL,
		BugName:       c.Fork.BugName,
		RetryAttempts: c.Fork.Retry.Attempts,
		RetryBackoff:  time.Duration(c.Fork.Retry.Backoff),
	}
	for _, r := range c.Rules {
		mr := mediafork.Rule{Name: r.Name, Match: map[string]*regexp.Regexp{}, Profile: r.Profile, To: r.To,
			Params: c.RuleParams(r), Metadata: r.Metadata}
		for h, re := range r.Match {
			mr.Match[h] = regexp.MustCompile(re) // compiled once in Validate already
		}
		p.Rules = append(p.Rules, mr)
	}
	return p
}
