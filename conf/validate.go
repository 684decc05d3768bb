package conf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mediafork/mediafork/internal/boundedfile"
	"github.com/mediafork/mediafork/mediafork"
)

// Validate checks every value once, at load, and reports every bad key
// (Errors; a single *Error when there is one).
func (c *Config) Validate() error {
	var errs Errors
	c.validate(&errs)
	return errs.err()
}

func (c *Config) validate(errs *Errors) {
	add := errs.add
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add(&Error{"log.level", fmt.Sprintf("%q is not one of debug|info|warn|error", c.Log.Level)})
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add(&Error{"log.format", fmt.Sprintf("%q is not one of text|json", c.Log.Format)})
	}
	// config check prints secrets as Mask; that output fed back would use the
	// mask itself as the secret, and a switch would refuse it much later.
	for key, v := range map[string]string{"api.token": c.API.Token, "ingest.token": c.Ingest.Token, "ingest.key": c.Ingest.Key} {
		if v == Mask {
			add(&Error{key, "is the mask config check prints, not a secret: give the real value (or a *_file)"})
		}
	}
	for i, fs := range c.FreeSWITCH {
		if fs.Password == Mask {
			add(&Error{fmt.Sprintf("freeswitch[%d].password", i), "is the mask config check prints, not a password: give the real one (or password_file)"})
		}
	}
	names := map[string]bool{}
	for i, fs := range c.FreeSWITCH {
		key := fmt.Sprintf("freeswitch[%d]", i)
		if fs.Name == "" {
			add(&Error{key + ".name", "is empty"})
		} else if names[fs.Name] {
			add(&Error{key + ".name", fmt.Sprintf("%q is used twice", fs.Name)})
		}
		names[fs.Name] = true
		if err := hostPort(fs.Address); err != nil {
			add(&Error{key + ".address", err.Error()})
		}
		switch fs.Module {
		case ModuleAudioFork, ModuleAudioForkJambonz, ModuleAudioStream, ModuleAuto, "": // "" is auto
		default:
			add(&Error{key + ".module", fmt.Sprintf("%q is not one of audio_fork|audio_fork_jambonz|audio_stream|auto", fs.Module)})
		}
	}
	if c.Outbound.Listen != "" {
		if err := hostPort(c.Outbound.Listen); err != nil {
			add(&Error{"outbound.listen", err.Error()})
		}
	}
	if err := hostPort(c.Ingest.Listen); err != nil {
		add(&Error{"ingest.listen", err.Error()})
	}
	switch {
	case !strings.HasPrefix(c.Ingest.URL, "ws://") && !strings.HasPrefix(c.Ingest.URL, "wss://"):
		add(&Error{"ingest.url", fmt.Sprintf("%q must start with ws:// or wss://", c.Ingest.URL)})
	case strings.ContainsAny(c.Ingest.URL, " ?#"):
		add(&Error{"ingest.url", "must have no spaces, query or fragment"})
	}
	c.validateTLS(add)
	if c.Ingest.MaxForks < 1 {
		add(&Error{"ingest.max_forks", "must be at least 1"})
	}
	if c.Ingest.MaxMessageBytes < mediafork.MaxMetadataFrame {
		// The first text frame of a fork mediafork started carries its
		// description, up to what a module sends.
		add(&Error{"ingest.max_message_bytes", fmt.Sprintf("must be at least %d: the metadata frame, which carries a fork's description, may be that long", mediafork.MaxMetadataFrame)})
	}
	if c.API.Listen != "" {
		if err := hostPort(c.API.Listen); err != nil {
			add(&Error{"api.listen", err.Error()})
		} else if c.API.Token == "" && !IsLoopback(c.API.Listen) {
			add(&Error{"api.token", fmt.Sprintf("is required when api.listen (%s) is not a loopback address: the API starts and stops call taps", c.API.Listen)})
		}
	}
	if c.API.ListenIn && (c.API.Listen == "" || c.API.Token == "") {
		add(&Error{"api.listen_in", "needs api.listen and api.token: listening in to calls is never open to anyone who reaches the port"})
	}
	for _, err := range c.Fork.Params().Problems() {
		add(paramErr("fork.", err))
	}
	if c.Fork.BugName == "" || strings.ContainsAny(c.Fork.BugName, " {[") {
		add(&Error{"fork.bug_name", "must be a non-empty word not starting with { or ["})
	}
	if c.Fork.MaxDest < 1 || c.Fork.MaxDest > 1024 {
		add(&Error{"fork.max_destinations", "must be between 1 and 1024"})
	}
	if c.Fork.Retry.Attempts < 0 {
		add(&Error{"fork.retry.attempts", "must not be negative"})
	}
	if c.Fork.Retry.Backoff < 0 {
		add(&Error{"fork.retry.backoff", "must not be negative"})
	}
	if c.Limits.ESLEventQueue < 100 {
		add(&Error{"limits.esl_event_queue", "must be at least 100"})
	}
	if c.Limits.ESLEventQueueBytes < 1<<20 {
		add(&Error{"limits.esl_event_queue_bytes", "must be at least 1048576 (1 MiB)"})
	}
	if c.Limits.OutboundConnections < 1 {
		add(&Error{"limits.outbound_connections", "must be at least 1"})
	}
	if r := c.Ingest.MaxRoundInterval; r < Duration(time.Millisecond) || r > Duration(20*time.Millisecond) {
		add(&Error{"ingest.max_round_interval", "must be between 1ms and 20ms (a frame is 20 ms of audio)"})
	}
	if q := time.Duration(c.Talkback.MaxQueue); q < time.Second || q > 10*time.Minute {
		add(&Error{"talkback.max_queue", "must be from 1s to 10m"})
	}
	if c.Limits.IngestMediaTimeout < Duration(time.Second) {
		add(&Error{"limits.ingest_media_timeout", "must be at least 1s"})
	}
	c.validateHA(add)
	for i, s := range c.Destinations.Allow {
		if _, err := netip.ParsePrefix(s); err != nil {
			add(&Error{fmt.Sprintf("destinations.allow[%d]", i), fmt.Sprintf("%q is not a CIDR prefix", s)})
		}
	}
	// Profiles and rules inherit the fork defaults: when those are wrong
	// (reported above), check the rest against the built-in ones, so that
	// each profile and rule does not report the same key again.
	vc := c
	if c.Fork.Params().Validate() != nil {
		cp := *c
		cp.Fork.Mix, cp.Fork.Rate, cp.Fork.Encoding, cp.Fork.FrameMs = "stereo", 8000, "l16", 20
		vc = &cp
	}
	profiles := make([]string, 0, len(c.Profiles))
	for name := range c.Profiles {
		profiles = append(profiles, name)
	}
	sort.Strings(profiles) // the same order every run
	for _, name := range profiles {
		vc.validateProfile(name, c.Profiles[name], add)
	}
	for i, r := range c.Rules {
		vc.validateRule(i, r, add)
	}
}

