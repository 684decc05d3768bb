package fssim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Talk-back as the real switch does it (../shared/freeswitch/captures/talkback):
//
//   - Bridged calls: Bridge links two channels (each writes what the other
//     reads; bridge_uuid and signal_bond name each other; CHANNEL_BRIDGE
//     fires) and Loopback links two as mod_loopback's a/b legs (each hears
//     what the other sends). What a channel sends to its far end is its own
//     write plus what is mixed into it (below); a fork on the channel itself
//     does not get that mixed audio (its bug copies the write frame first),
//     a fork on the party that hears it does.
//   - drachtio's mod_audio_fork takes playAudio (and mod_audio_stream
//     streamAudio) from its server: the audio goes into a file in the
//     switch's temp dir, CUSTOM mod_audio_fork::play_audio (::play) names
//     it; nothing is played.
//   - uuid_displace <uuid> start <file> 0 mux mixes the file into what the
//     channel sends, from the next frame (MEDIA_BUG_START, function displace,
//     target the file) to the file's end (MEDIA_BUG_STOP); stop ends it
//     sooner, or answers -ERR Cannot stop displace session! when it ran out.
//   - jambonz's mod_audio_fork (Jambonz), started with `true true <rate>`,
//     mixes the L16 frames its server sends into the channel's write after a
//     prebuffer (160 ms, then 80 ms), echoes marks as {"type": "mark", "data":
//     {"name":..., "event": "playout"}} when the audio before them has
//     played ("cleared" on killAudio, which empties it), and ignores
//     playAudio.

// jambonzUsage is jambonz's uuid_audio_fork usage (what mediafork detects
// it by).
const jambonzUsage = "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] [wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] [metadata] [bidirectionalAudio_enabled] [bidirectionalAudio_stream_enabled] [bidirectionalAudio_stream_samplerate]\n"

// Talk-back's models per switch: the files the modules wrote.
type talkbackFiles struct {
	mu      sync.Mutex
	files   map[string]audioFile // by path
	changed chan struct{}        // closed and replaced when one is written
	count   atomic.Int64         // mod_audio_fork's counter is module-wide
}

type audioFile struct {
	pcm   []int16
	rate  int
	owner string // the channel whose module wrote it
}

// TempDir is where the simulated modules "write" their files.
const TempDir = "/tmp/fssim"

func (f *talkbackFiles) put(path string, a audioFile) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = map[string]audioFile{}
	}
	f.files[path] = a
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

