package mediafork

import (
	"time"

	"github.com/mediafork/mediafork/tlvcodec"
)

// MaxAudioPayload is the most audio one TLV packet can carry in one UDP datagram.
const MaxAudioPayload = MaxDatagram - tlvcodec.AudioHeaderSize

// TLVFramer is ForkStream's TLV format (package tlvcodec) for one stream: the
// only place the domain's values become TLV fields. Direction and EndReason
// have the TLV wire values.
type TLVFramer struct {
	StreamID uint32
}

var _ Framer = (*TLVFramer)(nil)

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

// AudioHeaderSize is tlvcodec.AudioHeaderSize.
func (t *TLVFramer) AudioHeaderSize() int { return tlvcodec.AudioHeaderSize }

// Audio writes the 12-byte audio header in front of the payload.
func (t *TLVFramer) Audio(b []byte, dir Direction, seq uint32, payloadLen int) []byte {
	tlvcodec.PutAudioHeader(b, t.StreamID, tlvcodec.Direction(dir), seq, payloadLen)
	return b[:tlvcodec.AudioHeaderSize+payloadLen]
}

// End is a 13-byte end packet.
func (t *TLVFramer) End(b []byte, dir Direction, lastSeq uint32, reason EndReason) []byte {
	e := tlvcodec.End{StreamID: t.StreamID, Direction: tlvcodec.Direction(dir), LastSequence: lastSeq, Reason: tlvcodec.EndReason(reason)}
	n, err := e.MarshalTo(b)
	return packet(b, n, err)
}

// MaxControlSize is the signaling packet's size, the largest of the three.
func (t *TLVFramer) MaxControlSize() int { return tlvcodec.SignalingSize }

// packet is b[:n], MarshalTo's result. Its only error is a buffer shorter than
// MaxControlSize, which is the caller's bug.
func packet(b []byte, n int, err error) []byte {
	if err != nil {
		panic("mediafork: framer buffer: " + err.Error())
	}
	return b[:n]
}
