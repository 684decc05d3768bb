package mediafork

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocol names an output protocol as configuration, the API and credentials
// spell it: "tlv", "rtp". Its zero value is ProtocolTLV, so an endpoint that
// names none, and a credential that says nothing, is ForkStream's TLV.
type Protocol string

// Output protocols. Each has its file with its OutputProtocol and a line in
// the protocols table.
const (
	ProtocolTLV Protocol = ""    // ForkStream's TLV over UDP (§1), spelled "tlv"
	ProtocolRTP Protocol = "rtp" // RFC 3550/3551 RTP over UDP, one stream per direction, with RTCP
	// Twilio Media Streams' WebSocket protocol: mediafork dials the endpoint's url.
	ProtocolTwilio Protocol = "twilio"
	// mod_audio_fork's WebSocket stream: mediafork dials as mod_audio_fork would.
	ProtocolAudioFork Protocol = "audiofork"
)

// String is the protocol as configuration spells it.
func (p Protocol) String() string {
	if p == ProtocolTLV {
		return "tlv"
	}
	return string(p)
}

// MarshalText writes the protocol's name ("tlv" for the zero value).
func (p Protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a protocol's name; "tlv" and "" are ProtocolTLV.
func (p *Protocol) UnmarshalText(b []byte) error {
	v, err := ParseProtocol(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParseProtocol reads a protocol's name (any case); "" is tlv.
func ParseProtocol(s string) (Protocol, error) {
	if s == "" {
		return ProtocolTLV, nil
	}
	for _, op := range protocols {
		if strings.EqualFold(s, op.Name().String()) {
			return op.Name(), nil
		}
	}
	return "", fmt.Errorf("%q is not one of %s", s, ProtocolNames())
}

// OutputProtocol is one output protocol: what an endpoint of it is (its keys
// beyond the common ones, their validation, the formats it carries), and how
// a fork's output for it is made. The protocols table lists them all: adding
// a protocol is its file(s) and one line there.
type OutputProtocol interface {
	// Name is the protocol as configuration spells it.
	Name() Protocol
	// Keys are the endpoint keys the protocol adds to the common ones
	// (CommonEndpointKeys), for the config check and its "did you mean".
	Keys() []string
	// ParseOptions reads the protocol's keys of one configured endpoint, as
	// YAML decoded them (only keys from Keys are given). Errors start with the
	// key: "payload_type: 300 is not ...". It returns nil when the endpoint
	// sets none and the protocol needs none.
	ParseOptions(keys map[string]any) (OutputOptions, error)
	// DecodeOptions reads the options back from a credential (what
	// json.Marshal made of them); "null" or empty is none.
	DecodeOptions(raw json.RawMessage) (OutputOptions, error)
	// Pin resolves, once, what the options name for a target at addr
	// (addresses: a DNS change later cannot move the audio), and checks what
	// depends on addr. resolve is the destinations' resolver.
	Pin(ctx context.Context, addr netip.AddrPort, opts OutputOptions, resolve Resolver) (OutputOptions, error)
	// Format is the format the protocol carries for an endpoint that asks for
	// ask with opts, fed by a bug of p: ask resolved against p, with the
	// protocol's own defaults and limits. Errors start with the key.
	Format(ask EndpointFormat, opts OutputOptions, p Params) (EndpointFormat, error)
	// Shared reports whether endpoints of one format share one output (one
	// stream identity, its packets fanned out to all): TLV's. Otherwise each
	// endpoint is an output of its own.
	Shared() bool
}

// DatagramProtocol is an OutputProtocol whose packets go over UDP through the
// reader's round batch (TLV, RTP): a Packetizer cuts the audio, the
// protocol's Framer builds the packets and the output fans them out per
// route.
type DatagramProtocol interface {
	OutputProtocol
	// Routes are the destinations of a target's routes, parallel to dirs (the
	// output's directions): where each direction's audio goes, and where its
	// control packets go (RTCP; the zero AddrPort for none: the Framer emits
	// none).
	Routes(t Target, dirs []Direction) (media, control []netip.AddrPort, err error)
	// NewFramer makes the Framer of one output.
	NewFramer(c FramerConfig) Framer
}

// StreamProtocol is an OutputProtocol with a connection of its own per
// endpoint (WebSocket media streams). A fork's stream output writes on the
// media path into a bounded queue (no audio is held while not connected),
// which a writer goroutine per connection, started at Begin and joined at
// Finish, drains; the connection is made through a dialer the domain owns.
// Its endpoints come from profiles only (their URL and headers may hold
// secrets, which a credential never carries: it names the endpoint,
// StreamOptions); ad-hoc destinations are datagram protocols'.
type StreamProtocol interface {
	OutputProtocol
	// newStreamOutput makes the output of one endpoint of fork f.
	newStreamOutput(f *Fork, c OutputConfig) (forkOutput, error)
}

// Resolver resolves host:port to one address, as the destinations do.
type Resolver func(ctx context.Context, hostport string) (netip.AddrPort, error)

// OutputOptions are one endpoint's protocol options, parsed and validated by
// its protocol (ParseOptions, Pin): a comparable value, written into a fork's
// credential as JSON. Secrets never are: a protocol whose endpoints hold some
// keeps a reference to its configured endpoint instead.
type OutputOptions interface {
	// OptionsOf is the protocol the options are for.
	OptionsOf() Protocol
}

// protocols is the table of output protocols, in the order help texts list
// them.
var protocols = [...]OutputProtocol{
	tlvProtocol{},
	rtpProtocol{},
	twilioProtocol{},
	audioforkProtocol{},
}

// Protocols lists every output protocol, in table order.
func Protocols() []OutputProtocol { return protocols[:] }

// LookupProtocol returns the protocol named p.
func LookupProtocol(p Protocol) (OutputProtocol, bool) {
	for _, op := range protocols {
		if op.Name() == p {
			return op, true
		}
	}
	return nil, false
}

// ProtocolNames is every protocol's name joined by "|": "tlv|rtp".
func ProtocolNames() string {
	names := make([]string, len(protocols))
	for i, op := range protocols {
		names[i] = op.Name().String()
	}
	return strings.Join(names, "|")
}

// CommonEndpointKeys are the keys every endpoint written as a map may have,
// whatever its protocol; each protocol adds its own (OutputProtocol.Keys).
func CommonEndpointKeys() []string {
	return []string{"address", "url", "protocol", "directions", "encoding", "rate", "frame_ms"}
}

// IsStream reports whether p is a stream protocol (its endpoints have a url,
// not an address).
func IsStream(p Protocol) bool {
	op, ok := LookupProtocol(p)
	if !ok {
		return false
	}
	_, stream := op.(StreamProtocol)
	return stream
}

// Target is one endpoint of a fork, resolved once when the fork was asked
// for: its protocol, where its datagrams go (rtp: the first direction's RTP
// port), how it takes the audio, and its protocol's options. A fork's
// credential carries its Targets, so a later DNS change cannot move its audio.
type Target struct {
	Protocol Protocol       // ProtocolTLV (the zero value), ProtocolRTP
	Addr     netip.AddrPort // resolved
	Format   EndpointFormat // zero fields: the fork's own
	Options  OutputOptions  // the protocol's own; nil: none
}

// TLVTargets are plain TLV targets at addrs, in the fork's own format.
func TLVTargets(addrs ...netip.AddrPort) []Target {
	ts := make([]Target, len(addrs))
	for i, a := range addrs {
		ts[i] = Target{Addr: a}
	}
	return ts
}

// String is the target as logs show it: "rtp://1.2.3.4:5000", or
// "1.2.3.4:9000" for TLV; a stream endpoint's is its protocol and URL
// without the query, "twilio+wss://bot.example.com/media" (or its address
// before its endpoint was looked up, "twilio://1.2.3.4:443").
func (t Target) String() string {
	if t.Protocol == ProtocolTLV {
		return t.Addr.String()
	}
	if so, ok := t.Options.(StreamOptions); ok && so.ep != nil {
		return t.Protocol.String() + "+" + so.ep.Shown()
	}
	return t.Protocol.String() + "://" + t.Addr.String()
}

// A Target in a credential is one JSON string, as short as it can be (a
// fork's URL carries its credential, and mod_audio_fork takes at most 690
// bytes of URL): a plain TLV target is its address alone, "10.0.0.20:9000";
// any other is "protocol address format [options]", the format compact
// (compactFormat, "-" for none) and the options as their protocol writes them
// in JSON: "rtp 10.0.0.30:5000 /pcmu//", "rtp 10.0.0.31:5000 rx/l16/16000/ {"pt":97}".

// MarshalJSON writes the target as a JSON string (above).
func (t Target) MarshalJSON() ([]byte, error) {
	if t.Protocol == ProtocolTLV && t.Format.IsZero() && t.Options == nil {
		return json.Marshal(t.Addr)
	}
	f := compactFormat(t.Format)
	if f == "" {
		f = "-"
	}
	s := t.Protocol.String() + " " + t.Addr.String() + " " + f
	if t.Options != nil {
		if t.Options.OptionsOf() != t.Protocol {
			return nil, fmt.Errorf("target %s: options of %s", t, t.Options.OptionsOf())
		}
		o, err := json.Marshal(t.Options)
		if err != nil {
			return nil, err
		}
		s += " " + string(o)
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads what MarshalJSON wrote; the options are decoded by the
// protocol named.
func (t *Target) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	*t = Target{}
	fields := strings.SplitN(s, " ", 4)
	if len(fields) == 1 {
		if err := t.Addr.UnmarshalText([]byte(s)); err != nil || !t.Addr.IsValid() {
			return fmt.Errorf("target %q is not an address", s)
		}
		return nil
	}
	if len(fields) < 3 {
		return fmt.Errorf("target %q is not \"protocol address format [options]\"", s)
	}
	p, err := ParseProtocol(fields[0])
	if err != nil {
		return fmt.Errorf("target %q: %w", s, err)
	}
	op, _ := LookupProtocol(p)
	t.Protocol = p
	if err = t.Addr.UnmarshalText([]byte(fields[1])); err != nil || !t.Addr.IsValid() {
		return fmt.Errorf("target %q: %q is not an address", s, fields[1])
	}
	if fields[2] != "-" {
		if t.Format, err = parseCompactFormat(fields[2]); err != nil {
			return fmt.Errorf("target %q: %w", s, err)
		}
	}
	if len(fields) == 4 {
		if t.Options, err = op.DecodeOptions(json.RawMessage(fields[3])); err != nil {
			return fmt.Errorf("target %q: %w", s, err)
		}
	}
	return nil
}

// compactFormat is f as "directions/encoding/rate/frame_ms" ("rx+tx/pcmu/8000/20"),
// each zero field empty ("/pcmu//"), "" for the zero format.
func compactFormat(f EndpointFormat) string {
	if f.IsZero() {
		return ""
	}
	n := func(v int) string {
		if v == 0 {
			return ""
		}
		return strconv.Itoa(v)
	}
	return f.Directions.String() + "/" + string(f.Encoding) + "/" + n(f.Rate) + "/" + n(f.FrameMs)
}

// parseCompactFormat reads what compactFormat wrote.
func parseCompactFormat(s string) (EndpointFormat, error) {
	var f EndpointFormat
	if s == "" {
		return f, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) != 4 {
		return f, fmt.Errorf("format %q is not directions/encoding/rate/frame_ms", s)
	}
	if parts[0] != "" {
		for _, name := range strings.Split(parts[0], "+") {
			d, err := ParseDirection(name)
			if err != nil {
				return f, fmt.Errorf("format %q: %w", s, err)
			}
			f.Directions |= DirSetOf(d)
		}
	}
	f.Encoding = Encoding(parts[1])
	for i, dst := range []*int{&f.Rate, &f.FrameMs} {
		if v := parts[2+i]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return f, fmt.Errorf("format %q: %q is not a positive number", s, v)
			}
			*dst = n
		}
	}
	return f, nil
}

// ErrUnknownProtocol is a target or endpoint naming no protocol of the table.
var ErrUnknownProtocol = errors.New("unknown output protocol")

// protocolOf returns t's protocol, checking that its options are its own.
func (t Target) protocolOf() (OutputProtocol, error) {
	op, ok := LookupProtocol(t.Protocol)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownProtocol, t.Protocol)
	}
	if t.Options != nil && t.Options.OptionsOf() != t.Protocol {
		return nil, fmt.Errorf("%w: %s options on a %s endpoint", ErrBadDestination, t.Options.OptionsOf(), t.Protocol)
	}
	return op, nil
}

