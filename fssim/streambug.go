package fssim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// mod_audio_stream (amigniter, ec2a781) as recorded in
// ../shared/freeswitch/captures/audio_stream: its API, its CUSTOM events and
// its one stream per channel.

// Module names for SetModules and module_exists.
const (
	ModAudioFork   = "mod_audio_fork"
	ModAudioStream = "mod_audio_stream"
)

// streamUsage is printed for no or too few arguments (s17).
const streamUsage = "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] [wss-url | path] [mono | mixed | stereo] [8000 | 16000] [metadata]\n"

const (
	streamOK   = "+OK Success\n"
	streamFail = "-ERR Operation Failed\n"
	// noReply is what the event socket answers for an api that wrote nothing
	// (a mix type in the wrong case, s17).
	noReply = "-ERR no reply\n"
)

// SeparateString splits a command line as FreeSWITCH's switch_separate_string
// does with a space: into at most max fields, the last one the rest of the
// line; paired single quotes group and are removed, backslash escapes are
// processed, leading and trailing spaces trimmed (s06b, s06c, s08b, s12).
func SeparateString(s string, max int) []string {
	var fields []string
	inQuotes := false
	start := -1
	for i := 0; i < len(s) && (len(fields) < max || start >= 0); i++ {
		if start < 0 {
			if len(fields) == max {
				break
			}
			start = i
			if len(fields) == max-1 {
				break // the last field is the rest of the line
			}
		}
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '\'' && (inQuotes || strings.IndexByte(s[i+1:], '\'') >= 0):
			inQuotes = !inQuotes
		case c == ' ' && !inQuotes:
			fields = append(fields, s[start:i])
			start = -1
		}
	}
	if start >= 0 {
		fields = append(fields, s[start:])
	}
	for i, f := range fields {
		fields[i] = cleanupSeparated(f)
	}
	return fields
}

// cleanupSeparated is FreeSWITCH's cleanup_separated_string.
func cleanupSeparated(s string) string {
	s = strings.TrimLeft(s, " ")
	out := make([]byte, 0, len(s))
	end := 0
	inQuotes := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			e := s[i+1]
			u := map[byte]byte{'n': '\n', 'r': '\r', 't': '\t', 's': ' '}[e]
			if e == '\'' || e == '"' || e == ' ' || e == '\\' || u != 0 {
				if u == 0 {
					u = e
				}
				i++
				out = append(out, u)
				end = len(out)
				continue
			}
		}
		if c == '\'' && (inQuotes || strings.IndexByte(s[i+1:], '\'') >= 0) {
			if inQuotes = !inQuotes; inQuotes {
				end = len(out)
			}
			continue
		}
		out = append(out, c)
		if c != ' ' || inQuotes {
			end = len(out)
		}
	}
	return string(out[:end])
}

// SetModules sets which modules are loaded (module_exists answers for them;
// the api of a module not loaded is "Command not found"). Not called: every
// module is loaded.
func (s *Switch) SetModules(names ...string) {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	s.mu.Lock()
	s.modules = m
	s.mu.Unlock()
}

// ModuleLoaded reports whether a module is loaded.
func (s *Switch) ModuleLoaded(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modules == nil || s.modules[name]
}

// streamBug is mod_audio_stream's one media bug on a channel and its WebSocket.
type streamBug struct {
	call     *Call
	mix      string
	rate     int
	url      string
	metadata string

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	as           *AudioStream
	paused       atomic.Bool
	cleared      atomic.Bool // stop or hangup: callbacks cleared, no more events
	disconnected atomic.Bool // the server closed: no more audio, the bug stays
	sent         atomic.Uint64
	played       atomic.Int64  // streamAudio files so far
	readDone     chan struct{} // closed when the connection has ended
}

