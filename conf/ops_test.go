package conf

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/testcert"
)

func keysOf(err error) []string {
	var keys []string
	for _, e := range List(err) {
		keys = append(keys, e.Key)
	}
	return keys
}

// One load names every bad key: unknown keys, values the decoder refused,
// unknown variables, secret conflicts and what validation finds, each once.
func TestEveryErrorInOneLoad(t *testing.T) {
	t.Parallel()
	p := write(t, `
fork: {mix: quad, rate: abc, encodng: pcmu}
ingest: {max_frks: 3, url: "wss://x:1"}
freeswitch: [{name: a, address: nowhere, password: x, password_file: /dev/null}]
profiles:
  good: {endpoints: [127.0.0.1:9000]}
  bad: {endpoints: [{address: 127.0.0.1:9001, directions: [sideways]}]}
rules:
  - {name: r, match: {A: "("}, profile: nope}
  - {name: s, match: {A: x}, profile: bad}
`)
	_, err := LoadEnviron(p, []string{"MEDIAFORK_INGEST_MAXFORKS=3", "PATH=/bin", "MEDIAFORK_API_TOKEN=t"})
	require.Error(t, err)
	assert.Equal(t, []string{
		"fork.encodng", "ingest.max_frks", // unknown keys
		"fork.rate",                   // refused by the decoder (and not again by validation)
		"MEDIAFORK_INGEST_MAXFORKS",   // unknown variable
		"freeswitch[0].password_file", // value and file
		"freeswitch[0].address", "ingest.url", "fork.mix",
		"profiles.bad.endpoints[0].directions", // rule s naming the broken profile adds nothing
		"rules[0](r).match.A", "rules[0](r).profile",
	}, keysOf(err))
	assert.NotContains(t, err.Error(), "\n", "one line: it goes into a log line on reload")
	var one *Error
	require.ErrorAs(t, err, &one, "errors.As finds the first")
	assert.Equal(t, "fork.encodng", one.Key)
}

// An unknown key in the file gets a suggestion when it looks like a typo of a
// known one, as an unknown variable does; a word far from every key gets none.
func TestUnknownKeySuggestion(t *testing.T) {
	t.Parallel()
	cases := []struct{ yaml, want string }{
		{"ingest: {maxforks: 3}", "ingest.maxforks: unknown key; did you mean max_forks?"},
		{"ingest: {max_frks: 3}", "ingest.max_frks: unknown key; did you mean max_forks?"},
		{"freeswitch: [{name: a, address: 'h:1', passwrd_file: /x}]", "freeswitch[0].passwrd_file: unknown key; did you mean password_file?"},
		{"api: {lsten: '127.0.0.1:1'}", "api.lsten: unknown key; did you mean listen?"},
		{"fork: {foo: 1}", "fork.foo: unknown key"},
	}
	for _, tc := range cases {
		_, err := LoadEnviron(write(t, tc.yaml+"\n"), nil)
		require.Error(t, err, tc.yaml)
		assert.Equal(t, "config: "+tc.want, err.Error(), tc.yaml)
	}
}

func TestUnknownEnvironmentVariables(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, suggestion string }{
		{"MEDIAFORK_INGEST_MAXFORKS", "MEDIAFORK_INGEST_MAX_FORKS"},
		{"MEDIAFORK_API_TOKN", "MEDIAFORK_API_TOKEN"},
		{"MEDIAFORK_FORK_ENCODIGN", "MEDIAFORK_FORK_ENCODING"},
		{"MEDIAFORK_FREESWITCH_FS2_PASSWORD", "MEDIAFORK_FREESWITCH_FS1_PASSWORD"},
		{"MEDIAFORK_SOMETHING_ELSE_ENTIRELY", ""},
	}
	for _, tc := range cases {
		_, err := LoadEnviron("", []string{tc.name + "=1"})
		require.Error(t, err, tc.name)
		assert.Equal(t, []string{tc.name}, keysOf(err))
		if tc.suggestion != "" {
			assert.Contains(t, err.Error(), "did you mean "+tc.suggestion+"?")
		} else {
			assert.NotContains(t, err.Error(), "did you mean")
		}
	}
	// Known ones pass; other prefixes are not ours.
	c, err := LoadEnviron("", []string{"MEDIAFORK_INGEST_MAX_FORKS=5", "MEDIAFORKX=1", "MEDIAFORK_INGEST_TLS_TERMINATED_BY_PROXY=false"})
	require.NoError(t, err)
	assert.Equal(t, 5, c.Ingest.MaxForks)
}

