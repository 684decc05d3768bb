package conf

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

func noEnv(string) (string, bool) { return "", false }

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// loadError loads yaml, with lookup for the environment, and returns the
// config error it is refused with (and the whole error, for messages).
func loadError(t *testing.T, yaml string, lookup func(string) (string, bool)) (*Error, error) {
	t.Helper()
	_, err := Load(write(t, yaml), lookup)
	require.Error(t, err)
	var ce *Error
	require.ErrorAs(t, err, &ce, "%v", err)
	return ce, err
}

func write(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mediafork.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	return p
}

func TestDefaultsAreTheSpec(t *testing.T) {
	t.Parallel()
	c := Defaults()
	assert.Equal(t, "info", c.Log.Level)
	assert.Equal(t, "text", c.Log.Format)
	assert.Equal(t, []FreeSWITCH{{Name: "fs1", Address: "127.0.0.1:8021", Password: "ClueCon", Module: ModuleAuto}}, c.FreeSWITCH)
	assert.Equal(t, "127.0.0.1:8084", c.Outbound.Listen)
	assert.Equal(t, Ingest{Listen: "127.0.0.1:8090", URL: "ws://127.0.0.1:8090", MaxForks: 10000, MaxMessageBytes: 65536,
		MaxRoundInterval: Duration(2 * time.Millisecond)}, c.Ingest)
	assert.Equal(t, API{Listen: "127.0.0.1:8088"}, c.API)
	assert.Equal(t, Fork{Mix: "stereo", Rate: 8000, Encoding: "l16", FrameMs: 20, BugName: "mediafork", EndPacket: true, FormatPacket: true, DTMFPacket: true, GapPacket: true, MaxDest: 16,
		Retry: Retry{Attempts: 3, Backoff: Duration(time.Second)}}, c.Fork)
	assert.Equal(t, []string{"127.0.0.0/8", "::1/128"}, c.Destinations.Allow, "loopback only")
	assert.Equal(t, Limits{ESLEventQueue: 10000, ESLEventQueueBytes: 64 << 20, OutboundConnections: 1000,
		IngestMediaTimeout: Duration(5 * time.Minute)}, c.Limits)
	assert.Empty(t, c.Profiles)
	assert.Empty(t, c.Rules)
}

