package fssim

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// CallOptions describe a simulated call. Zero values get the defaults shown.
type CallOptions struct {
	UUID      string            // a new one
	Name      string            // loopback/<Dest>-a
	Dest      string            // 2000
	CallerID  string            // 1000
	Direction string            // inbound
	Context   string            // default
	Rate      int               // channel codec rate, 8000
	ReadHz    float64           // tone FreeSWITCH receives from the far end (RX, left): 440
	WriteHz   float64           // tone it sends to it (TX, right): 1000
	Vars      map[string]string // channel variables (without "variable_")
	// ListedLate leaves the call out of the first `show channels` after its
	// answer: FreeSWITCH writes its channel table behind CHANNEL_ANSWER
	// (about 28 ms later on 1.10.12), so a listing made just after the answer
	// does not have it.
	ListedLate bool
}

// Call is a live simulated channel.
type Call struct {
	UUID, Name string
	opts       CallOptions
	sw         *Switch
	created    time.Time
	answered   time.Time

	muteRead, muteWrite atomic.Bool // a side sending digital silence (one-way audio)
	unlisted            atomic.Bool // left out of the next show channels (ListedLate)

	mu       sync.Mutex
	vars     map[string]string
	varOrder []string
	bugs     map[string]*bug
	stream   *streamBug // mod_audio_stream's one bug
	peer     *Call      // its loopback partner: hears what it sends (talkback.go)
	bridged  *Call      // the channel it is bridged to: writes what that one hears

	mix mixed // audio mixed into what it sends (displaced files, jambonz's stream)
}

// Answer creates an answered call and fires CHANNEL_ANSWER.
func (s *Switch) Answer(o CallOptions) *Call {
	if o.UUID == "" {
		o.UUID = NewUUID()
	}
	if o.Dest == "" {
		o.Dest = "2000"
	}
	if o.CallerID == "" {
		o.CallerID = "1000"
	}
	if o.Direction == "" {
		o.Direction = "inbound"
	}
	if o.Context == "" {
		o.Context = "default"
	}
	if o.Rate == 0 {
		o.Rate = 8000
	}
	if o.ReadHz == 0 {
		o.ReadHz = 440
	}
	if o.WriteHz == 0 {
		o.WriteHz = 1000
	}
	if o.Name == "" {
		o.Name = "loopback/" + o.Dest + "-a"
	}
	now := time.Now()
	c := &Call{UUID: o.UUID, Name: o.Name, opts: o, sw: s, created: now, answered: now,
		vars: map[string]string{}, bugs: map[string]*bug{}}
	c.unlisted.Store(o.ListedLate)
	rate := strconv.Itoa(o.Rate)
	for _, kv := range [][2]string{{"direction", o.Direction}, {"is_outbound", fmt.Sprint(o.Direction == "outbound")},
		{"session_id", "1"}, {"read_codec", "L16"}, {"read_rate", rate}, {"write_codec", "L16"}, {"write_rate", rate},
		{"channel_name", o.Name}, {"uuid", o.UUID}, {"call_uuid", o.UUID}} {
		c.setVar(kv[0], kv[1])
	}
	keys := make([]string, 0, len(o.Vars))
	for k := range o.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.setVar(k, o.Vars[k])
	}
	s.mu.Lock()
	s.calls[c.UUID] = c
	s.mu.Unlock()
	e := s.coreHeaders("CHANNEL_ANSWER", "switch_channel.c", "switch_channel_perform_mark_answered", 3846)
	c.channelHeaders(e, "CS_CONSUME_MEDIA", "DOWN", 7, "")
	s.broadcast(e)
	return c
}

// Hangup ends a call: its forks close (1000, no event), then
// CHANNEL_HANGUP_COMPLETE fires.
func (s *Switch) Hangup(uuid, cause string) {
	s.mu.Lock()
	c := s.calls[uuid]
	delete(s.calls, uuid)
	s.mu.Unlock()
	if c == nil {
		return
	}
	c.stopBugs(true)
	s.files.drop(c.UUID)
	e := s.coreHeaders("CHANNEL_HANGUP_COMPLETE", "switch_core_state_machine.c", "switch_core_session_reporting_state", 946)
	c.setVar("hangup_cause", cause)
	c.channelHeaders(e, "CS_REPORTING", "HANGUP", 11, cause)
	s.broadcast(e)
}

