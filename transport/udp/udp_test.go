package udp

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Send puts each packet on the wire as its own datagram, in order; a peer that
// refuses (ICMP port unreachable) shows as an error on a later send, at the
// packet it stopped.
func TestSendAndRefusal(t *testing.T) {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sink.Close()
	ep, err := New().Open(sink.LocalAddr().(*net.UDPAddr).AddrPort())
	require.NoError(t, err)
	defer ep.Close()
	assert.Equal(t, 1, ep.BatchSize())
	bufs := [][]byte{[]byte("one"), []byte("two!"), []byte("three")}
	n, err := ep.Send(bufs)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	buf := make([]byte, 100)
	for _, want := range bufs {
		sink.SetReadDeadline(time.Now().Add(3 * time.Second))
		k, _, rerr := sink.ReadFromUDP(buf)
		require.NoError(t, rerr)
		assert.True(t, bytes.Equal(want, buf[:k]))
	}

	closed, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	refused, err := New().Open(closed.LocalAddr().(*net.UDPAddr).AddrPort())
	require.NoError(t, err)
	defer refused.Close()
	closed.Close()
	var serr error
	for i := 0; i < 1000 && serr == nil; i++ { // until the ICMP error is back
		n, serr = refused.Send(bufs)
		if serr == nil {
			assert.Equal(t, 3, n)
		}
	}
	require.Error(t, serr)
	assert.Contains(t, serr.Error(), "refused")
	assert.Less(t, n, 3)
}
