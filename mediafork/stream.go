package mediafork

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The port stream protocols (StreamProtocol: WebSocket media streams, Twilio's
// and mod_audio_fork's) reach their servers through. The domain owns it; a
// transport package implements it (transport/wsout, gorilla WebSockets),
// tests implement it in memory.

// StreamDial is what one stream connection is dialed with.
type StreamDial struct {
	// URL is the endpoint's ws:// or wss:// URL. Its host is only the Host
	// header and the TLS server name: the connection goes to Addr.
	URL *url.URL
	// Addr is the URL's host resolved when the fork was asked for (and
	// checked then): never resolved again, so a DNS change cannot move the
	// audio.
	Addr netip.AddrPort
	// Header goes with the upgrade request. Its values are secrets: never
	// logged.
	Header http.Header
	// Subprotocol is offered when not "" (mod_audio_fork's audio.drachtio.org).
	Subprotocol string
	// MessageSize is the largest message the output writes: a dialer sizes
	// its buffers to send each in one frame.
	MessageSize int
	// TLS verifies the server: against CAFile's certificates when set, else
	// the system's roots; InsecureSkipVerify (never the default) does not.
	CAFile             string
	InsecureSkipVerify bool
}

// StreamDialer opens one stream endpoint's connection.
type StreamDialer interface {
	// Dial connects (TCP, TLS, WebSocket upgrade), giving up at ctx's
	// deadline. Its errors name no secret (no header value, no query).
	Dial(ctx context.Context, d StreamDial) (StreamConn, error)
}

// StreamConn is one connection of a stream output: written by the output's
// writer goroutine (one at a time), read by its reader (one at a time);
// Close from either.
type StreamConn interface {
	// WriteMessage sends one text or binary message, failing at deadline. It
	// may hold the message in a buffer until Flush.
	WriteMessage(text bool, b []byte, deadline time.Time) error
	// Flush sends what WriteMessage holds, failing at deadline.
	Flush(deadline time.Time) error
	// ReadMessage returns the next message from the server, at most limit
	// bytes (a longer one fails the connection). The slice is valid until
	// the next call. A close frame from the server is a *StreamClosed.
	ReadMessage(limit int) (text bool, b []byte, err error)
	// SendClose sends a close frame with code and reason, and gives the
	// server until deadline to answer it: a ReadMessage under way then
	// returns.
	SendClose(code int, reason string, deadline time.Time) error
	// Close closes the connection at once; a ReadMessage under way returns.
	Close() error
}

// StreamClosed is what StreamConn.ReadMessage returns when the server sent a
// close frame: its code and reason. A normal closure (1000) ends the output
// for the call (a Twilio or mod_audio_fork server ending its stream); any
// other loss is dialed again.
type StreamClosed struct {
	Code   int
	Reason string
}

func (e *StreamClosed) Error() string {
	return fmt.Sprintf("closed by the server: %d %s", e.Code, e.Reason)
}

// Stream endpoints' defaults and bounds.
const (
	DefaultStreamQueueMs   = 2000            // queue_ms: audio a connection may have waiting
	DefaultConnectTimeout  = 5 * time.Second // connect_timeout: TCP, TLS and the upgrade
	DefaultWriteTimeout    = 2 * time.Second // write_timeout: a server that takes longer to read is dropped
	minStreamQueueMs       = 100
	maxStreamQueueMs       = 60000
	minStreamTimeout       = 100 * time.Millisecond
	maxStreamTimeout       = time.Minute
	maxStreamURL           = 2048
	maxStreamHeaders       = 32
	maxStreamHeaderBytes   = 8 << 10
	maxStreamParameters    = 32
	maxStreamParameterName = 64
	maxStreamParameterVal  = 512
)

// StreamKeys are the endpoint keys every stream protocol has, beyond the
// common ones (whose url it needs).
func StreamKeys() []string {
	return append([]string{"headers", "parameters", "tls_ca_file", "tls_insecure_skip_verify", "queue_ms", "connect_timeout", "write_timeout"},
		TalkbackKeys()...)
}

// StreamEndpoint is one configured stream endpoint: where it dials and how.
// It comes from the config only, parsed by its protocol, and is never written
// into a credential or shown whole (its URL's query and its header values
// are secrets): a fork's credential refers to it (StreamRef).
type StreamEndpoint struct {
	URL                string            `json:"url"`
	Header             http.Header       `json:"headers,omitempty"`
	Parameters         map[string]string `json:"parameters,omitempty"`
	CAFile             string            `json:"tls_ca_file,omitempty"`
	InsecureSkipVerify bool              `json:"tls_insecure_skip_verify,omitempty"`
	QueueMs            int               `json:"queue_ms"`
	ConnectTimeout     time.Duration     `json:"connect_timeout"`
	WriteTimeout       time.Duration     `json:"write_timeout"`
	AccountSid         string            `json:"account_sid,omitempty"` // twilio's
	// Talkback: the server may send audio back into the call, and to whom
	// (off by default).
	Talkback TalkbackTo `json:"talkback,omitempty"`

	url *url.URL
}

// HostPort is the host:port the endpoint's URL names (the port of its scheme
// when it names none): what is resolved for it.
func (e *StreamEndpoint) HostPort() string {
	port := e.url.Port()
	if port == "" {
		port = "80"
		if e.url.Scheme == "wss" {
			port = "443"
		}
	}
	return net.JoinHostPort(e.url.Hostname(), port)
}

// Shown is the URL as logs and the API show it: scheme, host and path, no
// query (which may hold a token).
func (e *StreamEndpoint) Shown() string { return shownURL(e.url) }

func shownURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	s := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}

