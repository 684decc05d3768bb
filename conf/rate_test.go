package conf

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rates above 48 kHz are refused wherever the config gives one, naming the
// key and the bound (issue 20: a fork at 1.6 MHz sent format packets saying so).
func TestConfigRefusesRatesAbove48k(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		env  map[string]string
		key  string
	}{
		{"fork:\n  rate: 96000\n", nil, "fork.rate"},
		{"", map[string]string{"MEDIAFORK_FORK_RATE": "1600000"}, "fork.rate"},
		{"profiles:\n  p: {endpoints: [a:1], rate: 56000}\n", nil, "profiles.p.rate"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			ce, err := loadError(t, tc.yaml, env(tc.env))
			assert.Equal(t, tc.key, ce.Key, "%v", err)
			assert.Contains(t, err.Error(), "above 48000 Hz, the highest rate FreeSWITCH runs a channel at")
		})
	}
	_, err := Load(write(t, "fork:\n  rate: 48000\n"), env(nil))
	require.NoError(t, err)
}
