package tlvdump

import (
	"net"
	"syscall"
)

// forceReadBuffer asks for a receive buffer above net.core.rmem_max, which
// only a privileged process gets (SO_RCVBUFFORCE). A receiver that falls
// behind for a moment then loses nothing: the kernel holds the backlog.
// Unprivileged, the call fails and the capped SetReadBuffer size stays.
func forceReadBuffer(conn *net.UDPConn, bytes int) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, bytes)
	})
}
