package mediafork

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// forkOutput is one output of a fork as the fork drives it: the bug's PCM in
// per frame, DTMF, the start and the end. A datagram protocol's is an
// *output (a Packetizer and the protocol's Framer, fanned out per route
// through the reader's batch); a stream protocol brings its own.
type forkOutput interface {
	// start sends what the protocol sends first (TLV: signaling, format);
	// called once, by Begin, before any write.
	start(md Metadata, at time.Time)
	// write takes one WebSocket frame of the bug's PCM (the media path).
	write(pcm []byte)
	// dtmf sends a digit on the output's media clock (the media path).
	dtmf(d DTMFReceived)
	// setScratch gives the output the reader batch's scratch buffer (nil:
	// none).
	setScratch(b []byte)
	// seek moves the output to clock (the bug's samples) on the media
	// clock: the audio before it that was not written is missing (a gap, for
	// reason), and the output says so its protocol's way (TLV: a gap packet;
	// RTP: the marker; Twilio: the timestamp jumps). The media path.
	seek(clock int64, reason GapReason)
	// complete sends the packet under way, completed to a whole frame with
	// silence, and ends nothing: the fork stops, its streams go on in a later
	// fork of the call (which its OutputConfig.Resume starts where this one
	// stands). Called once, instead of finish.
	complete()
	// finish sends what is left and the protocol's end; called once, by the
	// owner of the media path after its last write.
	finish(reason EndReason)
	// info describes the output for the API.
	info(eps []*dest) OutputInfo
}

// output is one datagram output of a fork: one resolved format (directions,
// encoding, rate, frame length), its identity, its protocol's Framer and a
// Packetizer — with a shaper in front when its directions or rate differ from
// the bug's — and, per route, the destinations that take it. A fork of plain
// host:port endpoints has one output, with the fork's params and stream id.
type output struct {
	f        *Fork
	protocol Protocol
	ident    OutputIdentity
	format   EndpointFormat // resolved: every field set
	mix      Mix
	dirs     []Direction // format.Directions, in signaling order
	fr       Framer
	pk       *Packetizer
	sh       *shaper // nil: pk reads the bug's PCM itself
	ratio    int64   // bug samples per output sample
	resumed  bool    // its stream began in an earlier fork: nothing to start
	targets  []Target
	// By Direction: indexes into f.eps and f.qs of each route's destinations.
	media, control [4][]int
}

// OutputInfo is one output of a fork, for the API: its protocol and
// identity, its format and the endpoints that take it.
type OutputInfo struct {
	StreamID  uint32         `json:"stream_id,omitempty"` // TLV
	Protocol  Protocol       `json:"protocol"`
	Format    EndpointFormat `json:"format"`
	Endpoints []string       `json:"endpoints"`
	// Streams are an RTP output's streams, one per direction.
	Streams []RTPStreamInfo `json:"streams,omitempty"`
	// Stream is a stream output's connection (twilio, audiofork).
	Stream *StreamInfo `json:"stream,omitempty"`
}

// RTPStreamInfo is one RTP stream of an output.
type RTPStreamInfo struct {
	Direction   string `json:"direction"` // rx, tx, mixed
	SSRC        uint32 `json:"ssrc"`
	PayloadType uint8  `json:"payload_type"`
	Address     string `json:"address"` // its RTP destination; RTCP goes to the next port
}

// newOutput makes the datagram output of c (its format resolved) for a bug
// of mix at bugRate.
func newOutput(f *Fork, dp DatagramProtocol, c FramerConfig, bugRate int) *output {
	o := &output{f: f, protocol: dp.Name(), ident: c.Identity, format: c.Format, mix: c.Mix, dirs: c.Dirs, resumed: c.Resume != nil}
	c.Emitter = o
	o.fr = dp.NewFramer(c)
	o.pk, o.sh = newCutter(c.Mix, bugRate, c.Format, o.dirs, o.fr, o)
	o.ratio = int64(max(bugRate/c.Format.Rate, 1))
	if c.Resume != nil {
		o.pk.Resume(c.Resume.Last)
	}
	return o
}

