package mediafork

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// testTransport is a plain Transport for the domain's own tests (the real ones,
// in transport/..., import this package): one datagram per Write on a
// connected socket, taking batches of batch packets.
type testTransport struct{ batch int }

func newTestTransport() Transport { return testTransport{batch: 1} }

func (t testTransport) Open(a netip.AddrPort) (Endpoint, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a))
	if err != nil {
		return nil, err
	}
	return &testEndpoint{c: c, batch: t.batch}, nil
}

type testEndpoint struct {
	c     *net.UDPConn
	batch int
}

func (e *testEndpoint) Send(bufs [][]byte) (int, error) {
	for i, b := range bufs {
		if _, err := e.c.Write(b); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

func (e *testEndpoint) BatchSize() int { return e.batch }
func (e *testEndpoint) Close() error   { return e.c.Close() }

// fakeTransport records every Send, and refuses packets as told.
type fakeTransport struct {
	batch int

	mu     sync.Mutex
	eps    map[netip.AddrPort]*fakeEndpoint
	opened int
}

func newFake(batch int) *fakeTransport {
	return &fakeTransport{batch: batch, eps: map[netip.AddrPort]*fakeEndpoint{}}
}

func (t *fakeTransport) Open(a netip.AddrPort) (Endpoint, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &fakeEndpoint{t: t, addr: a}
	t.eps[a] = e
	t.opened++
	return e, nil
}

func (t *fakeTransport) ep(a netip.AddrPort) *fakeEndpoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.eps[a]
}

type fakeEndpoint struct {
	t      *fakeTransport
	addr   netip.AddrPort
	calls  [][][]byte // every Send's packets
	wire   [][]byte   // the packets that left
	refuse []error    // the next packets' fates (nil: sent)
	closed bool
}

var errRefused = errors.New("connection refused")

func (e *fakeEndpoint) Send(bufs [][]byte) (int, error) {
	if e.closed {
		panic("send on a closed endpoint")
	}
	var call [][]byte
	for _, b := range bufs {
		call = append(call, append([]byte(nil), b...))
	}
	e.calls = append(e.calls, call)
	for i, b := range bufs {
		if len(e.refuse) > 0 {
			err := e.refuse[0]
			e.refuse = e.refuse[1:]
			if err != nil {
				return i, err
			}
		}
		e.wire = append(e.wire, append([]byte(nil), b...))
	}
	return len(bufs), nil
}

func (e *fakeEndpoint) BatchSize() int { return e.t.batch }
func (e *fakeEndpoint) Close() error   { e.closed = true; return nil }

// Receive reads what the peer sends back (TLV talk-back).
func (e *testEndpoint) Receive(b []byte) (int, error) {
	for {
		n, err := e.c.Read(b)
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			continue
		}
		return n, err
	}
}
