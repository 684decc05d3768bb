package mediafork

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// ErrNotAllowed is returned for an ad-hoc destination outside the allow list.
var ErrNotAllowed = errors.New("destination not allowed")

// Profile is a named, trusted set of endpoints with optional parameter overrides
// (zero values mean "the default").
type Profile struct {
	Endpoints []string
	Params    Params
}

// Destinations decides where a fork's packets may go: profiles are trusted,
// ad-hoc host:port destinations must fall inside Allow, so that a leaked token or
// dialplan variable cannot aim mediafork at arbitrary hosts.
type Destinations struct {
	Profiles map[string]Profile
	Allow    []netip.Prefix
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

// Resolve returns the addresses for a profile plus ad-hoc destinations. trusted
// skips the allow list for the ad-hoc ones (a fork mediafork signed itself,
// whose destinations were checked when it was made).
func (d *Destinations) Resolve(ctx context.Context, profile string, to []string, trusted bool) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	add := func(hp string, check bool) error {
		ap, err := ResolveEndpoint(ctx, hp)
		if err != nil {
			return err
		}
		if check && !d.Allowed(ap.Addr()) {
			return fmt.Errorf("%w: %s is outside destinations.allow", ErrNotAllowed, hp)
		}
		if !seen[ap] {
			seen[ap] = true
			out = append(out, ap)
		}
		return nil
	}
	if profile != "" {
		p, ok := d.Profiles[profile]
		if !ok {
			return nil, fmt.Errorf("unknown profile %q", profile)
		}
		for _, hp := range p.Endpoints {
			if err := add(hp, false); err != nil {
				return nil, err
			}
		}
	}
	for _, hp := range to {
		if err := add(hp, !trusted); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no destination: give a profile or to=host:port")
	}
	return out, nil
}

// CheckAdHoc refuses, before any resolution of names, literal addresses outside
// the allow list; names are checked once resolved.
func (d *Destinations) CheckAdHoc(ctx context.Context, to []string) error {
	for _, hp := range to {
		ap, err := ResolveEndpoint(ctx, hp)
		if err != nil {
			return err
		}
		if !d.Allowed(ap.Addr()) {
			return fmt.Errorf("%w: %s is outside destinations.allow", ErrNotAllowed, hp)
		}
	}
	return nil
}
