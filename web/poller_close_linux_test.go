//go:build linux

package web

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/transport/udp"
)

// closeRig is an ingest with n epoll readers and no listener.
func closeRig(t *testing.T, n int) *Ingest {
	reg := mediafork.NewRegistry(udp.New(), 10, true, quiet)
	in, err := NewIngest(reg, mediafork.NewSigner([]byte("k")), nil, IngestSettings{MaxMessageBytes: 65536}, quiet)
	require.NoError(t, err)
	require.NoError(t, in.UsePoller(ReaderSettings{Readers: n}))
	return in
}

// A second Close leaves alone the files that took the readers' descriptor
// numbers after the first.
// Not parallel: it takes descriptor numbers another test would get.
func TestCloseTwiceLeavesOtherFilesAlone(t *testing.T) {
	in := closeRig(t, 1)
	p := in.poller.list[0]
	fds := []int{p.epfd, p.tfd, p.wfd}
	null, err := os.Open("/dev/null")
	require.NoError(t, err)
	defer null.Close()
	in.Close()
	// Someone else (the HTTP server, a log file) opens files and gets those
	// numbers: made certain here, each number still free, with dup3.
	var files []*os.File
	for _, fd := range fds {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		require.ErrorIs(t, err, unix.EBADF, "fd %d free after Close", fd)
		require.NoError(t, unix.Dup3(int(null.Fd()), fd, unix.O_CLOEXEC))
		files = append(files, os.NewFile(uintptr(fd), "other"))
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	in.Close()
	for _, f := range files {
		var st unix.Stat_t
		assert.NoError(t, unix.Fstat(int(f.Fd()), &st), "fd %d, someone else's file, closed by the second Close", f.Fd())
	}
}

// A handover after Close (a late handler, after Wait returned) ends the
// connection, and writes nothing to whatever took the eventfd's number.
// Not parallel: it takes a descriptor number another test would get.
func TestHandoverAfterCloseWritesNothing(t *testing.T) {
	in := closeRig(t, 1)
	p := in.poller.list[0]
	wfd := p.wfd
	in.Close()
	var pipe [2]int
	require.NoError(t, unix.Pipe2(pipe[:], unix.O_CLOEXEC|unix.O_NONBLOCK))
	// The number is free: the next socket or file opened may get it (made certain here).
	require.NoError(t, unix.Dup3(pipe[1], wfd, unix.O_CLOEXEC))
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	defer unix.Close(wfd)
	fork, err := in.registry.Claim("u1", "")
	require.NoError(t, err)
	in.conns.Add(1)
	s := &session{in: in, fork: fork, log: quiet, src: sourceFor(nil, nil).NewStream(false)}
	p.handover(&polledConn{fd: -1, s: s})
	select {
	case <-fork.Done():
	default:
		t.Error("the connection handed over after Close did not finish its fork")
	}
	var b [16]byte
	n, _ := unix.Read(pipe[0], b[:])
	assert.Equal(t, 0, max(n, 0), "a pipe that reused the eventfd's number got %d bytes: %x", n, b[:max(n, 0)])
}
