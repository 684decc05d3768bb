// Package conf turns a YAML file and MEDIAFORK_* environment variables into a
// validated Config of plain structs. It is the only package that reads viper;
// reloading is loading again and swapping the new value in.
package conf

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// Config is the whole configuration (SPEC section 7).
type Config struct {
	Log          Log                `mapstructure:"log" json:"log"`
	FreeSWITCH   []FreeSWITCH       `mapstructure:"freeswitch" json:"freeswitch"`
	Outbound     Outbound           `mapstructure:"outbound" json:"outbound"`
	Ingest       Ingest             `mapstructure:"ingest" json:"ingest"`
	API          API                `mapstructure:"api" json:"api"`
	Fork         Fork               `mapstructure:"fork" json:"fork"`
	Destinations Destinations       `mapstructure:"destinations" json:"destinations"`
	Profiles     map[string]Profile `mapstructure:"profiles" json:"profiles"`
	Rules        []Rule             `mapstructure:"rules" json:"rules"`
	Limits       Limits             `mapstructure:"limits" json:"limits"`
	Talkback     Talkback           `mapstructure:"talkback" json:"talkback"`
	HA           HA                 `mapstructure:"ha" json:"ha"`

	brokenProfiles map[string]bool // refused at load, already reported: rules naming them say nothing more
}

// Limits bound what outside input can make mediafork hold (SECURITY.md). They
// apply at start; a reload does not change them.
type Limits struct {
	ESLEventQueue       int      `mapstructure:"esl_event_queue" json:"esl_event_queue"`             // events waiting per ESL connection
	ESLEventQueueBytes  int      `mapstructure:"esl_event_queue_bytes" json:"esl_event_queue_bytes"` // and their bytes
	OutboundConnections int      `mapstructure:"outbound_connections" json:"outbound_connections"`   // dialplan sockets served at once
	IngestMediaTimeout  Duration `mapstructure:"ingest_media_timeout" json:"ingest_media_timeout"`   // no frame for this long: media lost
}

// Talkback bounds what receivers send back into calls (SPEC §9); which
// endpoints may speak is each endpoint's talkback key.
type Talkback struct {
	// MaxQueue is the most audio one fork holds for its receivers to be
	// played (paced in real time): beyond, a receiver's audio is refused
	// and counted until it drains.
	MaxQueue Duration `mapstructure:"max_queue" json:"max_queue"`
}

// HA is how this instance shares its switches with others (SPEC §10). With
// no EtcdEndpoints it runs alone, exactly as without the section.
type HA struct {
	// EtcdEndpoints are the etcd cluster's client URLs (http://host:2379,
	// unix:///path). Instances sharing them elect one leader per switch.
	EtcdEndpoints []string `mapstructure:"etcd_endpoints" json:"etcd_endpoints"`
	// LeaseTTL is the TTL of this instance's etcd lease: its leaderships
	// and fork claims vanish this long (at most) after it dies.
	LeaseTTL Duration `mapstructure:"lease_ttl" json:"lease_ttl"`
	// Prefix is where in etcd's key space the instances meet: instances
	// with another prefix form another cluster.
	Prefix string `mapstructure:"prefix" json:"prefix"`
	// Instance names this instance in the cluster and on the calls it
	// serves. "" is the host name and the ingest's port (host:8090):
	// stable across restarts (InstanceName).
	Instance string `mapstructure:"instance" json:"instance"`
	// AdvertiseAPI is the base URL other instances reach this one's API at
	// (API writes on a standby are forwarded to the switch's leader). ""
	// is derived from api.listen (http, or https with api.tls).
	AdvertiseAPI string `mapstructure:"advertise_api" json:"advertise_api"`
}

// Enabled reports whether the instance runs in a cluster.
func (h HA) Enabled() bool { return len(h.EtcdEndpoints) > 0 }

// InstanceName is ha.instance, or its default: the host name and the
// ingest's port.
func (c *Config) InstanceName(hostname string) string {
	if c.HA.Instance != "" {
		return c.HA.Instance
	}
	_, port, _ := net.SplitHostPort(c.Ingest.Listen)
	return hostname + ":" + port
}

