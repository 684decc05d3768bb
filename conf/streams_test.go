package conf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/testcert"
	"github.com/mediafork/mediafork/mediafork"
)

// A profile mixing every protocol: the stream endpoints' url and keys reach
// the domain (headers read from a file and the environment), their address
// is the url's host:port, config check shows them with their secrets masked,
// and the policy resolves them into targets whose credential form carries no
// secret.
func TestProfileStreamEndpoints(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("Bearer from-a-file-xyz\n"), 0o600))
	env := func(k string) (string, bool) {
		if k == "BOT_KEY" {
			return "key-from-env-123", true
		}
		return "", false
	}
	c, err := Load(write(t, `
ingest: {key: shared-ingest-key}
profiles:
  everything:
    endpoints:
      - 10.1.0.1:9000
      - {address: 10.1.0.2:5000, protocol: rtp}
      - protocol: twilio
        url: wss://10.1.0.3/media?token=query-secret-789
        directions: [rx]
        headers: {Authorization: "Bearer literal-secret-456", X-File: {file: `+tokenFile+`}, X-Api-Key: {env: BOT_KEY}}
        parameters: {bot: support}
        queue_ms: 1000
      - {protocol: audiofork, url: "ws://10.1.0.4:8080/fork", rate: 8000}
`), env)
	require.NoError(t, err)
	p := c.Profiles["everything"]
	assert.Equal(t, []string{"10.1.0.1:9000", "10.1.0.2:5000", "wss://10.1.0.3/media?token=query-secret-789", "ws://10.1.0.4:8080/fork"}, p.Endpoints)

	d := c.DomainDestinations()
	dp := d.Profiles["everything"]
	assert.Equal(t, []string{"10.1.0.1:9000", "10.1.0.2:5000", "10.1.0.3:443", "10.1.0.4:8080"}, dp.Endpoints, "a stream endpoint resolves as its url's host:port")
	so, ok := dp.Protocols[2].Options.(mediafork.StreamOptions)
	require.True(t, ok)
	ep := so.Endpoint()
	assert.Equal(t, "Bearer literal-secret-456", ep.Header.Get("Authorization"))
	assert.Equal(t, "Bearer from-a-file-xyz", ep.Header.Get("X-File"))
	assert.Equal(t, "key-from-env-123", ep.Header.Get("X-Api-Key"))
	assert.Equal(t, 1000, ep.QueueMs)
	assert.Equal(t, map[string]string{"bot": "support"}, ep.Parameters)
	assert.Equal(t, []byte("shared-ingest-key"), d.EndpointKey)

	pol := c.Policy()
	spec, err := pol.Resolve(t.Context(), mediafork.Request{Trigger: mediafork.TriggerAPI, UUID: "u1", Ask: mediafork.Ask{Profile: "everything"}})
	require.NoError(t, err)
	require.Len(t, spec.Targets, 4)
	assert.Equal(t, mediafork.ProtocolTwilio, spec.Targets[2].Protocol)
	assert.Equal(t, "10.1.0.3:443", spec.Targets[2].Addr.String())
	assert.Equal(t, "twilio+wss://10.1.0.3/media?…", spec.Targets[2].String())
	cred, err := json.Marshal(spec.Targets)
	require.NoError(t, err)
	masked, err := json.Marshal(c.Masked())
	require.NoError(t, err)
	for _, s := range []string{"literal-secret", "from-a-file", "key-from-env", "query-secret"} {
		assert.NotContains(t, string(cred), s, "credential")
		assert.NotContains(t, string(masked), s, "config check")
		assert.Contains(t, strings.Join(c.Secrets(), " "), s, "Secrets")
	}
	assert.Contains(t, string(masked), `"url":"wss://10.1.0.3/media?********"`)
	assert.Contains(t, string(masked), `"Authorization":"********"`)
	assert.Contains(t, string(masked), `"X-File":{"file":"`+tokenFile+`"}`)
	assert.Contains(t, string(masked), `"X-Api-Key":{"env":"BOT_KEY"}`)
	assert.Contains(t, string(masked), `{"url":"ws://10.1.0.4:8080/fork","protocol":"audiofork","rate":8000}`)
}

// A referenced variable may be a MEDIAFORK_* one: the environment check
// knows it.
func TestStreamHeaderFromMediaforkVariable(t *testing.T) {
	t.Parallel()
	path := write(t, "profiles:\n  p:\n    endpoints: [{protocol: twilio, url: \"ws://a:1/\", headers: {Authorization: {env: MEDIAFORK_BOT_AUTH}}}]\n")
	c, err := LoadEnviron(path, []string{"MEDIAFORK_BOT_AUTH=Bearer abc"})
	require.NoError(t, err)
	so := c.DomainDestinations().Profiles["p"].Protocols[0].Options.(mediafork.StreamOptions)
	assert.Equal(t, "Bearer abc", so.Endpoint().Header.Get("Authorization"))
	_, err = LoadEnviron(path, []string{"MEDIAFORK_BOT_AUTH=Bearer abc", "MEDIAFORK_BOT_AUTHX=1"})
	assert.ErrorContains(t, err, "MEDIAFORK_BOT_AUTHX: unknown environment variable")
}

