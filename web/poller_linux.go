//go:build linux

package web

import (
	"crypto/tls"
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
	"github.com/mediafork/mediafork/transport/tlsrecord"
	"golang.org/x/sys/unix"
)

// The epoll reader. Go's netpoller costs two read syscalls and a goroutine
// wake-up per WebSocket frame (the first read finds nothing and parks); here a
// few goroutines each own an epoll set of connections and read them in
// rounds: while frames come, a timerfd ticks every round (RoundInterval,
// stretched with fewer calls: ReaderSettings); each tick, one non-blocking
// epoll_wait takes every ready connection, each is read with one read, and
// the round's packets leave in one batch per destination. When
// nothing comes (no connection, or a few rounds found nothing) nothing ticks:
// the goroutine blocks in epoll_wait until a frame or a handover comes, with a
// timeout only when connections have deadlines to check. After gorilla's
// handshake and the first message, a connection's socket is handed over to one
// of them, in delayed-ACK mode (tcpack_linux.go).

// With fewer calls a round would carry only a few frames for the same tick:
// the cadence stretches so that a round carries about roundFrames frames (a
// call sends one every 20 ms), up to MaxRoundInterval: 0.8 ms from 500 calls
// up, 1 ms at 400, 2 ms at 200, 4 ms at 100. At 200 calls 2 ms against 1 ms
// cost p99 1.1 → 2.1 ms and saved a quarter of the CPU (BENCHMARKS.md).
const roundFrames = 20

// cadence is the round interval for live connections.
func (s *ReaderSettings) cadence(live int) time.Duration {
	d := roundFrames * 20 * time.Millisecond / time.Duration(max(live, 1))
	return min(max(d, s.RoundInterval), s.MaxRoundInterval)
}

// warmBuffer is the size of a reader's own read buffer: a connection's
// buffer starts at 2 KiB (a mod_audio_fork frame of 20 ms of 16 kHz stereo is
// 1,288 bytes) and only grows for a peer that sends more at once.
const warmBuffer = 16 << 10

// pollTick is how often the rounds check the connections' deadlines.
const pollTick = 100 * time.Millisecond

// ackPasses: one deadline pass in this many sets delayed-ACK mode again
// (tcpack_linux.go): twice a second. The kernel leaves the mode only when a
// frame comes late; a setsockopt per connection every pass was 3 % of the
// reader's CPU at 500 calls.
const ackPasses = 5

type poller struct {
	set  *ReaderSettings
	epfd int // the connections' epoll set, and wfd
	tfd  int // the round timer (blocking reads)
	wfd  int // an eventfd: a handover or Close wakes a parked reader
	stop atomic.Bool
	done chan struct{}

	mu       sync.Mutex    // guards incoming, closed, and wfd against Close
	incoming []*polledConn // handed over, not yet in the set
	closed   bool          // Close has run: the files are gone
	pending  atomic.Int32  // len(incoming)
	load     atomic.Int32  // connections handed over and not ended: what pick balances

	// Owned by run.
	batch *mediafork.Batch
	warm  []byte        // where a round reads a connection with nothing left over
	slots []*polledConn // by the index in the epoll event
	free  []int32
	live  int
	gen   uint32
	armed bool
	// The cadence armed, and the one wanted (set on each deadline pass).
	interval, want time.Duration
	// The deadline sweep: the next slot to check, and the checks owed
	// (in slot-nanoseconds, a check per pollTick).
	cursor int
	due    int64
	passes atomic.Uint32 // whole passes made (a test waits for one)
}

// pollers are the epoll readers of an Ingest.
type pollers struct {
	list []*poller
}

// UsePoller makes the ingest read connections with s.Readers epoll readers
// (by default one per CPU but one, at least one) instead of a goroutine each.
// Call before serving; a bad s is an error. A reader waits in a blocking
// system call, which holds its P; with every P held, the runtime's monitor
// takes them back on every tick and each round pays for it: on 2 CPUs two
// readers cost 60–80 % per 1,000 calls at 500 calls, one 41–49 %
// (BENCHMARKS.md).
func (in *Ingest) UsePoller(s ReaderSettings) error {
	if err := s.resolve(); err != nil {
		return err
	}
	ps := &pollers{}
	for i := 0; i < s.Readers; i++ {
		p, err := newPoller(&s, in.registry.NewSharedBatch())
		if err != nil {
			ps.close()
			return err
		}
		ps.list = append(ps.list, p)
		go p.run()
	}
	in.poller = ps
	return nil
}

