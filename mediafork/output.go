package mediafork

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
)

// output is one stream of a fork: one resolved format (directions, encoding,
// rate, frame length), its own stream id, Framer and Packetizer — with a
// shaper in front when its directions or rate differ from the bug's — and the
// endpoints that take it. A fork of plain host:port endpoints has one output,
// with the fork's params and stream id.
type output struct {
	f        *Fork
	streamID uint32
	format   EndpointFormat // resolved: every field set
	dirs     []Direction    // format.Directions, in signaling order
	pk       *Packetizer
	sh       *shaper // nil: pk reads the bug's PCM itself
	eps      []int   // indexes into f.eps and f.qs
}

// OutputInfo is one stream of a fork, for the API: its id, its format and the
// endpoints that take it.
type OutputInfo struct {
	StreamID  uint32         `json:"stream_id"`
	Format    EndpointFormat `json:"format"`
	Endpoints []string       `json:"endpoints"`
}

// newOutput makes the output of format (resolved) for a bug of mix.
func newOutput(f *Fork, id uint32, mix Mix, format EndpointFormat, bugRate int) *output {
	o := &output{f: f, streamID: id, format: format, dirs: format.Directions.List()}
	fr := newFramer(id)
	frame := format.Params(mix).FrameSamples()
	codec := format.Encoding.Codec()
	m := bugRate / format.Rate
	if sum := mix == Stereo && format.Directions.Has(DirMixed); m == 1 && !sum {
		// A pick of the bug's channels: the Packetizer reads them in place.
		offs := make([]int, len(o.dirs))
		for c, d := range o.dirs {
			if d == DirTX {
				offs[c] = 2
			}
		}
		o.pk = newPacketizer(2*mix.Channels(), o.dirs, offs, frame, codec, fr, o)
		return o
	}
	offs := make([]int, len(o.dirs))
	for c := range offs {
		offs[c] = 2 * c
	}
	o.pk = newPacketizer(2*len(o.dirs), o.dirs, offs, frame, codec, fr, o)
	o.sh = newShaper(mix, o.dirs, m, o.pk)
	return o
}

// write takes one WebSocket frame of the bug's PCM.
func (o *output) write(pcm []byte) {
	if o.sh != nil {
		o.sh.Write(pcm)
		return
	}
	o.pk.Write(pcm)
}

// flush sends the last partial packets.
func (o *output) flush() {
	if o.sh != nil {
		o.sh.Flush()
	}
	o.pk.Flush()
}

// SendPacket fans one audio packet out to the output's endpoints: into the
// batch of the Write under way, or at once.
func (o *output) SendPacket(dir Direction, pkt []byte) {
	f := o.f
	if f.batch == nil {
		for _, i := range o.eps {
			f.sendOne(i, f.eps[i], dir, pkt)
		}
		return
	}
	for _, i := range o.eps {
		q := f.qs[i]
		if q.d.batch <= 1 {
			f.sendOne(i, q.d, dir, pkt) // nothing to gather: nothing waits in q
		} else {
			f.batch.add(q, f, dir, f.epc[i], pkt)
		}
	}
}

// sendNow fans a signaling, format or end packet out at once, after what the
// batch holds for each endpoint: each stream's order holds.
func (o *output) sendNow(dir Direction, pkt []byte) {
	f := o.f
	for _, i := range o.eps {
		if f.qb != nil {
			f.qs[i].flush()
		}
		f.sendOne(i, f.eps[i], dir, pkt)
	}
}

// plan is how a fork's endpoints become outputs: the distinct resolved
// formats (the fork's own first, when an endpoint takes it) and, per distinct
// (address, format), the destination to open and the output it belongs to.
type plan struct {
	formats []EndpointFormat
	addrs   []netip.AddrPort
	outOf   []int // parallel to addrs: the index in formats
}

// planOutputs groups addrs by format: spec.Formats[i] is addrs[i]'s (none:
// every endpoint plain). Each format is resolved against the fork's params
// and refused when the bug cannot feed it.
func planOutputs(spec Spec, addrs []netip.AddrPort) (plan, error) {
	var p plan
	own, err := EndpointFormat{}.Resolve(spec.Params)
	if err != nil {
		return p, err
	}
	if len(spec.Formats) != 0 && len(spec.Formats) != len(addrs) {
		return p, fmt.Errorf("%w: %d formats for %d destinations", ErrBadDestination, len(spec.Formats), len(addrs))
	}
	resolved := make([]EndpointFormat, len(addrs))
	hasOwn := false
	for i := range addrs {
		var ask EndpointFormat
		if len(spec.Formats) != 0 {
			ask = spec.Formats[i]
		}
		if resolved[i], err = ask.Resolve(spec.Params); err != nil {
			return p, fmt.Errorf("endpoint %s: %w", addrs[i], err)
		}
		hasOwn = hasOwn || resolved[i] == own
	}
	if hasOwn || len(addrs) == 0 {
		p.formats = append(p.formats, own) // a fork with no endpoint still counts its audio
	}
	type key struct {
		a   netip.AddrPort
		out int
	}
	seen := map[key]bool{}
	for i, a := range addrs {
		k := -1
		for j, fm := range p.formats {
			if fm == resolved[i] {
				k = j
			}
		}
		if k < 0 {
			k = len(p.formats)
			p.formats = append(p.formats, resolved[i])
		}
		if !seen[key{a, k}] {
			seen[key{a, k}] = true
			p.addrs, p.outOf = append(p.addrs, a), append(p.outOf, k)
		}
	}
	return p, nil
}

// claimIDs returns n fresh stream ids, unique among the live forks' streams,
// for a fork's further outputs. Each is given back with releaseIDs.
func (r *Registry) claimIDs(n int) []uint32 {
	if n == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]uint32, 0, n)
	for len(ids) < n {
		id := rand.Uint32()
		if _, used := r.ids[id]; id != 0 && !used {
			r.ids[id] = struct{}{}
			ids = append(ids, id)
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
