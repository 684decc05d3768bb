//go:build linux

package web

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// BenchmarkFloorRead is what one read() of a 640-byte frame (646 bytes with
// its WebSocket header) waiting in a TCP loopback socket costs: the epoll
// reader's per-frame syscall. The socket is filled 64 frames at a time, off
// the clock.
func BenchmarkFloorRead(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(b, err)
	defer client.Close()
	server, err := ln.Accept()
	require.NoError(b, err)
	defer server.Close()
	fd, err := dupSocket(server)
	require.NoError(b, err)
	defer unix.Close(fd)
	frame := make([]byte, 646)
	burst := make([]byte, 64*len(frame))
	buf := make([]byte, 4096)
	fill := func() {
		_, err := client.Write(burst)
		require.NoError(b, err)
		got := 0
		for got < len(burst) { // until the whole burst has arrived
			n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
			require.NoError(b, err)
			got = n
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%64 == 0 {
			b.StopTimer()
			fill()
			b.StartTimer()
		}
		if _, err := unix.Read(fd, buf[:len(frame)]); err != nil {
			b.Fatal(err)
		}
	}
}
