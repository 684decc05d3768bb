package mediafork

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// dest is one destination's Endpoint, shared by every fork that sends there
// (counted in refs by the Registry).
type dest struct {
	addr    netip.AddrPort
	ep      Endpoint
	batch   int // ep.BatchSize()
	refs    int // guarded by Registry.dmu
	lastErr atomic.Pointer[string]
}

// owner is who a packet is counted for.
type owner struct {
	f   *Fork
	dir Direction
	c   *destCounters // the destination's, for this fork
}

func (d *dest) lastError() string {
	if p := d.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// send hands bufs to the endpoint and counts each packet for its owner (owners
// runs parallel to bufs). A refused packet is dropped and the rest go on,
// except after a full buffer: then the rest are dropped too.
func (d *dest) send(bufs [][]byte, owners []owner) {
	for len(bufs) > 0 {
		n, err := d.ep.Send(bufs)
		for i := 0; i < n && i < len(bufs); i++ {
			owners[i].f.account(owners[i].dir, len(bufs[i]), nil)
			owners[i].c.sent()
		}
		if err == nil || n >= len(bufs) {
			return
		}
		if old := d.lastErr.Load(); old == nil || *old != err.Error() {
			s := err.Error()
			d.lastErr.Store(&s)
		}
		stop := n + 1
		if err == ErrBufferFull {
			stop = len(bufs)
		}
		for i := n; i < stop; i++ {
			owners[i].f.account(owners[i].dir, len(bufs[i]), err)
			owners[i].c.count(err)
		}
		bufs, owners = bufs[stop:], owners[stop:]
	}
}

// Batch gathers the packets of one reader's round, per destination, and sends
// them when the round ends (Flush): one batch of sends per destination per
// round. It belongs to that reader (an epoll poller, or one connection of the
// goroutine reader) and is used by it alone: no lock. A destination's batch is
// sent early when it reaches the endpoint's BatchSize or MaxBatchBytes.
type Batch struct {
	reg     *Registry
	queues  map[*dest]*queue // by destination, for the forks of this reader
	touched []*queue         // queues that took packets this round
	samples [8]time.Time     // read times of sampled frames this round
	nsample int
	scratch []byte // where its forks' Packetizers build whole packets
	clock   int64  // the round's time (now), 0 until read
}

// batchScratch holds any audio packet of up to 20 ms of 48 kHz L16 (1,932
// bytes) and then some; a Packetizer of larger packets uses its own buffers.
const batchScratch = 4 << 10

// queue is one destination's packets in a Batch.
type queue struct {
	d       *dest
	users   int // forks of this batch sending to d
	touched bool
	buf     []byte   // the packets, back to back
	ends    []int    // where each packet ends in buf
	owners  []owner  // whom each packet is counted for
	bufs    [][]byte // views of buf, made at the flush
}

// NewBatch returns a batch for one reader.
func (r *Registry) NewBatch() *Batch {
	return &Batch{reg: r, queues: map[*dest]*queue{}}
}

// NewSharedBatch returns a batch for a reader of many forks in turn (an epoll
// reader): it also has a scratch buffer where their Packetizers build whole
// packets, warm from the fork before. A batch of one fork has no use for it.
func (r *Registry) NewSharedBatch() *Batch {
	b := r.NewBatch()
	b.scratch = make([]byte, batchScratch)
	return b
}

// Flush sends what the round gathered, for the destinations it touched only.
func (b *Batch) Flush() {
	b.clock = 0

	for i, q := range b.touched {
		q.touched = false
		q.flush()
		b.touched[i] = nil
	}
	b.touched = b.touched[:0]
	if b.nsample > 0 {
		if obs := b.reg.latency; obs != nil {
			for _, t := range b.samples[:b.nsample] {
				obs(time.Since(t))
			}
		}
		b.nsample = 0
	}
}

// sample notes the read time of a sampled frame, observed when its packets
// have been handed to the kernel (at the Flush).
func (b *Batch) sample(t time.Time) {
	if b.nsample < len(b.samples) {
		b.samples[b.nsample] = t
		b.nsample++
	}
}

// queueFor returns the batch's queue for d, counting one more fork on it.
func (b *Batch) queueFor(d *dest) *queue {
	q := b.queues[d]
	if q == nil {
		q = &queue{d: d}
		b.queues[d] = q
	}
	q.users++
	return q
}

// leave counts one fork off q, dropping q when it was the last.
func (b *Batch) leave(q *queue) {
	q.flush()
	q.users--
	if q.users == 0 {
		delete(b.queues, q.d) // an empty queue left in touched is skipped
	}
}

func (b *Batch) add(q *queue, f *Fork, dir Direction, c *destCounters, pkt []byte) {
	if len(q.owners) > 0 && len(q.buf)+len(pkt) > MaxBatchBytes {
		q.flush()
	}
	if !q.touched {
		q.touched = true
		b.touched = append(b.touched, q)
	}
	q.buf = append(q.buf, pkt...)
	q.ends = append(q.ends, len(q.buf))
	q.owners = append(q.owners, owner{f, dir, c})
	if len(q.owners) >= q.d.batch {
		q.flush()
	}
}

// flush sends the queue's packets now.
func (q *queue) flush() {
	if len(q.owners) == 0 {
		return
	}
	start := 0
	for _, end := range q.ends {
		q.bufs = append(q.bufs, q.buf[start:end:end])
		start = end
	}
	q.d.send(q.bufs, q.owners)
	clear(q.owners) // let ended forks go
	clear(q.bufs)
	q.buf, q.ends, q.owners, q.bufs = q.buf[:0], q.ends[:0], q.owners[:0], q.bufs[:0]
}

// now is the time of the reader's round, in monoNow's terms: read once per
// round (the first fork that asks), not per frame.
func (b *Batch) now() int64 {
	if b.clock == 0 {
		b.clock = b.reg.now()
	}

	return b.clock
}