// secrets are the endpoint's values a log line or an error must not show.
func (e *StreamEndpoint) secrets() []string {
	var out []string
	if e.url != nil && e.url.RawQuery != "" {
		out = append(out, e.url.RawQuery)
		if q, err := url.QueryUnescape(e.url.RawQuery); err == nil && q != e.url.RawQuery {
			out = append(out, q)
		}
	}
	for _, vs := range e.Header {
		for _, v := range vs {
			if len(v) >= 4 { // shorter ones would mask ordinary words
				out = append(out, v)
			}
		}
	}
	return out
}

// scrub replaces the endpoint's secrets in s.
func (e *StreamEndpoint) scrub(s string) string {
	for _, v := range e.secrets() {
		s = strings.ReplaceAll(s, v, "********")
	}
	return s
}

// fingerprint keys a hash of the whole endpoint (secrets included) with key:
// what a credential carries to say which configuration it was made with,
// without a way to guess a secret from it.
func (e *StreamEndpoint) fingerprint(p Protocol, key []byte) string {
	b, _ := json.Marshal(e)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("mediafork stream endpoint\x00" + p.String() + "\x00"))
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

// StreamOptions are a stream endpoint's options, as a target carries them:
// the configured endpoint itself in the process that resolved it, and always
// its reference (profile, index, fingerprint), which is all a credential
// holds. A fork whose credential came from elsewhere finds the endpoint in
// this instance's config by the reference (Registry.SetStreamEndpoints).
type StreamOptions struct {
	Proto Protocol
	Ref   StreamRef
	ep    *StreamEndpoint // nil: not looked up yet
}

// StreamRef names a configured stream endpoint: the profile, the endpoint's
// index in it, and the fingerprint of its configuration.
type StreamRef struct {
	Profile string `json:"p"`
	Index   int    `json:"i"`
	Hash    string `json:"h"`
}

// OptionsOf is the stream's protocol.
func (o StreamOptions) OptionsOf() Protocol { return o.Proto }

// Endpoint is the configured endpoint (nil when not looked up yet).
func (o StreamOptions) Endpoint() *StreamEndpoint { return o.ep }

// MarshalJSON writes the reference alone: never the URL or the headers. (A
// target of no profile has an empty reference, which a credential's reader
// refuses.)
func (o StreamOptions) MarshalJSON() ([]byte, error) { return json.Marshal(o.Ref) }

// bind records which configured endpoint o is: endpoint i of profile, its
// configuration fingerprinted with key.
func (o StreamOptions) bind(profile string, i int, key []byte) OutputOptions {
	if o.ep != nil {
		o.Ref = StreamRef{Profile: profile, Index: i, Hash: o.ep.fingerprint(o.Proto, key)}
	}
	return o
}

// decodeStreamOptions reads a credential's reference.
func decodeStreamOptions(p Protocol, raw json.RawMessage) (OutputOptions, error) {
	var r StreamRef
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("a %s endpoint needs its reference", p)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	if r.Profile == "" || r.Index < 0 || r.Hash == "" {
		return nil, fmt.Errorf("%s endpoint reference %s is incomplete", p, raw)
	}
	return StreamOptions{Proto: p, Ref: r}, nil
}

// ErrStreamEndpoint is a stream target this instance cannot find in its
// config as the fork was made with.
var ErrStreamEndpoint = errors.New("stream endpoint")

