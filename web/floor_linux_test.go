//go:build linux

package web

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// BenchmarkFloorRead is what one read() of a 640-byte frame (646 bytes with
// its WebSocket header) waiting in a TCP loopback socket costs: the epoll
// reader's per-frame syscall. The socket is filled 64 frames at a time, off
// the clock.
func BenchmarkFloorRead(b *testing.B) {
	client, fd := loopbackPair(b)
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

// BenchmarkFloorReadAlone is one read of the only frame waiting, as a round
// reads a call's socket, with and without delayed-ACK mode (tcpack_linux.go):
// per read, what the ACK it sends costs (on loopback, with the peer's receive
// of it). The frame is written and waited for off the clock.
func BenchmarkFloorReadAlone(b *testing.B) {
	for _, mode := range []struct {
		name    string
		delayed bool
	}{{"ack-per-read", false}, {"delayed-acks", true}} {
		b.Run(mode.name, func(b *testing.B) {
			client, fd := loopbackPair(b)
			if mode.delayed {
				delayAcks(fd)
			}
			frame := make([]byte, 646)
			buf := make([]byte, 4096)
			one := func() {
				_, err := client.Write(frame)
				require.NoError(b, err)
				for {
					if n, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err != nil || n == len(frame) {
						require.NoError(b, err)
						return
					}
				}
			}
			for i := 0; i < 64; i++ { // past the connection's quick-ACK start
				one()
				unix.Read(fd, buf)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				one()
				b.StartTimer()
				if _, err := unix.Read(fd, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFloorTick is the CPU one tick of the round's cadence costs the
// process: a goroutine blocked in read() of a 1 ms timerfd, as the epoll
// reader waits, woken b.N times. Reported as cpu-µs/tick (user + system time
// of the whole process, from getrusage); ns/op is the wall time, ~1 ms.
// alone: the goroutine never passes through the scheduler, so the runtime's
// monitor takes its P every tick and is woken again by the next (3 context
// switches a tick); yielding: it does every yieldEvery, as the reader does.
func BenchmarkFloorTick(b *testing.B) {
	for _, yield := range []bool{false, true} {
		b.Run(map[bool]string{false: "alone", true: "yielding"}[yield], func(b *testing.B) {
			tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
			require.NoError(b, err)
			defer unix.Close(tfd)
			iv := unix.NsecToTimespec(int64(time.Millisecond))
			require.NoError(b, unix.TimerfdSettime(tfd, 0, &unix.ItimerSpec{Interval: iv, Value: iv}, nil))
			cpu := func() time.Duration {
				var ru unix.Rusage
				require.NoError(b, unix.Getrusage(unix.RUSAGE_SELF, &ru))
				return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			var ticks [8]byte
			b.ResetTimer()
			c0 := cpu()
			last := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := unix.Read(tfd, ticks[:]); err != nil {
					b.Fatal(err)
				}
				if now := time.Now(); yield && now.Sub(last) >= yieldEvery {
					runtime.Gosched() // as the reader does
					last = now
				}
			}
			b.ReportMetric(float64((cpu()-c0).Microseconds())/float64(b.N), "cpu-µs/tick")
		})
	}
}

// loopbackPair is a TCP connection on loopback: the client's end, and our
// copy of the server's socket as the epoll reader holds it (non-blocking).
// Both are closed when b ends.
func loopbackPair(b *testing.B) (net.Conn, int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(b, err)
	b.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	require.NoError(b, err)
	defer server.Close()
	fd, err := dupSocket(server)
	require.NoError(b, err)
	b.Cleanup(func() { unix.Close(fd) })
	return client, fd
}