// WaitFile waits until a module has written path (a playAudio's file), at
// most timeout; it reports whether it is there.
func (s *Switch) WaitFile(path string, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	f := &s.files
	for {
		f.mu.Lock()
		_, ok := f.files[path]
		if f.changed == nil {
			f.changed = make(chan struct{})
		}
		ch := f.changed
		f.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

func (f *talkbackFiles) get(path string) (audioFile, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.files[path]
	return a, ok
}

// drop deletes a channel's files (its fork stopped, it hung up).
func (f *talkbackFiles) drop(owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, a := range f.files {
		if a.owner == owner {
			delete(f.files, p)
		}
	}
}

// Files is how many talk-back files the modules hold now.
func (s *Switch) Files() int {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	return len(s.files.files)
}

// mixed is audio mixed into what one channel sends: displaced files and
// jambonz's streamed buffer, each a segment on the switch's clock.
type mixed struct {
	mu     sync.Mutex
	segs   []segment
	active atomic.Bool // any segment at all: the fast path skips the rest
}

type segment struct {
	start float64 // seconds on the switch's clock
	pcm   []int16
	rate  int
	file  string // a displace's; "" for streamed audio
}

func (s segment) end() float64 { return s.start + float64(len(s.pcm))/float64(s.rate) }

func (m *mixed) add(seg segment) {
	m.mu.Lock()
	m.segs = append(m.segs, seg)
	m.active.Store(true)
	m.mu.Unlock()
}

// at adds what is mixed in at times t (seconds) to out.
func (m *mixed) at(t []float64, out []float64) {
	if !m.active.Load() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := m.segs[:0]
	for _, sg := range m.segs {
		for i, x := range t {
			if k := int((x - sg.start) * float64(sg.rate)); x >= sg.start && k < len(sg.pcm) {
				out[i] += float64(sg.pcm[k])
			}
		}
		if sg.end() > t[len(t)-1]-1 { // a second of grace for a late frame
			keep = append(keep, sg)
		}
	}
	m.segs = keep
	m.active.Store(len(keep) > 0)
}

// cut ends the segments of file ("" the streamed ones) at t; it reports
// whether one was still playing.
func (m *mixed) cut(file string, t float64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	cut := false
	for i, sg := range m.segs {
		if sg.file != file || sg.end() <= t {
			continue
		}
		n := max(int((t-sg.start)*float64(sg.rate)), 0)
		m.segs[i].pcm = sg.pcm[:n]
		cut = true
	}
	return cut
}

// clock is the switch's sample clock in seconds.
func (s *Switch) clock() float64 { return time.Since(s.epoch).Seconds() }

// Loopback links a and b as mod_loopback's legs: each hears what the other
// sends (other_loopback_leg_uuid names the other).
func (s *Switch) Loopback(a, b *Call) {
	a.mu.Lock()
	a.peer = b
	a.mu.Unlock()
	b.mu.Lock()
	b.peer = a
	b.mu.Unlock()
	a.setVar("other_loopback_leg_uuid", b.UUID)
	b.setVar("other_loopback_leg_uuid", a.UUID)
}

// Bridge bridges a and b: each writes what the other reads; bridge_uuid and
// signal_bond name each other (and stay set after Unbridge, as on the real
// switch); CHANNEL_BRIDGE fires on a.
func (s *Switch) Bridge(a, b *Call) {
	a.mu.Lock()
	a.bridged = b
	a.mu.Unlock()
	b.mu.Lock()
	b.bridged = a
	b.mu.Unlock()
	for _, kv := range [][3]*Call{{a, b}, {b, a}} {
		kv[0].setVar("bridge_uuid", kv[1].UUID)
		kv[0].setVar("signal_bond", kv[1].UUID)
	}
	s.bridgeEvent("CHANNEL_BRIDGE", a, b)
}

// Unbridge ends a's bridge (CHANNEL_UNBRIDGE); the variables stay.
func (s *Switch) Unbridge(a *Call) {
	a.mu.Lock()
	b := a.bridged
	a.bridged = nil
	a.mu.Unlock()
	if b == nil {
		return
	}
	b.mu.Lock()
	b.bridged = nil
	b.mu.Unlock()
	s.bridgeEvent("CHANNEL_UNBRIDGE", a, b)
}

func (s *Switch) bridgeEvent(name string, a, b *Call) {
	e := s.coreHeaders(name, "switch_ivr_bridge.c", "audio_bridge_on_exchange_media", 854)
	a.channelHeaders(e, "CS_EXCHANGE_MEDIA", "ACTIVE", 5, "")
	e.add("Bridge-A-Unique-ID", a.UUID)
	e.add("Bridge-B-Unique-ID", b.UUID)
	s.broadcast(e)
}

// AnswerBridged places a call as the dist dialplan's extension 9400 does:
// caller (loopback a-leg, sends CallerHz) ~ B (the channel a rule forks)
// == C ~ callee (sends CalleeHz), B bridged to C. It returns B, C, caller
// and callee; their answers and the bridge fire as the switch fires them.
func (s *Switch) AnswerBridged(o CallOptions, callerHz, calleeHz float64) (b, c, caller, callee *Call) {
	base := o
	caller = s.Answer(CallOptions{Name: "loopback/" + nameOr(o.Dest, "2000") + "-a", Dest: o.Dest, CallerID: o.CallerID,
		Direction: "outbound", Rate: o.Rate, WriteHz: callerHz, ReadHz: 1, Vars: o.Vars})
	base.Name = "loopback/" + nameOr(o.Dest, "2000") + "-b"
	base.WriteHz = 1
	b = s.Answer(base)
	s.Loopback(caller, b)
	callee = s.Answer(CallOptions{Name: "loopback/" + nameOr(o.Dest, "2000") + "1-b", Dest: o.Dest, Direction: "inbound", Rate: o.Rate,
		WriteHz: calleeHz, ReadHz: 1})
	c = s.Answer(CallOptions{Name: "loopback/" + nameOr(o.Dest, "2000") + "1-a", Dest: o.Dest, Direction: "outbound", Rate: o.Rate, ReadHz: 1, WriteHz: 1})
	s.Loopback(c, callee)
	s.Bridge(b, c)
	return b, c, caller, callee
}

func nameOr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// frame fills read and write (what the channel hears, what it writes before
// anything is mixed in) at times t.
func (c *Call) frame(t []float64, read, write []float64) {
	c.mu.Lock()
	peer, bridged := c.peer, c.bridged
	c.mu.Unlock()
	if peer != nil {
		peer.sends(t, read, 0)
	} else {
		c.tone(t, c.opts.ReadHz, c.muteRead.Load(), read)
	}
	if write != nil {
		if bridged != nil {
			bridged.hears(t, write, 0)
		} else {
			c.tone(t, c.opts.WriteHz, c.muteWrite.Load(), write)
		}
	}
}

// maxDepth bounds a chain of links (a loop of bridges would not end).
const maxDepth = 8

// hears adds what c hears at t to out.
func (c *Call) hears(t []float64, out []float64, depth int) {
	if depth > maxDepth {
		return
	}
	c.mu.Lock()
	peer := c.peer
	c.mu.Unlock()
	if peer != nil {
		peer.sends(t, out, depth+1)
		return
	}
	c.tone(t, c.opts.ReadHz, c.muteRead.Load(), out)
}

// sends adds what c sends to its far end at t (its write and what is mixed
// into it) to out.
func (c *Call) sends(t []float64, out []float64, depth int) {
	if depth > maxDepth {
		return
	}
	c.mu.Lock()
	bridged := c.bridged
	c.mu.Unlock()
	if bridged != nil {
		bridged.hears(t, out, depth+1)
	} else {
		c.tone(t, c.opts.WriteHz, c.muteWrite.Load(), out)
	}
	c.mix.at(t, out)
}

// tone adds a test tone (amplitude 8000; hz 1 is none: silence) to out.
func (c *Call) tone(t []float64, hz float64, muted bool, out []float64) {
	if muted || hz <= 1 {
		return
	}
	for i, x := range t {
		out[i] += 8000 * math.Sin(2*math.Pi*hz*x)
	}
}

// playFile is what a module does with a playAudio/streamAudio message: the
// audio into a file of the temp dir, named by the module's counter and
// the rate's extension (.r8, .r16; an unsupported rate is .r16, as
// drachtio's does). It returns the event's body.
func (s *Switch) playFile(owner string, audio []byte, rate int, typeKey string, typ string) string {
	ext := ".r16"
	if rate == 8000 {
		ext = ".r8"
	}
	path := fmt.Sprintf("%s/%s_%d.tmp%s", TempDir, owner, s.files.count.Add(1)-1, ext)
	pcm := make([]int16, len(audio)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(audio[2*i:]))
	}
	fileRate := 16000
	if ext == ".r8" {
		fileRate = 8000
	}
	s.files.put(path, audioFile{pcm: pcm, rate: fileRate, owner: owner})
	body, _ := json.Marshal(struct {
		Type string `json:"-"`
		Rate int    `json:"sampleRate"`
		File string `json:"file"`
	}{Rate: rate, File: path})
	return `{"` + typeKey + `":"` + typ + `",` + string(body[1:])
}

// playAudio handles drachtio's playAudio from a fork's server.
func (b *bug) playAudio(data json.RawMessage) {
	var d struct {
		Type    string `json:"audioContentType"`
		Rate    int    `json:"sampleRate"`
		Content string `json:"audioContent"`
	}
	if json.Unmarshal(data, &d) != nil || d.Type != "raw" {
		return
	}
	audio, err := base64.StdEncoding.DecodeString(d.Content)
	if err != nil {
		return
	}
	b.call.customEvent("mod_audio_fork::play_audio", b.call.sw.playFile(b.call.UUID, audio, d.Rate, "audioContentType", "raw"))
}

// displace is the uuid_displace api.
func (s *Switch) displace(args string) string {
	f := strings.Fields(args)
	if len(f) < 3 {
		return "-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n"
	}
	c := s.Call(f[0])
	if c == nil {
		return "-ERR No such channel!\n"
	}
	file := f[2]
	switch f[1] {
	case "start":
		a, ok := s.files.get(file)
		if !ok {
			return "-ERR Cannot displace session!\n"
		}
		// From the next frame: the clock rounded up to the frame.
		now := s.clock()
		frame := s.cadence().Seconds()
		start := math.Ceil(now/frame) * frame
		c.mix.add(segment{start: start, pcm: a.pcm, rate: a.rate, file: file})
		c.bugEvent("MEDIA_BUG_START", file)
		end := time.Duration((start + float64(len(a.pcm))/float64(a.rate) + frame - now) * float64(time.Second))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-time.After(end):
			case <-s.ctx.Done():
				return
			}
			if c.mix.ended(file) && s.Call(c.UUID) != nil {
				c.bugEvent("MEDIA_BUG_STOP", file)
			}
		}()
		return "+OK Success\n"
	case "stop":
		if !c.mix.cut(file, s.clock()) {
			return "-ERR Cannot stop displace session!\n"
		}
		c.mix.forget(file)
		c.bugEvent("MEDIA_BUG_STOP", file)
		return "+OK Success\n"
	}
	return "-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n"
}

