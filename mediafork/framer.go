package mediafork

import (
	"time"
)

// Framer builds one stream's packets from domain values: a signaling packet
// per direction, a format packet per direction, the audio, an end packet per
// direction. It knows the wire format; the Fork decides which packets go out
// and when, and the Packetizer fills the audio payload in place.
//
// Every method writes into b (which must hold MaxControlSize, or the audio
// packet for Audio) and returns the finished packet, a prefix of b. None
// allocates. TLVFramer is the one implementation today.
type Framer interface {
	// Signaling announces dir of the stream with the call's metadata; start is
	// when the fork started.
	Signaling(b []byte, dir Direction, md Metadata, start time.Time) []byte
	// Format says how dir's audio is encoded (p must be valid).
	Format(b []byte, dir Direction, p Params) []byte
	// AudioHeaderSize is the bytes in front of an audio payload.
	AudioHeaderSize() int
	// Audio finishes the audio packet of dir whose payloadLen bytes are in place
	// at b[AudioHeaderSize():].
	Audio(b []byte, dir Direction, seq uint32, payloadLen int) []byte
	// End closes dir of the stream after its packet lastSeq (0 when none).
	End(b []byte, dir Direction, lastSeq uint32, reason EndReason) []byte
	// MaxControlSize is the most bytes a signaling, format or end packet needs.
	MaxControlSize() int
}

// newFramer is the framing every fork's packets get: TLV today.
func newFramer(streamID uint32) Framer { return &TLVFramer{StreamID: streamID} }

// SetFormatPackets turns the format-packet extension on (the default) or off:
// off, a stream is ForkStream's byte for byte (with end packets off too). Set
// it before forks start.
func (r *Registry) SetFormatPackets(on bool) { r.noFormat = !on }

// formatPackets reports whether r's forks send format packets.
func (r *Registry) formatPackets() bool { return !r.noFormat }
