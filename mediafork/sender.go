package mediafork

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sender owns the UDP sockets packets leave by: one connected socket per
// destination address, shared by every fork that sends there, so that an ICMP
// "port unreachable" comes back as an error on that destination alone.
//
// Sends never block: a full socket buffer or a refusing peer costs the packet
// (counted as a drop), never a stalled fork.
//
// A plain Sender sends each packet with its own sendto: the reference path.
// A batching Sender (NewBatchingSender) gathers the audio packets of every fork
// bound for one destination and sends them with one sendmsg and UDP_SEGMENT
// (UDP GSO): on loopback that costs a third of a sendto per packet. Batches
// leave when full (maxSegments packets or maxGSOBytes) or at the next flush
// tick; signaling and end packets flush their destination's batch first, so
// each stream's order holds. GSO cuts a send into segments of one size, only
// the last may be shorter: a packet larger than the batch's, or any packet
// after a shorter one, starts a new batch. A batch the kernel refuses to send
// as GSO goes out one packet at a time instead.
type Sender struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*Endpoint

	batching bool
	latency  func(time.Duration) // how long the oldest packet of a batch waited
	stop     chan struct{}
	done     chan struct{}
}

// maxSegments is the most packets one GSO send carries (the kernel allows at
// least 64, UDP_MAX_SEGMENTS).
const maxSegments = 32

// maxGSOBytes is the most UDP payload one GSO send carries, all segments
// together. The kernel builds the whole train as one IP packet before cutting
// it, so it must fit where one datagram would: the IPv4 total length is 16
// bits, 65,535 bytes, less the 20-byte IP header and the 8-byte UDP header:
// 65,507. (IPv6's 16-bit payload length leaves 65,535 − 8 = 65,527; the IPv4
// figure serves both.) More is refused with EMSGSIZE.
const maxGSOBytes = 65535 - 20 - 8

// NewSender returns a Sender that sends every packet at once.
func NewSender() *Sender { return &Sender{conns: map[netip.AddrPort]*Endpoint{}} }

// NewBatchingSender returns a Sender that batches audio packets per destination
// and flushes every interval at the latest. Close stops it.
func NewBatchingSender(interval time.Duration) *Sender {
	s := &Sender{conns: map[netip.AddrPort]*Endpoint{}, batching: true, stop: make(chan struct{}), done: make(chan struct{})}
	go s.flushLoop(interval)
	return s
}

func (s *Sender) flushLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.FlushAll()
		}
	}
}

