package mediafork

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
)

// ListenSlots is how many frames a Listener holds for its reader: 640 ms of
// 20 ms frames. A reader further behind loses frames (counted), never the
// media path's time.
const ListenSlots = 32

// Listener is one listen-in on a fork: the fork's Write goroutine copies
// each frame into a preallocated ring (no lock, no allocation, never
// waiting) and one reader takes them out. A frame that finds the ring full,
// or is larger than a slot, is dropped.
type Listener struct {
	slots [ListenSlots][]byte
	head  atomic.Uint64 // frames kept; written only by the fork's Write goroutine
	tail  atomic.Uint64 // frames taken; written only by the reader
	ready chan struct{} // holds one token while frames may be waiting
	// Dropped counts frames the reader was too slow (or too small) for.
	Dropped atomic.Uint64
}

// NewListener holds frames of up to maxFrame bytes.
func NewListener(maxFrame int) *Listener {
	l := &Listener{ready: make(chan struct{}, 1)}
	for i := range l.slots {
		l.slots[i] = make([]byte, 0, maxFrame)
	}
	return l
}

// offer keeps a copy of pcm for the reader, or drops it. The fork's Write
// goroutine is the only caller.
func (l *Listener) offer(pcm []byte) {
	h := l.head.Load()
	s := &l.slots[h%ListenSlots]
	if h-l.tail.Load() >= ListenSlots || len(pcm) > cap(*s) {
		l.Dropped.Add(1)
		return
	}
	*s = append((*s)[:0], pcm...)
	l.head.Store(h + 1)
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// Ready is signalled when frames may be waiting: wait on it, then Read
// until it reports none.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Read copies the oldest waiting frame into dst (grown as needed) and
// reports whether there was one. One reader only.
func (l *Listener) Read(dst []byte) ([]byte, bool) {
	t := l.tail.Load()
	if t == l.head.Load() {
		return dst[:0], false
	}
	dst = append(dst[:0], l.slots[t%ListenSlots]...)
	l.tail.Store(t + 1)
	return dst, true
}

// ErrListening is Listen's answer when the fork already has a listener.
var ErrListening = errors.New("someone is listening to this fork already")

// ErrNotStreaming is Listen's answer for a fork with no audio yet or any more.
var ErrNotStreaming = errors.New("the fork is not streaming")

// Listen attaches l to f's frames: one listener per fork. Detach it with
// Unlisten.
func (f *Fork) Listen(l *Listener) error {
	if f.State() != StateStreaming {
		return ErrNotStreaming
	}
	if !f.listener.CompareAndSwap(nil, l) {
		return ErrListening
	}
	return nil
}

// Unlisten detaches l, if it is f's listener.
func (f *Fork) Unlisten(l *Listener) { f.listener.CompareAndSwap(l, nil) }

// ListenDirections are the directions one can listen to on a bug of mix:
// DirMixed (everything the bug carries, as one channel) always; RX and TX
// each when the bug carries it apart.
func ListenDirections(mix Mix) DirSet {
	s := DirSetOf(DirMixed)
	if mix == Stereo || mix == Mono {
		s |= DirSetOf(DirRX)
	}
	if mix == Stereo {
		s |= DirSetOf(DirTX)
	}
	return s
}

// ListenPCM appends to dst the 16-bit little-endian mono PCM of direction d
// in a frame of a bug of mix: one side of a stereo bug, both summed
// (saturated) for DirMixed; a mono or mixed bug's frame as it is.
func ListenPCM(dst, pcm []byte, mix Mix, d Direction) []byte {
	if mix != Stereo {
		return append(dst, pcm[:len(pcm)&^1]...)
	}
	for i := 0; i+3 < len(pcm); i += 4 {
		l := int16(binary.LittleEndian.Uint16(pcm[i:]))
		r := int16(binary.LittleEndian.Uint16(pcm[i+2:]))
		var s int16
		switch d {
		case DirRX:
			s = l
		case DirTX:
			s = r
		default:
			s = saturate(int32(l) + int32(r))
		}
		dst = binary.LittleEndian.AppendUint16(dst, uint16(s))
	}
	return dst
}