func (c *Config) validateProfile(name string, p Profile, add func(*Error)) {
	key := "profiles." + name
	if len(p.Endpoints) == 0 {
		add(&Error{key + ".endpoints", "needs at least one host:port"})
		return
	}
	if len(p.Formats) != 0 && len(p.Formats) != len(p.Endpoints) {
		add(&Error{key + ".endpoints", fmt.Sprintf("%d formats for %d endpoints", len(p.Formats), len(p.Endpoints))})
		return
	}
	if len(p.Protocols) != 0 && len(p.Protocols) != len(p.Endpoints) {
		add(&Error{key + ".endpoints", fmt.Sprintf("%d protocols for %d endpoints", len(p.Protocols), len(p.Endpoints))})
		return
	}
	addrOK := make([]bool, len(p.Endpoints))
	for i, e := range p.Endpoints {
		if p.isStream(i) {
			ekey := fmt.Sprintf("%s.endpoints[%d]", key, i)
			if strings.HasSuffix(e, "?"+Mask) {
				add(&Error{ekey + ".url", "its query is the mask config check prints, not the real one"})
				continue
			}
			ep := p.ProtocolOf(i)
			if hs, ok := ep.Keys[ep.headersKey()].(map[string]any); ok {
				for h, v := range hs {
					if v == Mask {
						add(&Error{ekey + "." + ep.headersKey() + "." + h, "is the mask config check prints, not a secret: give the real value, or {file: ...} or {env: ...}"})
					}
				}
			}
			if _, err := mediafork.StreamHostPort(e); err != nil {
				add(&Error{fmt.Sprintf("%s.endpoints[%d].url", key, i), err.Error()})
				continue
			}
			addrOK[i] = true
			continue
		}
		if err := hostPort(e); err != nil {
			if !p.written(i) {
				add(&Error{key + ".endpoints", err.Error()})
			} else {
				add(&Error{fmt.Sprintf("%s.endpoints[%d].address", key, i), err.Error()})
			}
			continue
		}
		addrOK[i] = true
	}
	if _, err := mediafork.ParsePauseMode(p.Pause); err != nil {
		add(&Error{key + ".pause", fmt.Sprintf("%q is not nothing or silence", p.Pause)})
	}
	pp := c.ProfileParams(p)
	if errs := pp.Problems(); len(errs) > 0 {
		for _, err := range errs {
			add(paramErr(key+".", err))
		}
		return // the endpoints' formats would all fail against it
	}
	for i := range p.Endpoints {
		err := endpointOf(p, i, pp)
		if err == nil {
			err = checkStreamFiles(p, i)
		}
		if err != nil && (addrOK[i] || !strings.HasPrefix(err.Error(), "address: ") && !strings.HasPrefix(err.Error(), "url: ")) {
			add(paramErr(fmt.Sprintf("%s.endpoints[%d].", key, i), err))
		}
	}
}

