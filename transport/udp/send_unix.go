//go:build unix

package udp

import (
	"syscall"

	"github.com/mediafork/mediafork/mediafork"
)

func (e *Endpoint) init() error {
	raw, err := e.conn.SyscallConn()
	if err != nil {
		return err
	}
	// The descriptor stays valid until Close, which the registry calls only
	// after every fork using the endpoint has stopped sending.
	return raw.Control(func(fd uintptr) { e.fd = int(fd) })
}

// send writes one datagram with sendto and MSG_DONTWAIT: a full socket buffer
// is a drop, never a wait. A refusing peer (ICMP port unreachable) shows as
// ECONNREFUSED on a later send.
func (e *Endpoint) send(b []byte) error {
	err := syscall.Sendto(e.fd, b, syscall.MSG_DONTWAIT, nil)
	if err == syscall.EAGAIN {
		return mediafork.ErrBufferFull
	}
	return err
}
