package mediafork

import (
	"context"
	"encoding/json"
	"net/netip"
	"time"

	"github.com/mediafork/mediafork/tlvcodec"
)

// MaxAudioPayload is the most audio one TLV packet can carry in one UDP datagram.
const MaxAudioPayload = MaxDatagram - tlvcodec.AudioHeaderSize

// tlvProtocol is ForkStream's TLV over UDP (SPEC §1), the default: one stream
// id per distinct format, every direction to each endpoint's address;
// fork.end_packet, format_packet, dtmf_packet and gap_packet choose its
// extension packets for every fork.
//
// Keys, beyond the common ones (address, directions, encoding, rate,
// frame_ms):
//
//	talkback: false      the receiver may send talk-back packets (SPEC §9: 0x07 audio in the stream's
//	                     format, 0x08 clear, 0x09 mark) to the address its stream comes from; the
//	                     endpoint then has a stream (id) of its own
//	talkback_to: far     far | other | both: who hears it
type tlvProtocol struct{}

func (tlvProtocol) Name() Protocol { return ProtocolTLV }
func (tlvProtocol) Keys() []string { return TalkbackKeys() }
func (tlvProtocol) Shared() bool   { return true }

func (tlvProtocol) ParseOptions(keys map[string]any) (OutputOptions, error) {
	to, err := parseTalkback(keys)
	if err != nil || to == TalkbackOff {
		return nil, err
	}
	return TLVOptions{Talkback: to}, nil
}

func (tlvProtocol) DecodeOptions(raw json.RawMessage) (OutputOptions, error) {
	return decodeTLVOptions(raw)
}

func (tlvProtocol) Pin(_ context.Context, _ netip.AddrPort, opts OutputOptions, _ Resolver) (OutputOptions, error) {
	return opts, nil
}

func (tlvProtocol) Format(ask EndpointFormat, _ OutputOptions, p Params) (EndpointFormat, error) {
	return ask.Resolve(p)
}

// Routes: every direction, audio and control, to the one address.
func (tlvProtocol) Routes(t Target, dirs []Direction) (media, control []netip.AddrPort, err error) {
	media = make([]netip.AddrPort, len(dirs))
	for i := range dirs {
		media[i] = t.Addr
	}
	return media, media, nil
}

func (tlvProtocol) NewFramer(c FramerConfig) Framer {
	return &TLVFramer{StreamID: c.Identity.StreamID, Extensions: c.Extensions}
}

// TLVFramer is ForkStream's TLV format (package tlvcodec) for one stream: the
// only place the domain's values become TLV fields. Direction and EndReason
// have the TLV wire values. Its control packets go on the media routes.
type TLVFramer struct {
	StreamID uint32
	Extensions
	buf [tlvcodec.SignalingSize]byte // control packets are built here
}

var _ Framer = (*TLVFramer)(nil)

// Start sends one signaling packet per direction, RX before TX, each followed
// by its format packet unless the extension is off.
func (t *TLVFramer) Start(e Emitter, dirs []Direction, md Metadata, p Params, at time.Time) {
	for _, d := range dirs {
		e.Emit(MediaRoute(d), t.Signaling(t.buf[:], d, md, at))
		if !t.NoFormat { // right after its signaling, before its first audio
			e.Emit(MediaRoute(d), t.Format(t.buf[:], d, p))
		}
	}
}

// DTMF sends a DTMF packet (unless the extension is off) with direction dir.
func (t *TLVFramer) DTMF(e Emitter, dir Direction, d DTMF) {
	if t.NoDTMF {
		return
	}
	e.Emit(MediaRoute(dir), t.DTMFPacket(t.buf[:], dir, d))
}

// Gap sends one gap packet per direction unless the extension is off.
func (t *TLVFramer) Gap(e Emitter, dirs []Direction, next, missing uint32, reason GapReason) {
	if t.NoGap || missing == 0 {
		return
	}
	for _, d := range dirs {
		e.Emit(MediaRoute(d), t.GapPacket(t.buf[:], d, next, missing, reason))
	}
}

