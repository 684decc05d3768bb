package mediafork

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every pair of sources that can set the same fork parameter, each row built
// as its trigger builds its Request (requests.go, fscli.go, outbound.go,
// web/ingest_request.go), the higher source set to one value and the lower
// to another: the higher one's must come out. SPEC §2 (ingest: the first text
// frame; the URL query; channel data from ESL; defaults, channel_id = the
// uuid), §3.2 (the socket's channel variables, else the rules), §3.4 (rule
// over profile over defaults; templates over the channel's defaults) and §4
// (the request's own fields over the profile's over the defaults).
//
// Fields each source can set (the rows cover every pair among them):
//
//	                 destinations  mix/rate/encoding  frame_ms  metadata
//	API request      profile, to   yes                -         yes
//	fs_cli targets   profile, to   -                  -         -
//	socket variables profile, to   yes                -         mediafork=
//	rule             profile, to   yes (complete)     yes       templates
//	profile          -             yes (complete)     yes       -
//	first text frame profile, to   -                  -         yes
//	ingest query     profile, to   yes                -         -
//	call lookup      profile, to   -                  -         channel's defaults
//	channel data     -             -                  -         defaults
//	fork defaults    -             yes                yes       channel_id = uuid
func TestPolicyPrecedenceEveryPair(t *testing.T) {
	// narrow: a profile whose every param differs from the defaults and from
	// the rule's, so that any field taken from the wrong source shows.
	narrow := Params{Mix: Mixed, Rate: 16000, Encoding: PCMA, FrameMs: 40}
	p := testPolicy()
	p.Destinations.Profiles["narrow"] = Profile{Endpoints: []string{"127.0.0.1:9200"}, Params: narrow}
	ruleParams := p.Rules[0].Params // support: mono 16k pcmu 20, over its profile speech (mono 16k l16 20)
	d2000 := channel("u1", "2000")
	socket := func(dest string, vars ...string) Request {
		d := channel("u1", dest, vars...)
		a, err := SocketAsk(d)
		require.NoError(t, err)
		return Request{Trigger: TriggerSocket, Ask: a, Data: d}
	}
	// ingest is a hand-typed fork as the ingest asks: the first text frame,
	// then the URL query, then what the call lookup found.
	ingest := func(frame, query, lookup Ask) Request {
		return Request{Trigger: TriggerIngest, UUID: "u1", Ask: frame, Fallback: []Ask{query, lookup}}
	}
	md := func(ch, ex, ca, cd string) Metadata {
		return Metadata{ChannelID: ch, Exten: ex, CallerID: ca, CalledID: cd}
	}
	chanMeta := md("loopback/2000-a", "2000", "1000", "2000") // d2000's defaults
	with := func(base Params, f func(*Params)) Params { f(&base); return base }

	cases := []struct {
		name    string
		req     Request
		profile string
		to      []string
		rule    string
		params  Params
		meta    Metadata
	}{
		// API: the request's fields over the profile's over the defaults;
		// the rules are not asked; its metadata over the channel's.
		{name: "api mix over profile", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "narrow", Mix: Stereo}},
			profile: "narrow", params: with(narrow, func(p *Params) { p.Mix = Stereo }), meta: md("u1", "", "", "")},
		{name: "api rate over profile", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "narrow", Rate: 8000}},
			profile: "narrow", params: with(narrow, func(p *Params) { p.Rate = 8000 }), meta: md("u1", "", "", "")},
		{name: "api encoding over profile", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "narrow", Encoding: L16}},
			profile: "narrow", params: with(narrow, func(p *Params) { p.Encoding = L16 }), meta: md("u1", "", "", "")},
		{name: "api profile over defaults", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "narrow"}},
			profile: "narrow", params: narrow, meta: md("u1", "", "", "")},
		{name: "api fields over defaults", req: Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{To: []string{"127.0.0.1:7"}, Mix: Mono, Rate: 16000, Encoding: PCMU}},
			to: []string{"127.0.0.1:7"}, params: Params{Mix: Mono, Rate: 16000, Encoding: PCMU, FrameMs: 20}, meta: md("u1", "", "", "")},
		{name: "api destination over rule", req: Request{Trigger: TriggerAPI, UUID: "u1", Data: d2000, Ask: Ask{Profile: "narrow"}},
			profile: "narrow", params: narrow, meta: chanMeta},
		{name: "api metadata over channel data, field by field", req: Request{Trigger: TriggerAPI, UUID: "u1", Data: d2000,
			Ask: Ask{Profile: "narrow", Metadata: md("api-ch", "", "555", "999")}},
			profile: "narrow", params: narrow, meta: md("api-ch", "2000", "555", "999")},

		// fs_cli: its targets over the rules; with none, the rule's
		// destination, params and templates.
		{name: "fs_cli target over rule", req: Request{Trigger: TriggerCLI, UUID: "u1", Data: d2000, Ask: Ask{Profile: "narrow"}},
			profile: "narrow", params: narrow, meta: chanMeta},
		{name: "fs_cli no target: the rule", req: Request{Trigger: TriggerCLI, UUID: "u1", Data: d2000},
			profile: "speech", rule: "support", params: ruleParams, meta: md("Support-2000", "2000", "1000", "2000")},

		// socket: the channel variables over the rules; params variables
		// over the rule's and the profile's; mediafork='s metadata over the
		// channel's.
		{name: "socket mediafork_profile over rule", req: socket("2000", "mediafork_profile", "narrow"),
			profile: "narrow", params: narrow, meta: chanMeta},
		{name: "socket mediafork= over rule", req: socket("2000", "mediafork", "127.0.0.1:8080"),
			to: []string{"127.0.0.1:8080"}, params: stereo8k, meta: chanMeta},
		{name: "socket mediafork_to over rule", req: socket("2000", "mediafork_to", "127.0.0.1:1"),
			to: []string{"127.0.0.1:1"}, params: stereo8k, meta: chanMeta},
		{name: "socket mediafork_mix over rule", req: socket("2000", "mediafork_mix", "stereo"),
			profile: "speech", rule: "support", params: with(ruleParams, func(p *Params) { p.Mix = Stereo }), meta: md("Support-2000", "2000", "1000", "2000")},
		{name: "socket mediafork_rate over rule", req: socket("2000", "mediafork_rate", "8k"),
			profile: "speech", rule: "support", params: with(ruleParams, func(p *Params) { p.Rate = 8000 }), meta: md("Support-2000", "2000", "1000", "2000")},
		{name: "socket mediafork_encoding over rule", req: socket("2000", "mediafork_encoding", "pcma"),
			profile: "speech", rule: "support", params: with(ruleParams, func(p *Params) { p.Encoding = PCMA }), meta: md("Support-2000", "2000", "1000", "2000")},
		{name: "socket params over profile", req: socket("4000", "mediafork_profile", "narrow", "mediafork_mix", "stereo", "mediafork_rate", "8k", "mediafork_encoding", "l16"),
			profile: "narrow", params: Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 40}, meta: md("loopback/4000-a", "4000", "1000", "4000")},
		{name: "socket params over defaults", req: socket("4000", "mediafork", "127.0.0.1:8080", "mediafork_mix", "mono", "mediafork_encoding", "pcmu"),
			to: []string{"127.0.0.1:8080"}, params: Params{Mix: Mono, Rate: 8000, Encoding: PCMU, FrameMs: 20}, meta: md("loopback/4000-a", "4000", "1000", "4000")},
		{name: "socket mediafork= metadata over channel data", req: socket("2000", "mediafork", "127.0.0.1:8080,Sock-Ch,,777"),
			to: []string{"127.0.0.1:8080"}, params: stereo8k, meta: md("Sock-Ch", "2000", "777", "2000")},

		// rule: its params (over its profile's, conf.RuleParams) and its
		// templates over the channel's defaults; an empty template gives way.
		{name: "rule params over its profile's; templates over channel data", req: Request{Trigger: TriggerRule, Data: d2000},
			profile: "speech", rule: "support", params: ruleParams, meta: md("Support-2000", "2000", "1000", "2000")},

		// ingest: the first text frame, the URL query, the call lookup, the
		// defaults (channel_id = the uuid). The frame sets destinations and
		// metadata; the query destinations and params; the lookup
		// destinations (mediafork_profile / mediafork_to) and metadata.
		{name: "ingest frame profile over query's and lookup's", req: ingest(Ask{Profile: "narrow"}, Ask{Profile: "speech"}, Ask{Profile: "analytics"}),
			profile: "narrow", params: narrow, meta: md("u1", "", "", "")},
		{name: "ingest query profile over lookup's", req: ingest(Ask{}, Ask{Profile: "speech"}, Ask{Profile: "analytics"}),
			profile: "speech", params: mono16k, meta: md("u1", "", "", "")},
		{name: "ingest lookup profile when nothing else names one", req: ingest(Ask{}, Ask{}, Ask{Profile: "narrow"}),
			profile: "narrow", params: narrow, meta: md("u1", "", "", "")},
		{name: "ingest frame to over query profile: the whole destination", req: ingest(Ask{To: []string{"127.0.0.1:5"}}, Ask{Profile: "speech"}, Ask{}),
			to: []string{"127.0.0.1:5"}, params: stereo8k, meta: md("u1", "", "", "")},
		{name: "ingest query to over lookup to", req: ingest(Ask{}, Ask{To: []string{"127.0.0.1:5"}}, Ask{To: []string{"127.0.0.1:6"}}),
			to: []string{"127.0.0.1:5"}, params: stereo8k, meta: md("u1", "", "", "")},
		{name: "ingest query params over the frame's profile", req: ingest(Ask{Profile: "narrow"}, Ask{Mix: Stereo, Encoding: L16}, Ask{}),
			profile: "narrow", params: with(narrow, func(p *Params) { p.Mix, p.Encoding = Stereo, L16 }), meta: md("u1", "", "", "")},
		{name: "ingest query params over the lookup's profile", req: ingest(Ask{}, Ask{Rate: 8000}, Ask{Profile: "narrow"}),
			profile: "narrow", params: with(narrow, func(p *Params) { p.Rate = 8000 }), meta: md("u1", "", "", "")},
		{name: "ingest query params over defaults", req: ingest(Ask{To: []string{"127.0.0.1:5"}}, Ask{Mix: Mono, Rate: 16000, Encoding: PCMA}, Ask{}),
			to: []string{"127.0.0.1:5"}, params: Params{Mix: Mono, Rate: 16000, Encoding: PCMA, FrameMs: 20}, meta: md("u1", "", "", "")},
		{name: "ingest frame metadata over lookup's, field by field", req: ingest(Ask{Profile: "narrow", Metadata: md("frame-ch", "", "555", "")}, Ask{},
			Ask{Metadata: md("loopback/x", "2000", "1000", "2001")}),
			profile: "narrow", params: narrow, meta: md("frame-ch", "2000", "555", "2001")},
		{name: "ingest lookup metadata over the uuid", req: ingest(Ask{}, Ask{Profile: "narrow"}, Ask{Metadata: md("loopback/x", "2000", "", "")}),
			profile: "narrow", params: narrow, meta: md("loopback/x", "2000", "", "")},
		{name: "ingest frame channel_id over the uuid", req: ingest(Ask{Profile: "narrow", Metadata: md("frame-ch", "", "", "")}, Ask{}, Ask{}),
			profile: "narrow", params: narrow, meta: md("frame-ch", "", "", "")},

		// Resolve's own rule, whatever the sources: for each field the first
		// source that sets it. (No trigger today has two sources setting
		// params, nor metadata beside a rule's templates: these rows pin the
		// contract the triggers rely on.)
		{name: "first source setting a param wins, field by field", req: Request{Trigger: TriggerIngest, UUID: "u1",
			Ask:      Ask{Profile: "narrow", Mix: Mono},
			Fallback: []Ask{{Mix: Stereo, Rate: 8000, FrameMs: 20}, {Mix: Mixed, Rate: 32000, Encoding: L16, FrameMs: 10}}},
			profile: "narrow", params: Params{Mix: Mono, Rate: 8000, Encoding: L16, FrameMs: 20}, meta: md("u1", "", "", "")},
		{name: "first source setting a metadata field wins, field by field", req: Request{Trigger: TriggerIngest, UUID: "u1",
			Ask:      Ask{Profile: "narrow", Metadata: md("a", "", "", "")},
			Fallback: []Ask{{Metadata: md("b", "b", "", "")}, {Metadata: md("c", "c", "c", "")}}},
			profile: "narrow", params: narrow, meta: md("a", "b", "c", "")},
		{name: "a source's metadata over the rule's templates", req: Request{Trigger: TriggerCLI, UUID: "u1", Data: d2000,
			Ask: Ask{Metadata: md("cli-ch", "", "", "")}},
			profile: "speech", rule: "support", params: ruleParams, meta: md("cli-ch", "2000", "1000", "2000")},
		{name: "first source naming a destination wins", req: Request{Trigger: TriggerIngest, UUID: "u1",
			Fallback: []Ask{{Mix: Stereo}, {Profile: "speech"}, {To: []string{"127.0.0.1:5"}}}},
			profile: "speech", params: with(mono16k, func(p *Params) { p.Mix = Stereo }), meta: md("u1", "", "", "")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := p.Resolve(context.Background(), tc.req)
			require.NoError(t, err)
			assert.Equal(t, tc.profile, spec.Profile, "profile")
			assert.Equal(t, tc.to, spec.To, "to")
			assert.Equal(t, tc.rule, spec.Rule, "rule")
			assert.Equal(t, tc.params, spec.Params, "params")
			assert.Equal(t, tc.meta, spec.Metadata, "metadata")
			var want []netip.AddrPort
			if tc.profile != "" {
				for _, e := range p.Destinations.Profiles[tc.profile].Endpoints {
					want = append(want, netip.MustParseAddrPort(e))
				}
			}
			for _, a := range tc.to {
				want = append(want, netip.MustParseAddrPort(a))
			}
			assert.Equal(t, want, spec.Addrs(), "the chosen destination's addresses, and no other")
		})
	}
}