func (c *Call) setVar(name, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.vars[name]; !ok {
		c.varOrder = append(c.varOrder, name)
	}
	c.vars[name] = value
}

// unsetVar removes a channel variable.
func (c *Call) unsetVar(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.vars[name]; !ok {
		return
	}
	delete(c.vars, name)
	for i, n := range c.varOrder {
		if n == name {
			c.varOrder = append(c.varOrder[:i], c.varOrder[i+1:]...)
			break
		}
	}
}

// Var returns a channel variable.

func (c *Call) Var(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vars[name]
}

func (c *Call) lookupVar(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vars[name]
	return v, ok
}

// Bugs lists the names of the media bugs attached.
func (c *Call) Bugs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.bugs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// stopBugs closes every fork: with a close 1000 (hangup) or silently (crash).
func (c *Call) stopBugs(closeFrame bool) {
	c.mu.Lock()
	bugs := c.bugs
	c.bugs = map[string]*bug{}
	stream := c.stream
	c.stream = nil
	c.mu.Unlock()
	for _, b := range bugs {
		b.stop("", closeFrame)
	}
	if stream != nil {
		if closeFrame {
			stream.stop("", false) // s16: close 1000 "Normal closure", no event
		} else {
			stream.crash()
		}
	}
}

func (c *Call) customEvent(subclass, body string) {
	c.moduleEvent("mod_audio_fork.c", 22, subclass, body)
}

// moduleEvent fires a module's CUSTOM event from its responseHandler.
func (c *Call) moduleEvent(file string, line int, subclass, body string) {
	e := c.sw.coreHeaders("CUSTOM", file, "responseHandler", line)
	// The subclass comes first in both modules' events.
	e.headers = append([]header{{"Event-Subclass", subclass}}, e.headers...)
	c.channelHeaders(e, "CS_EXECUTE", "ACTIVE", 4, "")
	e.body = body
	c.sw.broadcast(e)
}

// bug is one mod_audio_fork media bug and its WebSocket.
type bug struct {
	call     *Call
	name     string
	mix      string
	rate     int
	url      string
	metadata string

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	wmu      sync.Mutex // one writer on the WebSocket
	af       *AudioFork
	paused   atomic.Bool
	graceful atomic.Bool
	stopping atomic.Bool
	sent     atomic.Uint64
	bidi     *stream // jambonz's bidirectional streaming; nil: off
}

