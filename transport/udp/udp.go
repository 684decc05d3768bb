// Package udp is the plain Transport: one datagram per packet, one send per
// datagram, on every OS. It is the reference the batching transports are
// compared with.
package udp

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	"github.com/mediafork/mediafork/mediafork"
)

// Transport opens connected UDP sockets.
type Transport struct{}

// New returns the plain transport.
func New() Transport { return Transport{} }

// WriteBuffer is the socket send buffer asked for: room for bursts.
const WriteBuffer = 4 << 20

// Open dials a connected socket to a.
func (Transport) Open(a netip.AddrPort) (mediafork.Endpoint, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a))
	if err != nil {
		return nil, err
	}
	conn.SetWriteBuffer(WriteBuffer)
	e := &Endpoint{conn: conn}
	if err := e.init(); err != nil {
		conn.Close()
		return nil, err
	}
	return e, nil
}

// Endpoint is one connected socket.
type Endpoint struct {
	conn *net.UDPConn
	fd   int // the socket's descriptor (unix), valid until Close
}

// BatchSize is 1: one datagram per send.
func (e *Endpoint) BatchSize() int { return 1 }

// Close closes the socket.
func (e *Endpoint) Close() error { return e.conn.Close() }

// Send sends each packet with its own send, without blocking.
func (e *Endpoint) Send(bufs [][]byte) (int, error) {
	for i, b := range bufs {
		if err := e.send(b); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

// Receive reads one datagram from the peer (the socket is connected: the
// kernel passes the peer's alone), waiting until one comes; an error once
// the endpoint is closed. A refusal the kernel reports for an earlier send
// (ICMP port unreachable) is skipped.
func (e *Endpoint) Receive(b []byte) (int, error) {
	for {
		n, err := e.conn.Read(b)
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			continue
		}
		return n, err
	}
}
