package wsout_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// udpSink is a TLV receiver of one fork: it checks packets as they come.
type udpSink struct {
	conn *net.UDPConn
	addr netip.AddrPort
	buf  []byte
}

func listenUDP(t *testing.T) *udpSink {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &udpSink{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), buf: make([]byte, 65536)}
}

// next is the next packet's header (a bound on a broken build, not a pace).
func (s *udpSink) next(t *testing.T) (tlvcodec.Header, []byte) {
	t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := s.conn.Read(s.buf)
	require.NoError(t, err)
	var h tlvcodec.Header
	require.NoError(t, h.Unmarshal(s.buf[:n]))
	return h, s.buf[:n]
}

// expectControl reads n packets that are not audio.
func (s *udpSink) expectControl(t *testing.T, n int) {
	t.Helper()
	for range n {
		h, _ := s.next(t)
		require.NotEqual(t, tlvcodec.TypeAudio, h.Type)
	}
}

// expectAudio reads the RX and TX audio packets of sequence seq.
func (s *udpSink) expectAudio(t *testing.T, seq uint32) {
	t.Helper()
	for _, dir := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX} {
		_, b := s.next(t)
		var a tlvcodec.Audio
		require.NoError(t, a.Unmarshal(b))
		require.Equal(t, dir, a.Direction)
		require.Equal(t, seq, a.Sequence)
	}
}