func TestLoadFileAndEnvironment(t *testing.T) {
	t.Parallel()
	p := write(t, `
log: {level: debug, format: json}
freeswitch:
  - {name: fs1, address: 10.0.0.5:8021, password: secret1}
  - {name: fs2, address: 10.0.0.6:8021, password: secret2, module: audio_stream}
ingest:
  url: ws://10.0.0.2:8090
  max_forks: 500
fork:
  encoding: pcmu
  retry: {attempts: 5, backoff: 250ms}
profiles:
  Analytics: {endpoints: ["10.1.0.1:9000", "10.1.0.2:9000"], mix: mono}
rules:
  - name: support
    match: {Caller-Destination-Number: "^2000$", variable_sip_h_X-Campaign: spring}
    profile: Analytics
    metadata: {exten: "${Caller-Destination-Number}"}
`)
	c, err := Load(p, env(map[string]string{"MEDIAFORK_INGEST_MAX_FORKS": "42", "MEDIAFORK_API_TOKEN": "tok", "MEDIAFORK_DESTINATIONS_ALLOW": "10.0.0.0/8,127.0.0.1/32"}))
	require.NoError(t, err)
	assert.Equal(t, "debug", c.Log.Level)
	assert.Len(t, c.FreeSWITCH, 2)
	assert.Equal(t, ModuleAuto, c.FreeSWITCH[0].Module, "a switch without module: asks at each connect")
	assert.Equal(t, ModuleAudioStream, c.FreeSWITCH[1].Module)
	assert.Equal(t, 42, c.Ingest.MaxForks, "the environment wins over the file")
	assert.Equal(t, "tok", c.API.Token)
	assert.Equal(t, []string{"10.0.0.0/8", "127.0.0.1/32"}, c.Destinations.Allow)
	assert.Equal(t, Duration(250*time.Millisecond), c.Fork.Retry.Backoff)
	assert.Equal(t, 8000, c.Fork.Rate, "unset keys keep their defaults")
	assert.Equal(t, map[string]string{"Caller-Destination-Number": "^2000$", "variable_sip_h_X-Campaign": "spring"}, c.Rules[0].Match,
		"header names keep their case")
	pp := c.ProfileParams(c.Profiles["Analytics"])
	assert.Equal(t, "mono", string(pp.Mix))
	assert.Equal(t, "pcmu", string(pp.Encoding), "a profile inherits the fork defaults")
	rp := c.RuleParams(c.Rules[0])
	assert.Equal(t, "mono", string(rp.Mix), "a rule inherits its profile")
	d := c.DomainDestinations()
	assert.Len(t, d.Allow, 2)
	assert.Equal(t, []string{"10.1.0.1:9000", "10.1.0.2:9000"}, d.Profiles["Analytics"].Endpoints)
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		yaml string
		env  map[string]string
		key  string
	}{
		{"bogus: 1\n", nil, "bogus"},
		{"fork:\n  mixx: mono\n", nil, "fork.mixx"},
		{"freeswitch:\n  - {name: a, address: 1.2.3.4:8021, pasword: x}\n", nil, "freeswitch[0].pasword"},
		{"fork:\n  rate: abc\n", nil, "fork.rate"},
		{"fork:\n  rate: 11025\n", nil, "fork.rate"},
		{"fork:\n  mix: quad\n", nil, "fork.mix"},
		{"fork:\n  encoding: opus\n", nil, "fork.encoding"},
		{"fork:\n  frame_ms: -20\n", nil, "fork.frame_ms"},
		{"fork:\n  rate: 48000\n  frame_ms: 1000\n", nil, "fork.frame_ms"},
		{"fork:\n  retry: {backoff: soon}\n", nil, "fork.retry.backoff"},
		{"fork:\n  bug_name: \"{x\"\n", nil, "fork.bug_name"},
		{"log:\n  level: loud\n", nil, "log.level"},
		{"ingest:\n  url: http://x\n", nil, "ingest.url"},
		{"ingest:\n  listen: nowhere\n", nil, "ingest.listen"},
		{"ingest:\n  max_forks: 0\n", nil, "ingest.max_forks"},
		{"ingest:\n  max_message_bytes: 8191\n", nil, "ingest.max_message_bytes"},
		{"ingest:\n  max_round_interval: 500us\n", nil, "ingest.max_round_interval"},
		{"ingest:\n  max_round_interval: 40ms\n", nil, "ingest.max_round_interval"},
		{"destinations:\n  allow: [10.0.0.0/33]\n", nil, "destinations.allow[0]"},
		{"freeswitch:\n  - {name: a, address: x:1}\n  - {name: a, address: y:1}\n", nil, "freeswitch[1].name"},
		{"profiles:\n  p: {endpoints: []}\n", nil, "profiles.p.endpoints"},
		{"profiles:\n  p: {endpoints: [a:1], rate: 12}\n", nil, "profiles.p.rate"},
		{"rules:\n  - {name: r, match: {A: \"(\"}, to: [a:1]}\n", nil, "rules[0](r).match.A"},
		{"rules:\n  - {name: r, match: {A: x}}\n", nil, "rules[0](r)"},
		{"rules:\n  - {name: r, match: {A: x}, profile: nope}\n", nil, "rules[0](r).profile"},
		{"", map[string]string{"MEDIAFORK_FORK_RATE": "fast"}, "fork.rate"},
		{"api:\n  listen: 0.0.0.0:8088\n", nil, "api.token"},
		{"api:\n  listen: \":8088\"\n", nil, "api.token"},
		{"api:\n  listen: 192.0.2.1:8088\n", nil, "api.token"},
		{"fork:\n  max_destinations: 0\n", nil, "fork.max_destinations"},
		{"freeswitch:\n  - {name: a, address: x:1, module: audio_socket}\n", nil, "freeswitch[0].module"},
		{"freeswitch:\n  - {name: a, address: x:1, module: AUTO}\n", nil, "freeswitch[0].module"},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			ce, err := loadError(t, tc.yaml, env(tc.env))
			assert.Equal(t, tc.key, ce.Key, "%v", err)
		})
	}
	_, err := Load("/nonexistent/mediafork.yaml", noEnv)
	assert.ErrorContains(t, err, "/nonexistent/mediafork.yaml")
	_, err = Load(write(t, "fork: [unclosed\n"), noEnv)
	assert.Error(t, err)
}

func TestMaskedHidesEverySecret(t *testing.T) {
	t.Parallel()
	c, err := Load(write(t, `
freeswitch: [{name: a, address: "1.1.1.1:8021", password: pw-one}]
ingest: {token: tok-two, key: key-three}
api: {token: tok-four}
`), noEnv)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"pw-one", "tok-two", "key-three", "tok-four"}, c.Secrets())
	m := c.Masked()
	assert.Equal(t, Mask, m.FreeSWITCH[0].Password)
	assert.Equal(t, Mask, m.Ingest.Token)
	assert.Equal(t, Mask, m.Ingest.Key)
	assert.Equal(t, Mask, m.API.Token)
	assert.Equal(t, "pw-one", c.FreeSWITCH[0].Password, "the original is untouched")
}

