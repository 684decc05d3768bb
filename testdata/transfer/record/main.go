// Command record records, on a real FreeSWITCH (the dist build of
// ../shared/freeswitch/dist, its dialplan), what happens to mod_audio_fork's
// media bug when the forked channel is transferred, bridged elsewhere or
// replaced: every ESL event of the calls (plain, as sent), the commands and
// their replies, `uuid_buglist` of the forked channels before and after, and
// what reaches a WebSocket server standing in for mediafork's ingest (each
// message with its arrival time, size and the tones of each channel).
//
//	go run ./testdata/transfer/record -esl 127.0.0.1:8021 -out testdata/transfer
//
// It places loopback calls only, and hangs up every call it placed.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"crypto/rand"

	"github.com/gorilla/websocket"
)

func main() {
	eslAddr := flag.String("esl", "127.0.0.1:8021", "the switch's event socket")
	password := flag.String("password", "ClueCon", "its password")
	out := flag.String("out", "testdata/transfer", "where the recordings go")
	only := flag.String("only", "", "run only this scenario")
	flag.Parse()
	rec := &recorder{out: *out}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	rec.wsAddr = ln.Addr().String()
	go http.Serve(ln, http.HandlerFunc(rec.serveWS))
	for _, sc := range scenarios {
		if *only != "" && sc.name != *only {
			continue
		}
		c, err := dial(*eslAddr, *password)
		if err != nil {
			log.Fatal(err)
		}
		rec.begin(sc.name, c)
		sc.run(rec)
		time.Sleep(500 * time.Millisecond)
		rec.end()
		c.close()
	}
}

// recorder keeps one scenario's timeline.
type recorder struct {
	out    string
	wsAddr string

	mu      sync.Mutex
	name    string
	start   time.Time
	esl     *esl
	lines   []string
	events  []string // raw events of the scenario's channels
	uuids   map[string]bool
	conns   int
	placed  []string
	closing bool
}

func (r *recorder) begin(name string, c *esl) {
	r.mu.Lock()
	r.name, r.start, r.esl, r.lines, r.events, r.uuids, r.conns, r.placed = name, time.Now(), c, nil, nil, map[string]bool{}, 0, nil
	r.mu.Unlock()
	c.onEvent = r.event
	r.note("scenario %s on FreeSWITCH %s", name, strings.TrimSpace(c.api("version")))
	r.cmd("event plain ALL")
}

func (r *recorder) end() {
	for _, u := range r.placed {
		r.esl.api("uuid_kill " + u)
	}
	time.Sleep(300 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	dir := filepath.Join(r.out, r.name)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "timeline.txt"), []byte(strings.Join(r.lines, "\n")+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "events.plain.txt"), []byte(strings.Join(r.events, "")), 0o644)
	log.Printf("%s: %d lines, %d events", r.name, len(r.lines), len(r.events))
}

func (r *recorder) ms() string {
	return fmt.Sprintf("%9.1fms", float64(time.Since(r.start).Microseconds())/1000)
}

func (r *recorder) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, r.ms()+" "+fmt.Sprintf(format, args...))
}

// cmd runs an api command (or an ESL command) and notes it with its reply.
func (r *recorder) cmd(line string) string {
	var reply string
	if strings.HasPrefix(line, "event ") {
		reply = r.esl.command(line)
	} else {
		reply = r.esl.api(line)
	}
	r.note("CMD   %s\n           -> %s", line, strings.ReplaceAll(strings.TrimSpace(reply), "\n", "\n              "))
	return strings.TrimSpace(reply)
}

func (r *recorder) watch(uuids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range uuids {
		if u != "" {
			r.uuids[u] = true
		}
	}
}

// event keeps the events of the scenario's channels: raw, and one line each.
func (r *recorder) event(raw string, h map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := h["Event-Name"]
	if name == "CUSTOM" {
		name += " " + h["Event-Subclass"]
	}
	uuid := h["Unique-ID"]
	other := h["Other-Leg-Unique-ID"]
	mine := r.uuids[uuid] || r.uuids[other] || r.uuids[h["Old-Unique-ID"]]
	if !mine {
		return
	}
	if keepRaw[h["Event-Name"]] {
		r.events = append(r.events, raw)
	}
	extra := []string{}
	for _, k := range []string{"Channel-Name", "Old-Unique-ID", "Channel-State", "Channel-Call-State", "Other-Leg-Unique-ID", "Application", "Application-Data", "Hangup-Cause", "Bridge-A-Unique-ID", "Bridge-B-Unique-ID", "variable_transfer_history", "variable_intercepted_by", "variable_signal_bond", "variable_mediafork_test"} {
		if v := h[k]; v != "" {
			extra = append(extra, k+"="+v)
		}
	}
	r.lines = append(r.lines, fmt.Sprintf("%s EVENT %s %s %s", r.ms(), name, r.short(uuid), strings.Join(extra, " ")))
}

