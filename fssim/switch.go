package fssim

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Switch is a simulated FreeSWITCH: an event socket server that speaks the
// recorded protocol, channels with their events, and mod_audio_fork on them.
type Switch struct {
	Password string
	Hostname string
	Cadence  atomic.Int64 // media tick in nanoseconds; 0 is 20 ms
	// FailConnects makes the next n forks fail to connect (connect_failed
	// "Unable to connect") without trying: a fault to inject.
	FailConnects atomic.Int32
	// TLS is what the switch trusts for wss:// forks (the system store or
	// SSL_CERT_FILE); nil: the system roots. Set before the first call.
	TLS *tls.Config
	log *slog.Logger

	coreUUID string
	seq      atomic.Uint64

	ln     net.Listener
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	conns   map[*eslConn]bool
	calls   map[string]*Call
	aliases map[string]string
	modules map[string]bool // loaded modules; nil: all
	logs    []string        // lines written with the `log` api
	apis    []string        // every api command run, as received

	// Jambonz makes mod_audio_fork jambonz's: its usage names the
	// bidirectional arguments, and a fork started with `true true <rate>`
	// takes L16 frames from its server (talkback.go). Set before the first
	// call.
	Jambonz atomic.Bool
	files   talkbackFiles // what the modules wrote for playAudio
	epoch   time.Time     // the switch's media clock starts here
}

// NewSwitch makes a switch that accepts password.
func NewSwitch(password string, log *slog.Logger) *Switch {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Switch{Password: password, Hostname: "fssim", log: log.With("component", "fssim"), coreUUID: NewUUID(),
		ctx: ctx, cancel: cancel, conns: map[*eslConn]bool{}, calls: map[string]*Call{}, aliases: map[string]string{}, epoch: time.Now()}
}

// NewUUID returns a random version-4 UUID, as FreeSWITCH makes them.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Listen starts the event socket on addr (127.0.0.1:0 for any port).
func (s *Switch) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ec := &eslConn{sw: s, c: c, w: bufio.NewWriter(c), subs: map[string]bool{}}
			s.mu.Lock()
			s.conns[ec] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				ec.serve()
				s.mu.Lock()
				delete(s.conns, ec)
				s.mu.Unlock()
			}()
		}
	}()
	return nil
}

// Addr is the event socket's address.
func (s *Switch) Addr() string { return s.ln.Addr().String() }

// Close stops everything: calls hang up, connections close.
func (s *Switch) Close() {
	s.mu.Lock()
	uuids := make([]string, 0, len(s.calls))
	for u := range s.calls {
		uuids = append(uuids, u)
	}
	s.mu.Unlock()
	for _, u := range uuids {
		s.Hangup(u, "SYSTEM_SHUTDOWN")
	}
	if s.ln != nil {
		s.ln.Close()
	}
	s.DropConnections()
	s.cancel()
	s.wg.Wait()
}

// DropConnections cuts every event socket connection without a word (a network
// fault); calls and their media carry on.
func (s *Switch) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.c.Close()
	}
}

// Connections is the number of event socket connections open.
func (s *Switch) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.authed.Load() {
			n++
		}
	}
	return n
}

// crash is FreeSWITCH dying (uuid_audio_fork start without a rate): every
// connection drops and every call is gone, silently.
func (s *Switch) crash() {
	s.log.Warn("segfault: uuid_audio_fork start without a rate")
	s.mu.Lock()
	calls := s.calls
	s.calls = map[string]*Call{}
	s.mu.Unlock()
	for _, c := range calls {
		c.stopBugs(false)
	}
	s.DropConnections()
}

// Logs returns the lines written to the FreeSWITCH log with the `log` api.
func (s *Switch) Logs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logs...)
}

// APICommands returns every api command received, in order.
func (s *Switch) APICommands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.apis...)
}

// Call returns a live call.
func (s *Switch) Call(uuid string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[uuid]
}