// audioStream is the uuid_audio_stream api, as mod_audio_stream answers it.
func (s *Switch) audioStream(args string) string {
	f := SeparateString(args, 6)
	if len(f) < 2 || (strings.EqualFold(f[1], "start") && len(f) < 4) {
		return streamUsage
	}
	c := s.Call(f[0])
	if c == nil {
		return streamFail // "Error locating session"
	}
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	c.mu.Lock()
	b := c.stream
	c.mu.Unlock()
	switch strings.ToLower(f[1]) {
	case "start":
		mix := f[3]
		if mix != "mono" && mix != "mixed" && mix != "stereo" {
			return noReply // "invalid mix type": nothing written
		}
		rate := 8000
		if len(f) > 4 {
			switch f[4] {
			case "8k":
			case "16k":
				rate = 16000
			default:
				rate = atoi(f[4])
			}
		}
		if _, err := parseStreamURL(f[2]); err != nil || rate%8000 != 0 {
			return streamFail // "invalid websocket uri", "invalid sample rate"
		}
		if b != nil {
			return streamFail // "bug already attached!" (s15)
		}
		if rate <= 0 {
			// atoi gave 0 (`abc`): the resampler fails after the WebSocket was
			// opened, which connects and is never closed (s17 conn03).
			s.leakStream(c, f[2])
			return streamFail
		}
		ctx, cancel := context.WithCancel(s.ctx)
		meta := arg(5)
		meta = meta[:min(len(meta), MaxMetadata)] // the module cuts the rest
		b = &streamBug{call: c, mix: mix, rate: rate, url: f[2], metadata: meta, ctx: ctx, cancel: cancel, done: make(chan struct{}), readDone: make(chan struct{})}
		su, _ := parseStreamURL(f[2])
		b.as = newAudioStream(AudioStreamOptions{Metadata: b.metadata, ExtraHeaders: extraHeaders(c.Var("STREAM_EXTRA_HEADERS")), TLS: c.streamTLS(s.TLS, su.host)})
		c.mu.Lock()
		if c.stream != nil {
			c.mu.Unlock()
			cancel()
			return streamFail
		}
		c.stream = b
		c.mu.Unlock()
		s.wg.Add(1)
		go func() { defer s.wg.Done(); b.run() }()
		return streamOK
	case "stop":
		if b == nil || !c.detachStream(b) {
			return streamFail // s08c: a second stop
		}
		b.stop(arg(2), true)
		return streamOK
	case "send_text":
		if b == nil || len(f) < 3 {
			return streamFail
		}
		if !b.disconnected.Load() { // s10: +OK, nothing sent
			b.as.SendText(f[2])
		}
		return streamOK
	case "pause", "resume":
		if b == nil {
			return streamFail
		}
		b.paused.Store(strings.EqualFold(f[1], "pause"))
		return streamOK
	}
	// graceful-shutdown is in the usage but not implemented (s07).
	return streamFail
}

// atoi is C's: the leading digits, 0 for none.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
		if n > 1<<30 {
			break
		}
	}
	return n
}

// extraHeaders parses STREAM_EXTRA_HEADERS: a JSON object whose string values
// become request headers; other values are dropped (s14d).
func extraHeaders(v string) map[string]string {
	if v == "" {
		return nil
	}
	var m map[string]any
	if json.Unmarshal([]byte(v), &m) != nil {
		return nil
	}
	out := map[string]string{}
	for k, x := range m {
		if s, ok := x.(string); ok {
			out[k] = s
		}
	}
	return out
}

// leakStream opens the WebSocket of a start whose resampler failed: it
// connects (a connect event fires), sends nothing and is closed only when the
// switch stops.
func (s *Switch) leakStream(c *Call, url string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		su, _ := parseStreamURL(url)
		as := newAudioStream(AudioStreamOptions{TLS: c.streamTLS(s.TLS, su.host)})
		if as.connect(s.ctx, url) != nil {
			return
		}
		c.streamEvent("connect", `{"status":"connected"}`)
		<-s.ctx.Done()
		as.Close()
	}()
}

