package web

import (
	"errors"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mediafork/mediafork/mediafork"
	"golang.org/x/sys/unix"
)

// The epoll reader. Go's netpoller costs two read syscalls and a goroutine
// wake-up per WebSocket frame (the first read finds nothing and parks); here a
// few goroutines wait in epoll_wait on every connection at once and read each
// frame with one read. After gorilla's handshake and the first message, a
// connection's socket is handed over to one of them.

// pollTick bounds how late a close deadline is noticed.
const pollTick = 100 * time.Millisecond

type poller struct {
	flush func() // sends what this round of frames batched
	file  *os.File
	epfd  int
	mu    sync.Mutex
	conns map[int]*polledConn
	stop  atomic.Bool
	done  chan struct{}
}

// pollers are the epoll readers of an Ingest.
type pollers struct {
	list []*poller
	next atomic.Uint32
}

// UsePoller makes the ingest read connections with n epoll readers (0: one per
// CPU) instead of a goroutine each. Call before serving.
func (in *Ingest) UsePoller(n int) error {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	ps := &pollers{}
	for i := 0; i < n; i++ {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			ps.close()
			return err
		}
		p := &poller{epfd: epfd, conns: map[int]*polledConn{}, done: make(chan struct{}), flush: in.registry.FlushSends}
		ps.list = append(ps.list, p)
		go p.run()
	}
	in.poller = ps
	return nil
}

// Close stops the epoll readers (after the connections have ended: Wait).
func (in *Ingest) Close() {
	if in.poller != nil {
		in.poller.close()
	}
}

func (ps *pollers) close() {
	for _, p := range ps.list {
		p.stop.Store(true)
		<-p.done
		if p.file != nil {
			p.file.Close()
		} else {
			unix.Close(p.epfd)
		}
	}
}

func (ps *pollers) pick() *poller { return ps.list[int(ps.next.Add(1))%len(ps.list)] }

// polledConn is one connection on the epoll reader.
type polledConn struct {
	s *session
	r *frameReader
	p *poller

	mu       sync.Mutex // guards fd and nc against writes from Stop
	fd       int        // ours once handed over; -1 before
	nc       net.Conn   // before the handover
	closed   bool
	deadline atomic.Int64 // unix nanos to give up waiting for the peer's close

	// The silence deadline, kept by the reader goroutine (expire compares).
	msgs, seen uint64    // messages parsed; as of active
	active     time.Time // when expire last saw msgs move
	graceSet   bool      // the graceful frame's close deadline is set
}

// limit brings the close deadline forward to d (unix nanos), never back.
func (pc *polledConn) limit(d int64) {
	for {
		cur := pc.deadline.Load()
		if (cur != 0 && cur <= d) || pc.deadline.CompareAndSwap(cur, d) {
			return
		}
	}
}

// recoverPanic, deferred on every path that handles a connection, turns a
// panic into that connection's end: logged with its stack, the socket closed,
// the fork finished (its registry slot freed), the connection counted out.
// The epoll reader goes on serving the others.
func (pc *polledConn) recoverPanic() {
	if v := recover(); v != nil {
		pc.s.in.Stats.Panics.Add(1)
		pc.s.log.Error("panic on an ingest connection; closing it", "panic", v, "stack", string(debug.Stack()))
		defer func() {
			if v := recover(); v != nil {
				pc.s.log.Error("panic while ending an ingest connection", "panic", v, "stack", string(debug.Stack()))
			}
		}()
		pc.end(mediafork.EndMediaLost)
	}
}

// write sends a server frame, from any goroutine.
func (pc *polledConn) write(frame []byte) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	switch {
	case pc.closed:
	case pc.fd >= 0:
		unix.Write(pc.fd, frame)
	case pc.nc != nil:
		pc.nc.SetWriteDeadline(time.Now().Add(time.Second))
		pc.nc.Write(frame)
	}
}

