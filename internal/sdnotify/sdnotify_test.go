package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) // a bound on failure, not a wait
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestUnsetIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	if sent, err := Ready("x"); sent || err != nil {
		t.Fatalf("sent=%v err=%v with no NOTIFY_SOCKET", sent, err)
	}
}

func TestPathSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notify")
	c := listen(t, p)
	t.Setenv("NOTIFY_SOCKET", p)
	if sent, err := Ready("listening on a\nb"); !sent || err != nil {
		t.Fatalf("sent=%v err=%v", sent, err)
	}
	if got, want := recv(t, c), "READY=1\nSTATUS=listening on a b\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := Stopping("bye"); err != nil {
		t.Fatal(err)
	}
	if got, want := recv(t, c), "STOPPING=1\nSTATUS=bye\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestAbstractSocketAndReloading(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract sockets and MONOTONIC_USEC are Linux's")
	}
	name := "mediafork-sdnotify-test-" + strconv.Itoa(os.Getpid())
	c := listen(t, "\x00"+name)
	t.Setenv("NOTIFY_SOCKET", "@"+name)
	if _, err := Reloading("reloading"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(recv(t, c), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || lines[1] != "STATUS=reloading" || !strings.HasPrefix(lines[2], "MONOTONIC_USEC=") {
		t.Fatalf("got %q", lines)
	}
	us, err := strconv.ParseInt(strings.TrimPrefix(lines[2], "MONOTONIC_USEC="), 10, 64)
	if err != nil || us <= 0 {
		t.Fatalf("MONOTONIC_USEC %q: %v", lines[2], err)
	}
}

func TestNoListenerIsAnError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	if sent, err := Ready("x"); sent || err == nil {
		t.Fatalf("sent=%v err=%v to a missing socket", sent, err)
	}
}