// checkStreamFiles checks that the files a stream endpoint names load now
// (its CA file), not at its first dial.
func checkStreamFiles(p Profile, i int) error {
	if !p.isStream(i) {
		return nil
	}
	_, ep, err := p.domainEndpoint(i)
	if err != nil {
		return err
	}
	so, _ := ep.Options.(mediafork.StreamOptions)
	if e := so.Endpoint(); e != nil && e.CAFile != "" {
		if _, err := boundedfile.CertPool(e.CAFile); err != nil {
			return fmt.Errorf("tls_ca_file: %s", oneLine(err.Error()))
		}
	}
	return nil
}

func (c *Config) validateRule(i int, r Rule, add func(*Error)) {
	key := fmt.Sprintf("rules[%d]", i)
	if r.Name != "" {
		key = fmt.Sprintf("rules[%d](%s)", i, r.Name)
	}
	if len(r.Match) == 0 {
		add(&Error{key + ".match", "needs at least one header: regex"})
	}
	fields := make([]string, 0, len(r.Metadata))
	for f := range r.Metadata {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		if !slices.Contains(mediafork.MetadataFields, f) {
			add(&Error{key + ".metadata." + f, "unknown field: one of " + strings.Join(mediafork.MetadataFields, ", ")})
		}
	}
	headers := make([]string, 0, len(r.Match))
	for h := range r.Match {
		headers = append(headers, h)
	}
	sort.Strings(headers)
	for _, h := range headers {
		if _, err := regexp.Compile(r.Match[h]); err != nil {
			add(&Error{key + ".match." + h, err.Error()})
		}
	}
	if r.Profile == "" && len(r.To) == 0 {
		add(&Error{key, "needs a profile or to"})
		return
	}
	if r.Profile != "" {
		if _, ok := c.Profiles[r.Profile]; !ok {
			if c.brokenProfiles[r.Profile] {
				return
			}
			add(&Error{key + ".profile", fmt.Sprintf("no profile named %q", r.Profile)})
			return
		}
	}
	rp := c.RuleParams(r)
	for _, e := range r.To {
		_, hp, err := mediafork.ParseTarget(e) // host:port, or rtp://host:port
		if err == nil {
			err = hostPort(hp)
		}
		if err != nil {
			add(&Error{key + ".to", err.Error()})
		}
	}
	if errs := rp.Problems(); len(errs) > 0 {
		for _, err := range errs {
			add(paramErr(key+".", err))
		}
		return
	}
	// The rule's params are the bug's: the profile's endpoints with their
	// own format must still be fed by it.
	p := c.Profiles[r.Profile]
	for i := range p.Endpoints {
		if err := endpointOf(p, i, c.ProfileParams(p)); err != nil {
			continue // the profile's own error, reported there
		}
		if err := endpointOf(p, i, rp); err != nil {
			field, msg, _ := strings.Cut(err.Error(), ": ")
			add(&Error{key, fmt.Sprintf("profile %q endpoints[%d] (%s) cannot be fed by this rule's bug (%s %d Hz): %s: %s",
				r.Profile, i, p.Endpoints[i], rp.Mix, rp.Rate, field, msg)})
			return
		}
	}
}

