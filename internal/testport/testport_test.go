package testport

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A reserved port is not handed to a bind on port 0 while it lasts, and a
// listener that asks for it by number gets it.
func TestReserved(t *testing.T) {
	addr := Reserved(t)
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		assert.NotEqual(t, addr, ln.Addr().String(), "the reserved port given to a bind on port 0")
		ln.Close()
	}
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the daemon's listener takes its port")
	ln.Close()
}
