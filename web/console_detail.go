package web

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// A fork's detail in the console: everything about one live fork that the
// feed's row leaves out — its outputs with their stream ids, formats and
// endpoints, its parameters and metadata, its counters and last error, and
// its levels over the last minute. Fetched by the page while the detail is
// open (GET /v1/console/forks/{id}); no credential, no fork URL.

// HistorySeconds is how far back a fork's level history goes.
const HistorySeconds = 60

// historyEvery is how often the console samples the levels of every live
// fork for its history: each second keeps the highest of its samples.
const historyEvery = 250 * time.Millisecond

// levelHistory is one fork's level per second, for the directions of its
// row's Levels (at most two): a ring indexed by the unix second, newest at
// sec. A second with no sample holds noSample.
type levelHistory struct {
	sec int64 // the newest second; meaningless while n is 0
	n   int   // seconds held, at most HistorySeconds
	v   [2][HistorySeconds]int8
}

// noSample marks a second the sampler did not reach (a stall): shown as a
// gap, not as silence.
const noSample = math.MinInt8

func slot(sec int64) int { return int(((sec % HistorySeconds) + HistorySeconds) % HistorySeconds) }

// add takes one sample of levels at now: each second keeps its highest.
func (h *levelHistory) add(now time.Time, levels []mediafork.Level) {
	sec := now.Unix()
	if h.n > 0 && sec < h.sec {
		return // the clock went back: keep what is there
	}
	if h.n == 0 || sec-h.sec >= HistorySeconds {
		h.n, h.sec = 0, sec-1
	}
	for h.sec < sec {
		h.sec++
		k := slot(h.sec)
		h.v[0][k], h.v[1][k] = noSample, noSample
		h.n = min(HistorySeconds, h.n+1)
	}
	k := slot(sec)
	for i, l := range levels[:min(2, len(levels))] {
		db := int8(math.Max(mediafork.MinDBFS, math.Min(0, math.Round(l.DBFS))))
		if h.v[i][k] == noSample || db > h.v[i][k] {
			h.v[i][k] = db
		}
	}
}

// series is the history oldest first: per direction, one dBFS a second, nil
// for a second without a sample.
func (h *levelHistory) series(dirs int) [][]*int {
	out := make([][]*int, dirs)
	for i := range out {
		out[i] = make([]*int, 0, h.n)
		for s := h.sec - int64(h.n) + 1; s <= h.sec; s++ {
			var p *int
			if v := h.v[i][slot(s)]; v != noSample {
				db := int(v)
				p = &db
			}
			out[i] = append(out[i], p)
		}
	}
	return out
}

// sampleLevels adds every live fork's levels to its history until the
// console closes.
func (c *Console) sampleLevels() {
	defer c.sample.Done()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("console level sampler panicked", "panic", p)
		}
	}()
	tick := time.NewTicker(historyEvery)
	defer tick.Stop()
	var sc levelScratch
	for {
		if c.reg.Len() == 0 {
			// Nothing to sample: no tick until a fork comes (an idle
			// daemon wakes for nothing).
			tick.Stop()
			c.parked.Store(true)
			select {
			case <-c.ctx.Done():
				return
			case <-c.reg.Occupied():
			}
			c.parked.Store(false)
			tick.Reset(historyEvery)
		}
		select {
		case <-c.ctx.Done():
			return
		case now := <-tick.C:
			c.sampleOnce(now, &sc)
		}
	}
}

// levelScratch is the sampler's, reused every sample: four samples a second
// of every fork allocated nothing (it was most of a busy daemon's
// allocations).
type levelScratch struct {
	forks  []*mediafork.Fork
	levels []mediafork.Level
	spans  []levelSpan // the forks streaming, their levels' place in levels
}

type levelSpan struct {
	f        *mediafork.Fork
	from, to int
}

// sampleOnce adds one sample of every streaming fork's levels.
func (c *Console) sampleOnce(now time.Time, sc *levelScratch) {
	sc.forks = c.reg.AppendForks(sc.forks[:0])
	sc.levels, sc.spans = sc.levels[:0], sc.spans[:0]
	for _, f := range sc.forks { // each fork's lock, outside the console's
		from := len(sc.levels)
		if sc.levels = f.AppendLevels(sc.levels); len(sc.levels) > from {
			sc.spans = append(sc.spans, levelSpan{f, from, len(sc.levels)})
		}
	}
	c.mu.Lock()
	for _, s := range sc.spans {
		if lf, _ := c.liveOf(s.f); lf != nil {
			lf.history.add(now, sc.levels[s.from:s.to])
		}
	}
	c.mu.Unlock()
	// No fork kept past its sample (an ended fork is freed).
	clear(sc.forks)
	clear(sc.spans)
}

// forkDetail is GET /v1/console/forks/{id}.
type forkDetail struct {
	*forkRow
	State      string             `json:"state"`
	Metadata   mediafork.Metadata `json:"metadata"`
	Outputs    []outputDetail     `json:"outputs"`
	Endpoints  []endpointDetail   `json:"endpoint_detail"`
	FramesIn   uint64             `json:"frames_in"`
	BytesIn    uint64             `json:"bytes_in"`
	PacketsOut map[string]uint64  `json:"packets_out"`
	Drops      uint64             `json:"drops"`
	SendErrors uint64             `json:"send_errors"`
	LastError  string             `json:"last_error,omitempty"`
	BytesOut   map[string]uint64  `json:"bytes_out"`
	Levels     []mediafork.Level  `json:"now"`
	History    historyDetail      `json:"history"`
	To         []string           `json:"to,omitempty"` // ad-hoc destinations as asked for
	Params     mediafork.Params   `json:"params"`
	// Talkback is what its receivers send back into the call, when they may.
	Talkback *mediafork.TalkbackInfo `json:"talkback,omitempty"`
}