// lookup finds the configured endpoint o refers to in d: the same protocol,
// and the same configuration (the fingerprint): the instance that made the
// credential and this one must agree.
func (o StreamOptions) lookup(d *Destinations) (StreamOptions, error) {
	if d == nil {
		return o, fmt.Errorf("%w: profiles.%s.endpoints[%d]: this instance has no profiles", ErrStreamEndpoint, o.Ref.Profile, o.Ref.Index)
	}
	p, ok := d.Profiles[o.Ref.Profile]
	if !ok || o.Ref.Index >= len(p.Protocols) || o.Ref.Index >= len(p.Endpoints) {
		return o, fmt.Errorf("%w: profiles.%s.endpoints[%d] is not in this instance's config", ErrStreamEndpoint, o.Ref.Profile, o.Ref.Index)
	}
	so, ok := p.Protocols[o.Ref.Index].Options.(StreamOptions)
	if !ok || so.Proto != o.Proto || so.ep == nil {
		return o, fmt.Errorf("%w: profiles.%s.endpoints[%d] is no %s endpoint in this instance's config", ErrStreamEndpoint, o.Ref.Profile, o.Ref.Index, o.Proto)
	}
	if !hmac.Equal([]byte(so.ep.fingerprint(o.Proto, d.EndpointKey)), []byte(o.Ref.Hash)) {
		return o, fmt.Errorf("%w: profiles.%s.endpoints[%d] is configured differently here than where the fork was asked for (configs out of step, or a reload since)",
			ErrStreamEndpoint, o.Ref.Profile, o.Ref.Index)
	}
	o.ep = so.ep
	return o, nil
}

// parseStreamEndpoint reads a stream endpoint's keys (url among them, given
// by the config as a common key), for protocol p whose own extra keys are
// extra. Errors start with the key.
func parseStreamEndpoint(p Protocol, keys map[string]any, extra ...string) (StreamOptions, error) {
	e := &StreamEndpoint{QueueMs: DefaultStreamQueueMs, ConnectTimeout: DefaultConnectTimeout, WriteTimeout: DefaultWriteTimeout}
	raw, _ := keys["url"].(string)
	if raw == "" {
		return StreamOptions{}, fmt.Errorf("url: a %s endpoint needs url: ws://host/path or wss://host/path", p)
	}
	u, err := parseStreamURL(raw)
	if err != nil {
		return StreamOptions{}, fmt.Errorf("url: %w", err)
	}
	e.URL, e.url = raw, u
	if v, ok := keys["headers"]; ok {
		if e.Header, err = parseHeaders(v); err != nil {
			return StreamOptions{}, fmt.Errorf("headers: %w", err)
		}
	}
	if v, ok := keys["parameters"]; ok {
		if e.Parameters, err = parseParameters(v); err != nil {
			return StreamOptions{}, fmt.Errorf("parameters: %w", err)
		}
	}
	if v, ok := keys["tls_ca_file"]; ok {
		s, isStr := v.(string)
		if !isStr || s == "" {
			return StreamOptions{}, fmt.Errorf("tls_ca_file: %v is not a file name", v)
		}
		e.CAFile = s
	}
	if v, ok := keys["tls_insecure_skip_verify"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return StreamOptions{}, fmt.Errorf("tls_insecure_skip_verify: %v is not true or false", v)
		}
		e.InsecureSkipVerify = b
	}
	if u.Scheme == "ws" {
		for k, set := range map[string]bool{"tls_ca_file": e.CAFile != "", "tls_insecure_skip_verify": e.InsecureSkipVerify} {
			if set {
				return StreamOptions{}, fmt.Errorf("%s: url is ws://, which has no TLS; use wss://", k)
			}
		}
	}
	if e.CAFile != "" && e.InsecureSkipVerify {
		return StreamOptions{}, errors.New("tls_insecure_skip_verify: and tls_ca_file both set: verify against the CA, or not at all")
	}
	if v, ok := keys["queue_ms"]; ok {
		n, err := wholeNumber(v)
		if err != nil || n < minStreamQueueMs || n > maxStreamQueueMs {
			return StreamOptions{}, fmt.Errorf("queue_ms: %v is not a number of ms from %d to %d", v, minStreamQueueMs, maxStreamQueueMs)
		}
		e.QueueMs = int(n)
	}
	for _, k := range []struct {
		key string
		dst *time.Duration
	}{{"connect_timeout", &e.ConnectTimeout}, {"write_timeout", &e.WriteTimeout}} {
		v, ok := keys[k.key]
		if !ok {
			continue
		}
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil || d < minStreamTimeout || d > maxStreamTimeout {
			return StreamOptions{}, fmt.Errorf("%s: %v is not a duration from %s to %s (like 5s)", k.key, v, minStreamTimeout, maxStreamTimeout)
		}
		*k.dst = d
	}
	talk, terr := parseTalkback(keys)
	if terr != nil {
		return StreamOptions{}, terr
	}
	e.Talkback = talk
	if slices.Contains(extra, "account_sid") {
		if v, ok := keys["account_sid"]; ok {
			s, isStr := v.(string)
			if !isStr || len(s) > 64 || !printable(s) {
				return StreamOptions{}, fmt.Errorf("account_sid: %v is not a string of at most 64 printable characters", v)
			}
			e.AccountSid = s
		}
	}
	return StreamOptions{Proto: p, ep: e}, nil
}

