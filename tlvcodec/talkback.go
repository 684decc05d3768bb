package tlvcodec

import (
	"encoding/binary"
	"fmt"
)

// Talk-back packets (SPEC §9, mediafork extension): a receiver sends them to
// the address its stream comes from, with the stream's id; the direction
// names who hears it: TX (0x02) the forked channel's far end, RX (0x01) the
// party it is bridged to, MIXED (0x03) both.
//
//	talk-back audio (0x07), 12+N bytes: sequence u32, then N bytes of audio in the stream's format
//	clear           (0x08),  8 bytes:   header only: drop what is queued for the stream
//	mark            (0x09), 12 bytes:   mark_id u32 (from the receiver)
//	                        13 bytes:   mark_id u32, status u8 (mediafork's answer: 1 played, 2 cleared)
const (
	TalkbackAudioHeaderSize = HeaderSize + 4
	TalkbackClearSize       = HeaderSize
	TalkbackMarkSize        = HeaderSize + 4
	TalkbackMarkEchoSize    = HeaderSize + 5
	// MaxTalkbackPayload is the most audio one talk-back packet can hold.
	MaxTalkbackPayload = MaxPacketSize - TalkbackAudioHeaderSize
)

// MarkStatus is what mediafork answers of a mark.
type MarkStatus uint8

// Mark statuses. MarkPending is a receiver's mark, not an answer (12 bytes).
const (
	MarkPending MarkStatus = 0
	MarkPlayed  MarkStatus = 1 // the audio sent before it has been played
	MarkCleared MarkStatus = 2 // it was cleared (or the call ended) first
)

func (s MarkStatus) String() string {
	switch s {
	case MarkPending:
		return "pending"
	case MarkPlayed:
		return "played"
	case MarkCleared:
		return "cleared"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// TalkbackAudio is audio a receiver sends into the call.
type TalkbackAudio struct {
	StreamID  uint32
	Direction Direction // TX far end, RX the bridged party, Mixed both
	Sequence  uint32
	Payload   []byte // in the stream's format; at least one byte
}

// MarshalSize is the packet's size.
func (a *TalkbackAudio) MarshalSize() int { return TalkbackAudioHeaderSize + len(a.Payload) }

// MarshalTo writes the packet into b.
func (a *TalkbackAudio) MarshalTo(b []byte) (int, error) {
	n := a.MarshalSize()
	switch {
	case len(a.Payload) == 0:
		return 0, fmt.Errorf("%w: talk-back audio without audio", ErrWrongSize)
	case n > MaxPacketSize:
		return 0, ErrTooLarge
	case len(b) < n:
		return 0, ErrShortBuffer
	}
	h := Header{Type: TypeTalkbackAudio, Length: uint16(n), StreamID: a.StreamID, Direction: a.Direction}
	h.MarshalTo(b)
	binary.BigEndian.PutUint32(b[8:12], a.Sequence)
	copy(b[12:], a.Payload)
	return n, nil
}

// Marshal returns the packet in a new buffer.
func (a *TalkbackAudio) Marshal() ([]byte, error) {
	b := make([]byte, a.MarshalSize())
	n, err := a.MarshalTo(b)
	return b[:n], err
}

// Unmarshal parses a talk-back audio datagram; Payload aliases b.
func (a *TalkbackAudio) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeTalkbackAudio, TalkbackAudioHeaderSize+1, MaxPacketSize)
	if err != nil {
		return err
	}
	a.StreamID, a.Direction = h.StreamID, h.Direction
	a.Sequence = binary.BigEndian.Uint32(b[8:12])
	a.Payload = b[12:]
	return nil
}

// TalkbackClear drops what is queued for a stream's talk-back.
type TalkbackClear struct {
	StreamID  uint32
	Direction Direction
}

// MarshalTo writes the packet into b.
func (c *TalkbackClear) MarshalTo(b []byte) (int, error) {
	if len(b) < TalkbackClearSize {
		return 0, ErrShortBuffer
	}
	h := Header{Type: TypeTalkbackClear, Length: TalkbackClearSize, StreamID: c.StreamID, Direction: c.Direction}
	return h.MarshalTo(b)
}

// Marshal returns the packet in a new buffer.
func (c *TalkbackClear) Marshal() ([]byte, error) {
	b := make([]byte, TalkbackClearSize)
	_, err := c.MarshalTo(b)
	return b, err
}

// Unmarshal parses a clear datagram.
func (c *TalkbackClear) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeTalkbackClear, TalkbackClearSize, TalkbackClearSize)
	if err != nil {
		return err
	}
	c.StreamID, c.Direction = h.StreamID, h.Direction
	return nil
}

// TalkbackMark is a receiver's mark (Status MarkPending, 12 bytes), or
// mediafork's answer to it (MarkPlayed, MarkCleared: 13 bytes).
type TalkbackMark struct {
	StreamID  uint32
	Direction Direction
	MarkID    uint32
	Status    MarkStatus
}

// MarshalSize is 12 for a receiver's mark, 13 for an answer.
func (m *TalkbackMark) MarshalSize() int {
	if m.Status == MarkPending {
		return TalkbackMarkSize
	}
	return TalkbackMarkEchoSize
}

// MarshalTo writes the packet into b. A status other than pending, played
// and cleared is ErrInvalidMark.
func (m *TalkbackMark) MarshalTo(b []byte) (int, error) {
	if m.Status > MarkCleared {
		return 0, fmt.Errorf("%w: status %d", ErrInvalidMark, m.Status)
	}
	n := m.MarshalSize()
	if len(b) < n {
		return 0, ErrShortBuffer
	}
	h := Header{Type: TypeTalkbackMark, Length: uint16(n), StreamID: m.StreamID, Direction: m.Direction}
	h.MarshalTo(b)
	binary.BigEndian.PutUint32(b[8:12], m.MarkID)
	if n == TalkbackMarkEchoSize {
		b[12] = byte(m.Status)
	}
	return n, nil
}

// Marshal returns the packet in a new buffer.
func (m *TalkbackMark) Marshal() ([]byte, error) {
	b := make([]byte, m.MarshalSize())
	n, err := m.MarshalTo(b)
	return b[:n], err
}

// Unmarshal parses a mark datagram: 12 bytes (a receiver's, status pending)
// or 13 (an answer, status played or cleared).
func (m *TalkbackMark) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeTalkbackMark, TalkbackMarkSize, TalkbackMarkEchoSize)
	if err != nil {
		return err
	}
	m.StreamID, m.Direction = h.StreamID, h.Direction
	m.MarkID = binary.BigEndian.Uint32(b[8:12])
	m.Status = MarkPending
	if len(b) == TalkbackMarkEchoSize {
		m.Status = MarkStatus(b[12])
		if m.Status != MarkPlayed && m.Status != MarkCleared {
			return fmt.Errorf("%w: status %d", ErrInvalidMark, b[12])
		}
	}
	return nil
}