// ended reports whether file played to its end (false when it was stopped,
// which fired its stop already), and forgets it.
func (m *mixed) ended(file string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sg := range m.segs {
		if sg.file == file {
			return !strings.HasPrefix(sg.file, "\x00")
		}
	}
	return false
}

// forget marks file's segments stopped (their stop has fired).
func (m *mixed) forget(file string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.segs {
		if m.segs[i].file == file {
			m.segs[i].file = "\x00" + file
		}
	}
}

func (c *Call) bugEvent(name, file string) {
	s := c.sw
	e := s.coreHeaders(name, "switch_core_media_bug.c", "switch_core_media_bug_add", 1014)
	e.add("Media-Bug-Function", "displace")
	e.add("Media-Bug-Target", file)
	c.channelHeaders(e, "CS_EXCHANGE_MEDIA", "ACTIVE", 5, "")
	s.broadcast(e)
}

// stream is jambonz's bidirectional buffer of a bug: what its server sent,
// mixed into the channel's write, and the marks in it.
type stream struct {
	mu      sync.Mutex
	end     float64 // where the buffered audio ends (seconds on the clock)
	primed  bool    // its first prebuffer (160 ms) has been
	pending []jmark
	rate    int
	held    []int16 // short of the prebuffer: not playing yet
}

