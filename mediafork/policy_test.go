package mediafork

import (
	"context"
	"errors"
	"net/netip"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	stereo8k  = Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20}
	mono16k   = Params{Mix: Mono, Rate: 16000, Encoding: L16, FrameMs: 20}
	errBadReq = errors.New("*BadRequest") // stands for errors.As(err, **BadRequest)
)

// testPolicy: loopback allowed; profiles analytics (defaults), speech (mono
// 16k) and remote (outside the allow list: config is trusted); a rule for 2000
// (speech, pcmu, a channel_id template) and one for 3000 (a to outside the
// allow list: config, trusted). Names resolve without DNS.
func testPolicy() *Policy {
	return &Policy{
		Defaults: stereo8k,
		BugName:  "mediafork",
		Destinations: &Destinations{
			Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Profiles: map[string]Profile{
				"analytics": {Endpoints: []string{"127.0.0.1:9000"}, Params: stereo8k},
				"speech":    {Endpoints: []string{"127.0.0.1:9100"}, Params: mono16k},
				"remote":    {Endpoints: []string{"10.9.9.9:9000"}, Params: stereo8k},
			},
			LookupHost: func(_ context.Context, host string) ([]netip.Addr, error) {
				switch host {
				case "sink.example":
					return []netip.Addr{netip.MustParseAddr("127.0.0.5")}, nil
				case "evil.example":
					return []netip.Addr{netip.MustParseAddr("8.8.8.8")}, nil
				}
				return nil, errors.New("no such host")
			},
		},
		Rules: []Rule{
			{Name: "support", Match: map[string]*regexp.Regexp{"Caller-Destination-Number": regexp.MustCompile(`^2000$`)},
				Profile: "speech", Params: Params{Mix: Mono, Rate: 16000, Encoding: PCMU, FrameMs: 20},
				Metadata: map[string]string{"channel_id": "Support-${Caller-Destination-Number}", "caller_id": "${variable_nosuch}"}},
			{Name: "sales", Match: map[string]*regexp.Regexp{"Caller-Destination-Number": regexp.MustCompile(`^3000$`)},
				To: []string{"10.1.1.1:9"}, Params: stereo8k},
		},
	}
}

// channel is a call's data as an event or uuid_dump gives it.
func channel(uuid, dest string, vars ...string) ChannelData {
	h := map[string]string{"Unique-ID": uuid, "Channel-Name": "loopback/" + dest + "-a",
		"Caller-Destination-Number": dest, "Caller-Caller-ID-Number": "1000"}
	for i := 0; i+1 < len(vars); i += 2 {
		h["variable_"+vars[i]] = vars[i+1]
	}
	return NewChannelData(h)
}

func ap(s string) []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort(s)} }