// audioFork is the uuid_audio_fork api, as mod_audio_fork answers it.
func (s *Switch) audioFork(args string) string {
	f := strings.Split(args, " ")
	usage := "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] [wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] [metadata]\n"
	if s.Jambonz.Load() {
		usage = jambonzUsage
	}
	if len(f) < 2 {
		return usage
	}
	c := s.Call(f[0])
	if c == nil {
		return "-ERR Operation Failed\n"
	}
	// An optional argument starting with { or [ is metadata/text; anything else
	// is the bug name.
	optional := func(from int) (name, text string) {
		name = "audio_fork"
		rest := f[min(from, len(f)):]
		if len(rest) > 0 && !strings.HasPrefix(rest[0], "{") && !strings.HasPrefix(rest[0], "[") {
			name, rest = rest[0], rest[1:]
		}
		return name, strings.Join(rest, " ")
	}
	switch f[1] {
	case "start":
		if len(f) < 5 {
			return usage
		}
		rate, err := parseRate(f[4])
		if err != nil || (f[3] != "mono" && f[3] != "mixed" && f[3] != "stereo") {
			return usage
		}
		name, meta := startOptional(args)
		var bidi *stream
		if s.Jambonz.Load() && len(f) == 10 {
			// <bugname> <metadata> <bidirectionalAudio_enabled>
			// <bidirectionalAudio_stream_enabled> <rate>: positional.
			name, meta = f[5], f[6]
			if back, err := strconv.Atoi(f[9]); err == nil && f[7] == "true" && f[8] == "true" && back > 0 {
				bidi = &stream{rate: back}
			}
		}
		c.mu.Lock()
		if _, dup := c.bugs[name]; dup {
			c.mu.Unlock()
			return "-ERR Operation Failed\n"
		}
		ctx, cancel := context.WithCancel(s.ctx)
		b := &bug{call: c, name: name, mix: f[3], rate: rate, url: f[2], metadata: meta, ctx: ctx, cancel: cancel, done: make(chan struct{}), bidi: bidi}
		c.bugs[name] = b
		c.mu.Unlock()
		s.wg.Add(1)
		go func() { defer s.wg.Done(); b.run() }()
		return "+OK Success\n"
	case "stop":
		name, text := optional(2)
		c.mu.Lock()
		b := c.bugs[name]
		delete(c.bugs, name)
		c.mu.Unlock()
		if b == nil {
			return "-ERR Operation Failed\n"
		}
		b.stop(text, true)
		s.files.drop(c.UUID) // the module deletes its files at stop
		return "+OK Success\n"
	case "stop_play": // jambonz's: the streamed buffer emptied, no event
		name, _ := optional(2)
		c.mu.Lock()
		b := c.bugs[name]
		c.mu.Unlock()
		if b == nil || b.bidi == nil || !s.Jambonz.Load() {
			return usage
		}
		b.streamKill()
		return "+OK Success\n"
	case "send_text", "pause", "resume", "graceful-shutdown":
		name, text := optional(2)
		c.mu.Lock()
		b := c.bugs[name]
		c.mu.Unlock()
		if b == nil {
			return "-ERR Operation Failed\n"
		}
		switch f[1] {
		case "send_text":
			b.write(websocket.TextMessage, []byte(text))
		case "pause":
			b.paused.Store(true)
		case "resume":
			b.paused.Store(false)
		case "graceful-shutdown":
			b.graceful.Store(true)
			b.write(websocket.BinaryMessage, nil)
		}
		return "+OK Success\n"
	}
	return usage
}

// MaxMetadata is the most metadata both modules send: they cut the rest
// (measured on the real switch with 8192 and 8193 bytes).
const MaxMetadata = 8192

// startOptional is a start's bug name and metadata as mod_audio_fork reads
// them (measured on the real switch): the line split by FreeSWITCH's splitter
// into at most 7 fields, so the metadata is the rest of the line after the bug
// name (spaces kept, paired ' removed, \" and the like unescaped); a lone 6th
// field is the metadata when it starts with { or [, else the bug name; a 6th
// field followed by a 7th is the bug name whatever it starts with (t19:
// `{"a": "b c"}` became bug `{"a":` and metadata `"b c"}`). The metadata is
// cut at MaxMetadata bytes.
func startOptional(args string) (name, meta string) {
	f := SeparateString(args, 7)
	name = "audio_fork"
	switch {
	case len(f) == 6 && (strings.HasPrefix(f[5], "{") || strings.HasPrefix(f[5], "[")):
		meta = f[5]
	case len(f) >= 6:
		name = f[5]
		if len(f) == 7 {
			meta = f[6]
		}
	}
	return name, meta[:min(len(meta), MaxMetadata)]
}

func parseRate(s string) (int, error) {
	if strings.HasSuffix(s, "k") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "k"))
		return n * 1000, err
	}
	return strconv.Atoi(s)
}

func (b *bug) write(mt int, data []byte) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.af == nil {
		return errors.New("not connected")
	}
	b.af.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	return b.af.Conn.WriteMessage(mt, data)
}

