package rtptest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Bound sees a socket bound on the port, on its address or on any, and
// none once it is closed.
func TestBound(t *testing.T) {
	for _, on := range []string{"127.0.0.1", "0.0.0.0"} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(on)})
		require.NoError(t, err)
		a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), c.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		assert.True(t, Bound(a), "bound on %s", on)
		require.NoError(t, c.Close())
		assert.False(t, Bound(a), "closed on %s", on)
	}
}
