package tlvdump

// seqKind is what one audio packet's sequence number says about it.
type seqKind int

const (
	seqInOrder   seqKind = iota // the next one, or the first
	seqGap                      // ahead of the next one: packets were lost
	seqLate                     // older than the highest seen, not seen before
	seqDuplicate                // seen already
	seqRefused                  // a jump larger than MaxSeqJump, not (yet) confirmed
)

// seqState is one direction's sequence bookkeeping: the first and highest
// numbers, a window of the ones seen below the highest, and a refused jump
// the next packet may confirm. Numbers are u32 on the wire; int64 here so
// that differences never wrap.
type seqState struct {
	started     bool
	first, last int64
	seen        [seqWindow / 64]uint64 // bit seq%seqWindow: seq seen (for last-seqWindow < seq <= last)
	pending     int64                  // the refused jump's number, or -1
	allow       int64                  // a number a gap packet announced: taken however far it jumps (-1: none)
	missing     int
}

func (q *seqState) mark(seq int64) { q.seen[(seq%seqWindow)/64] |= 1 << (seq % 64) }

func (q *seqState) isSeen(seq int64) bool {
	return q.last-seq < seqWindow && q.seen[(seq%seqWindow)/64]&(1<<(seq%64)) != 0
}

// advance makes seq the highest, forgetting the window's numbers it passes.
func (q *seqState) advance(seq int64) {
	if seq-q.last >= seqWindow {
		q.seen = [seqWindow / 64]uint64{}
	} else {
		for s := q.last + 1; s <= seq; s++ {
			q.seen[(s%seqWindow)/64] &^= 1 << (s % 64)
		}
	}
	q.last = seq
	q.mark(seq)
}

// restart makes seq the highest after a confirmed backward jump: the window
// starts over.
func (q *seqState) restart(seq int64) {
	q.seen = [seqWindow / 64]uint64{}
	q.last = seq
	q.mark(seq)
}

// account books one audio packet and says what it is, and for a gap how many
// packets are missing just before it. Counters other than missing (packets,
// duplicates, reordered) are the caller's.
func (q *seqState) account(s uint32) (kind seqKind, missingBefore int64) {
	seq := int64(s)
	if !q.started {
		q.started, q.first, q.last, q.pending = true, seq, seq, -1
		q.mark(seq)
		return seqInOrder, 0
	}
	confirmed := (q.pending >= 0 && seq == q.pending+1) || (seq == q.allow && seq > q.last)

	switch {
	case seq > q.last:
		jump := seq - q.last
		if jump > MaxSeqJump && !confirmed {
			q.pending = seq
			return seqRefused, 0
		}
		q.pending = -1
		missing := jump - 1
		q.missing += int(missing)
		q.advance(seq)
		if missing > 0 {
			return seqGap, missing
		}
		return seqInOrder, 0
	case q.last-seq > MaxSeqJump:
		if !confirmed {
			q.pending = seq
			return seqRefused, 0
		}
		// The sender started counting again lower down: follow it.
		q.pending = -1
		q.restart(seq)
		return seqInOrder, 0
	case q.isSeen(seq):
		return seqDuplicate, 0
	}
	q.pending = -1
	if seq < q.first { // older than the first seen: the ones between are missing too
		q.missing += int(q.first - seq - 1)
		q.first = seq
	} else if q.missing > 0 {
		q.missing-- // a late packet fills a gap counted earlier
	}
	q.mark(seq)
	return seqLate, 0
}
