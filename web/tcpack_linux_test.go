//go:build linux

package web

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/fssim"
)

// The frames the epoll reader reads are ACKed one per two frames
// (tcpack_linux.go), not one per frame — also after a late frame let the
// kernel's delayed-ACK timer fire, which ends delayed-ACK mode until a
// deadline pass sets it again (one in ackPasses). Counted on the wire, as the segments the
// simulated mod_audio_fork's socket receives; each frame is sent only after
// the one before it came out at the UDP sink (it was read).
// Not parallel: the kernel's delayed-ACK timer fires on a loaded machine.
func TestEpollReaderAcksEveryOtherFrame(t *testing.T) {
	r := newRigWith(t, "epoll", nil, 10)
	a := r.dial("/fork/u1?profile=analytics", fssim.AudioForkOptions{})
	raw, err := a.Conn.NetConn().(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	segmentsIn := func() uint32 {
		var info *unix.TCPInfo
		require.NoError(t, raw.Control(func(fd uintptr) {
			info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		}))
		require.NoError(t, err)
		return info.Segs_in
	}
	frame := make([]byte, 640)
	sendAndWait := func() {
		n := r.packets("u1")
		require.NoError(t, a.Send(frame))
		require.Eventually(t, func() bool { return r.packets("u1") >= n+2 }, 3*time.Second, time.Millisecond,
			"the frame's two packets at the sink")
	}
	sendAndWait() // the first message: the fork begins, the socket goes to a reader
	require.Eventually(t, func() bool { return r.ingest.readerLoad() == 1 }, 3*time.Second, time.Millisecond)
	// A frame alone, twice: the second is certainly the only one unacknowledged,
	// and only the delayed-ACK timer ACKs it — which ends the mode.
	for i := 0; i < 2; i++ {
		before := segmentsIn()
		sendAndWait()
		require.Eventually(t, func() bool { return segmentsIn() > before }, 3*time.Second, time.Millisecond,
			"the delayed ACK")
	}
	var reader *poller
	for _, p := range r.ingest.poller.list {
		if p.load.Load() == 1 {
			reader = p
		}
	}
	passes := reader.passes.Load()
	require.Eventually(t, func() bool { return reader.passes.Load() >= passes+ackPasses+1 }, 3*time.Second, time.Millisecond,
		"a deadline pass that sets delayed-ACK mode since")

	const frames = 40
	before := segmentsIn()
	for i := 0; i < frames; i++ {
		sendAndWait()
	}
	acks := int(segmentsIn() - before)
	t.Logf("%d frames read, %d segments (ACKs) back", frames, acks)
	assert.LessOrEqual(t, acks, frames*3/4, "one ACK per frame read: delayed ACKs are off")
	assert.GreaterOrEqual(t, acks, frames/2-2, "TCP still ACKs every second segment")
	a.Stop("")
	r.waitEnded(2)
}