// run connects and streams 20 ms frames until stopped or the server goes away.
func (b *bug) run() {
	defer close(b.done)
	c := b.call
	host := ""
	if u, err := url.Parse(b.url); err == nil {
		host = u.Hostname()
	}
	o := AudioForkOptions{Metadata: b.metadata,
		BasicUser: c.Var("MOD_AUDIO_BASIC_AUTH_USERNAME"), BasicPassword: c.Var("MOD_AUDIO_BASIC_AUTH_PASSWORD"), TLSConfig: c.forkTLS(c.sw.TLS, host)}
	var af *AudioFork
	var err error
	if c.sw.FailConnects.Add(-1) >= 0 {
		err = errors.New("injected failure")
	} else {
		c.sw.FailConnects.Store(0)
		dctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		af, err = DialAudioFork(dctx, b.url, o)
		cancel()
	}
	if err != nil {
		reason := "Unable to connect"
		var rh tls.RecordHeaderError
		switch {
		case errors.Is(err, errCertificate) || errors.As(err, &rh):
			reason = forkTLSFailure // lws says the same for every TLS failure
		case err.Error() == "HS: PROTOCOL malformed":
			reason = err.Error()
		case af != nil && af.Response != nil && af.Response.StatusCode != http.StatusSwitchingProtocols:
			reason = "HS: ws upgrade response not 101"
		}
		c.mu.Lock()
		if c.bugs[b.name] == b {
			delete(c.bugs, b.name)
		}
		c.mu.Unlock()
		body, _ := json.Marshal(map[string]string{"reason": reason})
		c.customEvent("mod_audio_fork::connect_failed", string(body))
		return
	}
	b.wmu.Lock()
	b.af = af
	b.wmu.Unlock()
	c.customEvent("mod_audio_fork::connect", "")

	lost := make(chan struct{})
	go func() { // what the server sends
		defer close(lost)
		for {
			mt, msg, err := af.Conn.ReadMessage()
			if err != nil {
				return
			}
			switch {
			case mt == websocket.TextMessage:
				b.serverMessage(msg)
			case mt == websocket.BinaryMessage && b.bidi != nil:
				b.streamIn(msg)
			}
		}
	}()
	channels := 1
	if b.mix == "stereo" {
		channels = 2
	}
	frame := make([]byte, b.rate/50*2*channels)
	tick := time.NewTicker(c.sw.cadence())
	defer tick.Stop()
	var n int
	t0 := c.sw.clock()
	for {
		select {
		case <-b.ctx.Done():
			<-lost
			return
		case <-lost:
			if !b.stopping.Load() {
				c.customEvent("mod_audio_fork::disconnect", "")
			}
			b.wmu.Lock()
			af.Conn.Close()
			b.wmu.Unlock()
			return
		case <-tick.C:
		}
		if b.bidi != nil {
			b.streamTick()
		}
		if b.paused.Load() || b.graceful.Load() {
			continue
		}
		n = c.fillTone(b.mix, b.rate, frame, c.catchUp(t0, n, b.rate), channels, t0)
		if b.write(websocket.BinaryMessage, frame) == nil {
			b.sent.Add(1)
		}
	}
}

// Mute makes a side of the call send digital silence from now on (true) or
// its tone again: one-way audio, the classic fault, on demand. read is what
// the channel hears (RX), write what it sends (TX).
func (c *Call) Mute(read, write bool) {
	c.muteRead.Store(read)
	c.muteWrite.Store(write)
}

// fillTone writes one frame of what the call hears and writes from sample n
// on (sample k at t0 + k/rate on the switch's clock): stereo is READ (what
// the channel hears) left, WRITE right; mono is READ; mixed both. On their
// own a call hears ReadHz and writes WriteHz (a muted side is zeros); linked
// (Loopback, Bridge) it hears and writes what its links send, audio mixed
// into them included (talkback.go). Sums are clipped, as the switch does.
func (c *Call) fillTone(mix string, rate int, frame []byte, n, channels int, t0 float64) int {
	samples := len(frame) / 2 / channels
	t := make([]float64, samples)
	for i := range t {
		t[i] = t0 + float64(n+i)/float64(rate)
	}
	read, write := make([]float64, samples), make([]float64, samples)
	if mix == "mono" {
		write = nil
	}
	c.frame(t, read, write)
	for i := 0; i < samples; i++ {
		switch mix {
		case "stereo":
			binary.LittleEndian.PutUint16(frame[4*i:], uint16(clip(read[i])))
			binary.LittleEndian.PutUint16(frame[4*i+2:], uint16(clip(write[i])))
		case "mixed":
			binary.LittleEndian.PutUint16(frame[2*i:], uint16(clip(read[i]+write[i])))
		default:
			binary.LittleEndian.PutUint16(frame[2*i:], uint16(clip(read[i])))
		}
	}
	return n + samples
}

