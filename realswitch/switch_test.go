package realswitch

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/third_party/eslgo"
	"github.com/mediafork/mediafork/third_party/eslgo/command"
)

// waitFor bounds every wait of these tests for something to happen: it is only
// ever reached when a test fails, so it is generous (a loaded machine).
const waitFor = 30 * time.Second

// eslClient is the tests' own event socket connection to the switch (eslgo,
// as mediafork uses it): it places and hangs up calls, types commands, and
// keeps every event it receives for the tests to wait on.
type eslClient struct {
	conn *eslgo.Conn
	cmd  sync.Mutex // eslgo pairs replies with commands by order: one at a time

	mu      sync.Mutex
	events  []*eslgo.Event
	changed chan struct{} // closed and replaced when an event arrives
}

// maxEvents bounds what a client keeps (a test sees a few hundred).
const maxEvents = 50000

// watched are the events the tests wait on.
var watched = []string{"CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE", "API", "CHANNEL_BRIDGE", "CUSTOM",
	"mod_audio_fork::connect", "mod_audio_fork::connect_failed", "mod_audio_fork::disconnect",
	"mod_audio_stream::connect", "mod_audio_stream::disconnect", "mod_audio_stream::error"}

func dialESL(ctx context.Context, addr, password string) (*eslClient, error) {
	opts := eslgo.InboundOptions{
		Options:     eslgo.Options{Context: context.Background(), Logger: eslgo.NilLogger{}, ExitTimeout: 2 * time.Second},
		Network:     "tcp",
		Password:    password,
		AuthTimeout: 5 * time.Second,
	}
	conn, err := opts.Dial(addr)
	if errors.Is(err, eslgo.ErrAuthFailed) {
		return nil, errors.New("event socket: the password was refused (MEDIAFORK_TEST_ESL_PASSWORD, default ClueCon)")
	}
	if err != nil {
		return nil, fmt.Errorf("event socket: %w", err)
	}
	c := &eslClient{conn: conn, changed: make(chan struct{})}
	conn.RegisterEventListener(eslgo.EventListenAll, c.record)
	if _, err := c.send(ctx, command.Event{Format: "plain", Listen: watched}); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *eslClient) record(e *eslgo.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.events) < maxEvents {
		c.events = append(c.events, e)
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *eslClient) close() { c.conn.ExitAndClose() }

func (c *eslClient) send(ctx context.Context, cmd command.Command) (*eslgo.RawResponse, error) {
	c.cmd.Lock()
	defer c.cmd.Unlock()
	return c.conn.SendCommand(ctx, cmd)
}

// api runs an api command and returns its output.
func (c *eslClient) api(ctx context.Context, line string) (string, error) {
	cmd, args, _ := strings.Cut(line, " ")
	resp, err := c.send(ctx, command.API{Command: cmd, Arguments: args})
	if err != nil {
		return "", fmt.Errorf("api %s: %w", line, err)
	}
	return string(resp.Body), nil
}

// consoleLine is an api command as fs_cli sends it: with console_execute, so
// that FreeSWITCH expands aliases (mediafork's `mediafork` alias) first. The
// line ends as eslgo ends the message, with CRLF: FreeSWITCH keeps a CR in a
// header's value, and "true\r" is not true.
type consoleLine string

func (l consoleLine) BuildMessage() string { return "api " + string(l) + "\r\nconsole_execute: true" }

// typed delivers a line an operator types in fs_cli and returns what fs_cli
// prints: with the real fs_cli when MEDIAFORK_TEST_FS_CLI names it, else
// over this connection as fs_cli sends it.
func (c *eslClient) typed(ctx context.Context, line string) (string, error) {
	if fsCli != "" {
		host, port, _ := strings.Cut(eslAddr, ":")
		out, err := exec.CommandContext(ctx, fsCli, "-H", host, "-P", port, "-p", eslPassword, "-x", line).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s -x %q: %v\n%s", fsCli, line, err, out)
		}
		return string(out), nil
	}
	resp, err := c.send(ctx, consoleLine(line))
	if err != nil {
		return "", fmt.Errorf("fs_cli %s: %w", line, err)
	}
	return string(resp.Body), nil
}

// fsSwitch is the switch as one test sees it: its calls are hung up and
// checked gone when the test ends.
type fsSwitch struct {
	t *testing.T
	*eslClient
	tag      string // set on every call the test places (channel variable rs_tag)
	baseline int    // channels up when the test began
	calls    []*call
}