func TestSwitchPasswordFromEnvironment(t *testing.T) {
	t.Parallel()
	p := write(t, "freeswitch:\n  - {name: fs-east.1, address: 10.0.0.1:8021, password: in-file}\n  - {name: west, address: 10.0.0.2:8021}\n")
	c, err := LoadEnviron(p, []string{"MEDIAFORK_FREESWITCH_FS_EAST_1_PASSWORD=from-env", "MEDIAFORK_FREESWITCH_WEST_PASSWORD=w"})
	require.NoError(t, err)
	assert.Equal(t, "from-env", c.FreeSWITCH[0].Password, "the environment wins over the file")
	assert.Equal(t, "w", c.FreeSWITCH[1].Password)
	assert.Equal(t, "MEDIAFORK_FREESWITCH_FS_EAST_1_PASSWORD", SwitchEnvName("fs-east.1", "PASSWORD"))

	// Two names that map to one variable: refused when it is set.
	p = write(t, "freeswitch:\n  - {name: a-1, address: 10.0.0.1:8021}\n  - {name: a.1, address: 10.0.0.2:8021}\n")
	_, err = LoadEnviron(p, []string{"MEDIAFORK_FREESWITCH_A_1_PASSWORD=x"})
	assert.ErrorContains(t, err, "ambiguous")
}

func TestSecretFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	pw, tok, key, itok := file("pw", "s3cret\n"), file("tok", "api-token\r\n"), file("key", "hmac-key"), file("itok", "ingest-token\n")
	c, err := LoadEnviron(write(t, `
freeswitch: [{name: fs1, address: 10.0.0.1:8021, password_file: `+pw+`}]
ingest: {token_file: `+itok+`, key_file: `+key+`}
api: {token_file: `+tok+`}
`), nil)
	require.NoError(t, err)
	assert.Equal(t, "s3cret", c.FreeSWITCH[0].Password, "trailing newline trimmed")
	assert.Equal(t, "api-token", c.API.Token)
	assert.Equal(t, "hmac-key", c.Ingest.Key)
	assert.Equal(t, "ingest-token", c.Ingest.Token)
	assert.ElementsMatch(t, []string{"s3cret", "api-token", "hmac-key", "ingest-token"}, c.Secrets())
	out := c.Masked()
	assert.Empty(t, out.API.Token, "shown as its file: the output loads again")
	assert.Equal(t, tok, out.API.TokenFile, "the path is not a secret")

	// The password file through the environment too: it replaces the
	// password of the file, or the default ClueCon.
	c, err = LoadEnviron("", []string{"MEDIAFORK_FREESWITCH_FS1_PASSWORD_FILE=" + pw})
	require.NoError(t, err)
	assert.Equal(t, "s3cret", c.FreeSWITCH[0].Password)
	c, err = LoadEnviron(write(t, "freeswitch: [{name: fs1, address: 10.0.0.1:8021, password: in-file}]\n"),
		[]string{"MEDIAFORK_FREESWITCH_FS1_PASSWORD_FILE=" + pw})
	require.NoError(t, err)
	assert.Equal(t, "s3cret", c.FreeSWITCH[0].Password)

	cases := []struct {
		yaml string
		env  []string
		key  string
		msg  string
	}{
		{"api: {token: x, token_file: " + tok + "}\n", nil, "api.token_file", "both set"},
		{"api: {token_file: " + tok + "}\n", []string{"MEDIAFORK_API_TOKEN=x"}, "api.token_file", "both set"},
		{"ingest: {key_file: " + file("empty", "\n") + "}\n", nil, "ingest.key_file", "is empty"},
		{"ingest: {key_file: " + file("two", "a\nb\n") + "}\n", nil, "ingest.key_file", "more than one line"},
		{"ingest: {token_file: " + dir + "/missing}\n", nil, "ingest.token_file", "cannot read"},
		{"ingest: {token_file: " + dir + "}\n", nil, "ingest.token_file", "not a regular file"},
		{"", []string{"MEDIAFORK_FREESWITCH_FS1_PASSWORD_FILE=" + pw, "MEDIAFORK_FREESWITCH_FS1_PASSWORD=x"}, "freeswitch[0].password_file", "both set"},
		{"freeswitch: [{name: fs1, address: 10.0.0.1:8021, password: x, password_file: " + pw + "}]\n", nil, "freeswitch[0].password_file", "both set"},
	}
	for _, tc := range cases {
		_, err := LoadEnviron(write(t, tc.yaml), tc.env)
		require.Error(t, err, tc.yaml)
		assert.Equal(t, []string{tc.key}, keysOf(err), "%v", err)
		assert.ErrorContains(t, err, tc.msg)
	}
}

