package mediafork

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Occupied is closed exactly while the registry holds a fork: from its
// claim to its end, again for the next.
func TestOccupied(t *testing.T) {
	t.Parallel()
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	closed := func() bool {
		select {
		case <-reg.Occupied():
			return true
		default:
			return false
		}
	}
	assert.False(t, closed(), "empty")
	a, err := reg.Claim("uuid-occupied-a", "b")
	require.NoError(t, err)
	assert.True(t, closed(), "a fork claimed")
	b, err := reg.Claim("uuid-occupied-b", "b")
	require.NoError(t, err)
	for i, f := range []*Fork{a, b} {
		require.NoError(t, f.Begin(stereoSpec(), TLVTargets(newUDPSink(t).addr())))
		f.Finish(EndHangup)
		<-f.Done()
		reg.WaitHooks()
		assert.Equal(t, i == 0, closed(), "%d of 2 ended", i+1)
	}
	_, err = reg.Claim("uuid-occupied-c", "b")
	require.NoError(t, err)
	assert.True(t, closed(), "a fork again")
}
