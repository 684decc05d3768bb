package mediafork

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// ErrNotAllowed is returned for an ad-hoc destination outside the allow list.
var ErrNotAllowed = errors.New("destination not allowed")

// Profile is a named, trusted set of endpoints with optional parameter overrides
// (zero values mean "the default").
type Profile struct {
	Endpoints []string
	// Formats, when set, are parallel to Endpoints: how each takes the audio
	// (the zero EndpointFormat: the fork's Params, as a plain host:port).
	Formats []EndpointFormat
	// Protocols, when set, are parallel to Endpoints: each one's protocol and
	// its options (the zero value: TLV).
	Protocols []EndpointProtocol
	Params    Params
	Pause     PauseMode // what its forks send while paused
}

// EndpointProtocol is a configured endpoint's protocol and its options, as
// the protocol parsed them (OutputProtocol.ParseOptions).
type EndpointProtocol struct {
	Protocol Protocol
	Options  OutputOptions
}

// target is endpoint i as an unresolved Target: its protocol, format and
// options.
func (p Profile) target(i int) Target {
	var t Target
	if i < len(p.Formats) {
		t.Format = p.Formats[i]
	}
	if i < len(p.Protocols) {
		t.Protocol, t.Options = p.Protocols[i].Protocol, p.Protocols[i].Options
	}
	return t
}

// Errors of destinations.
var (
	ErrBadDestination = errors.New("bad destination")
)

// DefaultMaxDestinations bounds the destinations of one fork when the config
// says nothing: each is a copy of the call's audio.
const DefaultMaxDestinations = 16

// Destinations decides where a fork's packets may go: profiles are trusted,
// ad-hoc host:port destinations must fall inside Allow, so that a leaked token or
// dialplan variable cannot aim mediafork at arbitrary hosts.
type Destinations struct {
	Profiles map[string]Profile
	Allow    []netip.Prefix
	Max      int // destinations of one fork; 0: DefaultMaxDestinations
	// LookupHost resolves names; nil: the system resolver. Tests set it.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// Known, when set, records what config endpoints resolve to: the
	// endpoints metrics may name.
	Known *KnownEndpoints
	// EndpointKey keys the fingerprints of stream endpoints in credentials
	// (StreamRef): every instance serving another's credentials has the same
	// (the daemon gives ingest.key, or a random key of its own when that is
	// empty).
	EndpointKey []byte
}

// Allowed reports whether an ad-hoc address may be sent to.
func (d *Destinations) Allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range d.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (d *Destinations) max() int {
	if d.Max > 0 {
		return d.Max
	}
	return DefaultMaxDestinations
}

// Resolve returns the addresses of ResolveTargets' targets.
func (d *Destinations) Resolve(ctx context.Context, profile string, to []string, adhoc bool) ([]netip.AddrPort, error) {
	ts, err := d.ResolveTargets(ctx, profile, to, adhoc)
	addrs := make([]netip.AddrPort, len(ts))
	for i, t := range ts {
		addrs[i] = t.Addr
	}
	return addrs, err
}

