package conf

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// docs/configuration.md documents every key the loader knows: the keys come
// from the loader's own schema (Keys), so a key added to the config without
// a line in the reference fails here.
func TestConfigurationReferenceHasEveryKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)
	doc := string(b)
	keys := Keys()
	require.Greater(t, len(keys), 60, "the schema walk finds the keys")
	for _, k := range keys {
		assert.True(t, strings.Contains(doc, "| `"+k+"` |"), "docs/configuration.md has no row for `%s`", k)
	}
	// And nothing there that the loader does not know.
	known := map[string]bool{}
	for _, k := range keys {
		known[k] = true
	}
	for _, line := range strings.Split(doc, "\n") {
		if k, ok := strings.CutPrefix(line, "| `"); ok {
			k, _, _ = strings.Cut(k, "`")
			assert.True(t, known[k], "docs/configuration.md documents `%s`, which the loader does not know", k)
		}
	}
}

// Keys finds a key the schema has and the endpoint keys of every protocol.
func TestKeysWalkTheSchema(t *testing.T) {
	t.Parallel()
	keys := Keys()
	for _, k := range []string{"ingest.max_forks", "freeswitch[].password_file", "ingest.tls.cert_file", "fork.retry.backoff",
		"profiles.<name>.rate", "profiles.<name>.endpoints[].address", "profiles.<name>.endpoints[].tx_address", "rules[].match", "limits.ingest_media_timeout"} {
		assert.Contains(t, keys, k)
	}
	assert.NotContains(t, keys, "profiles.<name>.formats", "a field the loader fills itself (mapstructure:\"-\")")
}