// endpointOf checks profile p's endpoint i in its protocol for a bug of
// bug's params: its protocol and keys, its format (refused when that bug
// cannot feed it), what its port implies. Errors start with the key's name.
func endpointOf(p Profile, i int, bug mediafork.Params) error {
	fm, err := p.FormatOf(i).Domain()
	if err != nil {
		return err
	}
	hp, proto, err := p.domainEndpoint(i)
	if err != nil {
		return err
	}
	return mediafork.CheckEndpoint(hp, proto, fm, bug)
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
	if c.Ingest.Key != "" {
		d.EndpointKey = []byte(c.Ingest.Key) // what every instance serving another's credentials has
	}
	for name, p := range c.Profiles {
		dp := mediafork.Profile{Endpoints: append([]string(nil), p.Endpoints...), Params: c.ProfileParams(p)}
		dp.Pause, _ = mediafork.ParsePauseMode(p.Pause) // checked in Validate already
		for i := range p.Formats {
			fm, _ := p.Formats[i].Domain() // checked in Validate already
			dp.Formats = append(dp.Formats, fm)
		}
		for i := range p.Protocols {
			hp, proto, _ := p.domainEndpoint(i) // likewise
			dp.Protocols = append(dp.Protocols, proto)
			dp.Endpoints[i] = hp // a stream endpoint's url's host:port
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

// validateTLS checks the TLS files (they must load now: a certificate that
// does not parse fails config check, not the first handshake) and that
// ingest.url's scheme agrees with what the ingest serves.
func (c *Config) validateTLS(add func(*Error)) {
	for _, t := range []struct {
		key string
		tls TLS
	}{{"ingest.tls", c.Ingest.TLS}, {"api.tls", c.API.TLS}} {
		switch {
		case !t.tls.Enabled():
		case t.tls.CertFile == "":
			add(&Error{t.key + ".cert_file", "is missing: key_file is set"})
		case t.tls.KeyFile == "":
			add(&Error{t.key + ".key_file", "is missing: cert_file is set"})
		default:
			if _, err := boundedfile.KeyPair(t.tls.CertFile, t.tls.KeyFile); err != nil {
				add(&Error{t.key, oneLine(err.Error())})
			}
		}
	}
	if t := c.Ingest.TLS; t.Enabled() && c.Ingest.Listen != "" && strings.HasPrefix(c.Ingest.URL, "ws://") {
		add(&Error{"ingest.url", fmt.Sprintf("%q is ws:// but the ingest serves TLS (ingest.tls): FreeSWITCH would fail to connect; use wss://", c.Ingest.URL)})
	}
	if strings.HasPrefix(c.Ingest.URL, "wss://") && !c.Ingest.TLS.Enabled() && !c.Ingest.TLSTerminatedByProxy {
		add(&Error{"ingest.url", fmt.Sprintf("%q is wss:// but the ingest serves plain WebSocket: set ingest.tls {cert_file, key_file}, "+
			"or ingest.tls_terminated_by_proxy: true when a proxy in front terminates TLS", c.Ingest.URL)})
	}
	if c.Ingest.TLSTerminatedByProxy && strings.HasPrefix(c.Ingest.URL, "ws://") {
		add(&Error{"ingest.tls_terminated_by_proxy", fmt.Sprintf("is true but ingest.url (%s) is ws://: FreeSWITCH would not use TLS", c.Ingest.URL)})
	}
}

// oneLine keeps an error on one log line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// validateHA checks the ha section (only what matters once endpoints are
// set is required then).
func (c *Config) validateHA(add func(*Error)) {
	h := c.HA
	for i, e := range h.EtcdEndpoints {
		u, err := url.Parse(e)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs"):
			add(&Error{fmt.Sprintf("ha.etcd_endpoints[%d]", i), fmt.Sprintf("%q is not an etcd client URL (http://host:2379, https://..., unix:///path)", e)})
		case (u.Scheme == "http" || u.Scheme == "https") && u.Host == "":
			add(&Error{fmt.Sprintf("ha.etcd_endpoints[%d]", i), fmt.Sprintf("%q has no host:port", e)})
		}
	}
	if h.LeaseTTL < Duration(2*time.Second) || h.LeaseTTL > Duration(5*time.Minute) {
		add(&Error{"ha.lease_ttl", "must be between 2s and 5m, in whole seconds (etcd leases count seconds)"})
	} else if time.Duration(h.LeaseTTL)%time.Second != 0 {
		add(&Error{"ha.lease_ttl", "must be whole seconds (etcd leases count seconds)"})
	}
	if !strings.HasPrefix(h.Prefix, "/") || !strings.HasSuffix(h.Prefix, "/") || len(h.Prefix) > 256 || strings.ContainsAny(h.Prefix, " \t\n") {
		add(&Error{"ha.prefix", "must start and end with / (e.g. /mediafork/), at most 256 bytes, no spaces"})
	}
	if h.Instance != "" && !instanceRE.MatchString(h.Instance) {
		add(&Error{"ha.instance", "must be 1 to 128 of A-Z a-z 0-9 . _ : - (\"\" is the host name and the ingest port)"})
	}
	if h.AdvertiseAPI != "" {
		u, err := url.Parse(h.AdvertiseAPI)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			add(&Error{"ha.advertise_api", fmt.Sprintf("%q is not a base URL (http://host:port)", h.AdvertiseAPI)})
		}
	}
	if h.Enabled() && c.Ingest.Key == "" {
		add(&Error{"ha.etcd_endpoints", "instances of a cluster serve each other's forks: set the same ingest.key (or ingest.key_file) on each"})
	}
}

// instanceRE is what an instance name may hold: it is part of etcd keys
// and of a channel variable's value.
var instanceRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
