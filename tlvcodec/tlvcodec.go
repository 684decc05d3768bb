// Package tlvcodec is the ForkStream TLV wire format: the packets mediafork sends
// over UDP, one packet per datagram. It is pure: bytes in, bytes out, no I/O, and
// MarshalTo never allocates.
//
// Every packet starts with the same 8-byte header (big-endian, network order):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  packet_type  |         packet_length         |   stream_id   :
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:          stream_id (cont.)                    |   direction   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// packet_length counts the whole packet, header included. What follows depends
// on packet_type:
//
//	signaling (0x01), 172 bytes: channel_id[64] exten[32] caller_id[32] called_id[32] timestamp u32
//	audio     (0x02), 12+N bytes: sequence u32, then N bytes of audio
//	end       (0x03), 13 bytes:  last_sequence u32, reason u8   (mediafork extension)
//	format    (0x04), 16 bytes:  encoding u8, sample_rate u32, channels u8, frame_ms u16
//	                             (mediafork extension: after signaling, before audio)
//	DTMF      (0x05), 15 bytes:  digit u8, duration_ms u16, media_time_ms u32  (mediafork extension)
//	gap       (0x06), 17 bytes:  next_sequence u32, missing_frames u32, reason u8 (mediafork extension)
//	talk-back audio (0x07), 12+N bytes: sequence u32, audio     (SPEC §9: from a receiver)
//	talk-back clear (0x08), 8 bytes                             (SPEC §9: from a receiver)
//	talk-back mark  (0x09), 12 bytes: mark_id u32; 13 with status u8 in mediafork's answer
//
// The format packet in full:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  type = 0x04  |       packet_length = 16      |   stream_id   :
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:          stream_id (cont.)                    |   direction   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   encoding    |                  sample_rate                  :
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:  sample_rate  |   channels    |           frame_ms            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// encoding is 1 l16 (little-endian), 2 l16be, 3 pcmu, 4 pcma; sample_rate in
// Hz; channels 1.
//
// The DTMF packet: a digit the forked channel received from its far end
// (direction RX), where it began on the stream's media clock (0 = the
// stream's first audio) and how long it lasted:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  type = 0x05  |       packet_length = 15      |   stream_id   :
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:          stream_id (cont.)                    |   direction   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     digit     |          duration_ms          | media_time_ms :
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:         media_time_ms (cont.)                 |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// digit is ASCII: '0'-'9', '*', '#', 'A'-'D'.
//
// The gap packet goes right before the first audio packet after a gap, in
// each direction: sequences follow the media clock, so that audio packet's
// sequence is next_sequence, missing_frames above the last one sent plus one:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  type = 0x06  |       packet_length = 17      |   stream_id   :
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	:          stream_id (cont.)                    |   direction   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         next_sequence                         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        missing_frames                         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    reason     |
//	+-+-+-+-+-+-+-+-+
//
// reason is 1 media connection lost and re-established, 2 mediafork restarted
// or failed over, 3 paused, 4 dropped by mediafork (a queue was full).
//
// Strings are NUL-terminated and zero-padded; longer values are cut on a UTF-8
// character boundary so that the terminating NUL always fits.
package tlvcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Type is packet_type.
type Type uint8

// Packet types.
const (
	TypeSignaling Type = 0x01
	TypeAudio     Type = 0x02
	TypeEnd       Type = 0x03 // extension: ForkStream receivers ignore it
	TypeFormat    Type = 0x04 // extension: ForkStream receivers ignore it
	TypeDTMF      Type = 0x05 // extension: ForkStream receivers ignore it
	TypeGap       Type = 0x06 // extension: ForkStream receivers ignore it
	// Talk-back (SPEC §9), from a receiver to mediafork (and the mark's
	// answer back).
	TypeTalkbackAudio Type = 0x07
	TypeTalkbackClear Type = 0x08
	TypeTalkbackMark  Type = 0x09
)

