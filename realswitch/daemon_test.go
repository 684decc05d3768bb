package realswitch

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/mediafork/mediafork/internal/testport"
)

// daemon is `mediafork serve` running as a process of its own.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	Ingest string // the ingest's host:port
	Log    *logWatch
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// config is a mediafork config file, as YAML maps.
type config map[string]any

// switchEntry is the freeswitch: entry for the switch under test (or addr,
// a proxy in front of it), forking with module.
func switchEntry(addr, module string) map[string]any {
	return map[string]any{"name": "fs1", "address": addr, "password": eslPassword, "module": module, "required": true}
}

// baseConfig is a daemon on the switch under test with module, no outbound
// listener and no API; tests add rules, profiles and the rest.
func baseConfig(module string) config { return baseConfigAt(eslAddr, module) }

// baseConfigAt is baseConfig on the switch whose event socket is addr.
func baseConfigAt(addr, module string) config {
	return config{
		"log":        map[string]any{"level": "debug", "format": "json"},
		"freeswitch": []any{switchEntry(addr, module)},
		"outbound":   map[string]any{"listen": ""},
		"api":        map[string]any{"listen": ""},
		"fork":       map[string]any{"retry": map[string]any{"attempts": 3, "backoff": "200ms"}},
	}
}

// startDaemon runs mediafork serve with cfg, its ingest on a reserved port
// (ingest.url is needed before the start, so the port cannot be 0), and
// waits until it has connected to the switch and resynced. It is stopped
// (SIGTERM) when the test ends.
func startDaemon(t *testing.T, cfg config) *daemon {
	t.Helper()
	return startDaemonAt(t, cfg, testport.Reserved(t), nil)
}

// startDaemonAt is startDaemon with the ingest on ingest and, when via is
// not nil, its URL (what the switch connects to) via(ingest): a proxy in
// front.
func startDaemonAt(t *testing.T, cfg config, ingest string, via func(string) string) *daemon {
	t.Helper()
	in, _ := cfg["ingest"].(map[string]any)
	in = cloneMap(in)
	scheme := "ws"
	if _, ok := in["tls"]; ok {
		scheme = "wss"
	}
	// A test may lengthen ingest.url with a path: "url_path" (no config key).
	urlPath, _ := in["url_path"].(string)
	delete(in, "url_path")
	in["listen"], in["url"] = ingest, scheme+"://"+ingest+urlPath
	if via != nil {
		in["url"] = scheme + "://" + via(ingest) + urlPath
	}
	cfg["ingest"] = in

	b, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	if urlPath != "" {
		in["url_path"] = urlPath // for another start with cfg
	}
	path := filepath.Join(t.TempDir(), "mediafork.yaml")
	require.NoError(t, os.WriteFile(path, b, 0o600))

	cmd := exec.Command(binary, "serve", "--config", path)
	cmd.Env = daemonEnv()
	d := spawn(t, cmd, ingest)

	// Up: every listener served and the switch resynced (the fs_cli alias is
	// installed and the module known by then).
	ready := []func(logLine) bool{msg("resync done")}
	if out, _ := cfg["outbound"].(map[string]any); out["listen"] != "" {
		ready = append(ready, msg("outbound ESL listening"))
	}
	for _, f := range ready {
		if _, ok := d.Log.waitOrExit(d.exited, f); !ok {
			t.Fatalf("mediafork exited before it was up (%v):\n%s", d.err, d.Log.text())
		}
	}
	return d
}

// spawn starts cmd, a mediafork serve with its ingest on ingest, and
// watches its log; it is stopped (SIGTERM) when the test ends.
func spawn(t *testing.T, cmd *exec.Cmd, ingest string) *daemon {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	d := &daemon{t: t, cmd: cmd, Ingest: ingest, Log: newLogWatch(), exited: make(chan struct{})}
	require.NoError(t, cmd.Start())
	go func() {
		d.Log.read(stderr)
		d.err = cmd.Wait()
		d.Log.mu.Lock()
		close(d.exited)
		d.Log.notify()
		d.Log.mu.Unlock()
	}()
	t.Cleanup(d.cleanup)
	return d
}

// daemonEnv is the environment without MEDIAFORK_* variables (serve refuses
// unknown ones, and the tests' own are such) and without systemd's.
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEDIAFORK_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			env = append(env, kv)
		}
	}
	return env
}