// keepRaw are the events kept byte for byte (every event of the calls has
// its line in the timeline): what a media bug and mediafork see of a
// transfer.
var keepRaw = map[string]bool{"CHANNEL_UUID": true, "MEDIA_BUG_START": true, "MEDIA_BUG_STOP": true, "CHANNEL_BRIDGE": true,
	"CHANNEL_UNBRIDGE": true, "CHANNEL_HANGUP_COMPLETE": true, "CUSTOM": true}

// short names a uuid by the call it belongs to.
func (r *recorder) short(u string) string {
	if len(u) > 8 {
		return u[:8]
	}
	return u
}

var upgrader = websocket.Upgrader{Subprotocols: []string{"audio.drachtio.org"}, CheckOrigin: func(*http.Request) bool { return true }}

// serveWS is the stand-in ingest: one line per message (arrival, size, the
// level and tone of each channel) and one for the close.
func (r *recorder) serveWS(w http.ResponseWriter, req *http.Request) {
	c, err := upgrader.Upgrade(w, req, nil)
	if err != nil {
		return
	}
	defer c.Close()
	r.mu.Lock()
	r.conns++
	id := fmt.Sprintf("ws%d%s", r.conns, req.URL.Path)
	r.mu.Unlock()
	r.note("WS    %s connected (%s)", id, req.URL.RawQuery)
	chans := 2
	if strings.Contains(req.URL.RawQuery, "mono") {
		chans = 1
	}
	n := 0
	for {
		mt, p, err := c.ReadMessage()
		if err != nil {
			r.note("WS    %s closed: %v", id, err)
			return
		}
		n++
		if mt == websocket.TextMessage {
			r.note("WS    %s TEXT %q", id, p)
			continue
		}
		r.note("WS    %s BIN #%d %d bytes %s", id, n, len(p), tones(p, chans))
	}
}

// tones describes each channel of L16 PCM: RMS and the share of 1000 Hz and
// 440 Hz in its energy.
func tones(p []byte, chans int) string {
	var parts []string
	for ch := 0; ch < chans; ch++ {
		var x []float64
		for i := 2 * ch; i+1 < len(p); i += 2 * chans {
			x = append(x, float64(int16(binary.LittleEndian.Uint16(p[i:]))))
		}
		var e float64
		for _, v := range x {
			e += v * v
		}
		rms := 0.0
		if len(x) > 0 {
			rms = math.Sqrt(e / float64(len(x)))
		}
		parts = append(parts, fmt.Sprintf("ch%d[rms=%5.0f 1000Hz=%.2f 440Hz=%.2f]", ch, rms, share(x, 1000), share(x, 440)))
	}
	return strings.Join(parts, " ")
}

func share(x []float64, hz float64) float64 {
	w := 2 * math.Pi * hz / 8000
	coeff := 2 * math.Cos(w)
	var s1, s2, energy float64
	for _, v := range x {
		energy += v * v
		s1, s2 = v+coeff*s1-s2, s1
	}
	if energy == 0 {
		return 0
	}
	return 2 * (s1*s1 + s2*s2 - coeff*s1*s2) / (float64(len(x)) * energy)
}

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// originate places loopback/ext with the a-leg running 9001 (1000 Hz) and
// returns the a-leg's and the b-leg's uuids.
func (r *recorder) originate(ext string) (a, b string) {
	a = newUUID()
	r.watch(a)
	r.placed = append(r.placed, a)
	r.cmd(fmt.Sprintf("originate {origination_uuid=%s,mediafork_test=%s}loopback/%s/default 9001 XML default", a, r.name, ext))
	b = r.getvar(a, "other_loopback_leg_uuid")
	r.watch(b)
	r.placed = append(r.placed, b)
	return a, b
}