// catchUp is where a bug's next frame starts: sample n, or later when its
// ticks fell behind the switch's clock by more than two frames (a busy
// machine drops ticks): the switch's media clock does not wait, so what a
// fork hears stays on time (the frames in between are lost). Only on a call
// linked to another (bridged, loopback: talk-back's calls, whose monitors
// place what they hear on that clock); a lone call's fork goes on sample by
// sample, late, so that its receivers' tone checks see one continuous tone
// on a busy machine.
func (c *Call) catchUp(t0 float64, n, rate int) int {
	c.mu.Lock()
	linked := c.peer != nil || c.bridged != nil
	c.mu.Unlock()
	if !linked {
		return n
	}
	frame := rate / 50
	if behind := int((c.sw.clock()-t0)*float64(rate)) - n; behind > 2*frame {
		n += (behind/frame - 1) * frame
	}
	return n
}

func clip(x float64) int16 {
	return int16(math.Max(math.MinInt16, math.Min(math.MaxInt16, x)))
}

// serverMessage fires the CUSTOM event mod_audio_fork fires for a server's JSON.
func (b *bug) serverMessage(msg []byte) {
	var m map[string]json.RawMessage
	if json.Unmarshal(msg, &m) != nil {
		return // "could not parse message"
	}
	var typ string
	json.Unmarshal(m["type"], &typ)
	data := string(m["data"])
	switch typ {
	case "", "json":
		var v any
		json.Unmarshal(msg, &v)
		compact, _ := json.Marshal(v)
		b.call.customEvent("mod_audio_fork::json", string(compact))
	case "transcription", "transfer", "error", "disconnect":
		b.call.customEvent("mod_audio_fork::"+typ, data)
	case "killAudio":
		b.call.customEvent("mod_audio_fork::kill_audio", "")
		if b.bidi != nil {
			b.streamKill()
		}
	case "playAudio":
		if b.bidi == nil { // jambonz's streaming ignores it (logs an error)
			b.playAudio(m["data"])
		}
	case "mark":
		var d struct {
			Name string `json:"name"`
		}
		if b.bidi != nil && json.Unmarshal(m["data"], &d) == nil && d.Name != "" {
			b.streamMark(d.Name)
		}
	}
}

// stop is `uuid_audio_fork stop [text]` (close 1000, empty reason) or a hangup.
// After a graceful-shutdown the module sends another empty frame and no close.
func (b *bug) stop(text string, closeFrame bool) {
	b.stopping.Store(true)
	if closeFrame {
		if text != "" {
			b.write(websocket.TextMessage, []byte(text))
		}
		if b.graceful.Load() {
			b.write(websocket.BinaryMessage, nil)
		} else {
			b.wmu.Lock()
			if b.af != nil {
				b.af.Conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			}
			b.wmu.Unlock()
		}
	}
	// Wait briefly for the server's close, as lws does, then let go.
	go func() {
		select {
		case <-b.done:
		case <-time.After(2 * time.Second):
		}
		b.cancel()
		b.wmu.Lock()
		if b.af != nil {
			b.af.Conn.Close()
		}
		b.wmu.Unlock()
	}()
	if !closeFrame {
		b.cancel()
		b.wmu.Lock()
		if b.af != nil {
			b.af.Conn.Close()
		}
		b.wmu.Unlock()
	}
}

// DropMedia cuts a bug's TCP connection without a close frame, as a network
// fault would; the module reports mod_audio_fork::disconnect and keeps the bug.
func (c *Call) DropMedia(bugName string) bool {
	c.mu.Lock()
	b := c.bugs[bugName]
	c.mu.Unlock()
	if b == nil {
		return false
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.af == nil {
		return false
	}
	b.af.Conn.NetConn().Close()
	return true
}

// FramesSent is how many audio frames the bug has sent.
func (c *Call) FramesSent(bugName string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.bugs[bugName]; b != nil {
		return b.sent.Load()
	}
	return 0
}

// bugList is uuid_buglist's answer (testdata/transfer): the media bugs of
// mod_audio_fork by name, as FreeSWITCH lists them.
func (c *Call) bugList() string {
	var b strings.Builder
	b.WriteString("<media-bugs>\n")
	for _, name := range c.Bugs() {
		fmt.Fprintf(&b, " <media-bug>\n  <function>%s</function>\n  <target>N/A</target>\n  <thread-locked>0</thread-locked>\n </media-bug>\n", name)
	}
	b.WriteString("</media-bugs>\n")
	return b.String()
}
