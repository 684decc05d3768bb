// Package rtptest gives tests the UDP ports an RTP endpoint takes: per
// stream an even port for RTP and the next one for RTCP, the streams
// consecutive (RX at base, TX at base+2, ...), on loopback.
package rtptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Listen binds 2*streams consecutive loopback UDP ports from an even base and
// returns the base and the sockets in port order (RTP, RTCP, RTP, RTCP, ...),
// closed when the test ends.
func Listen(t testing.TB, streams int) (netip.AddrPort, []*net.UDPConn) {
	t.Helper()
	for try := 0; try < 200; try++ {
		base := FreeBase(t, streams)
		conns, ok := bind(base, 2*streams)
		if !ok {
			continue // taken since: another block
		}
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		for _, c := range conns {
			c.SetReadBuffer(4 << 20)
		}
		return base, conns
	}
	t.Fatal("no block of free UDP ports")
	return netip.AddrPort{}, nil
}

// FreeBase finds an even loopback port whose block of 2*streams ports is
// free now (for a program of its own to bind, such as ffmpeg).
func FreeBase(t testing.TB, streams int) netip.AddrPort {
	t.Helper()
	for try := 0; try < 200; try++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		c.Close()
		p &^= 1
		if p == 0 || int(p)+2*streams > 65535 {
			continue
		}
		base := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
		if conns, ok := bind(base, 2*streams); ok {
			for _, c := range conns {
				c.Close()
			}
			return base
		}
	}
	t.Fatal("no block of free UDP ports")
	return netip.AddrPort{}
}

func bind(base netip.AddrPort, n int) ([]*net.UDPConn, bool) {
	var conns []*net.UDPConn
	for i := 0; i < n; i++ {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(base.Addr(), base.Port()+uint16(i))))
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, false
		}
		conns = append(conns, c)
	}
	return conns, true
}

// Bound reports whether another socket holds UDP port a now (a program
// started to receive there is ready). It reads the kernel's socket table
// (/proc/net/udp) and leaves the port alone: a probe that binds the port
// itself, held a moment longer on a loaded machine, was what the starting
// program's own bind then failed on (GStreamer's sdpdemux exited). Without
// the table, it probes: binding fails with EADDRINUSE.
func Bound(a netip.AddrPort) bool {
	if bound, ok := boundInTable(a); ok {
		return bound
	}
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.EADDRINUSE)
}

// WaitBound waits until every port of addrs is bound by someone else, or
// fails after timeout: the receiver's readiness, polled.
func WaitBound(t testing.TB, timeout time.Duration, addrs ...netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, a := range addrs {
		for !Bound(a) {
			if time.Now().After(deadline) {
				t.Fatalf("nothing bound %s within %s", a, timeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// boundInTable looks a up in /proc/net/udp: a socket bound to its port on
// its address or on any; ok false without the table.
func boundInTable(a netip.AddrPort) (bound, ok bool) {
	raw, err := os.ReadFile("/proc/net/udp")
	if err != nil || !a.Addr().Is4() {
		return false, false
	}
	ip := a.Addr().As4()
	port := fmt.Sprintf(":%04X", a.Port())
	// The address is printed as the kernel holds it: in the host's byte order.
	addrs := []string{fmt.Sprintf("%02X%02X%02X%02X", ip[3], ip[2], ip[1], ip[0]), fmt.Sprintf("%02X%02X%02X%02X", ip[0], ip[1], ip[2], ip[3]), "00000000"}
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasSuffix(f[1], port) {
			continue
		}
		if slices.Contains(addrs, strings.TrimSuffix(f[1], port)) {
			return true, true
		}
	}
	return false, true
}
