package mediafork

import (
	"context"
	"net/netip"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// splitPolicy: testPolicy plus a profile "split" of a 16 kHz stereo bug whose
// endpoints take their own formats (a recorder, pcmu 8 kHz; a speech engine,
// RX only) and a plain one, and a rule for 5000 that makes its bug mono.
func splitPolicy() *Policy {
	p := testPolicy()
	p.Destinations.Profiles["split"] = Profile{
		Endpoints: []string{"127.0.0.1:9200", "127.0.0.1:9300", "127.0.0.1:9400", "127.0.0.1:9300"},
		Formats: []EndpointFormat{{Directions: DirSetOf(DirRX, DirTX), Encoding: PCMU, Rate: 8000}, {Directions: DirSetOf(DirRX)}, {},
			{Directions: DirSetOf(DirRX)}}, // the same address and format twice: once
		Params: Params{Mix: Stereo, Rate: 16000, Encoding: L16, FrameMs: 20},
	}
	p.Rules = append(p.Rules,
		Rule{Name: "mono-split", Match: map[string]*regexp.Regexp{"Caller-Destination-Number": regexp.MustCompile(`^5000$`)},
			Profile: "split", Params: Params{Mix: Mono, Rate: 16000, Encoding: L16, FrameMs: 20}},
		Rule{Name: "split-pcma", Match: map[string]*regexp.Regexp{"Caller-Destination-Number": regexp.MustCompile(`^6000$`)},
			Profile: "split", Params: Params{Mix: Stereo, Rate: 16000, Encoding: PCMA, FrameMs: 20}})
	p.Destinations.Profiles["wide"] = Profile{Endpoints: []string{"127.0.0.1:9500"},
		Formats: []EndpointFormat{{Rate: 16000}}, Params: Params{Mix: Stereo, Rate: 48000, Encoding: L16, FrameMs: 20}}
	return p
}

// Structured endpoints go through the one precedence: the params decided are
// the bug's, each endpoint's format rides along with its pinned address, and
// what the decided bug cannot feed is refused, whoever asked.
func TestPolicyResolveEndpointFormats(t *testing.T) {
	p := splitPolicy()
	ctx := context.Background()
	addrs := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9200"), netip.MustParseAddrPort("127.0.0.1:9300"),
		netip.MustParseAddrPort("127.0.0.1:9400")}
	formats := []EndpointFormat{{Directions: DirSetOf(DirRX, DirTX), Encoding: PCMU, Rate: 8000}, {Directions: DirSetOf(DirRX)}, {}}

	spec, err := p.Resolve(ctx, Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "split"}})
	require.NoError(t, err)
	assert.Equal(t, addrs, spec.Addrs())
	assert.Equal(t, formats, spec.Formats(), "parallel to Addrs")
	assert.Equal(t, Params{Mix: Stereo, Rate: 16000, Encoding: L16, FrameMs: 20}, spec.Params)

	// An ad-hoc to next to the profile is plain.
	spec, err = p.Resolve(ctx, Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "split", To: []string{"127.0.0.1:7"}}})
	require.NoError(t, err)
	assert.Equal(t, append(addrs, netip.MustParseAddrPort("127.0.0.1:7")), spec.Addrs())
	assert.Equal(t, append(formats, EndpointFormat{}), spec.Formats())

	// The request's params win over the profile's and are the bug's: the
	// endpoints' own formats follow (rate 8000 is still 16000 / 2 ... or 1).
	spec, err = p.Resolve(ctx, Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "split", Rate: 8000, Encoding: PCMA}})
	require.NoError(t, err)
	assert.Equal(t, Params{Mix: Stereo, Rate: 8000, Encoding: PCMA, FrameMs: 20}, spec.Params)
	assert.Equal(t, formats, spec.Formats())

	// A rule's params over the profile's.
	spec, err = p.Resolve(ctx, Request{Trigger: TriggerRule, Data: channel("u1", "6000")})
	require.NoError(t, err)
	assert.Equal(t, PCMA, spec.Encoding)
	assert.Equal(t, formats, spec.Formats())

	// Plain profiles keep no formats: their credentials are as before.
	spec, err = p.Resolve(ctx, Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "analytics"}})
	require.NoError(t, err)
	assert.Nil(t, spec.Formats())

	// Refused: what the decided bug cannot feed.
	for _, c := range []struct {
		name string
		r    Request
		err  string
	}{
		{"api mix mono", Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "split", Mix: Mono}},
			`profile "split" endpoint 127.0.0.1:9200: directions: tx cannot be made from a mono bug`},
		{"api mix mixed", Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "split", Mix: Mixed}},
			`profile "split" endpoint 127.0.0.1:9200: directions: rx cannot be made from a mixed bug`},
		{"rule making the bug mono", Request{Trigger: TriggerRule, Data: channel("u1", "5000")},
			`endpoint 127.0.0.1:9200: directions: tx cannot be made from a mono bug`},
		{"fs_cli params over a fallback's profile", Request{Trigger: TriggerCLI, UUID: "u1", Ask: Ask{Mix: Mono}, Fallback: []Ask{{Profile: "split"}}},
			`directions: tx cannot be made from a mono bug`},
		{"socket rate below the endpoint's", Request{Trigger: TriggerSocket, UUID: "u1", Ask: Ask{Profile: "wide", Rate: 8000}},
			`profile "wide" endpoint 127.0.0.1:9500: rate: 16000 Hz is above the bug's 8000 Hz`},
		{"ingest rate not a whole multiple", Request{Trigger: TriggerIngest, UUID: "u1", Ask: Ask{Profile: "wide", Rate: 24000}},
			`rate: 16000 Hz is not the bug's 24000 Hz divided by a whole number`},
	} {
		_, rerr := p.Resolve(ctx, c.r)
		var br *BadRequest
		require.ErrorAs(t, rerr, &br, c.name)
		assert.ErrorContains(t, rerr, c.err, c.name)
	}
	spec, err = p.Resolve(ctx, Request{Trigger: TriggerAPI, UUID: "u1", Ask: Ask{Profile: "wide", Rate: 32000}})
	require.NoError(t, err, "32000 = 16000 * 2")
	assert.Equal(t, []EndpointFormat{{Rate: 16000}}, spec.Formats())
}