// streamPolled reads the first message with the frame reader on the Go
// connection, then hands the socket to an epoll reader.
func (in *Ingest) streamPolled(conn *websocket.Conn, s *session) {
	pc := &polledConn{s: s, r: newFrameReader(s.set.MaxMessageBytes), fd: -1, nc: conn.NetConn()}
	defer pc.recoverPanic()
	s.fork.OnStop(func(reason mediafork.EndReason) {
		code, text := closeFor(reason)
		pc.write(closeFrame(code, text))
		// The peer answers with its close; if it does not, stop reading anyway.
		pc.limit(time.Now().Add(closeWait).UnixNano())
		pc.setReadDeadline(time.Time{})
	})
	if s.fork.StopRequested() != 0 {
		pc.end(0)
		return
	}
	// The first message, with a blocking read: resolving it may take a lookup.
	pc.setReadDeadline(time.Now().Add(FirstMessageTimeout))
	for {
		ev, op, p, code, err := pc.r.next()
		if err != nil {
			pc.fail(err)
			return
		}
		switch ev {
		case evNeedMore:
			n, err := pc.nc.Read(pc.r.space())
			if err != nil {
				pc.end(mediafork.EndMediaLost)
				return
			}
			pc.r.end += n
			continue
		case evPing:
			pc.write(serverFrame(opPong, p))
			continue
		case evClose:
			pc.write(closeFrame(closeReply(code), ""))
			pc.end(mediafork.EndHangup)
			return
		}
		if err := s.begin(op == opBinary, p); err != nil {
			pc.write(closeFrame(websocket.ClosePolicyViolation, err.Error()))
			pc.end(mediafork.EndStopped)
			return
		}
		pc.msgs++
		pc.afterMessage()
		break
	}
	// Hand over: our own copy of the socket, out of Go's netpoller.
	fd, err := dupSocket(pc.nc)
	if err != nil {
		s.log.Warn("cannot hand the connection to the epoll reader", "error", err)
		pc.end(mediafork.EndMediaLost)
		return
	}
	pc.mu.Lock()
	pc.nc.Close()
	pc.nc, pc.fd = nil, fd
	pc.mu.Unlock()
	pc.active = time.Now() // the silence deadline starts
	// Frames read along with the first message, before the reader sees the socket.
	if pc.r.end > pc.r.start && !pc.parse() {
		return
	}
	p := in.poller.pick()
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		return
	}
	pc.p = p
	p.mu.Lock()
	p.conns[fd] = pc
	p.mu.Unlock()
	err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)})
	pc.mu.Unlock()
	if err != nil {
		s.log.Warn("epoll_ctl failed", "error", err)
		pc.end(mediafork.EndMediaLost)
	}
}

// setReadDeadline sets the Go connection's read deadline (before the
// handover) to t, or to the close deadline when that is sooner (t zero: the
// close deadline alone).
func (pc *polledConn) setReadDeadline(t time.Time) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.nc == nil {
		return
	}
	if d := pc.deadline.Load(); d != 0 && (t.IsZero() || d < t.UnixNano()) {
		t = time.Unix(0, d)
	}
	pc.nc.SetReadDeadline(t)
}

// afterMessage sets the close deadline once the graceful frame has come: the
// peer's close is awaited that long, then the connection is ours to close.
func (pc *polledConn) afterMessage() {
	if pc.s.graceful && !pc.graceSet {
		pc.graceSet = true
		pc.limit(time.Now().Add(GracefulCloseTimeout).UnixNano())
		pc.setReadDeadline(time.Time{})
	}
}

func dupSocket(nc net.Conn) (int, error) {
	sc, ok := nc.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return -1, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := raw.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// run waits for ready connections. The epoll descriptor itself is watched by
// Go's netpoller (an epoll set is readable while events are pending), so the
// goroutine parks like any network reader instead of holding a thread in
// epoll_wait; then one non-blocking epoll_wait takes every ready connection.
func (p *poller) run() {
	defer close(p.done)
	unix.SetNonblock(p.epfd, true)
	f := os.NewFile(uintptr(p.epfd), "epoll")
	p.file = f
	raw, err := f.SyscallConn()
	if err != nil {
		return
	}
	tickDone := make(chan struct{})
	stopTick := make(chan struct{})
	defer func() { close(stopTick); <-tickDone }()
	go func() { // wake the reader for deadlines and for stopping
		defer close(tickDone)
		t := time.NewTicker(pollTick)
		defer t.Stop()
		for {
			select {
			case <-stopTick:
				return
			case <-t.C:
				f.SetReadDeadline(time.Now())
			}
		}
	}()
	events := make([]unix.EpollEvent, 256)
	lastTick := time.Now()
	recent, busy := 0, false // frames this tick; whether the last tick was busy
	gather := newGatherTimer()
	defer gather.close()
	for !p.stop.Load() {
		n := 0
		var werr error
		err := raw.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			return n > 0 || (werr != nil && werr != unix.EINTR)
		})
		if err == nil && werr != nil && werr != unix.EINTR {
			err = werr
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		f.SetReadDeadline(time.Time{})
		for i := 0; i < n; i++ {
			p.mu.Lock()
			pc := p.conns[int(events[i].Fd)]
			p.mu.Unlock()
			if pc != nil {
				pc.serve()
			}
		}
		if n > 0 {
			p.flush()
		}
		recent += n
		if time.Since(lastTick) >= pollTick {
			busy, recent = recent >= busyFrames, 0
			lastTick = time.Now()
			p.expire(lastTick)
		}
		if busy && n > 0 && n < len(events)/8 {
			// Busy, yet few were ready: let frames gather for a moment so that
			// one wake-up serves many (at 1,000 calls, ~15). It costs that much
			// latency, so it is done only when the CPU it saves matters.
			gather.wait(coalesce)
		}
	}
}

// gatherTimer sleeps with a timerfd watched by Go's netpoller: the goroutine
// parks like any reader and wakes within the kernel's timer slack. (time.Sleep
// wakes about a millisecond late here: the runtime rounds its netpoll timeout
// up to whole milliseconds.)
type gatherTimer struct {
	f   *os.File
	fd  int // f's descriptor (f.Fd would make it blocking)
	raw syscall.RawConn
	buf [8]byte
}