func FuzzLoad(f *testing.F) {
	f.Add("fork: {mix: mono}\n")
	f.Add("rules: [{name: r, match: {A: x}, to: [a:1]}]\n")
	f.Add("freeswitch: [{name: a, address: 'x:1'}]\n")
	if b, err := os.ReadFile("mediafork.example.yaml"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, yaml string) {
		p := filepath.Join(t.TempDir(), "f.yaml")
		os.WriteFile(p, []byte(yaml), 0o600)
		c, err := Load(p, noEnv)
		if err == nil && c.Validate() != nil {
			t.Fatal("Load returned a config that does not validate")
		}
	})
}

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	c, err := Load("mediafork.example.yaml", noEnv)
	require.NoError(t, err)
	assert.Len(t, c.Profiles, 4)
	assert.Equal(t, []string{"twilio", "audiofork"}, []string{c.Profiles["bots"].ProtocolOf(0).Protocol, c.Profiles["bots"].ProtocolOf(1).Protocol})
	assert.Equal(t, "rtp", c.Profiles["recorder"].ProtocolOf(0).Protocol, "one rtp endpoint")
	assert.Equal(t, "pcmu", string(c.RuleParams(c.Rules[0]).Encoding), "from its profile")
	assert.Equal(t, "pcmu", string(c.ProfileParams(c.Profiles["analytics"]).Encoding), "a hand-typed ?profile=analytics too")
	assert.Equal(t, 16000, c.ProfileParams(c.Profiles["speech"]).Rate)
	// Every default in the example is the real default.
	d := Defaults()
	assert.Equal(t, d.Fork, c.Fork)
	assert.Equal(t, d.Ingest, c.Ingest)
	assert.Equal(t, d.Destinations, c.Destinations)
	assert.Equal(t, d.HA, c.HA)
}

func TestEncodingErrorListsTheTable(t *testing.T) {
	t.Parallel()
	_, err := Load(write(t, "fork:\n  encoding: opus\n"), noEnv)
	require.Error(t, err)
	assert.ErrorContains(t, err, mediafork.EncodingNames(), "the encodings come from the table")
	assert.ErrorContains(t, err, "pcma")
}

func TestFormatPacketKey(t *testing.T) {
	t.Parallel()
	c, err := Load(write(t, ""), noEnv)
	require.NoError(t, err)
	assert.True(t, c.Fork.FormatPacket, "on by default")
	c, err = Load(write(t, "fork:\n  format_packet: false\n"), noEnv)
	require.NoError(t, err)
	assert.False(t, c.Fork.FormatPacket)
	c, err = Load(write(t, ""), env(map[string]string{"MEDIAFORK_FORK_FORMAT_PACKET": "false"}))
	require.NoError(t, err)
	assert.False(t, c.Fork.FormatPacket)
}

// Listen-in is off unless asked for, and then only behind a token.
func TestListenInOffByDefault(t *testing.T) {
	t.Parallel()
	assert.False(t, Defaults().API.ListenIn)
	c, err := Load("", func(k string) (string, bool) {
		v, ok := map[string]string{"MEDIAFORK_API_LISTEN_IN": "true", "MEDIAFORK_API_TOKEN": "tok"}[k]
		return v, ok
	})
	require.NoError(t, err)
	assert.True(t, c.API.ListenIn)
}

// YAML allows keys that are not strings; the decoder panicked on a null one
// (found by FuzzLoad). Each is one clear error naming where it is.
func TestNonStringKeysRefused(t *testing.T) {
	t.Parallel()
	for yaml, where := range map[string]string{
		"rules: [{&a : {x}, y: [z]}]": "rules[0]",
		"rules: [{~: 1}]":             "rules[0]",
		"profiles: {p: {1: x}}":       "profiles.p",
	} {
		_, err := Load(write(t, yaml), nil)
		require.Error(t, err, yaml)
		assert.Contains(t, err.Error(), where+": key", yaml)
		assert.Contains(t, err.Error(), "keys must be strings", yaml)
	}
}

// Every bad fork parameter is its own error in one load, not just the first.
func TestEveryBadParameterReported(t *testing.T) {
	t.Parallel()
	_, err := Load(write(t, "fork: {mix: quad, rate: 8001, encoding: opus, frame_ms: 0}\nprofiles:\n  p: {endpoints: [\"127.0.0.1:9\"], rate: 7, encoding: g729}\n"), nil)
	require.Error(t, err)
	for _, key := range []string{"fork.mix", "fork.rate", "fork.encoding", "fork.frame_ms", "profiles.p.rate", "profiles.p.encoding"} {
		assert.Contains(t, err.Error(), key+":", "every bad key is named")
	}
}

