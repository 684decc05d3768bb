package mediafork

import (
	"time"
)

// Framer builds one datagram output's packets from domain values: whatever
// its protocol sends at the start, the audio packets (whose payload the
// Packetizer encodes in place), DTMF, and whatever it sends at the end. It
// knows its wire format and keeps its per-direction state (RTP: SSRC,
// sequence offset, timestamp base, counts for sender reports); the output
// decides when each is called and where its packets go.
//
// Control packets leave through an Emitter, each on a route: a direction's
// media route (its audio's destination) or its control route (RTP's RTCP
// port). None of the methods allocates. TLVFramer and the RTP framer are the
// implementations.
type Framer interface {
	// AudioHeaderSize is the bytes in front of an audio payload.
	AudioHeaderSize() int
	// Audio finishes the audio packet of dir whose payloadLen bytes are in
	// place at b[AudioHeaderSize():] and returns it, a prefix of b. seq is the
	// Packetizer's: 1 for a direction's first packet, one more per packet (the
	// media clock's frame count); the framer maps it to its wire's numbering.
	// It may emit control packets of its own (RTCP sender reports), before the
	// audio packet leaves.
	Audio(b []byte, dir Direction, seq uint32, payloadLen int) []byte
	// MaxControlSize is the most bytes a control packet needs.
	MaxControlSize() int
	// Start begins the output's directions, in order (TLV: a signaling and a
	// format packet each). p is the output's format with the bug's mix; at is
	// when the fork started. e is also the emitter of later control packets.
	Start(e Emitter, dirs []Direction, md Metadata, p Params, at time.Time)
	// DTMF sends a digit the channel received (dir: DirRX, the party that
	// sent it), placed at d.MediaTime on the output's media clock.
	DTMF(e Emitter, dir Direction, d DTMF)
	// Gap announces, before the next audio packet of dirs (whose seq will be
	// next), that missing packets before it are not coming, for reason: TLV
	// sends a gap packet per direction; RTP marks the next packet (its
	// timestamps follow seq, so they jump too).
	Gap(e Emitter, dirs []Direction, next, missing uint32, reason GapReason)
	// End closes the output's directions after their last packets (last[i]
	// is dirs[i]'s last seq, 0 when none).
	End(e Emitter, dirs []Direction, last []uint32, reason EndReason)
}

// Emitter sends an output's control packets, each at once, after what the
// reader's batch holds for the same destination: every route's order holds.
// pkt is only read during the call.
type Emitter interface {
	Emit(r Route, pkt []byte)
}

// Route is where a packet of an output goes: a direction's media route (where
// its audio goes) or its control route (RTCP).
type Route struct {
	Dir     Direction
	Control bool
}

// MediaRoute is dir's media route.
func MediaRoute(dir Direction) Route { return Route{Dir: dir} }

// ControlRoute is dir's control route.
func ControlRoute(dir Direction) Route { return Route{Dir: dir, Control: true} }

// Extensions are the TLV extension packets a registry's forks send (fork.*
// in the config); the zero value sends them all, as the defaults do. With
// all off a TLV stream is ForkStream's byte for byte.
type Extensions struct {
	NoEnd    bool // fork.end_packet: false
	NoFormat bool // fork.format_packet: false
	NoDTMF   bool // fork.dtmf_packet: false
	NoGap    bool // fork.gap_packet: false
}

// FramerConfig is what a datagram protocol's Framer is made from.
type FramerConfig struct {
	OutputConfig
	Dirs []Direction // the output's directions, in order
	// Emitter is where the output's control packets go (the same as
	// Start's): a framer may emit before Start, or without it when its
	// stream resumes.
	Emitter Emitter
}

// OutputConfig is what a fork gives the output it makes for one protocol.
type OutputConfig struct {
	Identity   OutputIdentity // chosen with the fork, not here
	Format     EndpointFormat // resolved
	Mix        Mix            // the bug's
	Target     Target         // the output's (first) target: a stream protocol's endpoint
	Options    OutputOptions  // its protocol's options (Target.Options)
	Extensions Extensions     // TLV's extension packets
	Call       CallID         // the call, for protocols that name it (RTCP's CNAME, twilio's callSid)
	Bug        string         // the media bug's name
	BugRate    int            // the bug's rate
	// Resume, when set, is where the output of a resumed fork continues
	// from: its stream began in an earlier fork of the call.
	Resume *OutputResume
}

// OutputResume is where a resumed output's stream stands: derived from the
// fork's Continuation alone, so that any process makes the same.
type OutputResume struct {
	// Last is the sequence number (the Packetizer's) of the last packet the
	// stream sent: each output completes its last packet with silence when
	// its fork stops, so it is the media clock's Sent in the output's frames,
	// rounded up.
	Last uint32
	// Digits is how many DTMF digits the stream sent.
	Digits uint32
}
