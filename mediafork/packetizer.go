package mediafork

import "time"

// PacketSink receives finished packets. pkt is only valid during the call: the
// Packetizer reuses its buffers.
type PacketSink interface {
	SendPacket(dir Direction, pkt []byte)
}

// Packetizer splits mod_audio_fork PCM (L16 little-endian, interleaved L/R when
// stereo) into directions, re-frames it into frame_ms packets whatever size the
// WebSocket frames had, encodes it with the Params' Codec and numbers the
// packets, which its Framer finishes. It is owned by one goroutine and
// allocates nothing after New.
type Packetizer struct {
	unit   int // bytes of one input sample (pair)
	frame  int // samples per packet
	bps    int // output bytes per sample
	hdr    int // framing bytes in front of the payload
	codec  Codec
	framer Framer
	sink   PacketSink

	dirs  []packetBuffer
	carry sampleCarry // a partial input sample (set) left over from the last frame
	fill  int         // samples in the current packets (the same for every direction)
	sent  uint64      // samples in the packets sent (per direction): the media clock

	zero []byte // one packet of silent input samples, for Skip's padding

	// scratch, when set (by the Fork, from its Batch), is where a packet whose
	// samples all come in one Write is built: the reader's, warm in the cache
	// from the forks before in its round, rather than this Packetizer's own
	// buffers, cold since the last frame 20 ms ago. The packets are the same.
	scratch []byte
}

type packetBuffer struct {
	dir Direction
	off int    // the byte offset of dir's sample in an input sample (pair)
	buf []byte // header + payload, encoded in place
	seq uint32 // last sequence sent
}

// NewPacketizer makes a Packetizer for params (which must be valid) whose
// packets fr builds.
func NewPacketizer(p Params, fr Framer, sink PacketSink) *Packetizer {
	dirs := p.Mix.Directions()
	offs := make([]int, len(dirs))
	for c := range offs {
		offs[c] = 2 * c
	}
	return newPacketizer(2*p.Mix.Channels(), dirs, offs, p.FrameSamples(), p.Encoding.Codec(), fr, sink)
}

// newPacketizer makes a Packetizer for input of unit bytes a sample (pair)
// whose direction dirs[c] is the L16 sample at byte offs[c] of each, cut in
// packets of frame samples.
func newPacketizer(unit int, dirs []Direction, offs []int, frame int, codec Codec, fr Framer, sink PacketSink) *Packetizer {
	z := &Packetizer{
		unit:   unit,
		frame:  frame,
		codec:  codec,
		hdr:    fr.AudioHeaderSize(),
		framer: fr,
		sink:   sink,
	}
	z.bps = z.codec.BytesPerSample()
	z.zero = make([]byte, unit*frame)
	for c, d := range dirs {
		z.dirs = append(z.dirs, packetBuffer{dir: d, off: offs[c], buf: make([]byte, z.hdr+z.frame*z.bps)})
	}
	return z
}

// Framer is what builds the packets.
func (z *Packetizer) Framer() Framer { return z.framer }

// Write takes one WebSocket frame of PCM, of any size.
func (z *Packetizer) Write(pcm []byte) {
	z.carry.feed(pcm, z.unit, z)
}

// sampleCarry keeps the partial sample (pair) a WebSocket frame may end with,
// so that whatever size frames have, whole samples are handed on.
type sampleCarry struct {
	buf [8]byte
	n   int
}

// sampler takes whole input samples.
type sampler interface{ samples(pcm []byte) }

// feed hands pcm's whole samples of unit bytes to to, the carried part first.
func (c *sampleCarry) feed(pcm []byte, unit int, to sampler) {
	if c.n > 0 {
		k := copy(c.buf[c.n:unit], pcm)
		c.n += k
		pcm = pcm[k:]
		if c.n < unit {
			return
		}
		c.n = 0
		to.samples(c.buf[:unit])
	}
	whole := len(pcm) - len(pcm)%unit
	to.samples(pcm[:whole])
	c.n = copy(c.buf[:], pcm[whole:])
}

// samples encodes whole sample (pair)s, emitting every packet that fills up.
func (z *Packetizer) samples(pcm []byte) {
	for len(pcm) > 0 {
		n := min(len(pcm)/z.unit, z.frame-z.fill)
		if n == z.frame && len(z.scratch) >= len(z.dirs[0].buf) {
			z.emitWhole(pcm)
			pcm = pcm[n*z.unit:]
			continue
		}
		off := z.hdr + z.fill*z.bps
		for c := range z.dirs {
			z.codec.Encode(z.dirs[c].buf[off:], pcm[z.dirs[c].off:], z.unit, n)
		}
		z.fill += n
		pcm = pcm[n*z.unit:]
		if z.fill == z.frame {
			z.emit()
		}
	}
}