// useSwitch connects to the switch under test for t. When t ends, after
// everything t started later has stopped, every call t placed is hung up and
// must be gone from the switch's channels.
func useSwitch(t *testing.T) *fsSwitch {
	t.Helper()
	return useSwitchAt(t, eslAddr)
}

// useSwitchAt is useSwitch on the switch whose event socket is addr.
func useSwitchAt(t *testing.T, addr string) *fsSwitch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := dialESL(ctx, addr, eslPassword)
	require.NoError(t, err)
	sw := &fsSwitch{t: t, eslClient: c, tag: "rs" + randomHex(6)}
	t.Cleanup(c.close)
	sw.baseline = sw.channelCount()
	t.Cleanup(sw.hangUpAll)
	return sw
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// newUUID is a random version-4 UUID, as FreeSWITCH makes them.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// API runs an api command; a transport error fails the test.
func (sw *fsSwitch) API(line string) string {
	sw.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	out, err := sw.api(ctx, line)
	require.NoError(sw.t, err)
	return out
}

// Typed is an operator typing line in fs_cli; it returns what fs_cli prints.
func (sw *fsSwitch) Typed(line string) string {
	sw.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	out, err := sw.typed(ctx, line)
	require.NoError(sw.t, err)
	return out
}

var countRE = regexp.MustCompile(`(\d+) total`)

// channelCount is `show channels count`.
func (sw *fsSwitch) channelCount() int {
	sw.t.Helper()
	out := sw.API("show channels count")
	m := countRE.FindStringSubmatch(out)
	require.NotNil(sw.t, m, "show channels count: %q", out)
	n, _ := strconv.Atoi(m[1])
	return n
}

// call is a loopback call: A runs extension 9001 (sends 1000 Hz), B runs the
// extension dialled (9000: sends 440 Hz), so on B, RX (read) is 1000 Hz and
// TX (write) 440 Hz.
type call struct {
	A, B string
}

// Originate places loopback/<ext> with A running 9001, with vars on both legs
// (mod_loopback copies them to B) besides the test's tag. The call is hung up,
// and checked gone, when the test ends.
func (sw *fsSwitch) Originate(ext string, vars ...string) *call {
	sw.t.Helper()
	c := &call{A: newUUID()}
	sw.calls = append(sw.calls, c)
	vs := append([]string{"origination_uuid=" + c.A, "rs_tag=" + sw.tag}, vars...)
	out := sw.API(fmt.Sprintf("originate {%s}loopback/%s/default 9001 XML default", strings.Join(vs, ","), ext))
	require.Equal(sw.t, "+OK "+c.A, strings.TrimSpace(out), "originate")
	c.B = strings.TrimSpace(sw.API("uuid_getvar " + c.A + " other_loopback_leg_uuid"))
	require.Regexp(sw.t, `^[0-9a-f-]{36}$`, c.B, "the B leg of %s", c.A)
	return c
}