// detachStream takes b off the channel; false when it was not on it.
func (c *Call) detachStream(b *streamBug) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != b || b == nil {
		return false
	}
	c.stream = nil
	return true
}

// streamEvent fires mod_audio_stream::<name> with its JSON body, headers as in
// samples/mod_audio_stream__*.plain.txt.
func (c *Call) streamEvent(name, body string) {
	c.moduleEvent("mod_audio_stream.c", 16, "mod_audio_stream::"+name, body)
}

func streamErrorBody(e *StreamError) string {
	type msg struct {
		Code  int    `json:"code"`
		Error string `json:"error"`
	}
	b, _ := json.Marshal(struct {
		Status  string `json:"status"`
		Message msg    `json:"message"`
	}{"error", msg{e.Code, e.Text}})
	return string(b)
}

// run connects while the media bug already captures (what it captures before
// the 101 is queued), then streams a frame every 20 ms until stopped, the
// server closes, or the connection fails.
func (b *streamBug) run() {
	defer close(b.done)
	c := b.call
	connected := make(chan error, 1)
	go func() {
		if c.sw.FailConnects.Add(-1) >= 0 {
			connected <- &StreamError{StreamErrConnectFailed, "Connection refused (system error 111)"}
			return
		}
		c.sw.FailConnects.Store(0)
		connected <- b.as.connect(b.ctx, b.url)
	}()
	channels := 1
	if b.mix == "stereo" {
		channels = 2
	}
	frame := make([]byte, b.rate/50*2*channels)
	tick := time.NewTicker(c.sw.cadence())
	defer tick.Stop()
	lost := make(chan error, 1)
	var n int
	t0 := c.sw.clock()
	for {
		select {
		case <-b.ctx.Done():
			return
		case err := <-connected:
			if err != nil {
				b.fail(err)
				return
			}
			if !b.cleared.Load() {
				c.streamEvent("connect", `{"status":"connected"}`)
			}
			go func() { defer close(b.readDone); lost <- b.read() }()
		case err := <-lost:
			if err != nil {
				b.fail(err)
				return
			}
			// A server close: the bug stays attached, silent, until stop.
		case <-tick.C:
			if b.paused.Load() || b.disconnected.Load() {
				continue
			}
			n = c.fillTone(b.mix, b.rate, frame, c.catchUp(t0, n, b.rate), channels, t0)
			if b.as.Send(frame) == nil {
				b.sent.Add(1)
			}
		}
	}
}

// fail is a libwsc error: the bug is removed, mod_audio_stream::error fires.
func (b *streamBug) fail(err error) {
	b.as.Close()
	if b.cleared.Load() || !b.call.detachStream(b) {
		return
	}
	var se *StreamError
	if !errors.As(err, &se) {
		se = ioError(err)
	}
	b.call.streamEvent("error", streamErrorBody(se))
}

// read handles what the server sends until it closes (nil) or the
// connection fails.
func (b *streamBug) read() error {
	for {
		mt, msg, err := b.as.ReadMessage()
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce):
			// Echoed with the same code and reason (ReadMessage); then TCP ends.
			b.disconnected.Store(true)
			if !b.cleared.Load() {
				type msg struct {
					Code   int    `json:"code"`
					Reason string `json:"reason"`
				}
				body, _ := json.Marshal(struct {
					Status  string `json:"status"`
					Message msg    `json:"message"`
				}{"disconnected", msg{ce.Code, ce.Text}})
				b.call.streamEvent("disconnect", string(body))
			}
			b.as.Conn.SetReadDeadline(time.Now().Add(time.Second))
			for { // until the server closes TCP
				if _, _, _, rerr := b.as.readFrame(); rerr != nil {
					break
				}
			}
			b.as.Close()
			return nil
		case err != nil:
			if b.cleared.Load() {
				return nil
			}
			return err
		case mt == websocket.TextMessage && !b.cleared.Load():
			b.serverText(msg)
		}
	}
}