// emitWhole encodes a whole packet of every direction from pcm in scratch and
// sends it, RX before TX, as emit would have.
func (z *Packetizer) emitWhole(pcm []byte) {
	b := z.scratch[:len(z.dirs[0].buf)]
	payload := z.frame * z.bps
	for c := range z.dirs {
		d := &z.dirs[c]
		z.codec.Encode(b[z.hdr:], pcm[d.off:], z.unit, z.frame)
		z.send(d, b, payload)
	}
	z.sent += uint64(z.frame)
}

// send numbers and finishes d's packet, whose payload is in place in b, and
// hands it on.
func (z *Packetizer) send(d *packetBuffer, b []byte, payload int) {
	d.seq++
	z.sink.SendPacket(d.dir, z.framer.Audio(b, d.dir, d.seq, payload))
}

// emit finishes and sends the current packet of every direction, RX before TX.
func (z *Packetizer) emit() {
	payload := z.fill * z.bps
	for c := range z.dirs {
		z.send(&z.dirs[c], z.dirs[c].buf, payload)
	}
	z.sent += uint64(z.fill)
	z.fill = 0
}

// MediaTime is the audio the Packetizer has taken so far at rate (its
// output's): the stream's media clock, 0 at its first audio.
func (z *Packetizer) MediaTime(rate int) time.Duration {
	n := z.sent + uint64(z.fill)
	return time.Duration(n/uint64(rate))*time.Second + time.Duration(n%uint64(rate))*time.Second/time.Duration(rate)
}

// Flush sends what is left as a final, shorter packet. A dangling partial sample
// is dropped: it cannot be encoded.
func (z *Packetizer) Flush() {
	if z.fill > 0 {
		z.emit()
	}
	z.carry.n = 0
}

// LastSequence is the sequence of the last packet sent in direction index i (0
// when none was).
func (z *Packetizer) LastSequence(i int) uint32 { return z.dirs[i].seq }

// Position is the audio the Packetizer has taken so far, in samples at its
// rate: the packets sent (each a whole frame on the media clock) and the one
// under way.
func (z *Packetizer) Position() int64 { return int64(z.sent) + int64(z.fill) }

// Resume starts the Packetizer of a resumed stream after packet last (every
// direction's last sequence): its media clock stands at the end of that
// packet.
func (z *Packetizer) Resume(last uint32) {
	for c := range z.dirs {
		z.dirs[c].seq = last
	}
	z.sent, z.fill = uint64(last)*uint64(z.frame), 0
}

// Skip moves the Packetizer n samples ahead on its media clock: audio that is
// missing. The packet under way is completed with silence and sent; whole
// packets that fall in the gap are not sent (their sequence numbers are
// skipped); the silence left over begins the next packet, so the audio after
// the gap keeps its place on the clock to the sample. It returns the sequence
// number the next packet will have and how many were skipped before it (0:
// no packet is missing, the gap was filled with silence).
func (z *Packetizer) Skip(n int64) (next, missing uint32) {
	if n > 0 && z.fill > 0 {
		pad := min(n, int64(z.frame-z.fill))
		z.pad(int(pad))
		n -= pad
		if z.fill == z.frame {
			z.emit()
		}
	}
	if n > 0 {
		k := n / int64(z.frame)
		if k > int64(^uint32(0)) {
			k = int64(^uint32(0))
		}
		for c := range z.dirs {
			z.dirs[c].seq += uint32(k)
		}
		z.sent += uint64(k) * uint64(z.frame)
		z.pad(int(n - k*int64(z.frame)))
		missing = uint32(k)
	}
	if len(z.dirs) == 0 {
		return 0, missing
	}
	return z.dirs[0].seq + 1, missing
}

// pad adds n silent samples (fewer than a packet's room) to the packet under
// way.
func (z *Packetizer) pad(n int) {
	if n <= 0 {
		return
	}
	off := z.hdr + z.fill*z.bps
	for c := range z.dirs {
		z.codec.Encode(z.dirs[c].buf[off:], z.zero, z.unit, n)
	}
	z.fill += n
}

// Complete fills the packet under way with silence to a whole frame and
// sends it: a stream that stops (for now) keeps its packets on the frame
// grid of its media clock.
func (z *Packetizer) Complete() {
	if z.fill > 0 {
		z.pad(z.frame - z.fill)
		z.emit()
	}
	z.carry.n = 0
}
