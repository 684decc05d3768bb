//go:build !linux

package main

import (
	"net"
	"time"
)

// forceReadBuffer: only Linux has SO_RCVBUFFORCE (the benchmark reads /proc
// anyway).
func forceReadBuffer(*net.UDPConn, int) {}

// receiveTimes: kernel receive stamps are used on Linux only.
func receiveTimes(*net.UDPConn) bool { return false }

func receiveTime([]byte) (time.Time, bool) { return time.Time{}, false }
