package mediafork

import (
	"encoding/json"
	"fmt"
	"strings"
)

// DirSet is a set of directions: which of a call's audio one output carries.
// Its zero value is the empty set, which an EndpointFormat reads as "the
// bug's own directions".
type DirSet uint8

// DirSetOf is the set of dirs.
func DirSetOf(dirs ...Direction) DirSet {
	var s DirSet
	for _, d := range dirs {
		s |= 1 << (d - 1)
	}
	return s
}

// Has reports whether d is in s.
func (s DirSet) Has(d Direction) bool { return d >= DirRX && d <= DirMixed && s&(1<<(d-1)) != 0 }

// List is s's directions in the order their signaling goes out: RX, TX, MIXED.
func (s DirSet) List() []Direction {
	var out []Direction
	for _, d := range []Direction{DirRX, DirTX, DirMixed} {
		if s.Has(d) {
			out = append(out, d)
		}
	}
	return out
}

// String is the set as configuration spells it: "rx+tx".
func (s DirSet) String() string {
	names := make([]string, 0, 3)
	for _, d := range s.List() {
		names = append(names, dirName(d))
	}
	return strings.Join(names, "+")
}

func dirName(d Direction) string { return strings.ToLower(d.String()) }

// ParseDirection reads a direction as configuration spells it: rx, tx, mixed
// (any case).
func ParseDirection(s string) (Direction, error) {
	for _, d := range []Direction{DirRX, DirTX, DirMixed} {
		if strings.EqualFold(s, dirName(d)) {
			return d, nil
		}
	}
	return 0, fmt.Errorf("%q is not one of rx|tx|mixed", s)
}

// MarshalJSON writes ["rx","tx"].
func (s DirSet) MarshalJSON() ([]byte, error) {
	names := []string{}
	for _, d := range s.List() {
		names = append(names, dirName(d))
	}
	return json.Marshal(names)
}

// UnmarshalJSON reads ["rx","tx"].
func (s *DirSet) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	var set DirSet
	for _, n := range names {
		d, err := ParseDirection(n)
		if err != nil {
			return err
		}
		set |= DirSetOf(d)
	}
	*s = set
	return nil
}

// Dirs is the set of directions the mix's own streams carry.
func (m Mix) Dirs() DirSet { return DirSetOf(m.Directions()...) }

// Produces is every direction mediafork can make from a bug of this mix: a
// stereo bug gives RX, TX and MIXED (L+R, summed by mediafork); a mono bug RX
// only; a mixed bug MIXED only (its sides cannot be taken apart).
func (m Mix) Produces() DirSet {
	if m == Stereo {
		return DirSetOf(DirRX, DirTX, DirMixed)
	}
	return m.Dirs()
}

// EndpointFormat is how one endpoint takes a fork's audio: which directions,
// in which encoding, at which rate, in frames of how long. A zero field is the
// fork's own; the zero EndpointFormat is a plain host:port endpoint.
// Comparable: endpoints whose resolved formats are equal share one stream.
type EndpointFormat struct {
	Directions DirSet   `json:"directions,omitempty"`
	Encoding   Encoding `json:"encoding,omitempty"`
	Rate       int      `json:"rate,omitempty"`
	FrameMs    int      `json:"frame_ms,omitempty"`
}

// IsZero reports whether f asks nothing of its own.
func (f EndpointFormat) IsZero() bool { return f == EndpointFormat{} }

// Resolve fills f's zero fields from the fork's params p (which must be valid)
// and checks that a bug of p can feed it: directions within what p's mix
// produces, a rate that divides p's rate by a whole number (rates only go
// down), whole samples per frame, an encoding from the table, and a packet
// that fits one datagram. Errors start with the field's name ("rate: ...").
func (f EndpointFormat) Resolve(p Params) (EndpointFormat, error) {
	if f.Directions == 0 {
		f.Directions = p.Mix.Dirs()
	}
	if f.Encoding == "" {
		f.Encoding = p.Encoding
	}
	if f.Rate == 0 {
		f.Rate = p.Rate
	}
	if f.FrameMs == 0 {
		f.FrameMs = p.FrameMs
	}
	if f.Directions&^DirSetOf(DirRX, DirTX, DirMixed) != 0 {
		return f, fmt.Errorf("directions: %#x is not a set of rx|tx|mixed", uint8(f.Directions))
	}
	for _, d := range f.Directions.List() {
		if !p.Mix.Produces().Has(d) {
			return f, fmt.Errorf("directions: %s cannot be made from a %s bug (it gives %s); set the fork's mix to stereo",
				dirName(d), p.Mix, p.Mix.Produces())
		}
	}
	switch {
	case f.Rate < 0:
		return f, fmt.Errorf("rate: %d is not a sample rate", f.Rate)
	case f.Rate > p.Rate:
		return f, fmt.Errorf("rate: %d Hz is above the bug's %d Hz: rates only go down", f.Rate, p.Rate)
	case p.Rate%f.Rate != 0:
		return f, fmt.Errorf("rate: %d Hz is not the bug's %d Hz divided by a whole number", f.Rate, p.Rate)
	}
	if err := f.Params(p.Mix).Validate(); err != nil {
		return f, err
	}
	return f, nil
}

// Params are a resolved format's encoding, rate and frame length, for the
// Framer and the Packetizer, with the bug's mix.
func (f EndpointFormat) Params(mix Mix) Params {
	return Params{Mix: mix, Rate: f.Rate, Encoding: f.Encoding, FrameMs: f.FrameMs}
}

// CheckFormats checks that a bug of p can feed every endpoint format: the
// first error names the endpoint.
func CheckFormats(p Params, addrs []string, formats []EndpointFormat) error {
	if len(formats) == 0 {
		return nil
	}
	if len(formats) != len(addrs) {
		return fmt.Errorf("%w: %d formats for %d destinations", ErrBadDestination, len(formats), len(addrs))
	}
	for i, f := range formats {
		if _, err := f.Resolve(p); err != nil {
			return fmt.Errorf("endpoint %s: %w", addrs[i], err)
		}
	}
	return nil
}