// wss:// in ingest.url needs TLS on the ingest or a proxy stated to terminate
// it; ws:// with TLS on the ingest would never connect.
func TestIngestURLAgreesWithTLS(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	certFile, keyFile := ca.Leaf(t, "127.0.0.1").Write(t, t.TempDir())
	tlsKeys := "tls: {cert_file: " + certFile + ", key_file: " + keyFile + "}"
	cases := []struct {
		ingest string
		key    string // "" loads
	}{
		{"{url: wss://10.0.0.1:8090}", "ingest.url"},
		{"{url: wss://10.0.0.1:8090, tls_terminated_by_proxy: true}", ""},
		{"{url: wss://10.0.0.1:8090, " + tlsKeys + "}", ""},
		{"{url: ws://10.0.0.1:8090, " + tlsKeys + "}", "ingest.url"},
		{"{url: ws://10.0.0.1:8090, tls_terminated_by_proxy: true}", "ingest.tls_terminated_by_proxy"},
		{"{url: wss://10.0.0.1:8090, tls: {cert_file: " + certFile + "}}", "ingest.tls.key_file"},
		{"{url: wss://10.0.0.1:8090, tls: {cert_file: " + keyFile + ", key_file: " + keyFile + "}}", "ingest.tls"},
		{"{url: wss://10.0.0.1:8090, tls: {cert_file: /nonexistent.pem, key_file: " + keyFile + "}}", "ingest.tls"},
	}
	for _, tc := range cases {
		_, err := LoadEnviron(write(t, "ingest: "+tc.ingest+"\n"), nil)
		if tc.key == "" {
			assert.NoError(t, err, tc.ingest)
			continue
		}
		assert.Equal(t, []string{tc.key}, keysOf(err), "%s: %v", tc.ingest, err)
		if err != nil {
			assert.NotContains(t, err.Error(), "\n")
		}
	}
	c, err := LoadEnviron(write(t, "api: {"+tlsKeys+"}\n"), nil)
	require.NoError(t, err)
	assert.Equal(t, certFile, c.API.TLS.CertFile)
	_, err = LoadEnviron(write(t, "api: {tls: {key_file: "+keyFile+"}}\n"), nil)
	assert.Equal(t, []string{"api.tls.cert_file"}, keysOf(err))
}

func TestRequiredSwitch(t *testing.T) {
	t.Parallel()
	c, err := LoadEnviron(write(t, "freeswitch:\n  - {name: a, address: 10.0.0.1:8021, required: true}\n  - {name: b, address: 10.0.0.2:8021}\n"), nil)
	require.NoError(t, err)
	assert.True(t, c.FreeSWITCH[0].Required)
	assert.False(t, c.FreeSWITCH[1].Required, "optional by default")
	assert.False(t, Defaults().FreeSWITCH[0].Required)
}

// conf/dialplan.xml is one well-formed XML document (FreeSWITCH includes
// files of <include>), with the extensions the README points to.
func TestDialplanIsStandaloneXML(t *testing.T) {
	t.Parallel()
	f, err := os.Open("dialplan.xml")
	require.NoError(t, err)
	defer f.Close()
	dec := xml.NewDecoder(f)
	dec.Strict = true
	depth, roots := 0, []string{}
	var extensions []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots = append(roots, tok.Name.Local)
			}
			if tok.Name.Local == "extension" {
				for _, a := range tok.Attr {
					if a.Name.Local == "name" {
						extensions = append(extensions, a.Value)
					}
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 {
				assert.Empty(t, strings.TrimSpace(string(tok)), "text outside the root element")
			}
		}
	}
	assert.Equal(t, []string{"include"}, roots, "exactly one root element")
	assert.Equal(t, []string{"forkstream-style", "profile-speech", "rule-forked", "test-tone"}, extensions)
}
