package mediafork

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mediafork/mediafork/tlvcodec"
)

// TLV talk-back (SPEC §9): a receiver whose endpoint has talkback: true sends
// 0x07 audio, 0x08 clear and 0x09 mark packets to the address its stream
// comes from — the destination's socket, connected to the receiver's
// address, so the kernel hands over datagrams from that address alone —
// with its stream's id: accepted only for a live stream of that
// destination. A reader goroutine per destination with a speaking stream
// reads them (Receive) until the destination is closed.

// ReceivingEndpoint is an Endpoint that reads what its peer sends back.
type ReceivingEndpoint interface {
	Endpoint
	// Receive reads one datagram into b, waiting until one comes; an error
	// once the endpoint is closed.
	Receive(b []byte) (int, error)
}

// tlvTalkback is the registry's TLV talk-back: the streams that may speak,
// by stream id, and the destinations read.
type tlvTalkback struct {
	mu      sync.Mutex
	byID    map[uint32]*tlvSpeaker
	readers map[*dest]bool
	wg      sync.WaitGroup
	// Datagrams refused: not a talk-back packet of a live speaking stream
	// of that destination, or invalid.
	foreign atomic.Uint64
}

// tlvSpeaker is one TLV output that may speak.
type tlvSpeaker struct {
	f        *Fork
	streamID uint32
	d        *dest
	allowed  TalkbackTo
	format   EndpointFormat
	epc      *EndpointCounters
	name     string

	// The destination's reader's.
	src     *TalkbackSource
	lastSeq uint32
	seen    bool
}

// TLVTalkbackRefused is how many datagrams the TLV talk-back readers refused.
func (r *Registry) TLVTalkbackRefused() uint64 { return r.tlvTalkback.foreign.Load() }

// speak registers a TLV output of f that may speak, and reads its
// destination.
func (r *Registry) speak(sp *tlvSpeaker) {
	t := &r.tlvTalkback
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID, t.readers = map[uint32]*tlvSpeaker{}, map[*dest]bool{}
	}
	t.byID[sp.streamID] = sp
	re, ok := sp.d.ep.(ReceivingEndpoint)
	if !ok || t.readers[sp.d] {
		return
	}
	t.readers[sp.d] = true
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		r.readTalkback(sp.d, re)
		t.mu.Lock()
		delete(t.readers, sp.d)
		t.mu.Unlock()
	}()
}

// silence unregisters f's speaking outputs and ends their sources.
func (r *Registry) silence(sps []*tlvSpeaker) {
	t := &r.tlvTalkback
	t.mu.Lock()
	for _, sp := range sps {
		if t.byID[sp.streamID] == sp {
			delete(t.byID, sp.streamID)
		}
	}
	t.mu.Unlock()
	for _, sp := range sps {
		sp.f.mu.Lock() // the reader may be making it
		src := sp.src
		sp.f.mu.Unlock()
		src.Close()
	}
}

// WaitTalkbackReaders waits for the TLV talk-back readers, whose
// destinations have all been closed (at shutdown).
func (r *Registry) WaitTalkbackReaders() { r.tlvTalkback.wg.Wait() }

// readTalkback reads d's datagrams until it is closed.
func (r *Registry) readTalkback(d *dest, re ReceivingEndpoint) {
	defer func() {
		if v := recover(); v != nil {
			r.log.Error("TLV talk-back reader panicked; the destination is no longer read", "destination", d.addr, "panic", v)
		}
	}()
	buf := make([]byte, tlvcodec.MaxPacketSize)
	for {
		n, err := re.Receive(buf)
		if err != nil {
			return
		}
		if err := r.talkbackDatagram(d, buf[:n]); err != nil {
			r.tlvTalkback.foreign.Add(1)
			r.log.Debug("TLV talk-back datagram refused", "destination", d.addr, "error", err)
		}
	}
}

// talkbackParty is who a talk-back packet's direction names.
func talkbackParty(d tlvcodec.Direction) TalkbackTo {
	switch d {
	case tlvcodec.TX:
		return TalkbackFar
	case tlvcodec.RX:
		return TalkbackOther
	case tlvcodec.Mixed:
		return TalkbackBoth
	}
	return TalkbackOff
}

