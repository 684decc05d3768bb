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
	Params  Params
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

// Resolve returns the addresses for a profile plus the destinations in to,
// each resolved once. With adhoc, every address of to must be inside Allow
// (API, fs_cli, channel variables, URL query); without, to came from the
// config (a rule). Errors: ErrNotAllowed, ErrBadDestination, or an unknown
// profile. What it returns is what the fork sends to for its whole life.
func (d *Destinations) Resolve(ctx context.Context, profile string, to []string, adhoc bool) ([]netip.AddrPort, error) {
	addrs, _, err := d.ResolveEndpoints(ctx, profile, to, adhoc)
	return addrs, err
}

// ResolveEndpoints is Resolve with each address's format: formats is nil
// when every endpoint is plain, else parallel to addrs (what the Spec's Addrs
// and Formats are). The same address twice in the same format counts once.
func (d *Destinations) ResolveEndpoints(ctx context.Context, profile string, to []string, adhoc bool) ([]netip.AddrPort, []EndpointFormat, error) {
	if len(to) > d.max() {
		return nil, nil, fmt.Errorf("%w: %d destinations, at most %d", ErrBadDestination, len(to), d.max())
	}
	var out []netip.AddrPort
	var formats []EndpointFormat
	type key struct {
		ap netip.AddrPort
		fm EndpointFormat
	}
	seen := map[key]bool{}
	add := func(hp string, fm EndpointFormat, check bool) error {
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
		if !seen[key{ap, fm}] {
			seen[key{ap, fm}] = true
			out, formats = append(out, ap), append(formats, fm)
		}
		return nil
	}
	if profile != "" {
		p, ok := d.Profiles[profile]
		if !ok {
			return nil, nil, fmt.Errorf("unknown profile %q", profile)
		}
		if len(p.Formats) != 0 && len(p.Formats) != len(p.Endpoints) {
			return nil, nil, fmt.Errorf("%w: profile %q has %d formats for %d endpoints", ErrBadDestination, profile, len(p.Formats), len(p.Endpoints))
		}
		for i, hp := range p.Endpoints {
			var fm EndpointFormat
			if len(p.Formats) != 0 {
				fm = p.Formats[i]
			}
			if err := add(hp, fm, false); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, hp := range to {
		if err := add(hp, EndpointFormat{}, adhoc); err != nil {
			return nil, nil, err
		}
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("%w: none; give a profile or to=host:port", ErrBadDestination)
	}
	if len(out) > d.max() {
		return nil, nil, fmt.Errorf("%w: %d destinations, at most %d", ErrBadDestination, len(out), d.max())
	}
	plain := true
	for _, fm := range formats {
		plain = plain && fm.IsZero()
	}
	if plain {
		formats = nil
	}
	return out, formats, nil
}

// CheckPinned sanity-checks addresses resolved earlier (a signed fork's).
// They were checked against the allow list when the fork was asked for and
// are used as they are: resolving again would let a DNS change move the audio.
func CheckPinned(addrs []netip.AddrPort) error {
	if len(addrs) == 0 || len(addrs) > 1024 {
		return fmt.Errorf("%w: %d destinations", ErrBadDestination, len(addrs))
	}
	for _, ap := range addrs {
		if ap.Port() == 0 || !ap.Addr().IsValid() {
			return fmt.Errorf("%w: %s", ErrBadDestination, ap)
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
