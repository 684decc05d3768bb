//go:build linux

package gso

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/mediafork"
)

// MaxSegments is the most datagrams one GSO send carries (the kernel's
// UDP_MAX_SEGMENTS is 64, 128 on the newest kernels).
const MaxSegments = 64

// MaxBytes is the most UDP payload one GSO send carries, all segments
// together. The kernel builds the whole train as one IP packet before cutting
// it, so it must fit where one datagram would: the IPv4 total length is 16
// bits, 65,535 bytes, less the 20-byte IP header and the 8-byte UDP header:
// 65,507. (IPv6's 16-bit payload length leaves 65,535 − 8 = 65,527; the IPv4
// figure serves both.) More is refused with EMSGSIZE.
const MaxBytes = mediafork.MaxBatchBytes

// Transport opens connected UDP sockets that send batches as GSO trains.
type Transport struct{}

// New returns the GSO transport. Whether the kernel takes UDP_SEGMENT on a
// socket is learnt at its first batch; where it does not, that socket sends
// one datagram at a time.
func New() (mediafork.Transport, error) { return Transport{}, nil }

// Open dials a connected socket to a. The socket is made with system calls,
// not the net package: a socket in Go's netpoller has an epoll entry waiting
// on it, and every datagram the kernel frees then runs that entry's callback
// (write space) and wakes a thread blocked in the netpoller — at 500 calls,
// the receiving end on loopback aside, most of a send's cost beyond the
// send itself (BENCHMARKS.md). Sends never wait for the netpoller anyway:
// they are non-blocking, and a full buffer is ErrBufferFull.
func (Transport) Open(a netip.AddrPort) (mediafork.Endpoint, error) {
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16(), ZoneId: zoneID(a.Addr().Zone())})
	if a.Addr().Unmap().Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().Unmap().As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "socket", Net: "udp", Err: err}
	}
	// As the net package does for every UDP socket: without it connect()
	// refuses a broadcast address (EACCES).
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: "udp", Addr: net.UDPAddrFromAddrPort(a), Err: err}
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20) // bursts of trains
	e := &Endpoint{fd: fd, maxBytes: MaxBytes}
	e.oob = make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&e.oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	return e, nil
}

// zoneID is the interface index of an IPv6 zone (a name or a number).
func zoneID(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	n, _ := strconv.ParseUint(zone, 10, 32)
	return uint32(n)
}

// Endpoint is one connected socket. Send cuts what it is given into trains
// that GSO takes: at most MaxSegments and MaxBytes, segments of one size (the
// first's), only the last may be shorter; a longer packet, or any packet after
// a shorter one, starts the next train. A train the kernel refuses as GSO goes
// out one datagram at a time instead.
type Endpoint struct {
	mu       sync.Mutex // one Send at a time: readers sharing the destination; Close
	fd       int        // -1 once closed
	oob      []byte     // the UDP_SEGMENT control message
	scratch  []byte     // a train's bytes when its packets are not back to back
	maxBytes int        // MaxBytes; tests raise it to provoke EMSGSIZE
	noGSO    bool       // the kernel has no UDP_SEGMENT here: one by one
	gsoMax   int        // segments of this size or more were refused GSO (0: none was)
	refused  int        // trains the kernel refused as GSO, sent one by one
	// rc reads what the peer sends (TLV talk-back): a copy of the socket in
	// Go's netpoller, made at the first Receive, so only a destination that
	// talks back pays for the netpoller's wake-ups.
	rc net.PacketConn
}

// Receive reads one datagram from the peer (the socket is connected: the
// kernel passes the peer's alone), waiting until one comes; an error once
// the endpoint is closed. A refusal the kernel reports for an earlier send
// (ICMP port unreachable) is skipped.
func (e *Endpoint) Receive(b []byte) (int, error) {
	e.mu.Lock()
	if e.fd < 0 {
		e.mu.Unlock()
		return 0, net.ErrClosed
	}
	if e.rc == nil {
		fd, err := unix.Dup(e.fd)
		if err != nil {
			e.mu.Unlock()
			return 0, err
		}
		f := os.NewFile(uintptr(fd), "udp")
		rc, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			e.mu.Unlock()
			return 0, err
		}
		e.rc = rc
	}
	rc := e.rc
	e.mu.Unlock()
	for {
		n, _, err := rc.ReadFrom(b)
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			continue
		}
		return n, err
	}
}

