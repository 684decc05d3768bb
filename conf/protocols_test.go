package conf

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

// Endpoints of several protocols in one profile: each one's protocol and
// keys reach the domain, parallel to the addresses, and the policy resolves
// them into targets; config check writes them back as they were written.
func TestProfileEndpointProtocols(t *testing.T) {
	t.Parallel()
	c, err := Load(write(t, `
profiles:
  Mixed:
    endpoints:
      - 10.1.0.1:9000
      - {address: 10.1.0.2:5000, protocol: rtp, directions: [rx, tx], encoding: pcmu}
      - {address: 10.1.0.3:6000, protocol: RTP, Payload_Type: 97, dtmf_payload_type: 110, tx_address: "10.1.0.4:7000"}
      - {address: 10.1.0.5:9000, protocol: tlv}
rules:
  - {name: r, match: {Caller-Destination-Number: "^1$"}, to: ["rtp://10.9.0.1:4000", "10.9.0.2:4000"]}
`), noEnv)
	require.NoError(t, err)
	p := c.Profiles["Mixed"]
	assert.Equal(t, []EndpointProtocol{{}, {Protocol: "rtp"},
		{Protocol: "RTP", Keys: map[string]any{"Payload_Type": 97, "dtmf_payload_type": 110, "tx_address": "10.1.0.4:7000"}},
		{Protocol: "tlv"}}, p.Protocols)

	b, err := json.Marshal(p)
	require.NoError(t, err)
	assert.JSONEq(t, `{"endpoints":["10.1.0.1:9000",{"address":"10.1.0.2:5000","protocol":"rtp","directions":["rx","tx"],"encoding":"pcmu"},
		{"address":"10.1.0.3:6000","protocol":"RTP","Payload_Type":97,"dtmf_payload_type":110,"tx_address":"10.1.0.4:7000"},
		{"address":"10.1.0.5:9000","protocol":"tlv"}]}`, string(b))
	assert.Contains(t, string(b), `"address":"10.1.0.3:6000","protocol":"RTP","Payload_Type":97`, "common keys first, then the protocol's")

	d := c.DomainDestinations()
	assert.Equal(t, []mediafork.EndpointProtocol{{}, {Protocol: mediafork.ProtocolRTP},
		{Protocol: mediafork.ProtocolRTP, Options: mediafork.RTPOptions{PayloadType: 97, DTMFPayloadType: 110, TxAddress: "10.1.0.4:7000"}},
		{}}, d.Profiles["Mixed"].Protocols)

	pol := c.Policy()
	pol.Destinations.Allow = nil
	spec, err := pol.Resolve(t.Context(), mediafork.Request{Trigger: mediafork.TriggerAPI, UUID: "u1", Ask: mediafork.Ask{Profile: "Mixed"}})
	require.NoError(t, err)
	require.Len(t, spec.Targets, 4)
	assert.Equal(t, mediafork.Target{Protocol: mediafork.ProtocolRTP, Addr: netip.MustParseAddrPort("10.1.0.3:6000"),
		Options: mediafork.RTPOptions{PayloadType: 97, DTMFPayloadType: 110, Tx: netip.MustParseAddrPort("10.1.0.4:7000")}}, spec.Targets[2])
	assert.Equal(t, mediafork.ProtocolTLV, spec.Targets[3].Protocol)

	spec, err = pol.Resolve(t.Context(), mediafork.Request{Trigger: mediafork.TriggerRule, UUID: "u1",
		Data: mediafork.NewChannelData(map[string]string{"Unique-ID": "u1", "Caller-Destination-Number": "1"})})
	require.NoError(t, err)
	assert.Equal(t, []mediafork.Target{{Protocol: mediafork.ProtocolRTP, Addr: netip.MustParseAddrPort("10.9.0.1:4000")},
		{Addr: netip.MustParseAddrPort("10.9.0.2:4000")}}, spec.Targets, "a rule's to, rtp:// and plain")
}

// What a protocol refuses is named by its key.
func TestProfileEndpointProtocolRefusals(t *testing.T) {
	t.Parallel()
	prof := func(params, ep string) string {
		return "profiles:\n  p:\n" + params + "    endpoints:\n      - " + ep + "\n"
	}
	for _, tc := range []struct {
		name, yaml, key, msg string
	}{
		{"unknown protocol", prof("", "{address: a:1, protocol: smtp}"), "profiles.p.endpoints[0].protocol", `"smtp" is not one of tlv|rtp`},
		{"typo of a protocol key", prof("", "{address: a:2, protocol: rtp, payload_typ: 97}"), "profiles.p.endpoints[0].payload_typ", "did you mean payload_type?"},
		{"another protocol's key", prof("", "{address: a:1, tx_address: b:2}"), "profiles.p.endpoints[0].tx_address", "is a key of protocol rtp, not of tlv"},
		{"payload type not dynamic", prof("", "{address: a:2, protocol: rtp, payload_type: 8}"), "profiles.p.endpoints[0].payload_type", "not a dynamic payload type"},
		{"payload type not a number", prof("", "{address: a:2, protocol: rtp, dtmf_payload_type: high}"), "profiles.p.endpoints[0].dtmf_payload_type", "not a number"},
		{"same payload types", prof("", "{address: a:2, protocol: rtp, payload_type: 101}"), "profiles.p.endpoints[0].dtmf_payload_type", "is payload_type too"},
		{"odd port", prof("", "{address: a:5001, protocol: rtp}"), "profiles.p.endpoints[0].address", "port 5001 is odd"},
		{"odd tx port", prof("", "{address: a:5000, protocol: rtp, tx_address: b:7001}"), "profiles.p.endpoints[0].tx_address", "port 7001 is odd"},
		{"no room for TX", prof("", "{address: a:65534, protocol: rtp}"), "profiles.p.endpoints[0].address", "an even port below 65535"},
		{"pcmu at 16 kHz", prof("    rate: 16000\n", "{address: a:2, protocol: rtp, encoding: pcmu}"), "profiles.p.endpoints[0].rate", "pcmu over RTP is 8000 Hz"},
		{"payload_type of pcma", prof("", "{address: a:2, protocol: rtp, encoding: pcma, payload_type: 100}"), "profiles.p.endpoints[0].payload_type", "static payload type 8"},
		{"tx_address for TX alone", prof("", "{address: a:2, protocol: rtp, directions: [tx], tx_address: b:4}"), "profiles.p.endpoints[0].tx_address", "first stream (tx) goes to address"},
		{"a rule's to", "rules:\n  - {name: r, match: {A: x}, to: [\"sip://a:1\"]}\n", "rules[0](r).to", `"sip" is not one of tlv|rtp`},
		{"a rule's rtp to without a port", "rules:\n  - {name: r, match: {A: x}, to: [\"rtp://a\"]}\n", "rules[0](r).to", "not host:port"},
		{"a rule's rate the rtp endpoint cannot take", "profiles:\n  p:\n    endpoints: [{address: a:2, protocol: rtp, encoding: pcmu}]\n" +
			"rules:\n  - {name: r, match: {A: x}, profile: p, rate: 16000}\n", "rules[0](r)", "rate: pcmu over RTP is 8000 Hz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce, err := loadError(t, tc.yaml, noEnv)
			assert.Equal(t, tc.key, ce.Key, "%v", err)
			assert.Contains(t, ce.Msg, tc.msg, "%v", err)
		})
	}
}