// newCutter makes what cuts the PCM of a bug of mix at bugRate into packets
// of format (directions dirs, in order), each finished by fr and handed to
// sink: a Packetizer reading the bug's PCM in place when it only picks
// channels, else fed by a shaper that mixes and downsamples.
func newCutter(mix Mix, bugRate int, format EndpointFormat, dirs []Direction, fr Framer, sink PacketSink) (*Packetizer, *shaper) {
	frame := format.Params(mix).FrameSamples()
	codec := format.Encoding.Codec()
	m := bugRate / format.Rate
	if sum := mix == Stereo && format.Directions.Has(DirMixed); m == 1 && !sum {
		// A pick of the bug's channels: the Packetizer reads them in place.
		offs := make([]int, len(dirs))
		for i, d := range dirs {
			if d == DirTX {
				offs[i] = 2
			}
		}
		return newPacketizer(2*mix.Channels(), dirs, offs, frame, codec, fr, sink), nil
	}
	offs := make([]int, len(dirs))
	for i := range offs {
		offs[i] = 2 * i
	}
	pk := newPacketizer(2*len(dirs), dirs, offs, frame, codec, fr, sink)
	return pk, newShaper(mix, dirs, m, pk)
}

// start sends what the protocol sends first; a resumed stream has sent it.
func (o *output) start(md Metadata, at time.Time) {
	if o.resumed {
		return
	}
	o.fr.Start(o, o.dirs, md, o.format.Params(o.mix), at)
}

// seek skips the Packetizer to clock, in its own samples, and has the framer
// announce the packets missed.
func (o *output) seek(clock int64, reason GapReason) {
	n := clock/o.ratio - o.pk.Position()
	if n <= 0 {
		return
	}
	next, missing := o.pk.Skip(n)
	o.fr.Gap(o, o.dirs, next, missing, reason)
}

// complete sends the packet under way, completed with silence.
func (o *output) complete() {
	if o.sh != nil {
		o.sh.Flush()
	}
	o.pk.Complete()
}

// write takes one WebSocket frame of the bug's PCM.
func (o *output) write(pcm []byte) {
	if o.sh != nil {
		o.sh.Write(pcm)
		return
	}
	o.pk.Write(pcm)
}

func (o *output) setScratch(b []byte) { o.pk.scratch = b }

// dtmf sends d placed on the output's media clock: where the digit began is
// the audio packetized so far less its duration (FreeSWITCH reports a digit
// once it has ended), floored at the stream's start.
func (o *output) dtmf(d DTMFReceived) {
	at := o.pk.MediaTime(o.format.Rate) - d.Duration
	o.fr.DTMF(o, DirRX, DTMF{Digit: d.Digit, Duration: d.Duration, MediaTime: max(at, 0)})
}

// finish sends the last partial packets and the protocol's end.
func (o *output) finish(reason EndReason) {
	if o.sh != nil {
		o.sh.Flush()
	}
	o.pk.Flush()
	last := make([]uint32, len(o.dirs))
	for i := range o.dirs {
		last[i] = o.pk.LastSequence(i)
	}
	o.fr.End(o, o.dirs, last, reason)
}

func (o *output) info(eps []*dest) OutputInfo {
	oi := OutputInfo{Protocol: o.protocol, Format: o.format, Endpoints: make([]string, 0, len(o.targets))}
	for _, t := range o.targets {
		oi.Endpoints = append(oi.Endpoints, t.Addr.String())
	}
	if o.protocol == ProtocolTLV {
		oi.StreamID = o.ident.StreamID
	}
	if rf, ok := o.fr.(*rtpFramer); ok {
		for _, d := range o.dirs {
			oi.Streams = append(oi.Streams, RTPStreamInfo{Direction: dirName(d), SSRC: rf.dirs[d].ssrc,
				PayloadType: rf.pt, Address: eps[o.media[d][0]].addr.String()})
		}
	}
	return oi
}

// SendPacket fans one audio packet of dir out to its media route's
// destinations: into the batch of the Write under way, or at once.
func (o *output) SendPacket(dir Direction, pkt []byte) {
	f := o.f
	if f.batch == nil {
		for _, i := range o.media[dir] {
			f.sendOne(i, f.eps[i], dir, pkt)
		}
		return
	}
	for _, i := range o.media[dir] {
		q := f.qs[i]
		if q.d.batch <= 1 {
			f.sendOne(i, q.d, dir, pkt) // nothing to gather: nothing waits in q
		} else {
			f.batch.add(q, f, dir, f.epc[i], pkt)
		}
	}
}

// Emit sends a control packet on route r at once, after what the batch holds
// for each of its destinations: each stream's order holds.
func (o *output) Emit(r Route, pkt []byte) {
	f := o.f
	eps := o.media[r.Dir]
	if r.Control {
		eps = o.control[r.Dir]
	}
	for _, i := range eps {
		if f.qb != nil {
			f.qs[i].flush()
		}
		f.sendOne(i, f.eps[i], r.Dir, pkt)
	}
}