func newPoller(s *ReaderSettings, b *mediafork.Batch) (*poller, error) {
	p := &poller{set: s, batch: b, done: make(chan struct{}), epfd: -1, tfd: -1, wfd: -1, warm: make([]byte, warmBuffer)}
	var err error
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err == nil {
		if p.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC); err == nil {
			if p.wfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err == nil {
				err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, p.wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot})
			}
		}
	}
	if err != nil {
		p.closeFiles()
		return nil, err
	}
	return p, nil
}

// wakeSlot is the eventfd's data in the epoll set: no connection's slot.
const wakeSlot = -1

func (p *poller) closeFiles() {
	for _, fd := range []int{p.epfd, p.tfd, p.wfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// wake makes a parked reader look at its incoming connections and its stop
// flag now; a ticking one looks at its next tick.
func (p *poller) wake() {
	one := [8]byte{1}
	unix.Write(p.wfd, one[:])
}

// handover gives pc to the poller; run adds it to its set.
func (p *poller) handover(pc *polledConn) {
	p.load.Add(1)
	p.mu.Lock()
	if p.closed { // too late: no reader will ever adopt it
		p.mu.Unlock()
		p.load.Add(-1)
		pc.end(mediafork.EndShutdown)
		return
	}
	p.incoming = append(p.incoming, pc)
	p.pending.Add(1)
	p.wake() // under mu: Close cannot close wfd before this write
	p.mu.Unlock()
}

// Close stops the epoll readers (after the connections have ended: Wait).
func (in *Ingest) Close() {
	if in.poller != nil {
		in.poller.close()
	}
}

func (ps *pollers) close() {
	for _, p := range ps.list {
		p.mu.Lock()
		if p.closed { // a second Close: the numbers may be someone else's now
			p.mu.Unlock()
			continue
		}
		p.closed = true
		p.stop.Store(true)
		p.wake()
		p.mu.Unlock()
		<-p.done
		p.closeFiles()
		for _, pc := range p.incoming { // handed over as it stopped
			p.load.Add(-1)
			pc.end(mediafork.EndShutdown)
		}
		p.incoming = nil
	}
}

// connsPerReader is how many connections a reader takes before one more
// reader starts taking any. A reader with a connection ticks every
// RoundInterval, and a tick costs about the same whether it reads one frame or
// fifty: at a few hundred calls one reader makes rounds twice the size two
// would, for half the wake-ups. (Measured when readers waited in the
// netpoller; on the 2-CPU machine of BENCHMARKS.md there is one reader now, so
// the number is not measured again there.)
const connsPerReader = 300

// pick chooses the reader of a new connection: the least loaded of the first
// n readers, n growing by one per connsPerReader connections.
func (ps *pollers) pick() *poller {
	total := 0
	for _, p := range ps.list {
		total += int(p.load.Load())
	}
	best := ps.list[0]
	for _, p := range ps.list[1:min(len(ps.list), total/connsPerReader+1)] {
		if p.load.Load() < best.load.Load() {
			best = p
		}
	}
	return best
}

// polledConn is one connection on the epoll reader.
type polledConn struct {
	s *session
	r *frameReader
	p *poller

	mu       sync.Mutex      // guards fd, nc, tc, p and tls.tx against writes from Stop
	fd       int             // ours once handed over; -1 before
	nc       net.Conn        // before the handover
	tc       *tlsrecord.Conn // nc, when wss:// (before the handover)
	tls      tlsState        // wss:// after the handover (tls.on): the records are read and written here
	closed   bool
	deadline atomic.Int64 // unix nanos to give up waiting for the peer's close

	slot int32  // index in p.slots (when p is set), the epoll event's data
	gen  uint32 // the epoll event's check that slot is still this connection

	// The silence deadline, kept by the reader goroutine (sweep compares).
	msgs, seen uint64    // messages parsed; as of active
	active     time.Time // when sweep last saw msgs move
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

// write sends a server frame, from any goroutine (Stop's caller among them:
// a hangup's ESL event, the API). It never waits: the socket is written
// once, non-blocking, before the handover as after it, and a frame that does
// not fit (a peer that reads nothing has filled its buffers) is dropped; the
// peer's deadlines end it. The lock keeps the descriptor from being closed,
// and its number reused, under the write.
func (pc *polledConn) write(frame []byte) {
	if ob := pc.s.outbox(); ob != nil {
		// Talk-back writes here too: after what it has queued, whole.
		ob.push(outFrame{raw: frame}, true, func() { pc.s.in.conns.Add(1) })
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	switch {
	case pc.closed:
	case pc.fd >= 0 && pc.tls.on:
		pc.tls.write(pc.fd, frame, nil)
	case pc.fd >= 0:
		unix.Write(pc.fd, frame)
	case pc.tc != nil:
		pc.tc.WriteNow(frame)
	case pc.nc != nil:
		writeNow(pc.nc, frame)
	}
}

// writeNow writes b to a Go connection's socket once, without waiting for
// room (Go's sockets are non-blocking; only its Write waits).
func writeNow(nc net.Conn, b []byte) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	if raw, err := sc.SyscallConn(); err == nil {
		raw.Write(func(fd uintptr) bool {
			unix.Write(int(fd), b)
			return true // done, whatever came of it: never wait for the poller
		})
	}
}

// writeAll writes one whole frame for the outbox's writer, waiting for room
// (poll, outside the lock) until deadline; before the handover it waits for
// it. Each write is under the lock, so the descriptor is never another's.
//
// wss:// after the handover: the frame is sealed into records once, under
// the lock, and those bytes written whole; the outbox is the connection's
// only writer while it lives, and tlsState.write sends nothing while a
// sealed record is still going out (midRecord), so the records stay whole
// and in order.
func (pc *polledConn) writeAll(b []byte, deadline time.Time) (err error) {
	sealed := false
	defer func() {
		if sealed {
			pc.mu.Lock()
			pc.tls.midRecord = false
			if err != nil {
				pc.tls.broken = true // a record may be half written: nothing can follow it
			}
			pc.mu.Unlock()
		}
	}()
	for len(b) > 0 {
		pc.mu.Lock()
		if pc.closed {
			pc.mu.Unlock()
			return net.ErrClosed
		}
		fd := pc.fd
		if fd >= 0 && pc.tls.on && !sealed {
			if pc.tls.broken {
				pc.mu.Unlock()
				return errTLSBroken
			}
			pc.tls.out = pc.tls.tx.Seal(pc.tls.out[:0], b)
			b, sealed, pc.tls.midRecord = pc.tls.out, true, true
		}
		n, err := 0, error(unix.EAGAIN)
		if fd >= 0 {
			n, err = unix.Write(fd, b)
		}
		pc.mu.Unlock()
		if n > 0 {
			b = b[n:]
			continue
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return err
		}
		if time.Now().After(deadline) {
			return os.ErrDeadlineExceeded
		}
		if fd < 0 {
			time.Sleep(time.Millisecond) // the handover is under way
			continue
		}
		// Room, or at most 20 ms (the descriptor may close meanwhile: the
		// next write sees it).
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 20)
	}
	return nil
}

// shutdown ends a connection from a goroutine that is not its reader's: the
// reader sees the end and finishes it.
func (pc *polledConn) shutdown() {
	pc.limit(time.Now().UnixNano())
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		return
	}
	if pc.fd >= 0 {
		unix.Shutdown(pc.fd, unix.SHUT_RDWR)
	} else if pc.nc != nil {
		pc.nc.Close()
	}
}

// streamPolled reads the first message with the frame reader on the Go
// connection, then hands the socket to an epoll reader.
func (in *Ingest) streamPolled(conn *websocket.Conn, s *session) {
	pc := &polledConn{s: s, r: newFrameReader(s.set.MaxMessageBytes), fd: -1, nc: conn.NetConn()}
	pc.tc, _ = pc.nc.(*tlsrecord.Conn) // its records are read through it until the handover
	defer pc.recoverPanic()
	s.mu.Lock()
	s.frameOf = func(text bool, b []byte) outFrame {
		op := byte(opBinary)
		if text {
			op = opText
		}
		return outFrame{raw: appendFrame(make([]byte, 0, len(b)+10), op, b)}
	}
	s.newOutbox = func() *outbox {
		return newOutbox(func(f outFrame, deadline time.Time) error { return pc.writeAll(f.raw, deadline) },
			func(err error) {
				s.log.Warn("talk-back: the module does not take what is written; closing", "error", err)
				pc.shutdown()
			}, s.in.conns.Done)
	}
	s.mu.Unlock()
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
	// A Source may hold the fork back past it (mod_audio_stream typed by
	// hand: audio queued before its metadata); reading goes on here until the
	// fork has begun, so that no lookup ever blocks an epoll reader.
	pc.setReadDeadline(time.Now().Add(s.set.FirstMessageTimeout))
	for !s.begun {
		ev, op, p, code, err := pc.r.next()
		if err != nil {
			pc.fail(err)
			return
		}
		switch ev {
		case evNeedMore:
			n, rerr := pc.nc.Read(pc.r.space())
			if rerr != nil {
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
			pc.end(s.src.PeerClosed(code))
			return
		}
		var more bool
		if pc.msgs == 0 {
			more, err = s.begin(op == opBinary, p)
		} else {
			more, err = s.message(op == opBinary, p)
		}
		pc.msgs++
		if err != nil {
			pc.write(closeFrame(refusal(err)))
			pc.s.refused = true
			pc.end(mediafork.EndStopped)
			return
		}
		if !more { // the Source asked to close (mod_audio_fork's graceful frame)
			pc.write(closeFrame(websocket.CloseNormalClosure, ""))
			pc.end(0)
			return
		}
		if !s.begun { // held: each later message within MediaTimeout, as after the handover
			pc.setReadDeadline(time.Now().Add(s.set.MediaTimeout))
		}
	}
	// Hand over: our own copy of the socket, out of Go's netpoller; for
	// wss://, the record layer too.
	var st *tlsrecord.State
	fd, err := dupSocket(pc.nc)
	if err == nil && pc.tc != nil {
		if st, err = pc.tc.Detach(); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		s.log.Warn("cannot hand the connection to the epoll reader", "error", err)
		pc.end(mediafork.EndMediaLost)
		return
	}
	delayAcks(fd)
	if st != nil {
		cs := pc.tc.TLSConnectionState()
		s.log.Debug("wss:// on the epoll reader: its records decrypted there", "tls", tls.VersionName(cs.Version), "suite", tls.CipherSuiteName(cs.CipherSuite))
	}
	pc.mu.Lock()
	pc.nc.Close() // a detached tlsrecord.Conn only closes its socket
	pc.nc, pc.tc, pc.fd = nil, nil, fd
	if st != nil {
		pc.tls = tlsState{on: true, rx: st.Receiver, tx: st.Sender}
	}
	pc.mu.Unlock()
	pc.active = time.Now() // the silence deadline starts
	// Frames read along with the first message, before the reader sees the
	// socket: what the frame reader holds, then (wss://) what the
	// tlsrecord.Conn had decrypted, and the records it had read.
	if pc.r.end > pc.r.start && !pc.parse() {
		return
	}
	if st != nil && (!pc.feed(st.Plain) || !pc.openRecords(st.Raw)) {
		return
	}
	in.poller.pick().handover(pc)
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

// run serves the poller's connections in rounds. It waits in blocking system
// calls, not in Go's netpoller: on the timerfd while frames come (the round's
// cadence), on the epoll set when they do not (a frame, a handover or Close
// wakes it; with connections, the next deadline check does too: nothing
// ticks). Blocked in a system call, the goroutine keeps its thread and its P
// is left alone unless other goroutines need it, so a tick is one wake-up of
// one thread; through the netpoller each tick also woke the runtime's monitor
// thread, which then polled every 20 µs while the round ran (BENCHMARKS.md).
func (p *poller) run() {
	defer close(p.done)
	defer p.batch.Flush()
	events := make([]unix.EpollEvent, 256)
	var ticks [8]byte
	lastSweep := time.Now()
	lastYield := lastSweep
	quiet := 0 // rounds in a row that found nothing to read
	for !p.stop.Load() {
		if p.pending.Load() > 0 {
			p.adopt()
		}
		if p.live == 0 || quiet >= quietRounds {
			p.setTimer(false)
			timeout := -1
			if p.live > 0 {
				timeout = max(int(time.Until(lastSweep.Add(pollTick)).Milliseconds()), 0) + 1
			}
			n, err := unix.EpollWait(p.epfd, events, timeout)
			if err == nil && n > 0 {
				quiet = 0
				p.serveReady(events[:n])
				p.round(events)
			}
		} else {
			if !p.armed {
				p.want = p.set.cadence(p.live)
			}
			p.setTimer(true)
			if _, err := unix.Read(p.tfd, ticks[:]); err != nil && err != unix.EINTR {
				p.setTimer(false) // not expected; park instead of spinning
				quiet = quietRounds
				continue
			}
			if p.round(events) == 0 {
				quiet++
			} else {
				quiet = 0
			}
		}
		now := time.Now()
		if p.live > 0 {
			p.sweep(now.Sub(lastSweep), now)
		}
		lastSweep = now
		if now.Sub(lastYield) >= yieldEvery {
			// The runtime's monitor takes the P of a goroutine that has not
			// been through the scheduler for 10 ms, even one blocked in a
			// system call; the next tick then finds no P of its own, takes an
			// idle one and wakes the monitor from its deep sleep: three
			// context switches a tick instead of one (BENCHMARKS.md).
			runtime.Gosched()
			lastYield = now
		}
	}
}

// yieldEvery is how often a ticking reader passes through the scheduler:
// well inside the runtime's 10 ms time slice.
const yieldEvery = 4 * time.Millisecond

// quietRounds: after this many rounds in a row with nothing to read, the
// poller stops ticking until a frame comes (paused calls, idle connections).
const quietRounds = 3

// round reads every ready connection and sends the round's packets; it
// returns how many connections were ready.
func (p *poller) round(events []unix.EpollEvent) int {
	total := 0
	for {
		n, err := unix.EpollWait(p.epfd, events, 0)
		if err == unix.EINTR {
			continue
		}
		p.serveReady(events[:max(n, 0)])
		total += max(n, 0)
		if n < len(events) {
			break
		}
	}
	p.batch.Flush()
	return total
}

// serveReady reads the connections of events.
func (p *poller) serveReady(events []unix.EpollEvent) {
	for i := range events {
		slot, gen := events[i].Fd, uint32(events[i].Pad)
		if slot == wakeSlot {
			var b [8]byte
			unix.Read(p.wfd, b[:]) // reset; run looks at incoming and stop
			continue
		}
		if pc := p.slots[slot]; pc != nil && pc.gen == gen {
			pc.serve()
		}
	}
}

// setTimer arms the round timer (periodic, at the cadence for the live
// connections, which it follows once a deadline pass) or disarms it.
func (p *poller) setTimer(on bool) {
	if on == p.armed && (!on || p.interval == p.want) {
		return
	}
	var spec unix.ItimerSpec
	if on {
		iv := unix.NsecToTimespec(int64(p.want))
		spec = unix.ItimerSpec{Interval: iv, Value: iv}
	}
	if unix.TimerfdSettime(p.tfd, 0, &spec, nil) == nil {
		p.armed, p.interval = on, p.want
	}
}

// adopt adds the connections handed over to the epoll set.
func (p *poller) adopt() {
	p.mu.Lock()
	list := p.incoming
	p.incoming = nil
	p.pending.Store(0)
	p.mu.Unlock()
	for _, pc := range list {
		p.add(pc)
	}
}

func (p *poller) add(pc *polledConn) {
	defer pc.recoverPanic()
	pc.mu.Lock()
	if pc.closed { // ended before it was added: end did not count it out
		pc.mu.Unlock()
		p.load.Add(-1)
		return
	}
	var slot int32
	if k := len(p.free); k > 0 {
		slot, p.free = p.free[k-1], p.free[:k-1]
	} else {
		slot = int32(len(p.slots))
		p.slots = append(p.slots, nil)
	}
	p.gen++
	pc.p, pc.slot, pc.gen = p, slot, p.gen
	p.slots[slot] = pc
	p.live++
	pc.s.batch = p.batch // the fork's packets go out with the rounds now
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, pc.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: slot, Pad: int32(pc.gen)})
	pc.mu.Unlock()
	if err != nil {
		pc.s.log.Warn("epoll_ctl failed", "error", err)
		pc.end(mediafork.EndMediaLost)
	}
}

// sweep checks the deadlines of the share of the connections that elapsed
// stands for, each one every pollTick: a few a round rather than every one
// at once, which at 1,000 calls held a round up for a millisecond or more
// ten times a second (p99). A connection ends past a deadline: the peer did
// not answer our close in time; or it sent no message for MediaTimeout (mod_audio_fork sends one every
// 20 ms: silence is a dead or hostile peer; counting messages, not bytes,
// also ends a peer that trickles a frame a byte at a time).
func (p *poller) sweep(elapsed time.Duration, now time.Time) {
	n := len(p.slots)
	p.due += int64(n) * int64(min(elapsed, pollTick)) // a pollTick or more: one whole pass
	k := min(p.due/int64(pollTick), int64(n))
	p.due -= k * int64(pollTick)
	if k == int64(n) {
		p.due = 0 // a whole pass (after a long wait): nothing owed
	}
	for ; k > 0; k-- {
		if p.cursor >= len(p.slots) {
			p.cursor = 0
		}
		pc := p.slots[p.cursor]
		p.cursor++
		if pc != nil {
			p.check(pc, now)
		}
		if p.cursor == len(p.slots) {
			p.want = p.set.cadence(p.live)
			p.passes.Add(1)
		}
	}
}

// check ends pc if it is past a deadline, and keeps it in delayed-ACK mode.
func (p *poller) check(pc *polledConn, now time.Time) {
	if p.passes.Load()%ackPasses == 0 {
		delayAcks(pc.fd)
	}
	if d := pc.deadline.Load(); d != 0 && now.UnixNano() > d {
		pc.expired()
		return
	}
	if pc.msgs != pc.seen {
		pc.seen, pc.active = pc.msgs, now
	} else if now.Sub(pc.active) > pc.s.set.MediaTimeout {
		pc.expired()
	}
}

// expired ends a connection past its deadline.
func (pc *polledConn) expired() {
	defer pc.recoverPanic()
	if pc.deadline.Load() == 0 {
		pc.s.log.Info("no message for too long; closing the connection", "timeout", pc.s.set.MediaTimeout)
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
	if pc.tls.on {
		pc.readableTLS()
		return
	}
	r := pc.r
	own, warm := r.buf, pc.p.warm
	if r.start != r.end || len(own) > len(warm) {
		n, err := unix.Read(pc.fd, r.space()) // a partial frame waits: read on after it
		if pc.read(n, err) {
			pc.parse()
		}
		return
	}
	// Nothing is left over from the last read: read into the reader's buffer,
	// warm in the cache from the connections read before in the round, not
	// into the connection's, cold since its last frame 20 ms ago. The read is
	// no larger than the connection's buffer: the same frames are parsed.
	// Only what is left of a partial frame is copied to the connection's.
	r.buf, r.start, r.end = warm[:len(own)], 0, 0
	n, err := unix.Read(pc.fd, r.buf)
	if pc.read(n, err) {
		pc.parse()
	}
	if &r.buf[0] == &warm[0] { // not grown for a large frame (its own then)
		r.end = copy(own, r.buf[r.start:r.end])
		r.buf, r.start = own, 0
	}
}

// read takes the result of a read into the frame reader: true when n bytes
// came.
func (pc *polledConn) read(n int, err error) bool {
	if !pc.came(n, err) {
		return false
	}
	pc.r.end += n
	return true
}

// came takes the result of a read (plain or TLS): true when n bytes came;
// a reset or an end without a close frame ends the connection.
func (pc *polledConn) came(n int, err error) bool {
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return false
	case err != nil || n == 0: // reset, or closed without a close frame
		pc.end(mediafork.EndMediaLost)
		return false
	}
	return true
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
			pc.end(pc.s.src.PeerClosed(code))
			return false
		case evMessage:
			pc.msgs++
			more, err := pc.s.message(op == opBinary, p)
			if err != nil { // not after the handover: the fork has begun
				pc.write(closeFrame(refusal(err)))
				pc.s.refused = true
				pc.end(mediafork.EndStopped)
				return false
			}
			if !more { // the Source asked to close (the graceful frame)
				pc.write(closeFrame(websocket.CloseNormalClosure, ""))
				pc.end(0)
				return false
			}
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
	pc.s.refused = true
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
		if pc.tls.on { // as crypto/tls does when the goroutine reader closes
			pc.tls.write(pc.fd, nil, (*tlsrecord.Sender).SealCloseNotify)
		}
		if p := pc.p; p != nil { // on p's goroutine: it owns the slots
			unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
			p.slots[pc.slot] = nil
			p.free = append(p.free, pc.slot)
			p.live--
			p.load.Add(-1)
		}
		if pc.s.refused {
			pc.s.in.lingerFD(pc.fd)
		} else {
			unix.Close(pc.fd)
		}
	}
	if pc.nc != nil {
		if pc.s.refused {
			pc.s.in.lingerClose(pc.nc)
		} else {
			pc.nc.Close()
		}
	}
	pc.mu.Unlock()
	pc.s.closeOutbox()
	defer pc.s.in.conns.Done() // even if finishing panics
	if reason != 0 {
		pc.s.finish(reason)
	} else {
		pc.s.fork.Finish(mediafork.EndHangup) // no-op when already finished
	}
}
