package mediafork

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A dialplan's mediafork_rate above 48 kHz is refused with the bound named,
// like every other way a rate comes in (issue 20).
func TestSocketAskRefusesRatesAbove48k(t *testing.T) {
	for _, rate := range []string{"1600k", "64000", "4294967296"} {
		_, err := SocketAsk(channel("u1", "2000", "mediafork", "127.0.0.1:1", "mediafork_rate", rate))
		var bad *BadRequest
		require.True(t, errors.As(err, &bad), "%s: %v", rate, err)
		assert.ErrorContains(t, err, "mediafork_rate: rate: "+rate+" is above 48000 Hz")
	}
	a, err := SocketAsk(channel("u1", "2000", "mediafork", "127.0.0.1:1", "mediafork_rate", "48k"))
	require.NoError(t, err)
	assert.Equal(t, 48000, a.Rate)
}
