package conf

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

// Both forms of endpoint in one list; the structured one's format reaches
// the domain, parallel to the addresses.
func TestProfileEndpointsBothForms(t *testing.T) {
	t.Parallel()
	c, err := Load(write(t, `
profiles:
  Split:
    rate: 16000
    endpoints:
      - 10.1.0.1:9000
      - {address: 10.1.0.2:9000, directions: [rx], encoding: l16}
      - address: 10.1.0.3:9000
        directions: [RX, tx, mixed]
        encoding: pcmu
        rate: 8000
        frame_ms: 30
      - {address: 10.1.0.4:9000}
  plain: {endpoints: [10.2.0.1:9000, 10.2.0.2:9000]}
`), noEnv)
	require.NoError(t, err)
	p := c.Profiles["Split"]
	assert.Equal(t, []string{"10.1.0.1:9000", "10.1.0.2:9000", "10.1.0.3:9000", "10.1.0.4:9000"}, p.Endpoints)
	assert.Equal(t, []EndpointFormat{{}, {Directions: []string{"rx"}, Encoding: "l16"},
		{Directions: []string{"RX", "tx", "mixed"}, Encoding: "pcmu", Rate: 8000, FrameMs: 30}, {}}, p.Formats)
	assert.Nil(t, c.Profiles["plain"].Formats, "no map, no formats")

	d := c.DomainDestinations()
	assert.Equal(t, p.Endpoints, d.Profiles["Split"].Endpoints)
	assert.Equal(t, []mediafork.EndpointFormat{{},
		{Directions: mediafork.DirSetOf(mediafork.DirRX), Encoding: mediafork.L16},
		{Directions: mediafork.DirSetOf(mediafork.DirRX, mediafork.DirTX, mediafork.DirMixed), Encoding: mediafork.PCMU, Rate: 8000, FrameMs: 30},
		{}}, d.Profiles["Split"].Formats)
	assert.Nil(t, d.Profiles["plain"].Formats)

	// config check prints them as they were written.
	b, err := json.Marshal(c.Profiles["Split"])
	require.NoError(t, err)
	assert.JSONEq(t, `{"rate":16000,"endpoints":["10.1.0.1:9000",{"address":"10.1.0.2:9000","directions":["rx"],"encoding":"l16"},
		{"address":"10.1.0.3:9000","directions":["RX","tx","mixed"],"encoding":"pcmu","rate":8000,"frame_ms":30},"10.1.0.4:9000"]}`, string(b))

	// Through the policy: a fork of Split has three streams' worth of formats.
	spec, err := c.Policy().Resolve(t.Context(), mediafork.Request{Trigger: mediafork.TriggerAPI, UUID: "u1",
		Ask: mediafork.Ask{Profile: "Split"}})
	require.NoError(t, err)
	assert.Len(t, spec.Addrs(), 4)
	assert.Equal(t, d.Profiles["Split"].Formats, spec.Formats())
}