// The one precedence, trigger by trigger: where the destinations come from
// (and whether they are checked), params field by field, metadata field by
// field with channel_id = uuid last.
func TestPolicyResolvePrecedence(t *testing.T) {
	p := testPolicy()
	socket := func(d ChannelData) Ask {
		a, err := SocketAsk(d)
		require.NoError(t, err)
		return a
	}
	d2000, d3000, d4000 := channel("u1", "2000"), channel("u1", "3000"), channel("u1", "4000")
	md := func(ch, ex, ca, cd string) Metadata {
		return Metadata{ChannelID: ch, Exten: ex, CallerID: ca, CalledID: cd}
	}
	cases := []struct {
		name    string
		req     Request
		err     error
		profile string
		to      []string
		addrs   []netip.AddrPort
		params  Params
		meta    Metadata
	}{
		// Rules: rule over profile over defaults; templates over channel data; config destinations trusted.
		{name: "rule: profile, params, templates", req: Request{Trigger: TriggerRule, Data: d2000},
			profile: "speech", addrs: ap("127.0.0.1:9100"), params: Params{Mix: Mono, Rate: 16000, Encoding: PCMU, FrameMs: 20},
			meta: md("Support-2000", "2000", "1000", "2000")},
		{name: "rule: its to is config, not checked", req: Request{Trigger: TriggerRule, Data: d3000},
			to: []string{"10.1.1.1:9"}, addrs: ap("10.1.1.1:9"), params: stereo8k, meta: md("loopback/3000-a", "3000", "1000", "3000")},
		{name: "rule: none matches", req: Request{Trigger: TriggerRule, Data: d4000}, err: ErrNoRule},
		{name: "rule: channel without a valid uuid", req: Request{Trigger: TriggerRule, Data: channel("a b", "2000")}, err: ErrBadCallID},

		// API: the request over the profile over the defaults; its metadata over the channel's.
		{name: "api: request fields over profile", req: Request{Trigger: TriggerAPI, UUID: "u1", Data: d2000,
			Ask: Ask{Profile: "speech", Mix: Stereo, Encoding: PCMA, Metadata: Metadata{CallerID: "555"}}},
			profile: "speech", addrs: ap("127.0.0.1:9100"), params: Params{Mix: Stereo, Rate: 16000, Encoding: PCMA, FrameMs: 20},
			meta: md("loopback/2000-a", "2000", "555", "2000")},
		{name: "api: a name is resolved once and pinned", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{To: []string{"sink.example:9"}}},
			to: []string{"sink.example:9"}, addrs: ap("127.0.0.5:9"), params: stereo8k, meta: md("u1", "", "", "")},
		{name: "api: profile and to together", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "remote", To: []string{"127.0.0.1:7"}}},
			profile: "remote", to: []string{"127.0.0.1:7"}, addrs: append(ap("10.9.9.9:9000"), ap("127.0.0.1:7")...), params: stereo8k, meta: md("u1", "", "", "")},
		{name: "api: to outside the allow list", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{To: []string{"8.8.8.8:9"}}}, err: ErrNotAllowed},
		{name: "api: a name resolving outside", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{To: []string{"evil.example:9"}}}, err: ErrNotAllowed},
		{name: "api: the rules are not asked", req: Request{Trigger: TriggerAPI, UUID: "u1", Data: d2000}, err: errBadReq},
		{name: "api: unknown profile", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "nope"}}, err: errBadReq},
		{name: "api: bad rate", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "speech", Rate: 11025}}, err: errBadReq},
		{name: "api: port 0", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{To: []string{"127.0.0.1:0"}}}, err: ErrBadDestination},
		{name: "api: bad uuid", req: Request{Trigger: TriggerAPI, UUID: "a\nb", Ask: Ask{Profile: "speech"}}, err: ErrBadCallID},

		// fs_cli: the targets; none: the rules.
		{name: "fs_cli: targets", req: Request{Trigger: TriggerCLI, UUID: "u1", Data: d2000, Ask: Ask{Profile: "analytics", To: []string{"127.0.0.1:7"}}},
			profile: "analytics", to: []string{"127.0.0.1:7"}, addrs: append(ap("127.0.0.1:9000"), ap("127.0.0.1:7")...), params: stereo8k,
			meta: md("loopback/2000-a", "2000", "1000", "2000")},
		{name: "fs_cli: no target, the rule decides", req: Request{Trigger: TriggerCLI, UUID: "u1", Data: d3000},
			to: []string{"10.1.1.1:9"}, addrs: ap("10.1.1.1:9"), params: stereo8k, meta: md("loopback/3000-a", "3000", "1000", "3000")},
		{name: "fs_cli: ad hoc is checked", req: Request{Trigger: TriggerCLI, UUID: "u1", Data: d2000, Ask: Ask{To: []string{"8.8.8.8:9000"}}}, err: ErrNotAllowed},
		{name: "fs_cli: no target, no rule", req: Request{Trigger: TriggerCLI, UUID: "u1", Data: d4000}, err: ErrNoRule},

		// socket: the channel variables; none: the rules; none either: nothing.
		{name: "socket: ForkStream syntax", req: Request{Trigger: TriggerSocket,
			Ask: socket(channel("u1", "2000", "mediafork", "127.0.0.1:8080,Support-Line,,777")), Data: channel("u1", "2000", "mediafork", "127.0.0.1:8080,Support-Line,,777")},
			to: []string{"127.0.0.1:8080"}, addrs: ap("127.0.0.1:8080"), params: stereo8k, meta: md("Support-Line", "2000", "777", "2000")},
		{name: "socket: profile, to and params variables", req: Request{Trigger: TriggerSocket, Data: d2000,
			Ask: socket(channel("u1", "2000", "mediafork_profile", "speech", "mediafork_to", "127.0.0.1:1;127.0.0.1:2", "mediafork_rate", "8k", "mediafork_encoding", "pcmu"))},
			profile: "speech", to: []string{"127.0.0.1:1", "127.0.0.1:2"}, addrs: append(ap("127.0.0.1:9100"), append(ap("127.0.0.1:1"), ap("127.0.0.1:2")...)...),
			params: Params{Mix: Mono, Rate: 8000, Encoding: PCMU, FrameMs: 20}, meta: md("loopback/2000-a", "2000", "1000", "2000")},
		{name: "socket: only a param set, the rule decides and the param wins", req: Request{Trigger: TriggerSocket, Data: d2000,
			Ask: socket(channel("u1", "2000", "mediafork_mix", "stereo"))},
			profile: "speech", addrs: ap("127.0.0.1:9100"), params: Params{Mix: Stereo, Rate: 16000, Encoding: PCMU, FrameMs: 20},
			meta: md("Support-2000", "2000", "1000", "2000")},
		{name: "socket: the rule's address asked by a variable is ad hoc", req: Request{Trigger: TriggerSocket, Data: d3000,
			Ask: socket(channel("u1", "3000", "mediafork_to", "10.1.1.1:9"))}, err: ErrNotAllowed},
		{name: "socket: nothing asked, no rule", req: Request{Trigger: TriggerSocket, Data: d4000}, err: ErrNoRule},

		// ingest: first text frame, then query, then the call (lookup); no rules.
		{name: "ingest: the first frame's destinations over the query's; the query's params", req: Request{Trigger: TriggerIngest, UUID: "u1",
			Ask:      Ask{To: []string{"127.0.0.1:5"}, Metadata: Metadata{CallerID: "555"}},
			Fallback: []Ask{{Profile: "speech", Mix: Mixed}, {Profile: "analytics", Metadata: Metadata{ChannelID: "loopback/x", CallerID: "1"}}}},
			to: []string{"127.0.0.1:5"}, addrs: ap("127.0.0.1:5"), params: Params{Mix: Mixed, Rate: 8000, Encoding: L16, FrameMs: 20},
			meta: md("loopback/x", "", "555", "")},
		{name: "ingest: the query's profile with its params", req: Request{Trigger: TriggerIngest, UUID: "u1",
			Fallback: []Ask{{Profile: "speech", Mix: Stereo}}},
			profile: "speech", addrs: ap("127.0.0.1:9100"), params: Params{Mix: Stereo, Rate: 16000, Encoding: L16, FrameMs: 20}, meta: md("u1", "", "", "")},
		{name: "ingest: the call's variables last", req: Request{Trigger: TriggerIngest, UUID: "u1",
			Fallback: []Ask{{}, {To: []string{"127.0.0.1:6"}, Metadata: md("loopback/y", "9", "8", "7")}}},
			to: []string{"127.0.0.1:6"}, addrs: ap("127.0.0.1:6"), params: stereo8k, meta: md("loopback/y", "9", "8", "7")},
		{name: "ingest: the call's to is ad hoc too", req: Request{Trigger: TriggerIngest, UUID: "u1",
			Fallback: []Ask{{}, {To: []string{"10.1.1.1:9"}}}}, err: ErrNotAllowed},
		{name: "ingest: no rules, no destination", req: Request{Trigger: TriggerIngest, UUID: "u1", Data: d2000}, err: ErrBadDestination},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Server = "fs1"
			spec, err := p.Resolve(context.Background(), tc.req)
			if tc.err != nil {
				if tc.err == errBadReq {
					var br *BadRequest
					assert.ErrorAs(t, err, &br)
				} else {
					assert.ErrorIs(t, err, tc.err)
				}
				if errors.Is(tc.err, ErrNotAllowed) {
					var br *BadRequest
					assert.False(t, errors.As(err, &br), "not allowed is its own answer (403 at the ingest)")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.profile, spec.Profile)
			assert.Equal(t, tc.to, spec.To)
			assert.Equal(t, tc.addrs, spec.Addrs(), "resolved once, pinned")
			assert.Equal(t, tc.params, spec.Params)
			assert.Equal(t, tc.meta, spec.Metadata)
			assert.Equal(t, "fs1", spec.Server)
			assert.Equal(t, "mediafork", spec.Bug)
		})
	}
}