func (t Type) String() string {
	switch t {
	case TypeSignaling:
		return "signaling"
	case TypeAudio:
		return "audio"
	case TypeEnd:
		return "end"
	case TypeFormat:
		return "format"
	case TypeDTMF:
		return "dtmf"
	case TypeGap:
		return "gap"
	case TypeTalkbackAudio:
		return "talkback-audio"
	case TypeTalkbackClear:
		return "talkback-clear"
	case TypeTalkbackMark:
		return "talkback-mark"
	}
	return fmt.Sprintf("type(0x%02x)", uint8(t))
}

// Direction is which side of the call a packet carries.
type Direction uint8

// Directions. RX is the forked channel's read stream (what FreeSWITCH receives
// from that endpoint), TX its write stream.
const (
	RX    Direction = 0x01
	TX    Direction = 0x02
	Mixed Direction = 0x03 // extension: read and write summed
)

func (d Direction) String() string {
	switch d {
	case RX:
		return "RX"
	case TX:
		return "TX"
	case Mixed:
		return "MIXED"
	}
	return fmt.Sprintf("dir(0x%02x)", uint8(d))
}

// Valid reports whether d is a defined direction.
func (d Direction) Valid() bool { return d >= RX && d <= Mixed }

// EndReason says why a stream ended (end packets only).
type EndReason uint8

// End reasons.
const (
	ReasonHangup    EndReason = 1 // hangup or normal close
	ReasonStopped   EndReason = 2 // stopped on request
	ReasonMediaLost EndReason = 3 // WebSocket dropped without a close
	ReasonShutdown  EndReason = 4 // mediafork shutting down
)