// Every refusal names its key.
func TestProfileEndpointRefusals(t *testing.T) {
	t.Parallel()
	prof := func(params, ep string) string {
		return "profiles:\n  p:\n" + params + "    endpoints:\n      - " + ep + "\n"
	}
	cases := []struct {
		name, yaml, key, msg string
	}{
		{"unknown key", prof("", "{address: a:1, rat: 8000}"), "profiles.p.endpoints[0].rat", "unknown key; did you mean rate?"},
		{"no address", prof("", "{directions: [rx]}"), "profiles.p.endpoints[0].address", "is missing"},
		{"bad address", prof("", "{address: nowhere, directions: [rx]}"), "profiles.p.endpoints[0].address", "not host:port"},
		{"port 0", prof("", "{address: a:0, directions: [rx]}"), "profiles.p.endpoints[0].address", "no valid port"},
		{"not a string or map", prof("", "[a:1]"), "profiles.p.endpoints[0]", "neither host:port nor"},
		{"unknown direction", prof("", "{address: a:1, directions: [both]}"), "profiles.p.endpoints[0].directions", `"both" is not one of rx|tx|mixed`},
		{"empty directions", prof("", "{address: a:1, directions: []}"), "profiles.p.endpoints[0].directions", "is empty"},
		{"direction twice", prof("", "{address: a:1, directions: [rx, RX]}"), "profiles.p.endpoints[0].directions", "listed twice"},
		{"tx from mono", prof("    mix: mono\n", "{address: a:1, directions: [tx]}"), "profiles.p.endpoints[0].directions", "tx cannot be made from a mono bug"},
		{"mixed from mono", prof("    mix: mono\n", "{address: a:1, directions: [mixed]}"), "profiles.p.endpoints[0].directions", "mixed cannot be made from a mono bug"},
		{"rx from mixed", prof("    mix: mixed\n", "{address: a:1, directions: [rx]}"), "profiles.p.endpoints[0].directions", "rx cannot be made from a mixed bug"},
		{"rate up", prof("", "{address: a:1, rate: 16000}"), "profiles.p.endpoints[0].rate", "above the bug's 8000 Hz"},
		{"rate not a whole factor", prof("    rate: 48000\n", "{address: a:1, rate: 32000}"), "profiles.p.endpoints[0].rate", "not the bug's 48000 Hz divided by a whole number"},
		{"rate not a multiple of 8000", prof("    rate: 48000\n", "{address: a:1, rate: 12000}"), "profiles.p.endpoints[0].rate", "not a multiple of 8000"},
		{"rate negative", prof("", "{address: a:1, rate: -8000}"), "profiles.p.endpoints[0].rate", "not a sample rate"},
		{"rate not a number", prof("", "{address: a:1, rate: fast}"), "profiles.p.endpoints[0].rate", ""},
		{"frame_ms not whole samples", prof("    rate: 48000\n", "{address: a:1, rate: 8000, frame_ms: -5}"), "profiles.p.endpoints[0].frame_ms", ""},
		{"packet over the datagram limit", prof("    rate: 48000\n", "{address: a:1, frame_ms: 1000}"), "profiles.p.endpoints[0].frame_ms", "more than one UDP datagram"},
		{"encoding", prof("", "{address: a:1, encoding: opus}"), "profiles.p.endpoints[0].encoding", "l16|l16be|pcmu|pcma"},
		{"endpoints not a list", "profiles:\n  p: {endpoints: {address: a:1}}\n", "profiles.p.endpoints", "must be a list"},
		{"profile not a map", "profiles:\n  p: [a:1]\n", "profiles.p", "must be a map"},
		{"profiles not a map", "profiles: [a:1]\n", "profiles[0]", "expected type"},
		{"profile key", "profiles:\n  p: {endpoints: [a:1], rat: 1}\n", "profiles.p.rat", "unknown key"},
		{"a rule's mix the endpoint cannot take", "profiles:\n  p:\n    endpoints: [{address: a:1, directions: [tx]}]\n" +
			"rules:\n  - {name: r, match: {A: x}, profile: p, mix: mono}\n", "rules[0](r)", `profile "p" endpoints[0] (a:1) cannot be fed by this rule's bug (mono 8000 Hz): directions: tx cannot be made`},
		{"a rule's rate the endpoint cannot take", "profiles:\n  p:\n    rate: 16000\n    endpoints: [{address: a:1, rate: 16000}]\n" +
			"rules:\n  - {name: r, match: {A: x}, profile: p, rate: 8000}\n", "rules[0](r)", "rate: 16000 Hz is above the bug's 8000 Hz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ce, err := loadError(t, tc.yaml, noEnv)
			assert.Equal(t, tc.key, ce.Key, "%v", err)
			assert.Contains(t, ce.Msg, tc.msg)
		})
	}
}

// A programmatic config (demo, tests) is validated the same way.
func TestValidateProgrammaticProfile(t *testing.T) {
	t.Parallel()
	c := Defaults()
	c.Profiles = map[string]Profile{"p": {Endpoints: []string{"a:1", "b:2"}, Formats: []EndpointFormat{{}}}}
	var ce *Error
	require.ErrorAs(t, c.Validate(), &ce)
	assert.Equal(t, "profiles.p.endpoints", ce.Key)
	c.Profiles = map[string]Profile{"p": {Endpoints: []string{"a:1", "b:2"}, Formats: []EndpointFormat{{}, {Directions: []string{"mixed"}}}}}
	require.NoError(t, c.Validate(), "mixed made from the default stereo bug")
}

// The example's speech profile: one 16 kHz stereo bug, a speech engine on RX
// at 16 kHz and a recorder on both sides in pcmu at 8 kHz.
func TestExampleProfileFeedsTwoFormats(t *testing.T) {
	t.Parallel()
	c, err := Load("mediafork.example.yaml", noEnv)
	require.NoError(t, err)
	spec, err := c.Policy().Resolve(t.Context(), mediafork.Request{Trigger: mediafork.TriggerAPI, UUID: "u1",
		Ask: mediafork.Ask{Profile: "speech"}})
	require.NoError(t, err)
	assert.Equal(t, mediafork.Params{Mix: mediafork.Stereo, Rate: 16000, Encoding: mediafork.L16, FrameMs: 20}, spec.Params)
	assert.Equal(t, []mediafork.EndpointFormat{{Directions: mediafork.DirSetOf(mediafork.DirRX)},
		{Encoding: mediafork.PCMU, Rate: 8000}}, spec.Formats())
}
