package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/internal/testport"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
)

var binary string

// TestMain builds the real binary once: these tests run it as an operator
// would. It is built as the tests were (-race or not), so that it takes
// what the build cache holds: only the link is new.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mediafork-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mediafork")
	if out, err := exec.Command("go", buildArgs("-o", binary, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildArgs is `go build` with args, -race when these tests have it.
func buildArgs(args ...string) []string {
	if raceBuild {
		return append([]string{"build", "-race"}, args...)
	}
	return append([]string{"build"}, args...)
}

// boundPorts are loopback listeners a test binds on port 0 and keeps until it
// ends, handed to the daemon by address (options.listen): no other process
// can take such a port between its choice and the daemon's use of it, as it
// could one a listener was closed on. Each hand-over is a new listener on
// the same socket (a dup), so that a daemon the test starts again takes the
// same port, and what connected meanwhile waits in its queue.
type boundPorts struct {
	t      *testing.T
	mu     sync.Mutex
	byAddr map[string]*net.TCPListener
}

func newBoundPorts(t *testing.T) *boundPorts {
	return &boundPorts{t: t, byAddr: map[string]*net.TCPListener{}}
}

// bind binds a listener on 127.0.0.1:0 and returns its address.
func (b *boundPorts) bind() string {
	b.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b.t, err)
	b.t.Cleanup(func() { ln.Close() })
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byAddr[ln.Addr().String()] = ln.(*net.TCPListener)
	return ln.Addr().String()
}

// listen is options.listen: a listener bound here is handed over (a dup of
// it); any other address is bound as the daemon would.
func (b *boundPorts) listen(network, address string) (net.Listener, error) {
	b.mu.Lock()
	ln := b.byAddr[address]
	b.mu.Unlock()
	if ln == nil {
		return net.Listen(network, address)
	}
	f, err := ln.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return net.FileListener(f)
}

func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return o.String(), e.String(), code
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mediafork.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestConfigCheck(t *testing.T) {
	p := writeConfig(t, "freeswitch: [{name: fs1, address: '10.0.0.1:8021', password: hunter2}]\ningest: {token: tok-abc, key: key-xyz}\n")
	out, errOut, code := run(t, []string{"MEDIAFORK_API_TOKEN=api-secret"}, "config", "check", "--config", p)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "ok")
	assert.Contains(t, out, "address: 10.0.0.1:8021")
	assert.Contains(t, out, "max_forks: 10000")
	for _, secret := range []string{"hunter2", "tok-abc", "key-xyz", "api-secret"} {
		assert.NotContains(t, out+errOut, secret)
	}
	assert.Contains(t, out, `password: "********"`)

	_, errOut, code = run(t, nil, "config", "check", "--config", writeConfig(t, "fork:\n  mix: quad\n"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "fork.mix")
	_, errOut, code = run(t, nil, "config", "check", "--config", writeConfig(t, "ingest:\n  max_frks: 3\n"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "ingest.max_frks: unknown key")
	_, errOut, code = run(t, []string{"MEDIAFORK_FORK_RATE=fast"}, "config", "check")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "fork.rate")
}

// TestServeForwardsAndShutsDownOnSIGTERM runs the daemon with no FreeSWITCH
// reachable: ingest still serves; SIGTERM sends end packets and exits 0.
func TestServeForwardsAndShutsDownOnSIGTERM(t *testing.T) {
	sink, err := tlvdump.Listen("127.0.0.1:0", tlvdump.Options{Keep: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); sink.Run(ctx) }()
	defer func() { cancel(); <-sinkDone }()

	ingest := testport.Reserved(t)
	cfg := writeConfig(t, fmt.Sprintf(`
freeswitch: [{name: fs1, address: "127.0.0.1:1", password: ClueCon}]
outbound: {listen: ""}
ingest: {listen: "%s", url: "ws://%s"}
api: {listen: ""}
profiles:
  analytics: {endpoints: ["%s"]}
`, ingest, ingest, sink.Addr()))
	cmd := exec.Command(binary, "serve", "--config", cfg)
	var logs syncbuf.Buffer
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	var a *fssim.AudioFork
	require.Eventually(t, func() bool {
		a, err = fssim.DialAudioFork(context.Background(), "ws://"+ingest+"/fork/call-1?profile=analytics",
			fssim.AudioForkOptions{Metadata: `{"channel_id":"loopback/9100-a","exten":"9100"}`})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "ingest never listened: %s", &logs)
	pcm := fssim.Tone(8000, 0.5, 8000, 440, 1000)
	require.NoError(t, a.Stream(context.Background(), pcm, 640, 0))
	require.Eventually(t, func() bool {
		ss := sink.Streams()
		return len(ss) == 2 && ss[1].Packets == 25
	}, 5*time.Second, 10*time.Millisecond)

	closeCode := make(chan int, 1)
	go func() {
		var ce *websocket.CloseError
		if errors.As(a.AwaitClose(5*time.Second), &ce) {
			closeCode <- ce.Code
		}
		close(closeCode)
	}()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after SIGTERM; logs:\n%s", &logs)
	case <-time.After(5 * time.Second):
		t.Fatalf("no exit within 5 s of SIGTERM; logs:\n%s", &logs)
	}
	assert.Equal(t, websocket.CloseGoingAway, <-closeCode)
	require.Eventually(t, func() bool {
		ss := sink.Streams()
		return len(ss) == 2 && ss[0].End != nil && ss[1].End != nil
	}, 2*time.Second, 10*time.Millisecond)
	for _, s := range sink.Streams() {
		assert.Equal(t, tlvcodec.ReasonShutdown, s.End.Reason)
		assert.Equal(t, "loopback/9100-a", s.Signaling.ChannelID)
		assert.Equal(t, uint32(25), s.End.LastSequence)
	}
	assert.Contains(t, logs.String(), "mediafork stopped")
}

// The tlvdump command on port 0: it says the address it bound, takes the
// packets (a line each), and on SIGTERM writes its summary and exits 0.
func TestTlvdumpCommand(t *testing.T) {
	wavDir := t.TempDir()
	cmd := exec.Command(binary, "tlvdump", "--listen", "127.0.0.1:0", "--wav", wavDir)
	var out, stderr syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	var addr string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`listening on (\S+)\n`).FindStringSubmatch(stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 10*time.Second, 10*time.Millisecond, "the listening line: %q", stderr.String())
	conn, err := net.Dial("udp", addr)
	require.NoError(t, err)
	sig, _ := (&tlvcodec.Signaling{StreamID: 7, Direction: tlvcodec.TX, ChannelID: "c"}).Marshal()
	conn.Write(sig)
	for s := uint32(1); s <= 3; s++ {
		p, _ := (&tlvcodec.Audio{StreamID: 7, Direction: tlvcodec.TX, Sequence: s * s, Payload: make([]byte, 320)}).Marshal()
		conn.Write(p)
	}
	conn.Close()
	require.Eventually(t, func() bool { return strings.Count(out.String(), "AUDIO ") == 3 }, 10*time.Second, 10*time.Millisecond,
		"a line per packet: %q", out.String())
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
	text := out.String()
	assert.Contains(t, text, "SIGNALING  stream=7 dir=TX")
	assert.Contains(t, text, "GAP        stream=7 dir=TX expected=2 got=4 missing=2")
	assert.Contains(t, text, "TOTAL packets=3 bytes=960 missing=6")
	st, err := os.Stat(filepath.Join(wavDir, "stream-7-TX.wav"))
	require.NoError(t, err)
	// 3 packets of 160 samples, and silence for the gaps (2 and 4 packets
	// missing) no longer than the audio already in the file: 160 each.
	assert.Equal(t, int64(44+2*(3*160+2*160)), st.Size())
	assert.True(t, strings.Contains(text, "SUMMARY"))
}