// config check's masked output fed back is refused, naming each masked secret,
// rather than connecting with "********" as the password.
func TestMaskIsNotASecret(t *testing.T) {
	t.Parallel()
	_, err := Load(write(t, "freeswitch: [{name: fs1, address: \"127.0.0.1:8021\", password: \"********\"}]\napi: {token: \"********\"}\n"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "freeswitch[0].password: is the mask")
	assert.Contains(t, err.Error(), "api.token: is the mask")
}

// A rule's metadata names signaling fields; a typo is an error, not a field
// that silently stays empty.
func TestRuleMetadataFieldsChecked(t *testing.T) {
	t.Parallel()
	_, err := Load(write(t, "profiles: {p: {endpoints: [\"127.0.0.1:9\"]}}\nrules:\n  - {name: r, match: {Caller-Destination-Number: \"^1\"}, profile: p, metadata: {caller_id: \"${Caller-Caller-ID-Number}\", calller_id: x, Exten: y}}\n"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rules[0](r).metadata.calller_id: unknown field: one of channel_id, exten, caller_id, called_id")
	assert.Contains(t, err.Error(), "rules[0](r).metadata.Exten: unknown field")
	assert.NotContains(t, err.Error(), "metadata.caller_id")
}

// A profile's pause mode reaches the forks it makes.
func TestProfilePause(t *testing.T) {
	t.Parallel()
	c, err := Load(write(t, "profiles:\n  quiet: {endpoints: [127.0.0.1:9000], pause: silence}\n  plain: {endpoints: [127.0.0.1:9001]}\n"), noEnv)
	require.NoError(t, err)
	d := c.DomainDestinations()
	assert.Equal(t, mediafork.PauseSilence, d.Profiles["quiet"].Pause)
	assert.Equal(t, mediafork.PauseNothing, d.Profiles["plain"].Pause)
}

func TestHAKeys(t *testing.T) {
	t.Parallel()
	c, err := Load(write(t, ""), noEnv)
	require.NoError(t, err)
	assert.False(t, c.HA.Enabled(), "no endpoints: one instance, as before")
	assert.Equal(t, Duration(5*time.Second), c.HA.LeaseTTL)
	assert.Equal(t, "/mediafork/", c.HA.Prefix)
	assert.Equal(t, "box:8090", c.InstanceName("box"), "the host name and the ingest's port")
	assert.Equal(t, "http://127.0.0.1:8088", c.APIURL("box"))

	c, err = Load(write(t, "ingest: {key: k, listen: 0.0.0.0:9000}\napi: {listen: ':8088', token: t}\nha:\n  etcd_endpoints: [http://10.0.0.5:2379, unix:///run/etcd.sock]\n  lease_ttl: 3s\n  instance: mf-a\n"), noEnv)
	require.NoError(t, err)
	assert.True(t, c.HA.Enabled())
	assert.Equal(t, []string{"http://10.0.0.5:2379", "unix:///run/etcd.sock"}, c.HA.EtcdEndpoints)
	assert.Equal(t, "mf-a", c.InstanceName("box"))
	assert.Equal(t, "http://box:8088", c.APIURL("box"), "a wildcard listener is reached by the host name")

	c, err = Load(write(t, "ingest: {key: k}\n"), env(map[string]string{"MEDIAFORK_HA_ETCD_ENDPOINTS": "http://a:2379,http://b:2379"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"http://a:2379", "http://b:2379"}, c.HA.EtcdEndpoints)

	for yaml, key := range map[string]string{
		"ha: {etcd_endpoints: [http://a:2379]}\n":              "ha.etcd_endpoints", // no shared ingest.key
		"ingest: {key: k}\nha: {etcd_endpoints: ['a:2379']}\n": "ha.etcd_endpoints[0]",
		"ha: {lease_ttl: 1s}\n":                                "ha.lease_ttl",
		"ha: {lease_ttl: 2500ms}\n":                            "ha.lease_ttl",
		"ha: {prefix: mediafork}\n":                            "ha.prefix",
		"ha: {instance: 'a b'}\n":                              "ha.instance",
		"ha: {advertise_api: 'ftp://x'}\n":                     "ha.advertise_api",
		"ha: {etcd_endpoint: [http://a:2379]}\n":               "ha.etcd_endpoint",
	} {
		_, lerr := Load(write(t, yaml), noEnv)
		require.Error(t, lerr, yaml)
		assert.ErrorContains(t, lerr, key, yaml)
	}
	_, err = Load(write(t, "ha: {etcd_endpoint: [http://a:2379]}\n"), noEnv)
	assert.ErrorContains(t, err, "did you mean etcd_endpoints", "a typo gets a suggestion")
}