// ParseTarget reads an ad-hoc destination: "host:port" is TLV,
// "rtp://host:port" RTP with its defaults. It returns the protocol and the
// host:port to resolve.
func ParseTarget(s string) (Protocol, string, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return ProtocolTLV, s, nil
	}
	p, err := ParseProtocol(scheme)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrBadDestination, s, err)
	}
	if p != ProtocolRTP && p != ProtocolTLV {
		return "", "", fmt.Errorf("%w: %q: a %s endpoint comes from a profile, not a destination given ad hoc", ErrBadDestination, s, p)
	}
	return p, rest, nil
}

// Addrs are the targets' addresses, in order.
func (s Spec) Addrs() []netip.AddrPort {
	if len(s.Targets) == 0 {
		return nil
	}
	out := make([]netip.AddrPort, len(s.Targets))
	for i, t := range s.Targets {
		out[i] = t.Addr
	}
	return out
}

// Formats are the targets' own formats, parallel to Addrs; nil when every
// target takes the fork's own.
func (s Spec) Formats() []EndpointFormat {
	plain := true
	for _, t := range s.Targets {
		plain = plain && t.Format.IsZero()
	}
	if plain {
		return nil
	}
	out := make([]EndpointFormat, len(s.Targets))
	for i, t := range s.Targets {
		out[i] = t.Format
	}
	return out
}