// hangUpAll kills every call the test placed, waits until each leg has hung
// up, and checks that the switch lists none of them any more.
func (sw *fsSwitch) hangUpAll() {
	sw.t.Helper()
	for _, c := range sw.calls {
		if strings.TrimSpace(sw.API("uuid_exists "+c.A)) == "true" {
			sw.API("uuid_kill " + c.A)
		}
	}
	for _, c := range sw.calls {
		for _, leg := range []string{c.A, c.B} {
			if leg != "" {
				sw.WaitEvent("hangup of "+leg, func(e *eslgo.Event) bool {
					return e.GetName() == "CHANNEL_HANGUP_COMPLETE" && e.GetHeader("Unique-ID") == leg
				})
			}
		}
	}
	// The channel list lags the hangup events a little; no event says it
	// changed. Other users of the switch may have channels of their own, so
	// the check is that none of this test's is listed.
	deadline := time.Now().Add(waitFor)
	for {
		out := sw.API("show channels")
		var left []string
		for _, c := range sw.calls {
			for _, leg := range []string{c.A, c.B} {
				if leg != "" && strings.Contains(out, leg) {
					left = append(left, leg)
				}
			}
		}
		if len(left) == 0 {
			if n := sw.channelCount(); n != sw.baseline {
				sw.t.Logf("show channels count: %d, %d when the test began (channels of other users of the switch)", n, sw.baseline)
			}
			return
		}
		if time.Now().After(deadline) {
			sw.t.Errorf("channels left on the switch: %v\n%s", left, out)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill hangs up a call now (uuid_kill) without waiting.
func (sw *fsSwitch) Kill(c *call) {
	sw.t.Helper()
	require.Equal(sw.t, "+OK", strings.TrimSpace(sw.API("uuid_kill "+c.A)))
}

// WaitEvent waits for an event (of those received since the connection
// opened) for which match holds, and returns it.
func (sw *fsSwitch) WaitEvent(what string, match func(*eslgo.Event) bool) *eslgo.Event {
	sw.t.Helper()
	timeout := time.After(waitFor)
	seen := 0
	for {
		sw.mu.Lock()
		events, changed := sw.events, sw.changed
		sw.mu.Unlock()
		for _, e := range events[seen:] {
			if match(e) {
				return e
			}
		}
		seen = len(events)
		select {
		case <-changed:
		case <-timeout:
			sw.t.Fatalf("no event from FreeSWITCH: %s (%d events seen)", what, seen)
		}
	}
}

// Events returns the events received so far for which match holds.
func (sw *fsSwitch) Events(match func(*eslgo.Event) bool) []*eslgo.Event {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	var out []*eslgo.Event
	for _, e := range sw.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// apiEvent matches the API event of a command run on the switch (by anyone:
// mediafork's commands show here) whose argument starts with prefix.
func apiEvent(cmd, prefix string) func(*eslgo.Event) bool {
	return func(e *eslgo.Event) bool {
		return e.GetName() == "API" && e.GetHeader("API-Command") == cmd &&
			strings.HasPrefix(e.GetHeader("API-Command-Argument"), prefix)
	}
}

// customEvent matches a module's event (mod_audio_fork::connect, ...) on uuid.
func customEvent(subclass, uuid string) func(*eslgo.Event) bool {
	return func(e *eslgo.Event) bool {
		return e.GetName() == "CUSTOM" && e.GetHeader("Event-Subclass") == subclass && e.GetHeader("Unique-ID") == uuid
	}
}

// WaitLog waits for mediafork's answer to an fs_cli command: a line it
// writes into the FreeSWITCH log with the `log` api, matched by re.
func (sw *fsSwitch) WaitLog(re string) string {
	sw.t.Helper()
	r := regexp.MustCompile(re)
	e := sw.WaitEvent("FreeSWITCH log line "+re, func(e *eslgo.Event) bool {
		return e.GetName() == "API" && e.GetHeader("API-Command") == "log" && r.MatchString(e.GetHeader("API-Command-Argument"))
	})
	return e.GetHeader("API-Command-Argument")
}

// TypeMediafork types `mediafork <args>` in fs_cli: the alias mediafork
// installed must expand it (to `echo [mediafork] <args>`). It returns the
// API event of that echo, which mediafork answers after.
func (sw *fsSwitch) TypeMediafork(args string) *eslgo.Event {
	sw.t.Helper()
	out := sw.Typed("mediafork " + args)
	require.Contains(sw.t, out, "Expand Alias [mediafork]->[echo [mediafork] "+args+"]", "fs_cli's output")
	return sw.WaitEvent("the API event of mediafork "+args, func(e *eslgo.Event) bool {
		return e.GetName() == "API" && e.GetHeader("API-Command") == "echo" && e.GetHeader("API-Command-Argument") == "[mediafork] "+args
	})
}

// WaitLogAfter waits for mediafork's answer in the FreeSWITCH log (a line
// written with the `log` api, matched by re) that came after the event.
func (sw *fsSwitch) WaitLogAfter(after *eslgo.Event, re string) string {
	sw.t.Helper()
	r := regexp.MustCompile(re)
	e := sw.WaitEvent("FreeSWITCH log line "+re, func(e *eslgo.Event) bool {
		return e.GetName() == "API" && e.GetHeader("API-Command") == "log" && sequence(e) > sequence(after) &&
			r.MatchString(e.GetHeader("API-Command-Argument"))
	})
	return e.GetHeader("API-Command-Argument")
}

// sequence is an event's Event-Sequence: the switch's order of events (eslgo
// hands each event to its own goroutine, so arrival order is not kept).
func sequence(e *eslgo.Event) int {
	n, _ := strconv.Atoi(e.GetHeader("Event-Sequence"))
	return n
}