// serverText: streamAudio with audio it can decode → ::play with data's
// fields in their order, compacted, audioData left out and file added (the
// file is named, not written here, and not played); any other text → ::json
// verbatim (s13).
func (b *streamBug) serverText(msg []byte) {
	if body, ok := b.playBody(msg); ok {
		b.call.streamEvent("play", body)
		return
	}
	b.call.streamEvent("json", string(msg))
}

func (b *streamBug) playBody(msg []byte) (string, bool) {
	var m struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Type != "streamAudio" {
		return "", false
	}
	var keys []string
	vals := map[string]json.RawMessage{}
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		k, _ := t.(string)
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return "", false
		}
		if _, dup := vals[k]; !dup {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	var typ string
	var rate int
	json.Unmarshal(vals["audioDataType"], &typ)
	json.Unmarshal(vals["sampleRate"], &rate)
	ext := map[string]string{"wav": "wav", "mp3": "mp3", "ogg": "ogg", "pcmu": "pcmu", "pcma": "pcma"}[typ]
	if typ == "raw" {
		ext = ""
		if rate > 0 && rate%8000 == 0 && rate <= 64000 {
			ext = "r" + strconv.Itoa(rate/1000)
		}
	}
	if _, ok := vals["audioData"]; !ok || ext == "" {
		return "", false // processMessage logs an error; the text goes out as ::json
	}
	var sb bytes.Buffer
	sb.WriteByte('{')
	for _, k := range keys {
		if k == "audioData" || k == "file" {
			continue
		}
		kb, _ := json.Marshal(k)
		sb.Write(kb)
		sb.WriteByte(':')
		json.Compact(&sb, vals[k])
		sb.WriteByte(',')
	}
	fmt.Fprintf(&sb, `"file":%q}`, fmt.Sprintf("/tmp/%s_%d.tmp.%s", b.call.UUID, b.played.Add(1)-1, ext))
	return sb.String(), true
}

// stop is `uuid_audio_stream stop [text]` or a hangup (closeFrame): the text,
// close 1000 "Normal closure"; stop waits up to 1 s for the server's answer
// (s08d), a hangup does not. No event either way. Without closeFrame (a
// crash) the connection just drops.
func (b *streamBug) stop(text string, wait bool) {
	b.cleared.Store(true)
	defer b.cancel()
	if b.disconnected.Load() {
		return // s10: stop after a server close sends nothing
	}
	if text != "" {
		b.as.SendText(text)
	}
	if b.as.sendClose(websocket.CloseNormalClosure, StreamCloseReason) != nil {
		b.as.Close() // not connected yet
		return
	}
	if wait {
		select {
		case <-b.readDone:
		case <-time.After(time.Second):
		}
		b.as.Close()
		return
	}
	go func() {
		select {
		case <-b.readDone:
		case <-time.After(time.Second):
		}
		b.as.Close()
	}()
}

// crash drops the connection silently.
func (b *streamBug) crash() {
	b.cleared.Store(true)
	b.cancel()
	b.as.Close()
}

// StreamFramesSent is how many audio frames the channel's mod_audio_stream
// bug has sent (0 when none is attached).
func (c *Call) StreamFramesSent() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != nil {
		return c.stream.sent.Load()
	}
	return 0
}

// Streaming reports whether a mod_audio_stream bug is attached.
func (c *Call) Streaming() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream != nil
}

// DropStream cuts the stream's TCP connection without a close frame, as a
// network fault would; the module reports mod_audio_stream::error code 1 and
// removes the bug.
func (c *Call) DropStream() bool {
	c.mu.Lock()
	b := c.stream
	c.mu.Unlock()
	if b == nil {
		return false
	}
	b.as.wmu.Lock()
	defer b.as.wmu.Unlock()
	if b.as.Conn == nil {
		return false
	}
	b.as.Conn.Close()
	return true
}
