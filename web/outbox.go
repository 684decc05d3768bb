package web

import (
	"encoding/binary"
	"sync"
	"time"
)

// Talk-back writes into the module's own connection (mediafork is the
// WebSocket server of every fork): jambonz's module takes L16 frames, marks
// and killAudio down it; drachtio's and mod_audio_stream take playAudio /
// streamAudio messages. A connection that talks back gets an outbox: a
// bounded queue of whole frames and one writer goroutine of its own that
// writes them in order, waiting for room in the socket (never the reader,
// never the caller). On the epoll reader the reader's own frames (pong,
// close) go through it too, so that no frame is ever cut by another; a
// write that cannot finish within outboxWriteTimeout ends the connection
// (a module that reads nothing).

// Outbox bounds.
const (
	outboxMax          = 512 << 10 // bytes waiting: about 16 s of 16 kHz talk-back
	outboxWriteTimeout = 2 * time.Second
)

// outFrame is one frame to write: raw, a whole WebSocket frame as it goes
// on the wire (the epoll reader's connections), or a message for gorilla's
// writer.
type outFrame struct {
	raw  []byte
	text bool
	data []byte
}

func (f outFrame) size() int { return len(f.raw) + len(f.data) }

// outbox is one connection's talk-back writer.
type outbox struct {
	write func(f outFrame, deadline time.Time) error // writes one whole frame
	fail  func(error)                                // a write failed: end the connection
	done  func()                                     // the writer has returned

	mu      sync.Mutex
	q       []outFrame
	bytes   int
	closed  bool
	started bool
	wake    chan struct{}
}

func newOutbox(write func(outFrame, time.Time) error, fail func(error), done func()) *outbox {
	return &outbox{write: write, fail: fail, done: done, wake: make(chan struct{}, 1)}
}

// push queues f, never waiting; false when the connection has ended or,
// unless must (the reader's control frames), the outbox is full. The first
// push starts the writer; start is called first then (it counts it in).
func (ob *outbox) push(f outFrame, must bool, start func()) bool {
	ob.mu.Lock()
	if ob.closed || (!must && ob.bytes+f.size() > outboxMax) {
		ob.mu.Unlock()
		return false
	}
	ob.q = append(ob.q, f)
	ob.bytes += f.size()
	run := !ob.started
	ob.started = true
	ob.mu.Unlock()
	if run {
		start()
		go ob.run()
	}
	select {
	case ob.wake <- struct{}{}:
	default:
	}
	return true
}

// close stops the writer (what is queued is dropped: the connection has
// ended).
func (ob *outbox) close() {
	ob.mu.Lock()
	ob.closed = true
	ob.q, ob.bytes = nil, 0
	ob.mu.Unlock()
	select {
	case ob.wake <- struct{}{}:
	default:
	}
}

func (ob *outbox) run() {
	defer ob.done()
	for {
		ob.mu.Lock()
		for len(ob.q) == 0 && !ob.closed {
			ob.mu.Unlock()
			<-ob.wake
			ob.mu.Lock()
		}
		if ob.closed {
			ob.mu.Unlock()
			return
		}
		f := ob.q[0]
		ob.q[0] = outFrame{}
		ob.q = ob.q[1:]
		ob.bytes -= f.size()
		ob.mu.Unlock()
		if err := ob.write(f, time.Now().Add(outboxWriteTimeout)); err != nil {
			ob.close()
			ob.fail(err)
			return
		}
	}
}

// appendFrame appends a whole unmasked server frame (the server never masks).
func appendFrame(b []byte, op byte, payload []byte) []byte {
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}