// Check: what is asked must be valid; a destination may still come later.
func TestPolicyCheck(t *testing.T) {
	p := testPolicy()
	spec, err := p.Check(context.Background(), Request{Trigger: TriggerIngest, UUID: "u1", Ask: Ask{Mix: Mono}})
	require.NoError(t, err)
	assert.Equal(t, Params{Mix: Mono, Rate: 8000, Encoding: L16, FrameMs: 20}, spec.Params)
	assert.Empty(t, spec.Addrs())
	_, err = p.Check(context.Background(), Request{Trigger: TriggerIngest, UUID: "u1", Ask: Ask{Mix: "quad"}})
	var br *BadRequest
	assert.ErrorAs(t, err, &br)
	_, err = p.Check(context.Background(), Request{Trigger: TriggerIngest, UUID: "u1", Ask: Ask{To: []string{"8.8.8.8:1"}}})
	assert.ErrorIs(t, err, ErrNotAllowed)
	_, err = p.Check(context.Background(), Request{Trigger: TriggerAPI, UUID: "u1"})
	assert.ErrorAs(t, err, &br, "the API must name a destination")
}

// Metadata is cut to what signaling holds.
func TestPolicyTruncatesMetadata(t *testing.T) {
	long := "é0123456789012345678901234567890123456789"
	spec, err := testPolicy().Resolve(context.Background(), Request{Trigger: TriggerAPI, UUID: "u1",
		Ask: Ask{Profile: "analytics", Metadata: Metadata{Exten: long}}})
	require.NoError(t, err)
	assert.LessOrEqual(t, len(spec.Metadata.Exten), 31)
}

// The Spec says what asked for the fork, and which rule decided.
func TestPolicyResolveNamesTriggerAndRule(t *testing.T) {
	p := testPolicy()
	spec, err := p.Resolve(t.Context(), Request{Trigger: TriggerRule, Data: channel("u1", "2000")})
	require.NoError(t, err)
	assert.Equal(t, TriggerRule, spec.Trigger)
	assert.NotEmpty(t, spec.Rule)
	assert.Equal(t, p.Rules[0].Name, spec.Rule)
	spec, err = p.Resolve(t.Context(), Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "speech"}})
	require.NoError(t, err)
	assert.Equal(t, TriggerAPI, spec.Trigger)
	assert.Empty(t, spec.Rule, "no rule decided")
}