type jmark struct {
	name string
	at   float64 // its place in the buffer; 0: in front of the next audio
}

// streamIn takes a binary frame from the server of a bidirectional bug.
func (b *bug) streamIn(pcm []byte) {
	st := b.bidi
	c := b.call
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := 0; i+1 < len(pcm); i += 2 {
		st.held = append(st.held, int16(binary.LittleEndian.Uint16(pcm[i:])))
	}
	need := st.rate * 80 / 1000
	if !st.primed {
		need *= 2
	}
	if len(st.held) < need {
		return
	}
	st.primed = true
	now := c.sw.clock()
	start := max(st.end, now)
	for i := range st.pending {
		if st.pending[i].at == 0 {
			st.pending[i].at = start
		}
	}
	c.mix.add(segment{start: start, pcm: st.held, rate: st.rate})
	st.end = start + float64(len(st.held))/float64(st.rate)
	st.held = nil
}

// streamMark takes {"type":"mark"} from the server: placed after the audio
// sent so far.
func (b *bug) streamMark(name string) {
	st := b.bidi
	st.mu.Lock()
	defer st.mu.Unlock()
	at := st.end
	if len(st.held) > 0 {
		at = 0 // in front of the next audio that leaves the prebuffer
	}
	st.pending = append(st.pending, jmark{name: name, at: at})
}

// streamKill is killAudio: the buffer emptied, every pending mark cleared.
func (b *bug) streamKill() {
	st := b.bidi
	c := b.call
	st.mu.Lock()
	marks := st.pending
	st.pending = nil
	now := c.sw.clock()
	st.end = now
	st.mu.Unlock()
	c.mix.cut("", now)
	for _, m := range marks {
		b.write(1, []byte(`{"type": "mark", "data": {"name":"`+m.name+`", "event": "cleared"}}`))
	}
}

// streamTick echoes the marks whose audio has played (each frame).
func (b *bug) streamTick() {
	st := b.bidi
	now := b.call.sw.clock()
	st.mu.Lock()
	var done []string
	keep := st.pending[:0]
	for _, m := range st.pending {
		if (m.at != 0 && m.at <= now) || (m.at == 0 && len(st.held) == 0 && st.end <= now) {
			done = append(done, m.name)
			continue
		}
		keep = append(keep, m)
	}
	st.pending = keep
	st.mu.Unlock()
	for _, n := range done {
		b.write(1, []byte(`{"type": "mark", "data": {"name":"`+n+`", "event": "playout"}}`))
	}
}
