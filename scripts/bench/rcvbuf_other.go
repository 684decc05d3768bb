//go:build !linux

package main

import "net"

// forceReadBuffer: only Linux has SO_RCVBUFFORCE (the benchmark reads /proc
// anyway).
func forceReadBuffer(*net.UDPConn, int) {}