func (r EndReason) String() string {
	switch r {
	case ReasonHangup:
		return "hangup"
	case ReasonStopped:
		return "stopped"
	case ReasonMediaLost:
		return "media-lost"
	case ReasonShutdown:
		return "shutdown"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Sizes on the wire.
const (
	HeaderSize      = 8
	SignalingSize   = 172
	AudioHeaderSize = HeaderSize + 4
	EndSize         = HeaderSize + 5
	FormatSize      = HeaderSize + 8
	DTMFSize        = HeaderSize + 7
	GapSize         = HeaderSize + 9
	MaxPacketSize   = 65535
	// MaxAudioPayload is the most audio one packet can hold.
	MaxAudioPayload = MaxPacketSize - AudioHeaderSize

	channelIDSize = 64
	extenSize     = 32
	callerIDSize  = 32
	calledIDSize  = 32
)

// Errors returned by Unmarshal and MarshalTo; test with errors.Is.
var (
	ErrShortBuffer      = errors.New("tlvcodec: buffer too short")
	ErrShortPacket      = errors.New("tlvcodec: packet shorter than its header")
	ErrLengthMismatch   = errors.New("tlvcodec: packet_length does not match the datagram size")
	ErrWrongSize        = errors.New("tlvcodec: wrong size for packet type")
	ErrWrongType        = errors.New("tlvcodec: unexpected packet type")
	ErrZeroStreamID     = errors.New("tlvcodec: stream_id is zero")
	ErrInvalidDirection = errors.New("tlvcodec: invalid direction")
	ErrTooLarge         = errors.New("tlvcodec: packet larger than 65535 bytes")
	ErrInvalidFormat    = errors.New("tlvcodec: format packet with a zero field")
	ErrInvalidDigit     = errors.New("tlvcodec: DTMF digit not one of 0-9 * # A-D")
	ErrInvalidGap       = errors.New("tlvcodec: gap packet with a zero next_sequence or missing_frames")
	ErrInvalidMark      = errors.New("tlvcodec: mark packet with a status other than played or cleared")
)

// Header is the 8 bytes every packet starts with.
type Header struct {
	Type      Type
	Length    uint16
	StreamID  uint32
	Direction Direction
}

// MarshalTo writes the header into b.
func (h *Header) MarshalTo(b []byte) (int, error) {
	if len(b) < HeaderSize {
		return 0, ErrShortBuffer
	}
	b[0] = byte(h.Type)
	binary.BigEndian.PutUint16(b[1:3], h.Length)
	binary.BigEndian.PutUint32(b[3:7], h.StreamID)
	b[7] = byte(h.Direction)
	return HeaderSize, nil
}

// Unmarshal parses the header of the datagram b and checks what every packet
// must satisfy: packet_length equals len(b), and stream_id is not zero. The
// type is not checked, so that a receiver can skip types it does not know.
func (h *Header) Unmarshal(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w: %d bytes", ErrShortPacket, len(b))
	}
	if len(b) > MaxPacketSize {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	h.Type = Type(b[0])
	h.Length = binary.BigEndian.Uint16(b[1:3])
	h.StreamID = binary.BigEndian.Uint32(b[3:7])
	h.Direction = Direction(b[7])
	if int(h.Length) != len(b) {
		return fmt.Errorf("%w: packet_length %d, datagram %d bytes", ErrLengthMismatch, h.Length, len(b))
	}
	if h.StreamID == 0 {
		return ErrZeroStreamID
	}
	return nil
}

// unmarshalTyped parses the header and checks type, direction and size bounds.
func unmarshalTyped(b []byte, want Type, minSize, maxSize int) (Header, error) {
	var h Header
	if err := h.Unmarshal(b); err != nil {
		return h, err
	}
	if h.Type != want {
		return h, fmt.Errorf("%w: %s, want %s", ErrWrongType, h.Type, want)
	}
	if len(b) < minSize || len(b) > maxSize {
		return h, fmt.Errorf("%w: %s packet of %d bytes", ErrWrongSize, want, len(b))
	}
	if !h.Direction.Valid() {
		return h, fmt.Errorf("%w: 0x%02x", ErrInvalidDirection, uint8(h.Direction))
	}
	return h, nil
}

// Signaling announces a stream direction and its call metadata.
type Signaling struct {
	StreamID  uint32
	Direction Direction
	ChannelID string // at most 63 bytes on the wire
	Exten     string // at most 31
	CallerID  string // at most 31
	CalledID  string // at most 31
	Timestamp uint32 // Unix seconds when the fork started
}

// MarshalSize is always SignalingSize.
func (s *Signaling) MarshalSize() int { return SignalingSize }

// MarshalTo writes the packet into b, cutting long strings.
func (s *Signaling) MarshalTo(b []byte) (int, error) {
	if len(b) < SignalingSize {
		return 0, ErrShortBuffer
	}
	h := Header{Type: TypeSignaling, Length: SignalingSize, StreamID: s.StreamID, Direction: s.Direction}
	h.MarshalTo(b)
	off := HeaderSize
	off += putString(b[off:off+channelIDSize], s.ChannelID)
	off += putString(b[off:off+extenSize], s.Exten)
	off += putString(b[off:off+callerIDSize], s.CallerID)
	off += putString(b[off:off+calledIDSize], s.CalledID)
	binary.BigEndian.PutUint32(b[off:], s.Timestamp)
	return SignalingSize, nil
}

// Marshal returns the packet in a new buffer.
func (s *Signaling) Marshal() ([]byte, error) {
	b := make([]byte, SignalingSize)
	_, err := s.MarshalTo(b)
	return b, err
}

// Unmarshal parses a signaling datagram.
func (s *Signaling) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeSignaling, SignalingSize, SignalingSize)
	if err != nil {
		return err
	}
	off := HeaderSize
	s.StreamID, s.Direction = h.StreamID, h.Direction
	s.ChannelID = getString(b[off : off+channelIDSize])
	off += channelIDSize
	s.Exten = getString(b[off : off+extenSize])
	off += extenSize
	s.CallerID = getString(b[off : off+callerIDSize])
	off += callerIDSize
	s.CalledID = getString(b[off : off+calledIDSize])
	off += calledIDSize
	s.Timestamp = binary.BigEndian.Uint32(b[off:])
	return nil
}