func TestSIGHUPReloads(t *testing.T) {
	ingest := testport.Reserved(t)
	body := fmt.Sprintf("freeswitch: []\noutbound: {listen: \"\"}\napi: {listen: \"\"}\ningest: {listen: \"%s\", url: \"ws://%s\"}\n", ingest, ingest)
	cfg := writeConfig(t, body)
	cmd := exec.Command(binary, "serve", "--config", cfg)
	// READY=1 is the event that SIGHUP is handled: "ingest listening" comes
	// before, and a SIGHUP then ends the process.
	socket, next := notifySocket(t)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+socket)
	var logs syncbuf.Buffer
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	require.True(t, strings.HasPrefix(next(), "READY=1\n"), "%s", &logs)

	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `msg="config reloaded" why=SIGHUP`) }, 5*time.Second, 20*time.Millisecond, "%s", &logs)

	// The limits section is applied at start only: a reload that changes it says so.
	require.NoError(t, os.WriteFile(cfg, []byte(body+"limits: {outbound_connections: 5}\n"), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `msg="config reload: this key takes effect at the next start" key=limits`)
	}, 5*time.Second, 20*time.Millisecond, "%s", &logs)

	require.NoError(t, os.WriteFile(cfg, []byte(body+"log: {level: loud}\n"), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `config reload refused; the running config stays" why=SIGHUP`)
	}, 5*time.Second, 20*time.Millisecond, "%s", &logs)
	assert.Contains(t, logs.String(), "log.level")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "still running after the refused reload, and exits 0")
}

// fs_cli `mediafork logger off` restores the level in force before `on`, even
// when it changed after startup; on never lowers a level below info.
func TestLoggerSwitchRestoresTheLevelBeforeOn(t *testing.T) {
	var level slog.LevelVar
	level.Set(slog.LevelInfo)
	logger := loggerSwitch(&level)
	level.Set(slog.LevelWarn) // PUT /v1/log-level after startup
	logger(true)
	assert.Equal(t, slog.LevelInfo, level.Level(), "the summaries are info lines")
	logger(true)
	logger(false)
	assert.Equal(t, slog.LevelWarn, level.Level())
	logger(false)
	assert.Equal(t, slog.LevelWarn, level.Level())

	level.Set(slog.LevelDebug)
	logger(true)
	assert.Equal(t, slog.LevelDebug, level.Level(), "on keeps a more verbose level")
	logger(false)
	assert.Equal(t, slog.LevelDebug, level.Level())
}
