package main

import (
	"net"

	"golang.org/x/sys/unix"
)

// forceReadBuffer sets conn's receive buffer past net.core.rmem_max (as root).
func forceReadBuffer(conn *net.UDPConn, n int) {
	if raw, err := conn.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) })
	}
}