// parseStreamURL checks a stream endpoint's URL: ws:// or wss://, a host, no
// credentials (they go in headers, which are kept secret), no fragment.
func parseStreamURL(raw string) (*url.URL, error) {
	if len(raw) > maxStreamURL {
		return nil, fmt.Errorf("%d characters, more than %d", len(raw), maxStreamURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("is not a URL") // url's error repeats the URL, query and all
	}
	switch {
	case u.Scheme != "ws" && u.Scheme != "wss":
		return nil, fmt.Errorf("scheme %q is not ws or wss", u.Scheme)
	case u.Hostname() == "":
		return nil, errors.New("has no host")
	case u.User != nil:
		return nil, errors.New("has credentials (user:password@): give them in headers (Authorization), which are kept secret")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("has a fragment (#...), which is never sent")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q is not a port", p)
		}
	}
	return u, nil
}

// reservedHeaders are the upgrade's own: the dialer writes them.
func reservedHeaders() []string {
	return []string{"Host", "Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version",
		"Sec-Websocket-Extensions", "Sec-Websocket-Protocol", "Content-Length", "Transfer-Encoding"}
}

func parseHeaders(v any) (http.Header, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%v is not a map of header: value", v)
	}
	if len(m) > maxStreamHeaders {
		return nil, fmt.Errorf("%d headers, at most %d", len(m), maxStreamHeaders)
	}
	h := http.Header{}
	size := 0
	for name, val := range m {
		s, isStr := val.(string)
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			return nil, fmt.Errorf("%q is not a header name", name)
		case slices.Contains(reservedHeaders(), http.CanonicalHeaderKey(name)):
			return nil, fmt.Errorf("%s is the WebSocket upgrade's own header", http.CanonicalHeaderKey(name))
		case !isStr:
			return nil, fmt.Errorf("%s: the value is not a string", name) // never the value: it may be a secret
		case s == "" || !httpguts.ValidHeaderFieldValue(s):
			return nil, fmt.Errorf("%s: the value is empty or has characters a header cannot carry", name)
		case h.Get(name) != "":
			return nil, fmt.Errorf("%s is set twice", http.CanonicalHeaderKey(name))
		}
		size += len(name) + len(s) + 4
		h.Set(name, s)
	}
	if size > maxStreamHeaderBytes {
		return nil, fmt.Errorf("%d bytes, at most %d", size, maxStreamHeaderBytes)
	}
	return h, nil
}

// metadataParameters are the names the fork's metadata takes in a stream's
// parameters.
func metadataParameters() []string { return []string{"channel_id", "exten", "caller_id", "called_id"} }

func parseParameters(v any) (map[string]string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%v is not a map of name: value", v)
	}
	if len(m) > maxStreamParameters {
		return nil, fmt.Errorf("%d parameters, at most %d", len(m), maxStreamParameters)
	}
	out := make(map[string]string, len(m))
	for name, val := range m {
		var s string
		switch x := val.(type) {
		case string:
			s = x
		case bool, int, int64, uint64, float64:
			s = fmt.Sprint(x)
		default:
			return nil, fmt.Errorf("%s: %v is not a string", name, val)
		}
		switch {
		case name == "" || len(name) > maxStreamParameterName || !printable(name):
			return nil, fmt.Errorf("%q is not a name of at most %d printable characters", name, maxStreamParameterName)
		case slices.Contains(metadataParameters(), name):
			return nil, fmt.Errorf("%s is the fork's metadata's (%s)", name, strings.Join(metadataParameters(), ", "))
		case len(s) > maxStreamParameterVal || !printable(s):
			return nil, fmt.Errorf("%s: the value is not at most %d printable characters", name, maxStreamParameterVal)
		}
		out[name] = s
	}
	return out, nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// wholeNumber reads a YAML number that is whole.
func wholeNumber(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case uint64:
		return int64(min(x, math.MaxInt32)), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < math.MaxInt32 {
			return int64(x), nil
		}
	}
	return 0, fmt.Errorf("%v is not a whole number", v)
}

// StreamHostPort is what a stream endpoint's URL resolves as: host:port, the
// port of its scheme when it names none. The config gives it as the
// endpoint's address.
func StreamHostPort(rawURL string) (string, error) {
	u, err := parseStreamURL(rawURL)
	if err != nil {
		return "", err
	}
	return (&StreamEndpoint{url: u}).HostPort(), nil
}