// FlushAll sends every pending batch now. The epoll reader calls it after each
// round of frames, so that a batch waits for the round, not for the tick.
// Flushing under s.mu keeps the lock order of Release (Sender, then Endpoint).
func (s *Sender) FlushAll() {
	if !s.batching {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range s.conns {
		ep.Flush()
	}
}

// Close stops a batching Sender's flushing (after a last flush).
func (s *Sender) Close() {
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
	s.FlushAll()
}

// Endpoint is one destination's socket, its pending batch and its counters.
type Endpoint struct {
	Addr   netip.AddrPort
	conn   *net.UDPConn
	fd     int
	refs   int // guarded by Sender.mu
	sender *Sender

	mu     sync.Mutex // guards the batch
	buf    []byte
	seg    int // segment size of the batch: its first packet's size
	owners []owner
	first  time.Time
	noGSO  bool // the kernel has no UDP_SEGMENT here: send one by one
	gsoMax int  // segments of this size or more were refused GSO (0: none was)
	oob    []byte

	refusedGSO int // batches the kernel refused as GSO and that went one by one

	Packets atomic.Uint64
	Bytes   atomic.Uint64
	Drops   atomic.Uint64
	lastErr atomic.Pointer[string]
}

// owner is who a batched packet is counted for.
type owner struct {
	f   *Fork
	dir Direction
}

// LastError is the last send error on this endpoint, or "".
func (e *Endpoint) LastError() string {
	if p := e.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// send writes one datagram without blocking. A full socket buffer is
// unix.EAGAIN; a refusing peer (ICMP port unreachable) is unix.ECONNREFUSED on
// a later send.
func (e *Endpoint) send(pkt []byte) error {
	err := unix.Sendto(e.fd, pkt, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
	e.count(1, len(pkt), err)
	return err
}

func (e *Endpoint) count(n, bytes int, err error) {
	if err != nil {
		e.Drops.Add(uint64(n))
		if old := e.lastErr.Load(); old == nil || *old != err.Error() {
			s := err.Error()
			e.lastErr.Store(&s)
		}
		return
	}
	e.Packets.Add(uint64(n))
	e.Bytes.Add(uint64(bytes))
}

// Deliver sends pkt for f now, after anything batched for this destination.
func (e *Endpoint) Deliver(f *Fork, dir Direction, pkt []byte) {
	if e.sender.batching {
		e.Flush()
	}
	f.account(dir, len(pkt), e.send(pkt))
}

// Queue sends an audio packet for f, batched when the Sender batches.
func (e *Endpoint) Queue(f *Fork, dir Direction, pkt []byte) {
	if !e.sender.batching {
		f.account(dir, len(pkt), e.send(pkt))
		return
	}
	n := len(pkt)
	e.mu.Lock()
	if len(e.owners) > 0 && n > e.seg {
		e.flushLocked() // a longer segment cannot follow
	}
	if len(e.owners) == 0 {
		e.seg, e.first = n, time.Now()
	}
	e.buf = append(e.buf, pkt...)
	e.owners = append(e.owners, owner{f, dir})
	// Send now when no other segment may follow this one: the batch is full, in
	// segments or in bytes (one more of e.seg would not fit; a shorter one could,
	// but it would have to be the last), or this packet is shorter than the
	// segment size, so it is the batch's last. Every batch thus holds at most
	// maxGSOBytes and only its last segment may be short.
	if len(e.owners) == maxSegments || len(e.buf)+e.seg > maxGSOBytes || n < e.seg || e.noGSO {
		e.flushLocked()
	}
	e.mu.Unlock()
}

// Flush sends what is batched.
func (e *Endpoint) Flush() {
	e.mu.Lock()
	e.flushLocked()
	e.mu.Unlock()
}

func (e *Endpoint) flushLocked() {
	n := len(e.owners)
	if n == 0 {
		return
	}
	if obs := e.sender.latency; obs != nil {
		obs(time.Since(e.first))
	}
	var err error
	switch {
	case n == 1:
		err = unix.Sendto(e.fd, e.buf, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
	case e.gsoMax > 0 && e.seg >= e.gsoMax:
		e.sendEach() // refused before at this size
		return
	default:
		err = e.sendGSO()
		switch err {
		case unix.ENOPROTOOPT, unix.EOPNOTSUPP, unix.EIO:
			// No UDP GSO on this socket (EIO: its route goes through IPsec or,
			// on older kernels, its device cannot offload checksums): one by one
			// from now on.
			e.noGSO = true
			e.refusedGSO++
			e.sendEach()
			return
		case unix.EMSGSIZE, unix.EINVAL:
			// Refused for its size: the train is over the kernel's limit
			// (EMSGSIZE; the caps should prevent it) or a segment does not fit
			// the route's MTU (EINVAL), which holds for every larger segment
			// too. Nothing was sent: send this batch one by one, and batches of
			// this segment size or more from now on. (EINVAL for other reasons,
			// such as SO_NO_CHECK, brings gsoMax down batch by batch.)
			if e.gsoMax == 0 || e.seg < e.gsoMax {
				e.gsoMax = e.seg
			}
			e.refusedGSO++
			e.sendEach()
			return
		}
	}
	e.count(n, len(e.buf), err)
	for i, o := range e.owners {
		o.f.account(o.dir, e.segSize(i), err)
	}
	e.reset()
}

// segSize is the size of the batch's packet i: e.seg, or less for the last.
func (e *Endpoint) segSize(i int) int { return min(e.seg, len(e.buf)-i*e.seg) }

// sendEach sends the batch one packet at a time, each with its own sendto.
func (e *Endpoint) sendEach() {
	for i, o := range e.owners {
		off := i * e.seg
		o.f.account(o.dir, e.segSize(i), e.send(e.buf[off:off+e.segSize(i)]))
	}
	e.reset()
}

func (e *Endpoint) reset() {
	clear(e.owners) // let ended forks go
	e.buf, e.owners = e.buf[:0], e.owners[:0]
}

// sendGSO sends the batch as one datagram train of e.seg-byte segments, the
// last possibly shorter. The kernel sends all of it or none.
func (e *Endpoint) sendGSO() error {
	if e.oob == nil {
		e.oob = make([]byte, unix.CmsgSpace(2))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&e.oob[0]))
		h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}
	*(*uint16)(unsafe.Pointer(&e.oob[unix.CmsgLen(0)])) = uint16(e.seg)
	_, err := unix.SendmsgN(e.fd, e.buf, e.oob, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	return err
}

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

// Open returns the endpoints for addrs, opening sockets as needed. Every Open
// must be paired with a Release of the same endpoints.
func (s *Sender) Open(addrs []netip.AddrPort) ([]*Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return nil, errors.New("sender closed")
	}
	eps := make([]*Endpoint, 0, len(addrs))
	for _, a := range addrs {
		ep := s.conns[a]
		if ep == nil {
			var err error
			if ep, err = dialEndpoint(a); err != nil {
				s.releaseLocked(eps)
				return nil, err
			}
			ep.sender = s
			s.conns[a] = ep
		}
		ep.refs++
		eps = append(eps, ep)
	}
	return eps, nil
}

// Release gives endpoints back; the last user flushes and closes the socket.
func (s *Sender) Release(eps []*Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(eps)
}

func (s *Sender) releaseLocked(eps []*Endpoint) {
	for _, ep := range eps {
		ep.refs--
		if ep.refs == 0 {
			ep.Flush()
			ep.conn.Close()
			if s.conns != nil {
				delete(s.conns, ep.Addr)
			}
		}
	}
}

// OpenSockets is the number of destination sockets open now.
func (s *Sender) OpenSockets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func dialEndpoint(a netip.AddrPort) (*Endpoint, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a))
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", a, err)
	}
	conn.SetWriteBuffer(4 << 20) // bursts of batches
	ep := &Endpoint{Addr: a, conn: conn, fd: -1, buf: make([]byte, 0, 2048)}
	raw, err := conn.SyscallConn()
	if err == nil {
		// The fd stays valid until the last Release closes conn, which happens only
		// after every fork using it has stopped sending.
		err = raw.Control(func(fd uintptr) { ep.fd = int(fd) })
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("destination %s: %w", a, err)
	}
	return ep, nil
}
