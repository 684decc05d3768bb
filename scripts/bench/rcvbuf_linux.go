package main

import (
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forceReadBuffer sets conn's receive buffer past net.core.rmem_max (as root).
func forceReadBuffer(conn *net.UDPConn, n int) {
	if raw, err := conn.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) })
	}
}

// receiveTimes makes the kernel stamp each datagram with the time it reached
// conn's queue (SO_TIMESTAMPNS, wall clock): on loopback, the moment
// mediafork's sendmsg handed it over, whenever the sink gets to read it.
func receiveTimes(conn *net.UDPConn) bool {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
	return serr == nil
}

// receiveTime is the kernel's stamp in a datagram's control messages.
func receiveTime(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(ts.Unix()), true
		}
	}
	return time.Time{}, false
}
