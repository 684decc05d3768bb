//go:build unix

package testport

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A refused address refuses at once (a reset, not a timeout).
func TestRefused(t *testing.T) {
	_, err := net.DialTimeout("tcp", Refused(t), 5*time.Second)
	require.Error(t, err)
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "%v", err)
}