func cloneMap(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Signal sends sig to the daemon.
func (d *daemon) Signal(sig os.Signal) {
	d.t.Helper()
	require.NoError(d.t, d.cmd.Process.Signal(sig))
}

// Wait waits for the daemon to exit and returns how it did.
func (d *daemon) Wait() error {
	d.t.Helper()
	select {
	case <-d.exited:
		return d.err
	case <-time.After(waitFor):
		d.t.Fatalf("mediafork did not exit in %s", waitFor)
		return nil
	}
}

// cleanup stops the daemon if it runs (SIGTERM: it must exit 0), and fails
// the test on a data race or a panic in its output; on failure it shows the log.
func (d *daemon) cleanup() {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
			assert.NoError(d.t, d.err, "mediafork's exit on SIGTERM")
		case <-time.After(waitFor):
			d.cmd.Process.Kill()
			<-d.exited
			d.t.Errorf("mediafork did not exit on SIGTERM in %s", waitFor)
		}
	}
	text := d.Log.text()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", `"level":"ERROR"`} {
		if strings.Contains(text, bad) {
			d.t.Errorf("mediafork's log has %q", bad)
		}
	}
	if d.t.Failed() {
		d.t.Logf("mediafork's log:\n%s", text)
	}
}

// logLine is one JSON log line of the daemon.
type logLine map[string]any

// Str is a field as text.
func (l logLine) Str(key string) string {
	switch v := l[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprint(v)
	}
}

// msg matches a line by its message, and by fields given as key, value pairs.
func msg(m string, kv ...string) func(logLine) bool {
	return func(l logLine) bool {
		if l.Str("msg") != m {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if l.Str(kv[i]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// logWatch keeps the daemon's log as it is written.
type logWatch struct {
	mu      sync.Mutex
	lines   []logLine
	raw     []string // every line, JSON or not (a race report, a panic)
	changed chan struct{}
}

// maxLogLines bounds what is kept of a daemon's log.
const maxLogLines = 100000

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{})} }

func (w *logWatch) notify() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *logWatch) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		var l logLine
		json.Unmarshal([]byte(line), &l)
		w.mu.Lock()
		if len(w.raw) < maxLogLines {
			w.raw = append(w.raw, line)
			if l != nil {
				w.lines = append(w.lines, l)
			}
		}
		w.notify()
		w.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

func (w *logWatch) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.raw, "\n")
}

// Mark is where the log is now: WaitSince(Mark(), ...) sees what comes after.
func (w *logWatch) Mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// waitOrExit waits for a line match holds for, or for exited.
func (w *logWatch) waitOrExit(exited <-chan struct{}, match func(logLine) bool) (logLine, bool) {
	return w.waitFrom(0, exited, match)
}

func (w *logWatch) waitFrom(from int, exited <-chan struct{}, match func(logLine) bool) (logLine, bool) {
	timeout := time.After(waitFor)
	for {
		w.mu.Lock()
		lines, changed := w.lines, w.changed
		w.mu.Unlock()
		for _, l := range lines[min(from, len(lines)):] {
			if match(l) {
				return l, true
			}
		}
		from = len(lines)
		select {
		case <-changed:
		case <-exited:
			// the last lines may have come with the exit
			w.mu.Lock()
			lines = w.lines
			w.mu.Unlock()
			for _, l := range lines[min(from, len(lines)):] {
				if match(l) {
					return l, true
				}
			}
			return nil, false
		case <-timeout:
			return nil, false
		}
	}
}

// WaitLog waits for a log line (from the start) that match holds for.
func (d *daemon) WaitLog(what string, match func(logLine) bool) logLine {
	d.t.Helper()
	return d.WaitLogSince(0, what, match)
}

// WaitLogSince waits for a line after mark that match holds for.
func (d *daemon) WaitLogSince(mark int, what string, match func(logLine) bool) logLine {
	d.t.Helper()
	l, ok := d.Log.waitFrom(mark, d.exited, match)
	if !ok {
		d.t.Fatalf("mediafork did not log %s", what)
	}
	return l
}

// Lines returns the log lines match holds for.
func (d *daemon) Lines(match func(logLine) bool) []logLine {
	d.Log.mu.Lock()
	defer d.Log.mu.Unlock()
	var out []logLine
	for _, l := range d.Log.lines {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}

// Kill ends the daemon with SIGKILL (nothing of it runs after: no end
// packets, no last checkpoint) and waits for it to be gone.
func (d *daemon) Kill() {
	d.t.Helper()
	require.NoError(d.t, d.cmd.Process.Kill())
	select {
	case <-d.exited:
	case <-time.After(waitFor):
		d.t.Fatalf("mediafork did not die")
	}
}
