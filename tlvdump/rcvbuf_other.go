//go:build !linux

package tlvdump

import "net"

// forceReadBuffer: only Linux lets a privileged process exceed the cap.
func forceReadBuffer(*net.UDPConn, int) {}
