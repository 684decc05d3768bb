package conf

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test suites' MEDIAFORK_TEST_* variables are not configuration: a daemon
// a test starts inherits them (MEDIAFORK_TEST_ESL while the real-switch tests
// run) and must start. Anything else unknown is still refused.
func TestTestVariablesAreNotConfig(t *testing.T) {
	_, err := LoadEnviron("", []string{"MEDIAFORK_TEST_ESL=127.0.0.1:8021", "MEDIAFORK_TEST_ESL_PASSWORD=x", "MEDIAFORK_TEST_FS_CLI=/bin/fs_cli"})
	require.NoError(t, err)
	_, err = LoadEnviron("", []string{"MEDIAFORK_TESTS_ESL=127.0.0.1:8021", "MEDIAFORK_TEST=1"})
	assert.Equal(t, []string{"MEDIAFORK_TEST", "MEDIAFORK_TESTS_ESL"}, keysOf(err))
}