// ResolveTargets returns the targets of a profile's endpoints plus the
// destinations in to ("host:port" for TLV, "rtp://host:port" for RTP), each
// resolved once, with what its protocol's options name (Pin). With adhoc,
// every address of to must be inside Allow (API, fs_cli, channel variables,
// URL query); without, to came from the config (a rule). Errors:
// ErrNotAllowed, ErrBadDestination, or an unknown profile. What it returns is
// what the fork sends to for its whole life. The same TLV address twice in
// the same format counts once.
func (d *Destinations) ResolveTargets(ctx context.Context, profile string, to []string, adhoc bool) ([]Target, error) {
	if len(to) > d.max() {
		return nil, fmt.Errorf("%w: %d destinations, at most %d", ErrBadDestination, len(to), d.max())
	}
	var out []Target
	type key struct {
		p  Protocol
		ap netip.AddrPort
		fm EndpointFormat
	}
	seen := map[key]bool{}
	// ref: the endpoint's index in the profile (-1: not from it).
	add := func(hp string, t Target, check bool, ref int) error {
		ap, err := d.resolve(ctx, hp)
		if err != nil {
			return err
		}
		if check && !d.Allowed(ap.Addr()) {
			return fmt.Errorf("%w: %s is outside destinations.allow", ErrNotAllowed, hp)
		}
		if !check {
			d.Known.add(profile, ap)
		}
		op, err := t.protocolOf()
		if err != nil {
			return err
		}
		resolve := func(ctx context.Context, hp string) (netip.AddrPort, error) {
			a, rerr := d.resolve(ctx, hp)
			if rerr == nil && check && !d.Allowed(a.Addr()) {
				rerr = fmt.Errorf("%w: %s is outside destinations.allow", ErrNotAllowed, hp)
			}
			if rerr == nil && !check {
				d.Known.add(profile, a)
			}
			return a, rerr
		}
		if t.Options, err = op.Pin(ctx, ap, t.Options, resolve); err != nil {
			return fmt.Errorf("endpoint %s: %w", hp, err)
		}
		if so, ok := t.Options.(StreamOptions); ok && ref >= 0 {
			t.Options = so.bind(profile, ref, d.EndpointKey) // what a credential carries of it
		}
		t.Addr = ap
		k := key{t.Protocol, ap, t.Format}
		if t.Options != nil || !seen[k] {
			seen[k] = true
			out = append(out, t)
		}
		return nil
	}
	if profile != "" {
		p, ok := d.Profiles[profile]
		if !ok {
			return nil, fmt.Errorf("unknown profile %q", profile)
		}
		if len(p.Formats) != 0 && len(p.Formats) != len(p.Endpoints) {
			return nil, fmt.Errorf("%w: profile %q has %d formats for %d endpoints", ErrBadDestination, profile, len(p.Formats), len(p.Endpoints))
		}
		if len(p.Protocols) != 0 && len(p.Protocols) != len(p.Endpoints) {
			return nil, fmt.Errorf("%w: profile %q has %d protocols for %d endpoints", ErrBadDestination, profile, len(p.Protocols), len(p.Endpoints))
		}
		for i, hp := range p.Endpoints {
			if err := add(hp, p.target(i), false, i); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range to {
		proto, hp, err := ParseTarget(s)
		if err != nil {
			return nil, err
		}
		if err := add(hp, Target{Protocol: proto}, adhoc, -1); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: none; give a profile or to=host:port", ErrBadDestination)
	}
	if len(out) > d.max() {
		return nil, fmt.Errorf("%w: %d destinations, at most %d", ErrBadDestination, len(out), d.max())
	}
	return out, nil
}

// CheckPinned sanity-checks targets resolved earlier (a signed fork's).
// They were checked against the allow list when the fork was asked for and
// are used as they are: resolving again would let a DNS change move the audio.
func CheckPinned(targets []Target) error {
	if len(targets) == 0 || len(targets) > 1024 {
		return fmt.Errorf("%w: %d destinations", ErrBadDestination, len(targets))
	}
	for _, t := range targets {
		if t.Addr.Port() == 0 || !t.Addr.Addr().IsValid() {
			return fmt.Errorf("%w: %s", ErrBadDestination, t.Addr)
		}
		if _, err := t.protocolOf(); err != nil {
			return err
		}
	}
	return nil
}

// resolve turns host:port into one address: a literal as it is, a name by
// its first address. Port 0 is refused: nothing listens there.
func (d *Destinations) resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if len(hostport) > 300 {
		return netip.AddrPort{}, fmt.Errorf("%w: %d characters", ErrBadDestination, len(hostport))
	}
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		host, port, serr := net.SplitHostPort(hostport)
		if serr != nil {
			return netip.AddrPort{}, fmt.Errorf("%w: %q: %v", ErrBadDestination, hostport, serr)
		}
		p, perr := strconv.ParseUint(port, 10, 16)
		if perr != nil {
			return netip.AddrPort{}, fmt.Errorf("%w: %q: bad port", ErrBadDestination, hostport)
		}
		lookup := d.LookupHost
		if lookup == nil {
			lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
				return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			}
		}
		addrs, lerr := lookup(ctx, host)
		if lerr != nil || len(addrs) == 0 {
			return netip.AddrPort{}, fmt.Errorf("%w: %q: cannot resolve %s: %v", ErrBadDestination, hostport, host, lerr)
		}
		ap = netip.AddrPortFrom(addrs[0], uint16(p))
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: port 0", ErrBadDestination, hostport)
	}
	if ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: not a unicast address", ErrBadDestination, hostport)
	}
	return ap, nil
}

// CheckEndpoint checks a configured endpoint as far as can be without
// resolving a name: its protocol's options and the format it carries from a
// bug of p (the endpoint asking for fm), and what its ports imply (an RTP
// endpoint's even port, room for its streams). A name stands in as an
// address of its own with its port. Errors start with the key: "rate: ...",
// "address: ...", "tx_address: ...".
func CheckEndpoint(hostport string, ep EndpointProtocol, fm EndpointFormat, p Params) error {
	op, ok := LookupProtocol(ep.Protocol)
	if !ok {
		return fmt.Errorf("protocol: %q is not one of %s", ep.Protocol, ProtocolNames())
	}
	if ep.Options != nil && ep.Options.OptionsOf() != ep.Protocol {
		return fmt.Errorf("protocol: %s options on a %s endpoint", ep.Options.OptionsOf(), ep.Protocol)
	}
	standIn := func(_ context.Context, hp string) (netip.AddrPort, error) {
		if ap, err := netip.ParseAddrPort(hp); err == nil {
			return ap, nil
		}
		_, port, err := net.SplitHostPort(hp)
		n, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || perr != nil || n == 0 {
			return netip.AddrPort{}, fmt.Errorf("%q is not host:port", hp)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 1}), uint16(n)), nil
	}
	addr, err := standIn(context.Background(), hostport)
	if err != nil {
		return fmt.Errorf("address: %w", err)
	}
	opts, err := op.Pin(context.Background(), addr, ep.Options, standIn)
	if err != nil {
		return err
	}
	f, err := op.Format(fm, opts, p)
	if err != nil {
		return err
	}
	if dp, ok := op.(DatagramProtocol); ok {
		if _, _, err := dp.Routes(Target{Protocol: ep.Protocol, Addr: addr, Format: fm, Options: opts}, f.Directions.List()); err != nil {
			return err
		}
	}
	return nil
}