// Audio is one frame of audio of one direction.
type Audio struct {
	StreamID  uint32
	Direction Direction
	Sequence  uint32 // from 1, per direction
	Payload   []byte
}

// MarshalSize is the packet's size on the wire.
func (a *Audio) MarshalSize() int { return AudioHeaderSize + len(a.Payload) }

// MarshalTo writes the packet into b.
func (a *Audio) MarshalTo(b []byte) (int, error) {
	n := a.MarshalSize()
	if n > MaxPacketSize {
		return 0, ErrTooLarge
	}
	if len(b) < n {
		return 0, ErrShortBuffer
	}
	PutAudioHeader(b, a.StreamID, a.Direction, a.Sequence, len(a.Payload))
	copy(b[AudioHeaderSize:], a.Payload)
	return n, nil
}

// PutAudioHeader writes the 12 bytes in front of payloadLen bytes of audio
// already in place at b[AudioHeaderSize:]. The packetizer encodes straight into
// its packet buffer and finishes the packet with this.
func PutAudioHeader(b []byte, streamID uint32, dir Direction, seq uint32, payloadLen int) {
	_ = b[AudioHeaderSize-1]
	b[0] = byte(TypeAudio)
	binary.BigEndian.PutUint16(b[1:3], uint16(AudioHeaderSize+payloadLen))
	binary.BigEndian.PutUint32(b[3:7], streamID)
	b[7] = byte(dir)
	binary.BigEndian.PutUint32(b[8:12], seq)
}

// Marshal returns the packet in a new buffer.
func (a *Audio) Marshal() ([]byte, error) {
	b := make([]byte, a.MarshalSize())
	_, err := a.MarshalTo(b)
	return b, err
}

// Unmarshal parses an audio datagram. Payload aliases b.
func (a *Audio) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeAudio, AudioHeaderSize, MaxPacketSize)
	if err != nil {
		return err
	}
	a.StreamID, a.Direction = h.StreamID, h.Direction
	a.Sequence = binary.BigEndian.Uint32(b[8:12])
	a.Payload = b[AudioHeaderSize:]
	return nil
}

// End closes one direction of a stream (mediafork extension).
type End struct {
	StreamID     uint32
	Direction    Direction
	LastSequence uint32 // 0 when no audio was sent
	Reason       EndReason
}

// MarshalSize is always EndSize.
func (e *End) MarshalSize() int { return EndSize }

// MarshalTo writes the packet into b.
func (e *End) MarshalTo(b []byte) (int, error) {
	if len(b) < EndSize {
		return 0, ErrShortBuffer
	}
	h := Header{Type: TypeEnd, Length: EndSize, StreamID: e.StreamID, Direction: e.Direction}
	h.MarshalTo(b)
	binary.BigEndian.PutUint32(b[8:12], e.LastSequence)
	b[12] = byte(e.Reason)
	return EndSize, nil
}

// Marshal returns the packet in a new buffer.
func (e *End) Marshal() ([]byte, error) {
	b := make([]byte, EndSize)
	_, err := e.MarshalTo(b)
	return b, err
}

// Unmarshal parses an end datagram.
func (e *End) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeEnd, EndSize, EndSize)
	if err != nil {
		return err
	}
	e.StreamID, e.Direction = h.StreamID, h.Direction
	e.LastSequence = binary.BigEndian.Uint32(b[8:12])
	e.Reason = EndReason(b[12])
	return nil
}

// Format says how a direction's audio payload is encoded (mediafork
// extension), so that a receiver needs no out-of-band configuration. The
// encoding values are mediafork's encoding table's codes; the codec does not
// interpret them, so a receiver can report one it does not know.
type Format struct {
	StreamID   uint32
	Direction  Direction
	Encoding   uint8  // 1 l16, 2 l16be, 3 pcmu, 4 pcma
	SampleRate uint32 // Hz
	Channels   uint8  // 1
	FrameMs    uint16 // audio per packet, the last one excepted
}