// APIURL is the base URL other instances reach this one's API at:
// ha.advertise_api, or api.listen's (a wildcard host stands for the host
// name).
func (c *Config) APIURL(hostname string) string {
	if c.HA.AdvertiseAPI != "" {
		return strings.TrimRight(c.HA.AdvertiseAPI, "/")
	}
	if c.API.Listen == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(c.API.Listen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = hostname
	}
	scheme := "http"
	if c.API.TLS.Enabled() {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Log is logging.
type Log struct {
	Level  string `mapstructure:"level" json:"level"`   // debug|info|warn|error
	Format string `mapstructure:"format" json:"format"` // text|json
}

// FreeSWITCH is one switch reached over inbound ESL.
type FreeSWITCH struct {
	Name     string `mapstructure:"name" json:"name"`
	Address  string `mapstructure:"address" json:"address"`
	Password string `mapstructure:"password" json:"password"`
	// Module is the media module forks are started with: audio_fork,
	// audio_fork_jambonz (jambonz's mod_audio_fork: talk-back streamed),
	// audio_stream, or auto (ask the switch after each connect, preferring
	// mod_audio_fork, jambonz's when its usage says so). "" is auto.
	Module string `mapstructure:"module" json:"module"`
	// Required: while this switch is not connected, /readyz says not ready.
	// Optional switches (the default) never take the instance out of a load
	// balancer.
	Required bool `mapstructure:"required" json:"required"`
	// PasswordFile holds the password (read once at load, trailing newline
	// trimmed); it excludes Password.
	PasswordFile string `mapstructure:"password_file" json:"password_file,omitempty"`
}

// Modules a switch may be set to fork with.
const (
	ModuleAudioFork        = mediafork.ModuleAudioFork
	ModuleAudioForkJambonz = mediafork.ModuleAudioForkJambonz
	ModuleAudioStream      = mediafork.ModuleAudioStream
	ModuleAuto             = "auto"
)

// Outbound is the listener for the dialplan socket application; "" disables it.
type Outbound struct {
	Listen string `mapstructure:"listen" json:"listen"`
}

// Ingest is the WebSocket endpoint mod_audio_fork connects to.
type Ingest struct {
	Listen          string `mapstructure:"listen" json:"listen"`
	URL             string `mapstructure:"url" json:"url"`
	Token           string `mapstructure:"token" json:"token"`
	Key             string `mapstructure:"key" json:"key"`
	MaxForks        int    `mapstructure:"max_forks" json:"max_forks"`
	MaxMessageBytes int    `mapstructure:"max_message_bytes" json:"max_message_bytes"`
	// MaxRoundInterval: with few calls, the epoll reader's 0.8 ms rounds stretch
	// up to this (a frame's added latency, for fewer wake-ups). At start only.
	MaxRoundInterval Duration `mapstructure:"max_round_interval" json:"max_round_interval"`
	// TLS, when set, serves wss:// (files reloaded when they change).
	TLS TLS `mapstructure:"tls" json:"tls"`
	// TLSTerminatedByProxy states that a proxy in front serves the wss:// of
	// URL, so a plain listener is right.
	TLSTerminatedByProxy bool   `mapstructure:"tls_terminated_by_proxy" json:"tls_terminated_by_proxy"`
	TokenFile            string `mapstructure:"token_file" json:"token_file,omitempty"` // excludes Token
	KeyFile              string `mapstructure:"key_file" json:"key_file,omitempty"`     // excludes Key
}

// TLS names a certificate and its key (PEM); both or neither.
type TLS struct {
	CertFile string `mapstructure:"cert_file" json:"cert_file"`
	KeyFile  string `mapstructure:"key_file" json:"key_file"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// API is the HTTP API and metrics listener.
type API struct {
	Listen    string `mapstructure:"listen" json:"listen"`
	Token     string `mapstructure:"token" json:"token"`
	TLS       TLS    `mapstructure:"tls" json:"tls"`                         // HTTPS when set
	TokenFile string `mapstructure:"token_file" json:"token_file,omitempty"` // excludes Token
	// ListenIn lets the web console stream a fork's audio to the browser
	// (token required; each use logged). Off by default.
	ListenIn bool `mapstructure:"listen_in" json:"listen_in"`
}

// Fork holds the defaults of every fork.
type Fork struct {
	Mix       string `mapstructure:"mix" json:"mix"`
	Rate      int    `mapstructure:"rate" json:"rate"`
	Encoding  string `mapstructure:"encoding" json:"encoding"`
	FrameMs   int    `mapstructure:"frame_ms" json:"frame_ms"`
	BugName   string `mapstructure:"bug_name" json:"bug_name"`
	EndPacket bool   `mapstructure:"end_packet" json:"end_packet"`
	MaxDest   int    `mapstructure:"max_destinations" json:"max_destinations"`
	Retry     Retry  `mapstructure:"retry" json:"retry"`
	// FormatPacket sends a format packet (type 0x04) per direction after its
	// signaling; off, a stream is ForkStream's byte for byte (with EndPacket
	// and DTMFPacket off).
	FormatPacket bool `mapstructure:"format_packet" json:"format_packet"`
	// DTMFPacket sends a DTMF packet (type 0x05) on TLV streams for each digit
	// the forked channel receives.
	DTMFPacket bool `mapstructure:"dtmf_packet" json:"dtmf_packet"`
	// GapPacket sends a gap packet (type 0x06) on TLV streams before the
	// first audio after a gap (media lost, restart, pause), per direction.
	GapPacket bool `mapstructure:"gap_packet" json:"gap_packet"`
	// Checkpoint is a file where mediafork keeps where each fork's streams
	// stand (written off the media path, once a second, with a heartbeat
	// every 20 ms beside it): after a restart it resumes them at the right
	// place on the media clock. "" keeps none: a restart then places them by
	// the calls' own record, less exactly.
	Checkpoint string `mapstructure:"checkpoint" json:"checkpoint"`
}

// Retry is how often a fork whose WebSocket failed is started again.
type Retry struct {
	Attempts int      `mapstructure:"attempts" json:"attempts"`
	Backoff  Duration `mapstructure:"backoff" json:"backoff"`
}

// Duration is a time.Duration written as "1s" in files and output.
type Duration time.Duration

// MarshalText writes "1.5s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads "1.5s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like 1s or 500ms", b)
	}
	*d = Duration(v)
	return nil
}

// Destinations limits ad-hoc destinations.
type Destinations struct {
	Allow []string `mapstructure:"allow" json:"allow"`
}

// Profile is a named, trusted set of endpoints. In the file an endpoint is
// "host:port" (TLV, the profile's format) or {address: host:port, protocol,
// directions, encoding, rate, frame_ms, and the protocol's own keys} — a
// stream protocol's (twilio, audiofork) with url: ws(s)://... for address:
// Endpoints holds every endpoint's address (a stream endpoint's url); Formats, when any endpoint has
// its own format, each one's (the zero EndpointFormat for the profile's);
// Protocols, when any endpoint names a protocol, each one's protocol and keys.
type Profile struct {
	Endpoints []string           `mapstructure:"endpoints" json:"endpoints"`
	Formats   []EndpointFormat   `mapstructure:"-" json:"-"` // parallel to Endpoints, or none
	Protocols []EndpointProtocol `mapstructure:"-" json:"-"` // parallel to Endpoints, or none
	Mix       string             `mapstructure:"mix" json:"mix,omitempty"`
	Rate      int                `mapstructure:"rate" json:"rate,omitempty"`
	Encoding  string             `mapstructure:"encoding" json:"encoding,omitempty"`
	FrameMs   int                `mapstructure:"frame_ms" json:"frame_ms,omitempty"`
	// Pause is what a paused fork of the profile sends: nothing (its
	// streams stop; the resume is a gap) or silence. "" is nothing.
	Pause string `mapstructure:"pause" json:"pause,omitempty"`
}

// EndpointFormat is how one endpoint of a profile takes the call's audio; a
// zero field is the profile's own.
type EndpointFormat struct {
	Directions []string `mapstructure:"directions" json:"directions,omitempty"` // rx, tx, mixed
	Encoding   string   `mapstructure:"encoding" json:"encoding,omitempty"`
	Rate       int      `mapstructure:"rate" json:"rate,omitempty"`
	FrameMs    int      `mapstructure:"frame_ms" json:"frame_ms,omitempty"`
}

// IsZero reports whether f asks nothing of its own.
func (f EndpointFormat) IsZero() bool {
	return f.Directions == nil && f.Encoding == "" && f.Rate == 0 && f.FrameMs == 0
}

// EndpointProtocol is an endpoint's protocol ("" is tlv) and the keys of
// its own (mediafork.OutputProtocol.Keys), as written; the protocol parses
// them (Validate reports what it refuses, each under its key).
type EndpointProtocol struct {
	Protocol string
	Keys     map[string]any
	// secrets are Keys with each header value written {file: ...} or
	// {env: ...} read (at load), for the protocol; nil when none is.
	secrets map[string]any
}

// IsZero reports whether p is a plain TLV endpoint's.
func (p EndpointProtocol) IsZero() bool { return p.Protocol == "" && len(p.Keys) == 0 }

// Domain is p as the domain's value: the protocol looked up, its keys parsed
// by it (a stream protocol's with url, the endpoint's). Errors start with
// the key ("protocol: ...", "payload_type: ...").
func (p EndpointProtocol) Domain(url string) (mediafork.EndpointProtocol, error) {
	proto, err := mediafork.ParseProtocol(p.Protocol)
	if err != nil {
		return mediafork.EndpointProtocol{}, fmt.Errorf("protocol: %w", err)
	}
	op, _ := mediafork.LookupProtocol(proto)
	keys := map[string]any{}
	from := p.Keys
	if p.secrets != nil {
		from = p.secrets
	}
	for k, v := range from {
		keys[strings.ToLower(k)] = v
	}
	if mediafork.IsStream(proto) {
		keys["url"] = url
	}
	opts, err := op.ParseOptions(keys)
	if err != nil {
		return mediafork.EndpointProtocol{}, err
	}
	return mediafork.EndpointProtocol{Protocol: proto, Options: opts}, nil
}

// Endpoint is an endpoint written as a map, but for its protocol's own keys:
// address (datagram protocols) or url (stream protocols).
type Endpoint struct {
	Address        string `mapstructure:"address" json:"address,omitempty"`
	URL            string `mapstructure:"url" json:"url,omitempty"`
	Protocol       string `mapstructure:"protocol" json:"protocol,omitempty"`
	EndpointFormat `mapstructure:",squash"`
}

// isStream reports whether endpoint i is of a stream protocol: Endpoints[i]
// is its url.
func (p Profile) isStream(i int) bool {
	proto, err := mediafork.ParseProtocol(p.ProtocolOf(i).Protocol)
	return err == nil && mediafork.IsStream(proto)
}

// domainEndpoint is endpoint i as the domain takes it: the host:port to
// resolve (a stream endpoint's url's) and its protocol with its options.
func (p Profile) domainEndpoint(i int) (string, mediafork.EndpointProtocol, error) {
	ep, err := p.ProtocolOf(i).Domain(p.Endpoints[i])
	if err != nil {
		return "", ep, err
	}
	hp := p.Endpoints[i]
	if p.isStream(i) {
		if hp, err = mediafork.StreamHostPort(hp); err != nil {
			return "", ep, fmt.Errorf("url: %w", err)
		}
	}
	return hp, ep, nil
}

// FormatOf is endpoint i's own format (zero for a plain one).
func (p Profile) FormatOf(i int) EndpointFormat {
	if i < len(p.Formats) {
		return p.Formats[i]
	}
	return EndpointFormat{}
}

// ProtocolOf is endpoint i's protocol and keys (zero: TLV).
func (p Profile) ProtocolOf(i int) EndpointProtocol {
	if i < len(p.Protocols) {
		return p.Protocols[i]
	}
	return EndpointProtocol{}
}

// written reports whether endpoint i was written as a map.
func (p Profile) written(i int) bool { return !p.FormatOf(i).IsZero() || !p.ProtocolOf(i).IsZero() }

// MarshalJSON writes the endpoints as the file does: "host:port", or a map
// for one with a protocol or format of its own.
func (p Profile) MarshalJSON() ([]byte, error) {
	type plain Profile // without this method
	eps := make([]any, len(p.Endpoints))
	for i, e := range p.Endpoints {
		eps[i] = e
		if !p.written(i) {
			continue
		}
		ep := Endpoint{Address: e, Protocol: p.ProtocolOf(i).Protocol, EndpointFormat: p.FormatOf(i)}
		if p.isStream(i) {
			ep.Address, ep.URL = "", e
		}
		b, err := json.Marshal(ep)
		if err != nil {
			return nil, err
		}
		// The protocol's keys after the common ones, in name order.
		keys := p.ProtocolOf(i).Keys
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			v, err := json.Marshal(keys[k])
			if err != nil {
				return nil, err
			}
			kj, _ := json.Marshal(k)
			b = append(append(append(append(b[:len(b)-1], ','), kj...), ':'), append(v, '}')...)
		}
		eps[i] = json.RawMessage(b)
	}
	return json.Marshal(struct {
		plain
		Endpoints []any `json:"endpoints"`
	}{plain(p), eps})
}

// Rule forks answered calls whose headers match.
type Rule struct {
	Name     string            `mapstructure:"name" json:"name"`
	Match    map[string]string `mapstructure:"match" json:"match"`
	Profile  string            `mapstructure:"profile" json:"profile,omitempty"`
	To       []string          `mapstructure:"to" json:"to,omitempty"`
	Mix      string            `mapstructure:"mix" json:"mix,omitempty"`
	Rate     int               `mapstructure:"rate" json:"rate,omitempty"`
	Encoding string            `mapstructure:"encoding" json:"encoding,omitempty"`
	FrameMs  int               `mapstructure:"frame_ms" json:"frame_ms,omitempty"`
	Metadata map[string]string `mapstructure:"metadata" json:"metadata,omitempty"`
}

// Error names the key that is wrong.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("config: %s: %s", e.Key, e.Msg) }

// Mask is what secrets are shown as.
const Mask = "********"

// Masked returns a copy with every secret replaced by Mask, for printing.
func (c *Config) Masked() *Config {
	m := *c
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return Mask
	}
	// A secret read from a file is shown as its file alone: the output is a
	// config that loads again.
	fromFile := func(s, file string) string {
		if file != "" {
			return ""
		}
		return mask(s)
	}
	m.FreeSWITCH = append([]FreeSWITCH(nil), c.FreeSWITCH...)
	for i := range m.FreeSWITCH {
		m.FreeSWITCH[i].Password = fromFile(m.FreeSWITCH[i].Password, m.FreeSWITCH[i].PasswordFile)
	}
	m.Ingest.Token, m.Ingest.Key = fromFile(c.Ingest.Token, c.Ingest.TokenFile), fromFile(c.Ingest.Key, c.Ingest.KeyFile)
	m.API.Token = fromFile(c.API.Token, c.API.TokenFile)
	m.Profiles = map[string]Profile{}
	for name, p := range c.Profiles {
		m.Profiles[name] = p.masked()
	}
	return &m
}

// masked is p with its stream endpoints' secrets masked: a header's literal
// value (one read from a file or the environment shows as written), a url's
// query.
func (p Profile) masked() Profile {
	if len(p.Protocols) == 0 {
		return p
	}
	p.Endpoints = append([]string(nil), p.Endpoints...)
	p.Protocols = append([]EndpointProtocol(nil), p.Protocols...)
	for i, ep := range p.Protocols {
		if !p.isStream(i) {
			continue
		}
		if u, q, ok := strings.Cut(p.Endpoints[i], "?"); ok && q != "" {
			p.Endpoints[i] = u + "?" + Mask
		}
		hk := ep.headersKey()
		headers, ok := ep.Keys[hk].(map[string]any)
		if !ok {
			continue
		}
		keys := map[string]any{}
		for k, v := range ep.Keys {
			keys[k] = v
		}
		hs := map[string]any{}
		for h, v := range headers {
			if _, isStr := v.(string); isStr {
				v = Mask
			}
			hs[h] = v
		}
		keys[hk] = hs
		p.Protocols[i] = EndpointProtocol{Protocol: ep.Protocol, Keys: keys}
	}
	return p
}

// Secrets lists the secret values set, for tests and log scrubbing.
func (c *Config) Secrets() []string {
	var out []string
	for _, s := range []string{c.Ingest.Token, c.Ingest.Key, c.API.Token} {
		if s != "" {
			out = append(out, s)
		}
	}
	for _, fs := range c.FreeSWITCH {
		if fs.Password != "" {
			out = append(out, fs.Password)
		}
	}
	for _, p := range c.Profiles {
		for i := range p.Protocols {
			if !p.isStream(i) {
				continue
			}
			if _, q, ok := strings.Cut(p.Endpoints[i], "?"); ok && q != "" {
				out = append(out, q)
			}
			if _, ep, err := p.domainEndpoint(i); err == nil {
				if so, ok := ep.Options.(mediafork.StreamOptions); ok && so.Endpoint() != nil {
					for _, vs := range so.Endpoint().Header {
						out = append(out, vs...)
					}
				}
			}
		}
	}
	return out
}