// broadcast sends an event to every connection subscribed to it.
func (s *Switch) broadcast(e *event) {
	name, sub := e.get("Event-Name"), e.get("Event-Subclass")
	body := e.plain()
	s.mu.Lock()
	conns := make([]*eslConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		if c.wants(name, sub) {
			c.send(fmt.Sprintf("Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(body), body))
		}
	}
}

// FsCli is an operator typing line in fs_cli: aliases apply (fs_cli sends with
// console_execute), the command runs, its API event fires. It returns what
// fs_cli prints.
func (s *Switch) FsCli(line string) string {
	cmd, args, _ := strings.Cut(strings.TrimSpace(line), " ")
	return s.console(cmd, args, nil)
}

// console runs an api command sent with the header console_execute: true (as
// fs_cli sends every line): an alias is expanded first, and says so; a
// command not found is named with its arguments.
func (s *Switch) console(cmd, args string, from *eslConn) string {
	s.mu.Lock()
	alias, ok := s.aliases[cmd]
	s.mu.Unlock()
	out := ""
	if ok {
		out = fmt.Sprintf("\nExpand Alias [%s]->[%s %s]\n\n", cmd, alias, args)
		cmd, args, _ = strings.Cut(alias+" "+args, " ")
	}
	res := s.api(cmd, args, from)
	if strings.HasSuffix(res, " Command not found!\n") {
		res = fmt.Sprintf("-ERR %s Command not found!\n", strings.TrimSpace(cmd+" "+args))
	}
	return out + res
}

// api runs one api command and fires its API event (after the command, as
// FreeSWITCH does). from is the connection it came on, if any.
func (s *Switch) api(cmd, args string, from *eslConn) string {
	s.mu.Lock()
	s.apis = append(s.apis, strings.TrimSpace(cmd+" "+args))
	s.mu.Unlock()
	out := s.exec(cmd, args, from)
	e := s.coreHeaders("API", "switch_loadable_module.c", "switch_api_execute", 2954)
	e.add("API-Command", cmd)
	if args != "" {
		e.add("API-Command-Argument", args)
	}
	defer s.broadcast(e)
	return out
}

func (s *Switch) exec(cmd, args string, from *eslConn) string {
	f := strings.Fields(args)
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch cmd {
	case "status":
		return "UP 0 years, 0 days, 0 hours, 0 minutes, 1 second, 0 milliseconds, 0 microseconds\nFreeSWITCH (Version 1.10.12-release  64bit) is ready (fssim)\n"
	case "echo":
		if args == "" {
			return "-ERR no reply\n"
		}
		return args // no newline
	case "module_exists":
		return fmt.Sprint(s.ModuleLoaded(strings.TrimSpace(args)))
	case "log":
		level, text, _ := strings.Cut(args, " ")
		s.mu.Lock()
		s.logs = append(s.logs, "["+level+"] "+text)
		s.mu.Unlock()
		return "+OK\n"
	case "alias":
		s.mu.Lock()
		defer s.mu.Unlock()
		switch arg(0) {
		case "add":
			if len(f) < 3 {
				return "-ERR USAGE: alias [add|stickyadd] <alias> <command> | del [<alias>|*]\n"
			}
			s.aliases[f[1]] = strings.Join(f[2:], " ")
			return "+OK\n"
		case "del":
			delete(s.aliases, arg(1))
			return "+OK\n"
		}
		return "-ERR USAGE: alias [add|stickyadd] <alias> <command> | del [<alias>|*]\n"
	case "show":
		if args == "aliases" {
			s.mu.Lock()
			defer s.mu.Unlock()
			var b strings.Builder
			b.WriteString("sticky,alias,command,hostname\n")
			for k, v := range s.aliases {
				fmt.Fprintf(&b, "0,%s,%s,%s\n", k, v, s.Hostname)
			}
			fmt.Fprintf(&b, "\n%d total.\n", len(s.aliases))
			return b.String()
		}
		if args == "channels as json" {
			return s.channelsJSON()
		}
		if args == "channels count" {
			s.mu.Lock()
			defer s.mu.Unlock()
			return fmt.Sprintf("\n%d total.\n", len(s.calls))
		}
		return "-ERR unsupported show " + args + "\n"
	case "uuid_exists":
		return fmt.Sprint(s.Call(arg(0)) != nil)
	case "uuid_kill":
		if s.Call(arg(0)) == nil {
			return "-ERR No such channel!\n"
		}
		go s.Hangup(arg(0), "NORMAL_CLEARING")
		return "+OK\n"
	case "uuid_dump":
		c := s.Call(arg(0))
		if c == nil {
			return "-ERR No such channel!\n"
		}
		e := s.coreHeaders("CHANNEL_DATA", "mod_commands.c", "uuid_dump_function", 6468)
		c.channelHeaders(e, "CS_EXECUTE", "ACTIVE", 4, "")
		if arg(1) == "json" {
			return e.json()
		}
		return e.headerBlock()
	case "uuid_setvar":
		c := s.Call(arg(0))
		if c == nil {
			return "-ERR No such channel!\n"
		}
		if v := strings.Join(f[min(2, len(f)):], " "); v != "" {
			c.setVar(arg(1), v)
		} else {
			c.unsetVar(arg(1)) // as FreeSWITCH: no value unsets it
		}
		return "+OK\n"

	case "uuid_getvar":
		c := s.Call(arg(0))
		if c == nil {
			return "-ERR No such channel!\n"
		}
		if v, ok := c.lookupVar(arg(1)); ok {
			return v
		}
		return "_undef_"
	case "uuid_send_dtmf":
		return s.sendDTMF(args)
	case "uuid_displace":
		return s.displace(args)
	case "uuid_buglist":
		c := s.Call(arg(0))
		if c == nil {
			return "-ERR no reply\n"
		}
		return c.bugList()
	case "uuid_transfer":
		// The channel stays and so do its media bugs: they stream on through
		// the transfer (testdata/transfer). The simulator has no dialplan to
		// run; the call's tones go on.
		if s.Call(arg(0)) == nil || arg(1) == "" {
			return "-ERR No such channel!\n"
		}
		return "+OK\n"

	case "uuid_audio_fork":
		if s.ModuleLoaded(ModAudioFork) {
			return s.audioFork(args)
		}
	case "uuid_audio_stream":
		if s.ModuleLoaded(ModAudioStream) {
			return s.audioStream(args)
		}
	}
	return fmt.Sprintf("-ERR %s Command not found!\n", cmd)
}

func (s *Switch) channelsJSON() string {
	s.mu.Lock()
	calls := make([]*Call, 0, len(s.calls))
	for _, c := range s.calls {
		if c.unlisted.Swap(false) { // ListedLate: in the next listing
			continue
		}
		calls = append(calls, c)
	}
	s.mu.Unlock()
	if len(calls) == 0 {
		return "{\"row_count\":0}\n"
	}
	sort.Slice(calls, func(i, j int) bool { return calls[i].created.Before(calls[j].created) })
	var rows []string
	for _, c := range calls {
		rows = append(rows, fmt.Sprintf(`{"uuid":%q,"direction":%q,"created":%q,"created_epoch":"%d","name":%q,"state":"CS_EXECUTE","cid_name":"","cid_num":%q,"ip_addr":"","dest":%q,"application":"playback","application_data":"","dialplan":"XML","context":%q,"read_codec":"L16","read_rate":"%d","read_bit_rate":"%d","write_codec":"L16","write_rate":"%d","write_bit_rate":"%d","secure":"","hostname":%q,"presence_id":"","presence_data":"","accountcode":"","callstate":"ACTIVE","callee_name":"","callee_num":"","callee_direction":"","call_uuid":%q,"sent_callee_name":"","sent_callee_num":"","initial_cid_name":"","initial_cid_num":%q,"initial_ip_addr":"","initial_dest":%q,"initial_dialplan":"xml","initial_context":%q}`,
			c.UUID, c.opts.Direction, c.created.Format("2006-01-02 15:04:05"), c.created.Unix(), c.Name, c.opts.CallerID, c.opts.Dest, c.opts.Context,
			c.opts.Rate, c.opts.Rate*16, c.opts.Rate, c.opts.Rate*16, s.Hostname, c.UUID, c.opts.CallerID, c.opts.Dest, c.opts.Context))
	}
	return fmt.Sprintf("{\"row_count\":%d,\"rows\":[%s]}\n", len(rows), strings.Join(rows, ","))
}

func (e *event) json() string {
	var parts []string
	for _, h := range e.headers {
		parts = append(parts, fmt.Sprintf("%q:%q", h.name, h.value))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// eslConn is one event socket connection.
type eslConn struct {
	sw     *Switch
	c      net.Conn
	wmu    sync.Mutex
	w      *bufio.Writer
	authed atomic.Bool

	smu  sync.Mutex
	subs map[string]bool // event names, CUSTOM subclasses, ALL
}

func (c *eslConn) send(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.w.WriteString(s)
	c.w.Flush()
}

func (c *eslConn) reply(text string) {
	c.send("Content-Type: command/reply\nReply-Text: " + text + "\n\n")
}

func (c *eslConn) apiResponse(body string) {
	c.send(fmt.Sprintf("Content-Type: api/response\nContent-Length: %d\n\n%s", len(body), body))
}

func (c *eslConn) disconnect() {
	body := "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
	c.send(fmt.Sprintf("Content-Type: text/disconnect-notice\nContent-Length: %d\n\n%s", len(body), body))
	c.c.Close()
}

func (c *eslConn) wants(name, subclass string) bool {
	if !c.authed.Load() {
		return false
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.subs["ALL"] {
		return true
	}
	if name == "CUSTOM" {
		return c.subs["CUSTOM"] && (subclass == "" || c.subs[subclass])
	}
	return c.subs[name]
}

// readCommand reads one command: lines up to a blank line ("\n\n" or "\r\n\r\n").
func readCommand(r *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(lines) == 0 {
				continue
			}
			return lines, nil
		}
		lines = append(lines, line)
	}
}

func (c *eslConn) serve() {
	defer c.c.Close()
	r := bufio.NewReader(c.c)
	c.send("Content-Type: auth/request\n\n")
	for {
		lines, err := readCommand(r)
		if err != nil {
			return
		}
		verb, rest, _ := strings.Cut(lines[0], " ")
		if !c.authed.Load() {
			if verb != "auth" {
				c.reply("-ERR command not found")
				continue
			}
			if rest != c.sw.Password {
				c.reply("-ERR invalid")
				c.disconnect()
				return
			}
			c.authed.Store(true)
			c.reply("+OK accepted")
			continue
		}
		switch verb {
		case "event":
			format, names, _ := strings.Cut(rest, " ")
			c.smu.Lock()
			for _, n := range strings.Fields(names) {
				c.subs[n] = true
			}
			c.smu.Unlock()
			c.reply("+OK event listener enabled " + format)
		case "noevents":
			c.smu.Lock()
			c.subs = map[string]bool{}
			c.smu.Unlock()
			c.reply("+OK no longer listening for events")
		case "api":
			cmd, args, _ := strings.Cut(rest, " ")
			if cmd == "uuid_audio_fork" && crashes(args) && c.sw.ModuleLoaded(ModAudioFork) {
				c.sw.crash()
				return
			}
			if consoleExecute(lines[1:]) {
				c.apiResponse(c.sw.console(cmd, strings.TrimSpace(args), c))
				continue
			}
			c.apiResponse(c.sw.api(cmd, strings.TrimSpace(args), c))
		case "bgapi":
			job := NewUUID()
			c.send("Content-Type: command/reply\nReply-Text: +OK Job-UUID: " + job + "\nJob-UUID: " + job + "\n\n")
			cmd, args, _ := strings.Cut(rest, " ")
			if cmd == "uuid_audio_fork" && crashes(args) && c.sw.ModuleLoaded(ModAudioFork) {
				c.sw.crash() // in the job's thread: the same segfault
				return
			}
			go func() {
				out := c.sw.api(cmd, strings.TrimSpace(args), c)
				e := c.sw.coreHeaders("BACKGROUND_JOB", "mod_event_socket.c", "api_exec", 1572)
				e.add("Job-UUID", job)
				e.add("Job-Command", cmd)
				e.add("Job-Command-Arg", args)
				e.body = out
				c.sw.broadcast(e)
			}()
		case "exit":
			c.reply("+OK bye")
			c.disconnect()
			return
		default:
			c.reply("-ERR command not found")
		}
	}
}

// crashes says whether uuid_audio_fork <args> segfaults FreeSWITCH 1.10.12:
// start with no rate (recorded), or with a URL of CrashURLLength bytes or
// more (the real switch, api or bgapi: the module's std::regex overflows the
// stack parsing it; 704 to 716 bytes after the scheme by content, 710 in all
// for ws://127.0.0.1:port URLs).
func crashes(args string) bool {
	f := strings.Fields(args)
	return len(f) >= 4 && f[1] == "start" && (len(f) == 4 || len(f[2]) >= CrashURLLength)
}

// CrashURLLength is the shortest URL mod_audio_fork crashes on here.
const CrashURLLength = 710

// consoleExecute says whether a command's header lines ask for console
// execution (fs_cli sends console_execute: true), which expands aliases.
func consoleExecute(headers []string) bool {
	for _, h := range headers {
		if name, value, ok := strings.Cut(h, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "console_execute") {
			return truthy(strings.TrimSpace(value))
		}
	}
	return false
}

// Cadence is the media tick of simulated forks (20 ms, like FreeSWITCH).
var defaultCadence = 20 * time.Millisecond

func (s *Switch) cadence() time.Duration {
	if d := s.Cadence.Load(); d > 0 {
		return time.Duration(d)
	}
	return defaultCadence
}
