package mediafork

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Transport is how packets leave: the port the domain owns, shaped like
// wireguard-go's conn.Bind. The plain implementation (transport/udp) sends one
// datagram per packet and is the reference; the Linux one (transport/gso)
// sends a batch as UDP GSO trains.
type Transport interface {
	// Open returns a way to one destination: a connected socket, so that an
	// ICMP "port unreachable" comes back as an error on that destination alone.
	// The registry opens one per destination and shares it among forks.
	Open(netip.AddrPort) (Endpoint, error)
}

// Endpoint is one destination's socket. Send may be called from several
// goroutines at once (readers whose forks share the destination).
type Endpoint interface {
	// Send hands bufs (packets, one datagram each, in order) to the kernel
	// without blocking and without keeping bufs. It stops at the first packet
	// the kernel refuses: bufs[:sent] left, bufs[sent] did not (err says why)
	// and the rest were not tried. ErrBufferFull is the refusal of a full
	// socket buffer.
	Send(bufs [][]byte) (sent int, err error)
	// BatchSize is how many packets Send takes at best at once (1: one
	// datagram per syscall; no point in gathering).
	BatchSize() int
	// Close closes the socket; no Send follows.
	Close() error
}

// ErrBufferFull is what an Endpoint returns when the socket buffer is full:
// the packet is a drop, not a send error.
var ErrBufferFull = errors.New("socket buffer full")

// MaxBatchBytes caps a batch's bytes for one destination: what one GSO send
// may carry (65,535 less the IPv4 and UDP headers), and the memory a batch
// holds per destination.
const MaxBatchBytes = 65535 - 20 - 8

// ResolveEndpoint turns host:port into an address, resolving names.
func ResolveEndpoint(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("destination %q: %w", hostport, err)
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("destination %q: bad port", hostport)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("destination %q: cannot resolve %s: %v", hostport, host, err)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(p)), nil
}