// GapPacket is a 17-byte gap packet.
func (t *TLVFramer) GapPacket(b []byte, dir Direction, next, missing uint32, reason GapReason) []byte {
	g := tlvcodec.Gap{StreamID: t.StreamID, Direction: tlvcodec.Direction(dir), NextSequence: next, MissingFrames: missing,
		Reason: reason}
	n, err := g.MarshalTo(b)
	return packet(b, n, err)
}

// End sends one end packet per direction unless the extension is off.
func (t *TLVFramer) End(e Emitter, dirs []Direction, last []uint32, reason EndReason) {
	if t.NoEnd {
		return
	}
	for i, d := range dirs {
		e.Emit(MediaRoute(d), t.EndPacket(t.buf[:], d, last[i], reason))
	}
}

// Signaling is a 172-byte signaling packet.
func (t *TLVFramer) Signaling(b []byte, dir Direction, md Metadata, start time.Time) []byte {
	s := tlvcodec.Signaling{StreamID: t.StreamID, Direction: tlvcodec.Direction(dir), ChannelID: md.ChannelID,
		Exten: md.Exten, CallerID: md.CallerID, CalledID: md.CalledID, Timestamp: uint32(start.Unix())}
	n, err := s.MarshalTo(b)
	return packet(b, n, err)
}

// Format is a 16-byte format packet: the encoding's wire code, the rate, one
// channel and the frame length.
func (t *TLVFramer) Format(b []byte, dir Direction, p Params) []byte {
	f := tlvcodec.Format{StreamID: t.StreamID, Direction: tlvcodec.Direction(dir), Encoding: p.Encoding.Codec().Code(),
		SampleRate: uint32(p.Rate), Channels: 1, FrameMs: uint16(p.FrameMs)}
	n, err := f.MarshalTo(b)
	return packet(b, n, err)
}

// DTMFPacket is a 15-byte DTMF packet: the digit, its duration and where it
// began on the stream's media clock, in ms (each capped at its field).
func (t *TLVFramer) DTMFPacket(b []byte, dir Direction, d DTMF) []byte {
	p := tlvcodec.DTMF{StreamID: t.StreamID, Direction: tlvcodec.Direction(dir), Digit: byte(d.Digit),
		DurationMs: uint16(min(d.Duration.Milliseconds(), 0xFFFF)), MediaTimeMs: uint32(min(d.MediaTime.Milliseconds(), 0xFFFFFFFF))}
	n, err := p.MarshalTo(b)
	return packet(b, n, err)
}

// AudioHeaderSize is tlvcodec.AudioHeaderSize.
func (t *TLVFramer) AudioHeaderSize() int { return tlvcodec.AudioHeaderSize }

// Audio writes the 12-byte audio header in front of the payload.
func (t *TLVFramer) Audio(b []byte, dir Direction, seq uint32, payloadLen int) []byte {
	tlvcodec.PutAudioHeader(b, t.StreamID, tlvcodec.Direction(dir), seq, payloadLen)
	return b[:tlvcodec.AudioHeaderSize+payloadLen]
}

// EndPacket is a 13-byte end packet.
func (t *TLVFramer) EndPacket(b []byte, dir Direction, lastSeq uint32, reason EndReason) []byte {
	e := tlvcodec.End{StreamID: t.StreamID, Direction: tlvcodec.Direction(dir), LastSequence: lastSeq, Reason: tlvcodec.EndReason(reason)}
	n, err := e.MarshalTo(b)
	return packet(b, n, err)
}

// MaxControlSize is the signaling packet's size, the largest TLV control packet.
func (t *TLVFramer) MaxControlSize() int { return tlvcodec.SignalingSize }

// packet is b[:n], MarshalTo's result. Its only errors are a buffer shorter
// than MaxControlSize and a digit outside the set, which are the caller's bugs.
func packet(b []byte, n int, err error) []byte {
	if err != nil {
		panic("mediafork: framer: " + err.Error())
	}
	return b[:n]
}