// talkbackDatagram acts on one datagram from d's receiver.
func (r *Registry) talkbackDatagram(d *dest, b []byte) error {
	var h tlvcodec.Header
	if err := h.Unmarshal(b); err != nil {
		return err
	}
	switch h.Type {
	case tlvcodec.TypeTalkbackAudio, tlvcodec.TypeTalkbackClear, tlvcodec.TypeTalkbackMark:
	default:
		return fmt.Errorf("type %s is not talk-back", h.Type)
	}
	t := &r.tlvTalkback
	t.mu.Lock()
	sp := t.byID[h.StreamID]
	t.mu.Unlock()
	if sp == nil || sp.d != d {
		return fmt.Errorf("stream %d is no speaking stream of %s", h.StreamID, d.addr)
	}
	to := talkbackParty(h.Direction)
	if to == TalkbackOff {
		return fmt.Errorf("direction 0x%02x", uint8(h.Direction))
	}
	if !to.Within(sp.allowed) {
		if sp.epc != nil {
			sp.epc.TalkbackRefused.Add(1)
		}
		return fmt.Errorf("%w: %s (talkback_to %s)", ErrTalkbackParty, to, sp.allowed)
	}
	src, err := sp.source(r)
	if err != nil || src == nil {
		return fmt.Errorf("stream %d cannot speak: %v", h.StreamID, err)
	}
	switch h.Type {
	case tlvcodec.TypeTalkbackAudio:
		var a tlvcodec.TalkbackAudio
		if err := a.Unmarshal(b); err != nil {
			return err
		}
		if sp.seen && int32(a.Sequence-sp.lastSeq) <= 0 {
			src.refuse(0)
			return fmt.Errorf("sequence %d after %d: late or repeated", a.Sequence, sp.lastSeq)
		}
		sp.seen, sp.lastSeq = true, a.Sequence
		return src.Audio(to, a.Payload)
	case tlvcodec.TypeTalkbackClear:
		var c tlvcodec.TalkbackClear
		if err := c.Unmarshal(b); err != nil {
			return err
		}
		src.Clear()
	case tlvcodec.TypeTalkbackMark:
		var m tlvcodec.TalkbackMark
		if err := m.Unmarshal(b); err != nil {
			return err
		}
		if m.Status != tlvcodec.MarkPending {
			return fmt.Errorf("a mark's answer, from the receiver")
		}
		return src.Mark(to, strconv.Itoa(int(h.Direction))+":"+strconv.FormatUint(uint64(m.MarkID), 10))
	}
	return nil
}

// source is the speaker's talk-back source, made at its first packet.
func (sp *tlvSpeaker) source(r *Registry) (*TalkbackSource, error) {
	if sp.src != nil {
		return sp.src, nil
	}
	src, err := sp.f.NewTalkbackSource(TalkbackEndpoint{Name: sp.name, Allowed: sp.allowed, Encoding: sp.format.Encoding,
		Rate: sp.format.Rate, Echo: sp.echo, Counters: sp.epc, Connectionless: true})
	if err != nil || src == nil {
		return nil, err
	}
	sp.f.mu.Lock()
	sp.src = src
	sp.f.mu.Unlock()
	return src, nil
}

// echo answers a mark: the same packet with its status, to the receiver.
func (sp *tlvSpeaker) echo(name string, cleared bool) {
	dir, id, ok := strings.Cut(name, ":")
	if !ok {
		return
	}
	d, _ := strconv.Atoi(dir)
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return
	}
	m := tlvcodec.TalkbackMark{StreamID: sp.streamID, Direction: tlvcodec.Direction(d), MarkID: uint32(n), Status: tlvcodec.MarkPlayed}
	if cleared {
		m.Status = tlvcodec.MarkCleared
	}
	b, err := m.Marshal()
	if err != nil {
		return
	}
	sp.d.ep.Send([][]byte{b})
}