// MarshalSize is always FormatSize.
func (f *Format) MarshalSize() int { return FormatSize }

// MarshalTo writes the packet into b.
func (f *Format) MarshalTo(b []byte) (int, error) {
	if len(b) < FormatSize {
		return 0, ErrShortBuffer
	}
	h := Header{Type: TypeFormat, Length: FormatSize, StreamID: f.StreamID, Direction: f.Direction}
	h.MarshalTo(b)
	b[8] = f.Encoding
	binary.BigEndian.PutUint32(b[9:13], f.SampleRate)
	b[13] = f.Channels
	binary.BigEndian.PutUint16(b[14:16], f.FrameMs)
	return FormatSize, nil
}

// Marshal returns the packet in a new buffer.
func (f *Format) Marshal() ([]byte, error) {
	b := make([]byte, FormatSize)
	_, err := f.MarshalTo(b)
	return b, err
}

// Unmarshal parses a format datagram. A zero encoding, sample_rate, channels
// or frame_ms is ErrInvalidFormat: such a packet cannot describe any audio.
func (f *Format) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeFormat, FormatSize, FormatSize)
	if err != nil {
		return err
	}
	f.StreamID, f.Direction = h.StreamID, h.Direction
	f.Encoding = b[8]
	f.SampleRate = binary.BigEndian.Uint32(b[9:13])
	f.Channels = b[13]
	f.FrameMs = binary.BigEndian.Uint16(b[14:16])
	if f.Encoding == 0 || f.SampleRate == 0 || f.Channels == 0 || f.FrameMs == 0 {
		return fmt.Errorf("%w: encoding %d, sample_rate %d, channels %d, frame_ms %d",
			ErrInvalidFormat, f.Encoding, f.SampleRate, f.Channels, f.FrameMs)
	}
	return nil
}

// ValidDigit reports whether c is a DTMF digit as the DTMF packet carries it:
// '0'-'9', '*', '#', 'A'-'D' (upper case).
func ValidDigit(c byte) bool {
	return c >= '0' && c <= '9' || c == '*' || c == '#' || c >= 'A' && c <= 'D'
}

// DTMF is a digit the forked channel received from its far end (mediafork
// extension), placed on the stream's media clock.
type DTMF struct {
	StreamID    uint32
	Direction   Direction // RX
	Digit       byte      // '0'-'9', '*', '#', 'A'-'D'
	DurationMs  uint16
	MediaTimeMs uint32 // where the digit began: ms since the stream's first audio
}

// MarshalSize is always DTMFSize.
func (d *DTMF) MarshalSize() int { return DTMFSize }

// MarshalTo writes the packet into b. A digit outside the set is
// ErrInvalidDigit: a receiver would refuse it.
func (d *DTMF) MarshalTo(b []byte) (int, error) {
	if len(b) < DTMFSize {
		return 0, ErrShortBuffer
	}
	if !ValidDigit(d.Digit) {
		return 0, ErrInvalidDigit
	}
	h := Header{Type: TypeDTMF, Length: DTMFSize, StreamID: d.StreamID, Direction: d.Direction}
	h.MarshalTo(b)
	b[8] = d.Digit
	binary.BigEndian.PutUint16(b[9:11], d.DurationMs)
	binary.BigEndian.PutUint32(b[11:15], d.MediaTimeMs)
	return DTMFSize, nil
}

// Marshal returns the packet in a new buffer.
func (d *DTMF) Marshal() ([]byte, error) {
	b := make([]byte, DTMFSize)
	n, err := d.MarshalTo(b)
	return b[:n], err
}

