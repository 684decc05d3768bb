package mediafork

import (
	"fmt"
	"math/rand/v2"
)

// Identity is what a fork's receivers know its outputs by: the fork's TLV
// stream id, and a random seed from which every other output's identity
// derives (further TLV stream ids, RTP SSRCs, initial sequence numbers and
// timestamps). It is chosen once, when the fork is created, by whoever
// creates it (Registry.ClaimWith), so that a fork resumed elsewhere can be
// given the identity it had: the outputs of the same Spec derive the same
// identities from it, in the same order.
//
// IDs are the stream ids of the fork's further TLV outputs, in plan order, as
// claimed when it first began (each the first candidate of its output that
// no live fork used): a resumed fork takes the same.
type Identity struct {
	StreamID uint32   `json:"stream_id"`
	Seed     uint64   `json:"seed"`
	IDs      []uint32 `json:"ids,omitempty"`
}

// NewIdentity draws a random identity (a non-zero stream id).
func NewIdentity() Identity {
	id := Identity{Seed: rand.Uint64()}
	for id.StreamID == 0 {
		id.StreamID = rand.Uint32()
	}
	return id
}

// OutputIdentity is one output's identity: its TLV stream id, per direction
// (indexed by Direction) the RTP stream's SSRC, first sequence number and
// first timestamp (RFC 3550 §5.1: random), and what other protocols name
// their stream by (twilio's streamSid): all derived from the fork's Identity,
// so the same for the same fork identity and output, in any process — a
// resumed fork's streams keep their names.
type OutputIdentity struct {
	StreamID uint32
	RTP      [4]RTPIdentity // by Direction; [0] unused
	// StreamSid is a twilio output's streamSid: "MZ" and 32 hex digits, as
	// Twilio's are, the same on every connection of the output.
	StreamSid string
}

// RTPIdentity is one RTP stream's identity.
type RTPIdentity struct {
	SSRC      uint32
	Seq       uint16 // the first packet's sequence number
	Timestamp uint32 // the first packet's timestamp
}

// output is the identity of the fork's output number i (in plan order).
// streamID is that output's TLV stream id, decided by the fork (the fork's
// own for its first TLV output); candidates for the others come from
// StreamIDCandidate.
func (id Identity) output(i int, streamID uint32) OutputIdentity {
	o := OutputIdentity{StreamID: streamID, StreamSid: fmt.Sprintf("MZ%016x%016x", id.word(i, 3000), id.word(i, 3001))}
	var used [4]uint32
	for d := DirRX; d <= DirMixed; d++ {
		w := id.word(i, int(d))
		r := RTPIdentity{SSRC: uint32(w), Seq: uint16(w >> 32), Timestamp: uint32(id.word(i, 8+int(d)))}
		// Distinct, non-zero SSRCs within the output: a receiver tells the
		// directions apart by them.
		for k := 0; r.SSRC == 0 || r.SSRC == used[DirRX] || r.SSRC == used[DirTX]; k++ {
			r.SSRC = uint32(id.word(i, 16+4*k+int(d)))
		}
		used[d] = r.SSRC
		o.RTP[d] = r
	}
	return o
}

// streamIDCandidate is the k-th stream id candidate of output i: the fork
// takes the first one no live fork uses.
func (id Identity) streamIDCandidate(i, k int) uint32 {
	return uint32(id.word(i, 1000+k))
}

// word is a pseudo-random 64-bit word of output i, field k: splitmix64's
// finaliser over the seed and the pair, so that identities of one fork are
// independent of each other and of other forks'.
func (id Identity) word(i, k int) uint64 {
	return mix64(id.Seed ^ mix64(uint64(i)<<32|uint64(uint32(k))+0x9e3779b97f4a7c15))
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