// BatchSize is how many packets are worth gathering for one Send.
func (e *Endpoint) BatchSize() int { return MaxSegments }

// Close closes the socket; a second Close does nothing.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fd < 0 {
		return nil
	}
	fd := e.fd
	e.fd = -1
	if e.rc != nil {
		e.rc.Close() // a Receive under way returns
	}
	return unix.Close(fd)
}

// Send sends bufs in order, as few trains as the rules allow, without
// blocking.
func (e *Endpoint) Send(bufs [][]byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sent := 0
	for sent < len(bufs) {
		n, total := e.train(bufs[sent:])
		t := bufs[sent : sent+n]
		seg := len(t[0])
		var err error
		switch {
		case n == 1:
			err = e.sendOne(t[0])
		case e.noGSO || (e.gsoMax > 0 && seg >= e.gsoMax):
			k, serr := e.sendEach(t) // refused before at this size
			sent += k
			if serr != nil {
				return sent, serr
			}
			continue
		default:
			err = e.sendGSO(t, seg, total)
			switch err {
			case unix.ENOPROTOOPT, unix.EOPNOTSUPP, unix.EIO, unix.EMSGSIZE, unix.EINVAL:
				if err == unix.EMSGSIZE || err == unix.EINVAL {
					// Refused for its size: the train is over the kernel's limit
					// (EMSGSIZE; the caps should prevent it) or a segment does not
					// fit the route's MTU (EINVAL), which holds for every larger
					// segment too: trains of this segment size or more go one by
					// one from now on. (EINVAL for other reasons, such as
					// SO_NO_CHECK, brings gsoMax down train by train.)
					if e.gsoMax == 0 || seg < e.gsoMax {
						e.gsoMax = seg
					}
				} else {
					// No UDP GSO on this socket (EIO: its route goes through IPsec
					// or, on older kernels, its device cannot offload checksums):
					// one by one from now on.
					e.noGSO = true
				}
				// Nothing of the train was sent: send it one by one.
				e.refused++
				k, serr := e.sendEach(t)
				sent += k
				if serr != nil {
					return sent, serr
				}
				continue
			}
		}
		if err != nil {
			return sent, sendError(err) // a train leaves whole or not at all
		}
		sent += n
	}
	return sent, nil
}

// train is how many of bufs the next train takes, and their bytes.
func (e *Endpoint) train(bufs [][]byte) (n, total int) {
	seg := len(bufs[0])
	n, total = 1, seg
	for n < len(bufs) && n < MaxSegments {
		l := len(bufs[n])
		if l > seg || total+l > e.maxBytes {
			break
		}
		total += l
		n++
		if l < seg {
			break // a shorter segment is the last
		}
	}
	return n, total
}

func (e *Endpoint) sendOne(b []byte) error {
	return unix.Sendto(e.fd, b, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
}

func (e *Endpoint) sendEach(bufs [][]byte) (int, error) {
	for i, b := range bufs {
		if err := e.sendOne(b); err != nil {
			return i, sendError(err)
		}
	}
	return len(bufs), nil
}

// sendGSO sends bufs as one datagram train of seg-byte segments, the last
// possibly shorter. The kernel sends all of it or none.
func (e *Endpoint) sendGSO(bufs [][]byte, seg, total int) error {
	var data []byte
	if contiguous(bufs) {
		data = unsafe.Slice(unsafe.SliceData(bufs[0]), total)
	} else {
		data = e.scratch[:0]
		for _, b := range bufs {
			data = append(data, b...)
		}
		e.scratch = data
	}
	*(*uint16)(unsafe.Pointer(&e.oob[unix.CmsgLen(0)])) = uint16(seg)
	_, err := unix.SendmsgN(e.fd, data, e.oob, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	return err
}

// contiguous reports whether bufs lie back to back in one array (a batch's
// buffer), so that the train can be sent from there without a copy.
func contiguous(bufs [][]byte) bool {
	for i := 1; i < len(bufs); i++ {
		prev := bufs[i-1]
		if unsafe.Pointer(unsafe.SliceData(bufs[i])) != unsafe.Add(unsafe.Pointer(unsafe.SliceData(prev)), len(prev)) {
			return false
		}
	}
	return true
}

func sendError(err error) error {
	if err == unix.EAGAIN {
		return mediafork.ErrBufferFull
	}
	return err
}