func (r *recorder) getvar(u, name string) string {
	for i := 0; i < 50; i++ {
		if v := strings.TrimSpace(r.esl.api("uuid_getvar " + u + " " + name)); v != "" && v != "_undef_" && !strings.HasPrefix(v, "-ERR") {
			r.note("VAR   %s %s = %s", r.short(u), name, v)
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.note("VAR   %s %s unset", r.short(u), name)
	return ""
}

func (r *recorder) fork(u, path string) {
	r.cmd(fmt.Sprintf("uuid_audio_fork %s start ws://%s/%s stereo 8000 mediafork", u, r.wsAddr, path))
}

func (r *recorder) bugs(u string) { r.cmd("uuid_buglist " + u) }

func (r *recorder) alive(u string) { r.cmd("uuid_exists " + u) }

type scenario struct {
	name string
	run  func(r *recorder)
}

var scenarios = []scenario{
	{"uuid_transfer", func(r *recorder) {
		// The forked b-leg of a 9000 call (sends 440 Hz) is transferred to 9001
		// (sends 1000 Hz): the channel stays, its dialplan starts over.
		a, b := r.originate("9000")
		r.note("call: a=%s (9001: 1000 Hz) b=%s (9000: 440 Hz), fork on b", r.short(a), r.short(b))
		time.Sleep(300 * time.Millisecond)
		r.fork(b, "b")
		time.Sleep(time.Second)
		r.bugs(b)
		r.cmd("uuid_transfer " + b + " 9001 XML default")
		time.Sleep(1500 * time.Millisecond)
		r.bugs(b)
		r.alive(b)
		r.cmd("uuid_audio_fork " + b + " stop mediafork")
	}},
	{"uuid_transfer_both", func(r *recorder) {
		// A 9400 call: 9400-a (1000 Hz) - 9400-b bridged to 9401-a - 9401-b
		// (440 Hz). The bridged 9400-b is forked; its bridge partner 9401-a is
		// transferred to 9000 (440 Hz) with -both: both bridged legs go.
		a, b := r.originate("9400")
		c := r.getvar(b, "bridge_uuid")
		r.watch(c)
		d := r.getvar(c, "other_loopback_leg_uuid")
		r.watch(d)
		r.placed = append(r.placed, c, d)
		r.note("call: a=%s b=%s bridged to c=%s, d=%s; fork on b", r.short(a), r.short(b), r.short(c), r.short(d))
		r.fork(b, "b")
		time.Sleep(time.Second)
		r.bugs(b)
		r.cmd("uuid_transfer " + c + " -both 9000 XML default")
		time.Sleep(1500 * time.Millisecond)
		r.bugs(b)
		r.alive(b)
		r.alive(c)
	}},
	{"uuid_bridge", func(r *recorder) {
		// p: a 9300 call, its b-leg parked (silent). q: a 9000 call, its b-leg
		// sending 440 Hz. Both b-legs forked; then uuid_bridge pb qb: each
		// leaves what it ran and they are bridged to each other.
		pa, pb := r.originate("9300")
		qa, qb := r.originate("9000")
		r.note("p: a=%s b=%s (parked); q: a=%s b=%s (440 Hz); forks on pb and qb", r.short(pa), r.short(pb), r.short(qa), r.short(qb))
		time.Sleep(300 * time.Millisecond)
		r.fork(pb, "pb")
		r.fork(qb, "qb")
		time.Sleep(time.Second)
		r.cmd("uuid_bridge " + pb + " " + qb)
		time.Sleep(1500 * time.Millisecond)
		r.bugs(pb)
		r.bugs(qb)
		r.alive(pb)
		r.alive(qb)
	}},
	{"att_xfer", func(r *recorder) {
		// A 9400 call: the transferee 9400-b is bridged to the transferor
		// 9401-a. The transferor runs att_xfer to a new loopback/9000 (the
		// target, 440 Hz); then the transferor hangs up, which completes the
		// transfer: the transferee is bridged to the target. Forks on the
		// transferee and on the transferor.
		a, b := r.originate("9400")
		c := r.getvar(b, "bridge_uuid")
		r.watch(c)
		d := r.getvar(c, "other_loopback_leg_uuid")
		r.watch(d)
		r.placed = append(r.placed, c, d)
		r.note("call: a=%s b=%s (transferee) bridged to c=%s (transferor), d=%s; forks on b and c", r.short(a), r.short(b), r.short(c), r.short(d))
		r.fork(b, "b")
		r.fork(c, "c")
		// The transferee waits parked while the transferor consults (the
		// dialplan's bridge would otherwise end, and its call with it).
		r.cmd("uuid_setvar " + b + " park_after_bridge true")
		time.Sleep(time.Second)
		r.cmd("uuid_transfer " + c + " att_xfer:loopback/9000/default/XML inline")
		time.Sleep(1500 * time.Millisecond)
		target := r.getvar(c, "bridge_uuid")
		r.watch(target)
		if target != "" {
			r.placed = append(r.placed, target)
		}
		r.bugs(b)
		r.bugs(c)
		r.cmd("uuid_kill " + c)
		time.Sleep(1500 * time.Millisecond)
		// Loopback legs do not complete it by themselves (the transferee and
		// the target both stay parked): it is completed as the switch does,
		// by bridging the transferee to the target.
		if target != "" {
			r.cmd("uuid_bridge " + b + " " + target)
		}
		time.Sleep(1500 * time.Millisecond)
		r.getvar(b, "bridge_uuid")
		r.bugs(b)
		r.alive(b)
	}},
	{"intercept", func(r *recorder) {
		// A 9400 call: 9400-b bridged to 9401-a. A new 9300 call's b-leg x
		// intercepts 9401-a: x takes its place in the bridge with 9400-b and
		// 9401-a is hung up (replaced). Forks on 9400-b (whose partner is
		// replaced) and 9401-a (the replaced channel).
		a, b := r.originate("9400")
		c := r.getvar(b, "bridge_uuid")
		r.watch(c)
		d := r.getvar(c, "other_loopback_leg_uuid")
		r.watch(d)
		r.placed = append(r.placed, c, d)
		xa, x := r.originate("9300")
		r.note("call: a=%s b=%s bridged to c=%s, d=%s; x=%s (parked, a=%s) intercepts c; forks on b and c", r.short(a), r.short(b), r.short(c), r.short(d), r.short(x), r.short(xa))
		r.fork(b, "b")
		r.fork(c, "c")
		time.Sleep(time.Second)
		r.cmd("uuid_transfer " + x + " intercept:" + c + " inline")
		time.Sleep(1500 * time.Millisecond)
		r.getvar(b, "bridge_uuid")
		r.bugs(b)
		r.alive(b)
		r.alive(c)
	}},
}

// esl is a minimal inbound event socket client that hands every event,
// byte for byte, to onEvent.
type esl struct {
	conn    net.Conn
	rd      *bufio.Reader
	mu      sync.Mutex
	replies chan string
	onEvent func(raw string, h map[string]string)
}

func dial(addr, password string) (*esl, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	e := &esl{conn: conn, rd: bufio.NewReaderSize(conn, 1<<20), replies: make(chan string, 1), onEvent: func(string, map[string]string) {}}
	if _, _, _, err := e.read(); err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "auth %s\n\n", password)
	if _, h, _, err := e.read(); err != nil || !strings.HasPrefix(h["Reply-Text"], "+OK") {
		return nil, fmt.Errorf("auth: %v %v", h, err)
	}
	go e.loop()
	return e, nil
}

func (e *esl) close() { e.conn.Close() }

func (e *esl) loop() {
	for {
		raw, h, body, err := e.read()
		if err != nil {
			return
		}
		switch h["Content-Type"] {
		case "command/reply":
			e.replies <- h["Reply-Text"]
		case "api/response":
			e.replies <- body
		case "text/event-plain":
			eh := parseHeaders(body)
			e.onEvent(raw, eh)
		}
	}
}

func (e *esl) read() (raw string, h map[string]string, body string, err error) {
	var head strings.Builder
	h = map[string]string{}
	for {
		line, err := e.rd.ReadString('\n')
		if err != nil {
			return "", nil, "", err
		}
		head.WriteString(line)
		line = strings.TrimRight(line, "\n")
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ": ")
		h[k] = v
	}
	if n, _ := strconv.Atoi(h["Content-Length"]); n > 0 {
		b := make([]byte, n)
		if _, err := io.ReadFull(e.rd, b); err != nil {
			return "", nil, "", err
		}
		body = string(b)
	}
	return head.String() + body, h, body, nil
}

// parseHeaders reads an event-plain body's headers, URL-decoded.
func parseHeaders(body string) map[string]string {
	h := map[string]string{}
	head, _, _ := strings.Cut(body, "\n\n")
	for _, line := range strings.Split(head, "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		if d, err := urlDecode(v); err == nil {
			v = d
		}
		h[k] = v
	}
	return h
}

func urlDecode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", err
			}
			b.WriteByte(byte(n))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

func (e *esl) command(line string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.conn, "%s\n\n", line)
	select {
	case r := <-e.replies:
		return r
	case <-time.After(10 * time.Second):
		return "(no reply)"
	}
}

func (e *esl) api(line string) string { return e.command("api " + line) }

var _ = sort.Strings