// plan is how a fork's targets become outputs: the outputs with their
// resolved formats and the targets each serves, and the distinct
// destinations to open, each output's routes indexing them.
type plan struct {
	outs   []outputPlan
	addrs  []netip.AddrPort // distinct destinations, in order of first use
	labels []Target         // parallel to addrs: the target each was opened for (metrics)
}

type outputPlan struct {
	proto   OutputProtocol
	format  EndpointFormat
	targets []Target
	// By Direction: indexes into plan.addrs.
	media, control [4][]int
}

// planOutputs turns targets into outputs. Targets of a shared protocol (TLV)
// whose resolved formats are equal share one output, the fork's own format
// first when a target takes it (or when there is no target at all: a fork
// with no endpoint still counts its audio); any other target is an output of
// its own. Each format is resolved by its protocol against the fork's params
// and refused when the bug cannot feed it.
func planOutputs(spec Spec, targets []Target) (plan, error) {
	var p plan
	own, err := EndpointFormat{}.Resolve(spec.Params)
	if err != nil {
		return p, err
	}
	type resolved struct {
		proto  OutputProtocol
		format EndpointFormat
	}
	rs := make([]resolved, len(targets))
	hasOwn := false
	for i, t := range targets {
		op, err := t.protocolOf()
		if err != nil {
			return p, fmt.Errorf("endpoint %s: %w", t, err)
		}
		fm, err := op.Format(t.Format, t.Options, spec.Params)
		if err != nil {
			return p, fmt.Errorf("endpoint %s: %w", t, err)
		}
		rs[i] = resolved{op, fm}
		hasOwn = hasOwn || (op.Shared() && t.Protocol == ProtocolTLV && fm == own)
	}
	if hasOwn || len(targets) == 0 {
		p.outs = append(p.outs, outputPlan{proto: tlvProtocol{}, format: own})
	}
	outOf := make([]int, len(targets))
	for i, t := range targets {
		k := -1
		if rs[i].proto.Shared() && t.Options == nil {
			for j, o := range p.outs {
				if o.proto.Name() == t.Protocol && o.format == rs[i].format && (len(o.targets) == 0 || o.targets[0].Options == nil) {
					k = j
				}
			}
		}
		if k < 0 {
			k = len(p.outs)
			p.outs = append(p.outs, outputPlan{proto: rs[i].proto, format: rs[i].format})
		}
		outOf[i] = k
		p.outs[k].targets = append(p.outs[k].targets, t)
	}
	index := map[netip.AddrPort]int{}
	addr := func(a netip.AddrPort, owner Target) int {
		i, ok := index[a]
		if !ok {
			i = len(p.addrs)
			index[a] = i
			p.addrs, p.labels = append(p.addrs, a), append(p.labels, owner)
		}
		return i
	}
	for i, t := range targets {
		o := &p.outs[outOf[i]]
		dp, ok := o.proto.(DatagramProtocol)
		if !ok {
			continue // a stream protocol dials its own
		}
		dirs := o.format.Directions.List()
		media, control, err := dp.Routes(t, dirs)
		if err != nil {
			return p, fmt.Errorf("endpoint %s: %w", t, err)
		}
		for j, d := range dirs {
			o.media[d] = appendOnce(o.media[d], addr(media[j], t))
			if control[j].IsValid() {
				o.control[d] = appendOnce(o.control[d], addr(control[j], t))
			}
		}
	}
	return p, nil
}

func appendOnce(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// claimIDs returns a stream id for each output of the fork of identity id
// whose index is in which: the one the identity names (id.IDs, a resumed
// fork's) when no live fork's stream uses it, else the first candidate of
// the output that none uses. Each is given back with releaseIDs.
func (r *Registry) claimIDs(id Identity, which []int) []uint32 {
	if len(which) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]uint32, 0, len(which))
	for j, i := range which {
		if j < len(id.IDs) {
			if c := id.IDs[j]; c != 0 {
				if _, used := r.ids[c]; !used {
					r.ids[c] = struct{}{}
					ids = append(ids, c)
					continue
				}
				r.log.Warn("a resumed output's stream id is in use by another fork: a new one", "stream_id", c)
			}
		}
		for k := 0; ; k++ {
			c := id.streamIDCandidate(i, k)
			if k > 64 {
				c = rand.Uint32() // a seed that keeps colliding (it cannot, but never loop)
			}
			if _, used := r.ids[c]; c != 0 && !used {
				r.ids[c] = struct{}{}
				ids = append(ids, c)
				break
			}
		}
	}
	return ids
}

// releaseIDs gives back ids from claimIDs.
func (r *Registry) releaseIDs(ids []uint32) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.ids, id)
	}
}