// What stream endpoints refuse is named by its key.
func TestStreamEndpointRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))
	ca := testcert.NewCA(t, "ca")
	goodPEM := filepath.Join(dir, "good.pem")
	require.NoError(t, os.WriteFile(goodPEM, ca.PEM, 0o600))
	prof := func(ep string) string { return "profiles:\n  p:\n    endpoints:\n      - " + ep + "\n" }
	for _, tc := range []struct {
		name, yaml, key, msg string
	}{
		{"address on a twilio endpoint", prof("{protocol: twilio, address: a:1}"), "profiles.p.endpoints[0].address", "a twilio endpoint dials url"},
		{"no url", prof("{protocol: audiofork, rate: 8000}"), "profiles.p.endpoints[0].url", "is missing"},
		{"url on rtp", prof("{protocol: rtp, address: a:2, url: \"ws://a/\"}"), "profiles.p.endpoints[0].url", "is for stream protocols"},
		{"url on a plain map", prof("{url: \"ws://a/\"}"), "profiles.p.endpoints[0].url", "is for stream protocols"},
		{"http url", prof("{protocol: twilio, url: \"http://a/\"}"), "profiles.p.endpoints[0].url", `scheme "http" is not ws or wss`},
		{"credentials in the url", prof("{protocol: twilio, url: \"wss://u:p@a/\"}"), "profiles.p.endpoints[0].url", "has credentials"},
		{"typo of a stream key", prof("{protocol: twilio, url: \"ws://a/\", queue_msec: 100}"), "profiles.p.endpoints[0].queue_msec", "did you mean queue_ms?"},
		{"twilio's key on audiofork", prof("{protocol: audiofork, url: \"ws://a/\", account_sid: AC1}"), "profiles.p.endpoints[0].account_sid", "is a key of protocol twilio"},
		{"queue out of range", prof("{protocol: twilio, url: \"ws://a/\", queue_ms: 10}"), "profiles.p.endpoints[0].queue_ms", "from 100 to 60000"},
		{"a reserved header", prof("{protocol: twilio, url: \"ws://a/\", headers: {Sec-WebSocket-Key: x}}"), "profiles.p.endpoints[0].headers", "Sec-Websocket-Key is the WebSocket upgrade's own header"},
		{"the mask as a header", prof("{protocol: twilio, url: \"ws://a/\", headers: {Authorization: \"********\"}}"), "profiles.p.endpoints[0].headers.Authorization", "is the mask"},
		{"the mask as a query", prof("{protocol: twilio, url: \"ws://a/?********\"}"), "profiles.p.endpoints[0].url", "its query is the mask"},
		{"a header file missing", prof("{protocol: twilio, url: \"ws://a/\", headers: {Authorization: {file: /nonexistent/token}}}"), "profiles.p.endpoints[0].headers.Authorization.file", "cannot read /nonexistent/token"},
		{"a header variable unset", prof("{protocol: twilio, url: \"ws://a/\", headers: {Authorization: {env: NOT_SET_ANYWHERE}}}"), "profiles.p.endpoints[0].headers.Authorization.env", "NOT_SET_ANYWHERE is not set"},
		{"a header neither", prof("{protocol: twilio, url: \"ws://a/\", headers: {Authorization: {path: x}}}"), "profiles.p.endpoints[0].headers.Authorization", "neither file nor env"},
		{"a CA that is no PEM", prof("{protocol: twilio, url: \"wss://a/\", tls_ca_file: " + notPEM + "}"), "profiles.p.endpoints[0].tls_ca_file", "holds no PEM certificate"},
		{"TLS keys on ws", prof("{protocol: audiofork, url: \"ws://a/\", tls_ca_file: " + goodPEM + "}"), "profiles.p.endpoints[0].tls_ca_file", "url is ws://"},
		{"mixed to twilio", prof("{protocol: twilio, url: \"ws://a/\", directions: [mixed]}"), "profiles.p.endpoints[0].directions", "mixed is neither"},
		{"pcmu to audiofork", prof("{protocol: audiofork, url: \"ws://a/\", encoding: pcmu}"), "profiles.p.endpoints[0].encoding", "audiofork carries l16"},
		{"a stream url ad hoc in a rule", "rules:\n  - {name: r, match: {A: x}, to: [\"twilio://a:1\"]}\n", "rules[0](r).to", "comes from a profile"},
		{"a rule whose bug cannot feed twilio", "profiles:\n  p:\n    endpoints: [{protocol: twilio, url: \"ws://a/\"}]\n" +
			"rules:\n  - {name: r, match: {A: x}, profile: p, mix: mixed}\n", "rules[0](r)", "directions: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce, err := loadError(t, tc.yaml, noEnv)
			assert.Equal(t, tc.key, ce.Key, "%v", err)
			assert.Contains(t, ce.Msg, tc.msg, "%v", err)
		})
	}
	_, err := Load(write(t, prof("{protocol: twilio, url: \"wss://a/\", tls_ca_file: "+goodPEM+"}")), noEnv)
	assert.NoError(t, err, "a CA file that loads")
}
