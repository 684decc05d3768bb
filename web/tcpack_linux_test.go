//go:build linux

package web

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/fssim"
)

// The frames the epoll reader reads are ACKed one per two frames
// (tcpack_linux.go), not one per frame. Counted on the wire, as the segments
// the simulated mod_audio_fork's socket receives; each frame is sent only
// after the one before it came out at the UDP sink (it was read). A frame
// that waits alone past the kernel's delayed-ACK timer (~40 ms: this loop runs
// late on a loaded machine) is ACKed by the timer, which ends delayed-ACK mode
// until a deadline pass sets it again (one in ackPasses): the frames are
// counted while the ingest's socket holds the mode from before each is sent
// until after it is read, as the socket itself says (TCP_QUICKACK reads 0),
// and a frame sent while it does not waits for the pass that sets it. The
// mode is ended on purpose first: the kernel enters it by itself once, when
// the upgrade is answered; entering it again is the reader's doing.
func TestEpollReaderAcksEveryOtherFrame(t *testing.T) {
	accepted := make(chan *os.File, 1)
	r := newRigOn(t, "epoll", nil, 10, func(ln net.Listener) net.Listener { return &acceptedListener{ln, accepted} })
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
	ingestSocket := <-accepted // a dup: the ingest's own is handed to the reader, its net.Conn closed
	defer ingestSocket.Close()
	ingestRaw, err := ingestSocket.SyscallConn()
	require.NoError(t, err)
	delayingAcks := func() bool {
		quick := -1
		require.NoError(t, ingestRaw.Control(func(fd uintptr) {
			quick, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK)
		}))
		require.NoError(t, err)
		return quick == 0
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

	// A frame alone until its ACK comes: the delayed-ACK timer's, which ends
	// the mode (the upgrade's answer had set it), as a late frame does;
	// only the reader's deadline pass sets it again.
	for i := 0; delayingAcks(); i++ {
		require.Less(t, i, 10, "the delayed-ACK timer never ended the mode")
		before := segmentsIn()
		sendAndWait()
		require.Eventually(t, func() bool { return segmentsIn() > before }, 3*time.Second, time.Millisecond, "the delayed ACK")
	}
	require.Eventually(t, delayingAcks, 3*time.Second, time.Millisecond, "a deadline pass sets delayed-ACK mode again")

	const frames = 40
	counted, acks := 0, 0
	for sent := 0; counted < frames; sent++ {
		require.Less(t, sent, 50*frames, "delayed-ACK mode never held: %d frames of %d counted", counted, sent)
		if !delayingAcks() {
			require.Eventually(t, delayingAcks, 3*time.Second, time.Millisecond, "a deadline pass sets delayed-ACK mode")
		}
		before := segmentsIn()
		sendAndWait()
		n := int(segmentsIn() - before)
		if delayingAcks() {
			counted++
			acks += n
		}
	}
	t.Logf("%d frames read, %d segments (ACKs) back", counted, acks)
	assert.LessOrEqual(t, acks, frames*3/4, "one ACK per frame read: delayed ACKs are off")
	assert.Positive(t, acks, "TCP still ACKs")
	a.Stop("")
	r.waitEnded(2)
}

// acceptedListener hands the test a dup of the first socket it accepts.
type acceptedListener struct {
	net.Listener
	accepted chan<- *os.File
}

func (l *acceptedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		if f, ferr := c.(*net.TCPConn).File(); ferr == nil {
			select {
			case l.accepted <- f:
			default:
				f.Close()
			}
		}
	}
	return c, err
}
