package web

import (
	"encoding/json"
	"math"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mediafork/mediafork/mediafork"
)

// forkRow is what the page shows of a fork that does not change while it
// streams (sent once), and, for an ended fork, its last counters and end.
// It carries no credential and no fork URL: the Spec's are never copied.
type forkRow struct {
	ID        uint64   `json:"id"`
	UUID      string   `json:"uuid"`
	Bug       string   `json:"bug,omitempty"`
	Server    string   `json:"server,omitempty"`
	Module    string   `json:"module,omitempty"`
	Channel   string   `json:"channel,omitempty"`
	Caller    string   `json:"caller,omitempty"`
	Callee    string   `json:"callee,omitempty"`
	Trigger   string   `json:"trigger,omitempty"`
	Rule      string   `json:"rule,omitempty"`
	Profile   string   `json:"profile,omitempty"`
	Endpoints []string `json:"endpoints"`
	Mix       string   `json:"mix"`
	Rate      int      `json:"rate"`
	Encoding  string   `json:"encoding"`
	StreamID  uint32   `json:"stream_id"`
	Levels    []string `json:"levels"`  // the directions of the meters, in the order of the dynamic tuple
	Started   int64    `json:"started"` // unix ms

	// Ended forks only.
	Seq     uint64   `json:"seq,omitempty"`
	Ended   int64    `json:"ended,omitempty"` // unix ms
	State   string   `json:"state,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Error   string   `json:"error,omitempty"`
	Packets []uint64 `json:"packets,omitempty"` // RX, TX, MIXED
	Drops   []uint64 `json:"drops,omitempty"`   // RX, TX, MIXED
}

// dyn is what changes while a fork streams, as the wire carries it:
// [id, packets RX, TX, MIXED, drops RX, TX, MIXED, dBFS of Levels[0],
// dBFS of Levels[1], flags]; flags: 1 Levels[0] silent, 2 Levels[1] silent,
// 4 paused (dynPaused).
type dyn [10]int64

// dynPaused is dyn's flag of a paused fork.
const dynPaused = 4

// liveFork is the console's state of one live fork.
type liveFork struct {
	row      *forkRow
	counters [6]int64 // packets and drops as last sampled (at counterEvery)
	history  levelHistory
}

// counterEvery: packets and drops are sampled one feed tick in this many
// (twice a second); levels every tick.
const counterEvery = 5

// snapshot is the console's state at one tick, shared by every client.
type snapshot struct {
	at       time.Time
	switches []switchRow
	rows     []*forkRow // live forks, by id
	dyns     []dyn      // parallel to rows
	ended    []*forkRow // oldest first
	calls    []callRow  // live calls, oldest answered first
	callV    uint64     // their version
	builds   uint64
}

// switchRow is a switch as the page shows it; times are unix ms.
type switchRow struct {
	Name   string `json:"name"`
	Up     bool   `json:"up"`
	State  string `json:"state"`
	Addr   string `json:"addr,omitempty"`
	Reason string `json:"reason,omitempty"`
	Since  int64  `json:"since,omitempty"`
	Next   int64  `json:"next,omitempty"`   // the next attempt
	Leader string `json:"leader,omitempty"` // in a cluster: the instance leading it
	Leads  bool   `json:"leads,omitempty"`  // in a cluster: this instance leads it
}

// callRow is a live call as the page lists it (mediafork.LiveCall); the page
// joins it to its forks by uuid.
type callRow struct {
	UUID      string `json:"uuid"`
	Server    string `json:"fs"`
	Channel   string `json:"channel,omitempty"`
	Caller    string `json:"caller,omitempty"`
	Callee    string `json:"callee,omitempty"`
	Direction string `json:"dir,omitempty"`
	Answered  int64  `json:"answered"` // unix ms
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// switchRows are the switches' states, by name.
func (c *Console) switchRows() []switchRow {
	var out []switchRow
	if c.status != nil {
		for _, st := range c.status() {
			out = append(out, switchRow{Name: st.Name, Up: st.Up, State: st.State, Addr: st.Addr, Reason: st.Reason,
				Since: unixMs(st.Since), Next: unixMs(st.Next), Leader: st.Leader, Leads: st.Leads})
		}
	} else {
		for name, up := range c.switches() {
			st := "down"
			if up {
				st = "connected"
			}
			out = append(out, switchRow{Name: name, Up: up, State: st})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// callRows are the live calls, read again only when their version changed;
// c.mu is held.
func (c *Console) callRows() ([]callRow, uint64) {
	if c.calls == nil {
		return nil, 0
	}
	v := c.calls.CallsVersion()
	if c.callRs != nil && v == c.callV {
		return c.callRs, v
	}
	calls := c.calls.Calls()
	rows := make([]callRow, len(calls))
	for i, lc := range calls {
		rows[i] = callRow{UUID: string(lc.UUID), Server: lc.Server, Channel: lc.Channel, Caller: lc.Caller, Callee: lc.Callee,
			Direction: lc.Direction, Answered: unixMs(lc.Answered)}
	}
	c.callRs, c.callV = rows, v
	return rows, v
}

// rowOf makes the static row of a fork from its Info.
func rowOf(id uint64, in mediafork.Info) *forkRow {
	r := &forkRow{ID: id, UUID: string(in.UUID), Bug: in.Bug, Server: in.Server, Module: in.Source,
		Channel: in.Metadata.ChannelID, Caller: in.Metadata.CallerID, Callee: in.Metadata.CalledID,
		Trigger: string(in.Trigger), Rule: in.Rule, Profile: in.Profile, Endpoints: in.EndpointNames(),
		Mix: string(in.Mix), Rate: in.Rate, Encoding: string(in.Encoding), StreamID: in.StreamID,
		Levels: []string{}, Started: in.StartedAt.UnixMilli()}
	if r.Module == "" {
		r.Module = mediafork.SourceAudioFork
	}
	if r.Endpoints == nil {
		r.Endpoints = []string{}
	}
	for _, d := range in.Mix.Directions() {
		r.Levels = append(r.Levels, d.String())
	}
	return r
}

func dbOf(l mediafork.Level) int64 { return int64(math.Round(l.DBFS)) }

// snapshot returns the state now, built at most once per FeedInterval and
// shared by every client.
func (c *Console) snapshot() *snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.snap != nil && now.Sub(c.snap.at) < c.set.FeedInterval*9/10 {
		return c.snap
	}
	var builds uint64
	if c.snap != nil {
		builds = c.snap.builds + 1
	}
	s := &snapshot{at: now, builds: builds, switches: c.switchRows()}
	s.calls, s.callV = c.callRows()

	forks := c.reg.List()
	seen := make(map[*mediafork.Fork]bool, len(forks))
	for _, f := range forks {
		levels := f.Levels() // nil unless it streams
		if levels == nil {
			continue
		}
		seen[f] = true
		lf, fresh := c.liveOf(f)
		if lf == nil {
			continue // ended just now
		}
		if fresh || builds%counterEvery == 0 {
			lf.sample(f)
		}
		d := dyn{int64(lf.row.ID)}
		copy(d[1:7], lf.counters[:])
		d[7], d[8] = int64(mediafork.MinDBFS), int64(mediafork.MinDBFS)
		for i, l := range levels[:min(2, len(levels))] {
			d[7+i] = dbOf(l)
			if l.Silent {
				d[9] |= 1 << i
			}
		}
		if f.Paused() {
			d[9] |= dynPaused
		}
		s.rows = append(s.rows, lf.row)
		s.dyns = append(s.dyns, d)
	}
	for f, lf := range c.rows {
		if !seen[f] {
			delete(c.rows, f)
			delete(c.byID, lf.row.ID)
		}
	}
	order := make([]int, len(s.rows))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return s.rows[order[i]].ID < s.rows[order[j]].ID })
	rows, dyns := make([]*forkRow, len(order)), make([]dyn, len(order))
	for i, k := range order {
		rows[i], dyns[i] = s.rows[k], s.dyns[k]
	}
	s.rows, s.dyns = rows, dyns
	s.ended = append([]*forkRow(nil), c.ended...)
	c.snap = s
	return s
}

// liveOf is f's state, made when f is new (fresh); nil when f has ended.
// c.mu is held.
func (c *Console) liveOf(f *mediafork.Fork) (lf *liveFork, fresh bool) {
	if lf = c.rows[f]; lf != nil {
		return lf, false
	}
	select {
	case <-f.Done(): // forkEnded has run or will: it must not find a row left behind
		return nil, false
	default:
	}
	c.nextID++
	lf = &liveFork{row: rowOf(c.nextID, f.Info())}
	c.rows[f] = lf
	c.byID[lf.row.ID] = f
	return lf, true
}

func (lf *liveFork) sample(f *mediafork.Fork) {
	for i := 0; i < 3; i++ {
		lf.counters[i] = int64(f.PacketsOut[i].Load())
		lf.counters[3+i] = int64(f.DropsBy[i].Load())
	}
}

// forkEnded keeps the last MaxEnded ended forks (a registry end observer).
func (c *Console) forkEnded(f *mediafork.Fork, _ mediafork.EndReason) {
	in := f.Info()
	c.mu.Lock()
	defer c.mu.Unlock()
	id := uint64(0)
	if lf := c.rows[f]; lf != nil {
		id = lf.row.ID
		delete(c.rows, f)
		delete(c.byID, id)
	} else {
		c.nextID++
		id = c.nextID
	}
	r := rowOf(id, in)
	c.endSeq++
	r.Seq, r.Ended, r.State, r.Reason, r.Error = c.endSeq, time.Now().UnixMilli(), string(in.State), in.EndReason, scrub(in.LastError)
	r.Packets, r.Drops = make([]uint64, 3), make([]uint64, 3)
	for i := 0; i < 3; i++ {
		r.Packets[i], r.Drops[i] = f.PacketsOut[i].Load(), f.DropsBy[i].Load()
	}
	if len(c.ended) == MaxEnded {
		c.ended = append(c.ended[:0], c.ended[1:]...)
	}
	c.ended = append(c.ended, r)
}

// feedMessage is one message of the live feed: the first ("full") has
// everything, each next ("delta") what changed since the previous one.
type feedMessage struct {
	Type     string `json:"t"`
	Now      int64  `json:"now"` // unix ms
	ListenIn bool   `json:"listen_in,omitempty"`
	// Open: the API has no token (loopback only); the page asks for none.
	Open     bool        `json:"open,omitempty"`
	Switches []switchRow `json:"sw,omitempty"`
	// Calls added or changed, and the uuids of calls gone.
	CallAdd []callRow  `json:"cadd,omitempty"`
	CallDel []string   `json:"cdel,omitempty"`
	Add     []*forkRow `json:"add,omitempty"`
	Del     []uint64   `json:"del,omitempty"`
	Upd     []dyn      `json:"upd,omitempty"`
	Ended   []*forkRow `json:"ended,omitempty"`
}

// feedState is what one client was last sent: its delta base. Bounded by
// the live forks (ingest.max_forks).
type feedState struct {
	sent     map[uint64]dyn
	switches []switchRow
	calls    map[string]callRow // as last sent
	callV    uint64
	endSeq   uint64
	full     bool
}

// next is the message that brings the client from st to s, nil for none;
// st becomes s.
func (st *feedState) next(s *snapshot, listenIn, open bool) *feedMessage {
	m := &feedMessage{Type: "delta", Now: s.at.UnixMilli()}
	if !st.full {
		m.Type, m.ListenIn, m.Open, st.full = "full", listenIn, open, true
		st.calls = make(map[string]callRow, len(s.calls))
		m.Switches = s.switches
		if m.Switches == nil {
			m.Switches = []switchRow{}
		}
		st.sent = make(map[uint64]dyn, len(s.rows))
	} else if !equalSwitches(st.switches, s.switches) {
		m.Switches = s.switches
	}
	st.switches = s.switches
	live := make(map[uint64]bool, len(s.rows))
	for i, r := range s.rows {
		live[r.ID] = true
		d := s.dyns[i]
		old, known := st.sent[r.ID]
		if !known {
			m.Add = append(m.Add, r)
		}
		if !known || old != d {
			m.Upd = append(m.Upd, d)
			st.sent[r.ID] = d
		}
	}
	for id := range st.sent {
		if !live[id] {
			m.Del = append(m.Del, id)
			delete(st.sent, id)
		}
	}
	sort.Slice(m.Del, func(i, j int) bool { return m.Del[i] < m.Del[j] })
	if m.Type == "full" || s.callV != st.callV {
		st.callV = s.callV
		live := make(map[string]bool, len(s.calls))
		for _, cr := range s.calls {
			live[cr.UUID] = true
			if old, ok := st.calls[cr.UUID]; !ok || old != cr {
				m.CallAdd = append(m.CallAdd, cr)
				st.calls[cr.UUID] = cr
			}
		}
		for uuid := range st.calls {
			if !live[uuid] {
				m.CallDel = append(m.CallDel, uuid)
				delete(st.calls, uuid)
			}
		}
		sort.Strings(m.CallDel)
	}
	for _, r := range s.ended {
		if r.Seq > st.endSeq {
			m.Ended = append(m.Ended, r)
			st.endSeq = r.Seq
		}
	}
	if m.Type == "delta" && m.Switches == nil && m.Add == nil && m.Del == nil && m.Upd == nil && m.Ended == nil &&
		m.CallAdd == nil && m.CallDel == nil {
		return nil
	}
	return m
}

func equalSwitches(a, b []switchRow) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// serveSnapshot is GET /v1/console/snapshot: the feed's first message, once.
func (c *Console) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	var st feedState
	writeJSON(w, http.StatusOK, st.next(c.snapshot(), c.listenInFor(), c.open()))
}

// listenInFor: listen-in is offered when it is on and the console has a
// token (without one it is refused: serveListen).
func (c *Console) listenInFor() bool { return c.listenIn.Load() && !c.open() }

// feedSocketBuffer bounds the socket send buffer of a feed connection: a
// few full messages at 2,000 forks.
const feedSocketBuffer = 1 << 20

// serveFeed is the live feed: a WebSocket whose server sends a full message,
// then a delta every FeedInterval when anything changed. A client never
// queues: each tick it gets what changed since its last message, so a slow
// client skips ticks, and one that cannot take a message within
// FeedWriteTimeout is disconnected (ConsoleSettings).
func (c *Console) serveFeed(w http.ResponseWriter, r *http.Request, _ string) {
	if n := c.feeds.Add(1); int(n) > c.set.MaxClients {
		c.feeds.Add(-1)
		httpError(w, http.StatusServiceUnavailable, "too many console clients")
		return
	}
	defer c.feeds.Add(-1)
	conn, leave, ok := c.upgrade(w, r)
	if !ok {
		return
	}
	defer leave()
	if tc, ok := conn.NetConn().(*net.TCPConn); ok {
		tc.SetWriteBuffer(feedSocketBuffer) // the kernel's share of a slow client is bounded too
	}
	done := c.readUntilClosed(conn)

	tick := time.NewTicker(c.set.FeedInterval)
	defer tick.Stop()
	ping := time.NewTicker(c.set.FeedPing)
	defer ping.Stop()
	var st feedState
	for {
		if m := st.next(c.snapshot(), c.listenInFor(), c.open()); m != nil {
			b, _ := json.Marshal(m)
			conn.SetWriteDeadline(time.Now().Add(c.set.FeedWriteTimeout))
			if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
				c.log.Debug("console client dropped", "remote", r.RemoteAddr, "error", err)
				return
			}
		}
		select {
		case <-tick.C:
		case <-ping.C:
			if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.set.FeedWriteTimeout)) != nil {
				return
			}
		case <-done:
			return
		case <-c.ctx.Done():
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "shutting down"),
				time.Now().Add(time.Second))
			return
		}
	}
}

// readUntilClosed reads (and discards) what the client sends, answering
// pings, until the connection fails or stays silent for three FeedPings;
// the channel closes then. Messages are capped at 4 KiB.
func (c *Console) readUntilClosed(conn *websocket.Conn) <-chan struct{} {
	done := make(chan struct{})
	conn.SetReadLimit(4 << 10)
	alive := func() { conn.SetReadDeadline(time.Now().Add(3 * c.set.FeedPing)) }
	alive()
	conn.SetPongHandler(func(string) error { alive(); return nil })
	c.conns.Add(1)
	go func() {
		defer c.conns.Done()
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				c.log.Error("console reader panicked", "panic", p)
			}
		}()
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
			alive()
		}
	}()
	return done
}