// outputDetail is one of a fork's outputs: its protocol, format, endpoints
// and the identities its receivers know it by (a TLV stream id; an RTP
// stream's SSRC per direction).
type outputDetail struct {
	StreamID   uint32   `json:"stream_id,omitempty"` // TLV
	Protocol   string   `json:"protocol"`
	Format     string   `json:"format"` // "rx+tx pcmu 8000 Hz 20 ms"
	Endpoints  []string `json:"endpoints"`
	Identities []string `json:"identities"` // "stream 123", "ssrc 456 rx → 10.0.0.30:5000"
}

// endpointDetail is one endpoint of a fork: what it sent there and
// dropped, over every destination of it (an RTP endpoint's RTP and RTCP
// ports).
type endpointDetail struct {
	Address   string `json:"address"`
	Protocol  string `json:"protocol"`
	Format    string `json:"format"`
	StreamID  uint32 `json:"stream_id,omitempty"` // TLV
	Packets   uint64 `json:"packets"`
	Drops     uint64 `json:"drops"`
	LastError string `json:"last_error,omitempty"`
}

// historyDetail is a fork's levels over the last HistorySeconds: per
// direction (Dirs), one dBFS a second, oldest first, the last at End.
type historyDetail struct {
	Dirs   []string `json:"dirs"`
	StepMs int      `json:"step_ms"`
	End    int64    `json:"end"` // unix ms of the last value
	Values [][]*int `json:"values"`
}

// formatName is an output's format as the console shows it.
func formatName(f mediafork.EndpointFormat) string {
	return f.Directions.String() + " " + string(f.Encoding) + " " + strconv.Itoa(f.Rate) + " Hz " + strconv.Itoa(f.FrameMs) + " ms"
}

// serveDetail answers one live fork's detail, by its row's id.
func (c *Console) serveDetail(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		httpError(w, http.StatusBadRequest, "id: not a fork's id")
		return
	}
	c.mu.Lock()
	f := c.byID[id]
	var row *forkRow
	var hist levelHistory
	if lf := c.rows[f]; f != nil && lf != nil {
		row, hist = lf.row, lf.history
	}
	c.mu.Unlock()
	if row == nil {
		httpError(w, http.StatusNotFound, "no live fork "+strconv.FormatUint(id, 10)+" (it may have ended)")
		return
	}
	in := f.Info()
	dests := f.Destinations()
	d := forkDetail{forkRow: row, State: string(in.State), Metadata: in.Metadata, Params: in.Params,
		FramesIn: in.FramesIn, BytesIn: in.BytesIn, PacketsOut: in.PacketsOut, BytesOut: in.BytesOut, Drops: in.Drops,
		SendErrors: in.SendErrors, LastError: scrub(in.LastError), Levels: in.Levels, To: in.To,
		Outputs: []outputDetail{}, Endpoints: []endpointDetail{}, Talkback: in.Talkback}
	if d.Levels == nil {
		d.Levels = []mediafork.Level{}
	}
	for _, o := range in.Outputs {
		od := outputDetail{StreamID: o.StreamID, Protocol: o.Protocol.String(), Format: formatName(o.Format), Endpoints: o.Endpoints,
			Identities: []string{}}
		if o.Protocol == mediafork.ProtocolTLV {
			od.Identities = append(od.Identities, "stream "+strconv.FormatUint(uint64(o.StreamID), 10))
		}
		for _, st := range o.Streams {
			od.Identities = append(od.Identities, "ssrc "+strconv.FormatUint(uint64(st.SSRC), 10)+" "+st.Direction+" → "+st.Address)
		}
		if s := o.Stream; s != nil { // a WebSocket stream's: its identity and its connection
			state := "down"
			if s.Connected {
				state = "connected"
			}
			id := s.URL + " " + state
			if s.StreamSid != "" {
				id = "streamSid " + s.StreamSid + " → " + id
			}
			od.Identities = append(od.Identities, id)
		}
		d.Outputs = append(d.Outputs, od)
		for _, ep := range o.Endpoints {
			ed := endpointDetail{Address: ep, Protocol: od.Protocol, Format: od.Format, StreamID: o.StreamID}
			if s := o.Stream; s != nil { // no UDP destination: the connection's counters
				ed.Packets, ed.Drops, ed.LastError = s.MessagesSent, s.Drops, scrub(s.LastError)
			}
			for _, ds := range dests {
				if ds.Target.Protocol == o.Protocol && ds.Target.Addr.String() == ep {
					ed.Packets += ds.Packets
					ed.Drops += ds.Drops
					if ed.LastError == "" {
						ed.LastError = scrub(ds.LastError)
					}
				}
			}
			d.Endpoints = append(d.Endpoints, ed)
		}
	}
	d.History = historyDetail{Dirs: row.Levels, StepMs: 1000, End: hist.sec * 1000, Values: hist.series(min(2, len(row.Levels)))}
	writeJSON(w, http.StatusOK, d)
}
