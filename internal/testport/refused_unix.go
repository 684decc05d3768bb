//go:build unix

package testport

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// Refused is a loopback TCP address that refuses connections for the
// test's life: a socket bound there and not listening (the kernel answers a
// SYN with a reset), which no other process can bind meanwhile, as it could
// a port a listener was closed on.
func Refused(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if berr := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); berr != nil {
		t.Fatal(berr)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
