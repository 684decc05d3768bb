package mediafork

import "sync/atomic"

// destCounters count what one fork sent to one destination, and what did
// not reach it under its metrics label: the web console shows a fork's
// packets and drops per endpoint. Two atomic adds per packet and
// destination, on the owner of Write's path or the batch's.
type destCounters struct {
	label   *EndpointCounters // shared by every fork of the same label
	packets atomic.Uint64
	drops   atomic.Uint64
}

func newDestCounters(labels []*EndpointCounters) []*destCounters {
	out := make([]*destCounters, len(labels))
	for i, l := range labels {
		out[i] = &destCounters{label: l}
	}
	return out
}

// sent counts one packet handed to the kernel. c may be nil.
func (c *destCounters) sent() {
	if c != nil {
		c.packets.Add(1)
	}
}

// count notes one packet that was not sent for err. c may be nil.
func (c *destCounters) count(err error) {
	if c == nil {
		return
	}
	c.drops.Add(1)
	c.label.count(err)
}

// DestinationStat is what one fork sent to one of its destinations (a UDP
// address: a TLV endpoint's, an RTP stream's RTP or RTCP port).
type DestinationStat struct {
	Target    Target // the endpoint it was opened for
	Addr      string // where the datagrams go
	Packets   uint64 // handed to the kernel
	Drops     uint64 // not sent: a full buffer or an error
	LastError string // the destination's last send error, shared by every fork sending there
}

// Destinations are the fork's destinations with their counters, in the order
// they were opened; nil before it streams.
func (f *Fork) Destinations() []DestinationStat {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]DestinationStat, 0, len(f.eps))
	for i, d := range f.eps {
		st := DestinationStat{Addr: d.addr.String(), LastError: d.lastError()}
		if i < len(f.epOwner) {
			st.Target = f.epOwner[i]
		}
		if i < len(f.epc) && f.epc[i] != nil {
			st.Packets, st.Drops = f.epc[i].packets.Load(), f.epc[i].drops.Load()
		}
		out = append(out, st)
	}
	return out
}