// Unmarshal parses a DTMF datagram; a digit outside the set is ErrInvalidDigit.
func (d *DTMF) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeDTMF, DTMFSize, DTMFSize)
	if err != nil {
		return err
	}
	if !ValidDigit(b[8]) {
		return fmt.Errorf("%w: 0x%02x", ErrInvalidDigit, b[8])
	}
	d.StreamID, d.Direction = h.StreamID, h.Direction
	d.Digit = b[8]
	d.DurationMs = binary.BigEndian.Uint16(b[9:11])
	d.MediaTimeMs = binary.BigEndian.Uint32(b[11:15])
	return nil
}

// GapReason says why audio is missing (gap packets only).
type GapReason uint8

// Gap reasons.
const (
	GapMediaLost GapReason = 1 // the media connection was lost and re-established
	GapRestarted GapReason = 2 // mediafork restarted or failed over
	GapPaused    GapReason = 3 // the fork was paused
	GapDropped   GapReason = 4 // dropped by mediafork: a queue was full
)

func (r GapReason) String() string {
	switch r {
	case GapMediaLost:
		return "media-lost"
	case GapRestarted:
		return "restarted"
	case GapPaused:
		return "paused"
	case GapDropped:
		return "dropped"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Gap announces missing audio in one direction (mediafork extension): the
// next audio packet's sequence is NextSequence, MissingFrames frames after
// the last one sent.
type Gap struct {
	StreamID      uint32
	Direction     Direction
	NextSequence  uint32
	MissingFrames uint32
	Reason        GapReason
}

// MarshalSize is always GapSize.
func (g *Gap) MarshalSize() int { return GapSize }

// MarshalTo writes the packet into b.
func (g *Gap) MarshalTo(b []byte) (int, error) {
	if len(b) < GapSize {
		return 0, ErrShortBuffer
	}
	h := Header{Type: TypeGap, Length: GapSize, StreamID: g.StreamID, Direction: g.Direction}
	h.MarshalTo(b)
	binary.BigEndian.PutUint32(b[8:12], g.NextSequence)
	binary.BigEndian.PutUint32(b[12:16], g.MissingFrames)
	b[16] = byte(g.Reason)
	return GapSize, nil
}

// Marshal returns the packet in a new buffer.
func (g *Gap) Marshal() ([]byte, error) {
	b := make([]byte, GapSize)
	_, err := g.MarshalTo(b)
	return b, err
}

// Unmarshal parses a gap datagram. A zero next_sequence or missing_frames is
// ErrInvalidGap: sequences start at 1 and a gap misses at least one frame.
// The reason is not checked, so that a receiver can report one it does not know.
func (g *Gap) Unmarshal(b []byte) error {
	h, err := unmarshalTyped(b, TypeGap, GapSize, GapSize)
	if err != nil {
		return err
	}
	g.StreamID, g.Direction = h.StreamID, h.Direction
	g.NextSequence = binary.BigEndian.Uint32(b[8:12])
	g.MissingFrames = binary.BigEndian.Uint32(b[12:16])
	g.Reason = GapReason(b[16])
	if g.NextSequence == 0 || g.MissingFrames == 0 {
		return fmt.Errorf("%w: next_sequence %d, missing_frames %d", ErrInvalidGap, g.NextSequence, g.MissingFrames)
	}
	return nil
}

// putString fills field with s, cut to len(field)-1 bytes on a UTF-8 character
// boundary, and zero-pads the rest.
func putString(field []byte, s string) int {
	n := len(s)
	if n > len(field)-1 {
		n = TruncateLen(s, len(field)-1)
	}
	copy(field, s[:n])
	clear(field[n:])
	return len(field)
}

// TruncateLen is the length of the longest prefix of s of at most max bytes that
// does not split a UTF-8 character.
func TruncateLen(s string, max int) int {
	if len(s) <= max {
		return len(s)
	}
	n := max
	// Back off over continuation bytes (10xxxxxx) to the start of the character.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return n
}

func getString(field []byte) string {
	for i, c := range field {
		if c == 0 {
			return string(field[:i])
		}
	}
	return string(field)
}