func newGatherTimer() *gatherTimer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return &gatherTimer{}
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return &gatherTimer{}
	}
	return &gatherTimer{f: f, fd: fd, raw: raw}
}

func (g *gatherTimer) wait(d time.Duration) {
	if g.f == nil {
		time.Sleep(d)
		return
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(g.fd, 0, &spec, nil); err != nil {
		time.Sleep(d)
		return
	}
	g.raw.Read(func(fd uintptr) bool {
		_, err := unix.Read(int(fd), g.buf[:])
		return err != unix.EAGAIN
	})
}

func (g *gatherTimer) close() {
	if g.f != nil {
		g.f.Close()
	}
}

// coalesce is how long a busy reader lets frames gather after a small round.
const coalesce = 300 * time.Microsecond

// busyFrames: a reader that handled this many frames in a tick (100 ms) is
// busy: 10,000 frames a second, some 200 calls.
const busyFrames = 1000

// expire ends connections past a deadline: the peer did not answer our
// close, or did not close after its graceful frame, in time; or it sent no
// message for MediaTimeout (mod_audio_fork sends one every 20 ms: silence is a
// dead or hostile peer; counting messages, not bytes, also ends a peer that
// trickles a frame a byte at a time).
func (p *poller) expire(now time.Time) {
	var late []*polledConn
	silence := MediaTimeout
	p.mu.Lock()
	for _, pc := range p.conns {
		if d := pc.deadline.Load(); d != 0 && now.UnixNano() > d {
			late = append(late, pc)
			continue
		}
		if pc.msgs != pc.seen {
			pc.seen, pc.active = pc.msgs, now
		} else if now.Sub(pc.active) > silence {
			late = append(late, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range late {
		pc.expired()
	}
}

// expired ends a connection past its deadline.
func (pc *polledConn) expired() {
	defer pc.recoverPanic()
	if pc.s.graceful {
		pc.write(closeFrame(websocket.CloseNormalClosure, "")) // the fork is over: close it ourselves
	} else if pc.deadline.Load() == 0 {
		pc.s.log.Info("no message for too long; closing the connection", "timeout", MediaTimeout)
	}
	pc.end(mediafork.EndMediaLost)
}

// serve handles one readiness event, a panic ending only this connection.
func (pc *polledConn) serve() {
	defer pc.recoverPanic()
	pc.readable()
}

// readable reads what arrived (one read) and acts on every whole frame.
func (pc *polledConn) readable() {
	n, err := unix.Read(pc.fd, pc.r.space())
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return
	case err != nil || n == 0: // reset, or closed without a close frame
		pc.end(mediafork.EndMediaLost)
		return
	}
	pc.r.end += n
	pc.parse()
}

// parse acts on every whole frame read; false when the connection ended.
func (pc *polledConn) parse() bool {
	for {
		ev, op, p, code, err := pc.r.next()
		if err != nil {
			pc.fail(err)
			return false
		}
		switch ev {
		case evNeedMore:
			return true
		case evPing:
			pc.write(serverFrame(opPong, p))
		case evClose:
			pc.write(closeFrame(closeReply(code), ""))
			pc.end(mediafork.EndHangup)
			return false
		case evMessage:
			pc.msgs++
			if !pc.s.message(op == opBinary, p) {
				pc.write(closeFrame(websocket.CloseNormalClosure, ""))
				pc.end(0)
				return false
			}
			pc.afterMessage()
		}
	}
}

// fail answers a protocol error or an oversized message with its close code.
func (pc *polledConn) fail(err error) {
	code, text := websocket.CloseProtocolError, ""
	var we wireError
	switch {
	case errors.Is(err, errTooBig):
		code = websocket.CloseMessageTooBig
		pc.s.in.Stats.TooBig.Add(1)
	case errors.As(err, &we):
		text = string(we)
	}
	pc.s.log.Debug("closing the connection", "error", err)
	pc.write(closeFrame(code, text))
	pc.end(mediafork.EndMediaLost)
}

// end closes the connection and finishes the fork (reason 0: it is finished).
func (pc *polledConn) end(reason mediafork.EndReason) {
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		return
	}
	pc.closed = true
	if pc.fd >= 0 {
		if pc.p != nil {
			unix.EpollCtl(pc.p.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
			pc.p.mu.Lock()
			delete(pc.p.conns, pc.fd)
			pc.p.mu.Unlock()
		}
		unix.Close(pc.fd)
	}
	if pc.nc != nil {
		pc.nc.Close()
	}
	pc.mu.Unlock()
	defer pc.s.in.conns.Done() // even if finishing panics
	if reason != 0 {
		pc.s.fork.Finish(reason)
	} else {
		pc.s.fork.Finish(mediafork.EndHangup) // no-op when already finished
	}
}
