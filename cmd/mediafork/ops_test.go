package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	bin "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/internal/testcert"
	"github.com/mediafork/mediafork/internal/testport"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
)

// daemonProc is mediafork serve running as a process.
type daemonProc struct {
	cmd    *exec.Cmd
	logs   *syncbuf.Buffer
	exited chan error
}

func startServe(t *testing.T, cfg string, env ...string) *daemonProc {
	t.Helper()
	p := &daemonProc{cmd: exec.Command(binary, "serve", "--config", cfg), logs: &syncbuf.Buffer{}, exited: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.logs
	require.NoError(t, p.cmd.Start())
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// waitLog waits for a log line containing s and returns it.
func (p *daemonProc) waitLog(t *testing.T, s string) string {
	t.Helper()
	var line string
	require.Eventually(t, func() bool {
		for _, l := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(l, s) {
				line = l
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "no log line with %q:\n%s", s, p.logs)
	return line
}

// stop ends the process with SIGTERM and checks every log line it wrote: a
// line is one record, and no value in it carries a line break.
func (p *daemonProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.exited:
		require.NoError(t, err, "%s", p.logs)
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit after SIGTERM:\n%s", p.logs)
	}
	p.exited <- nil // for the cleanup
	assertCleanLogLines(t, p.logs.String())
}

// assertCleanLogLines: every line is one slog text record (time=, level=,
// msg=) with no escaped line break and no Go value dumped in it.
func assertCleanLogLines(t *testing.T, logs string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimRight(logs, "\n"), "\n") {
		assert.True(t, strings.HasPrefix(line, "time="), "a line that is not a record (a value broke the line?): %q", line)
		assert.NotContains(t, line, `\n`, "a line break inside a value")
		for _, dump := range []string{"map[", "&{", "%!"} {
			assert.NotContains(t, line, dump, "a Go value dumped")
		}
	}
}

// A wrong ESL password against the simulator: one readable line naming the
// switch, the key to fix (with the switch's index) and the next attempt;
// /readyz shows the switch auth_failed.
func TestWrongPasswordIsOneLogLine(t *testing.T) {
	sw := fssim.NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	ingest, api := testport.Reserved(t), testport.Reserved(t)
	cfg := writeConfig(t, fmt.Sprintf(`
freeswitch:
  - {name: east, address: "127.0.0.1:1"}
  - {name: west, address: "%s", password: hunter2-bad, required: true}
outbound: {listen: ""}
ingest: {listen: "%s", url: "ws://%s"}
api: {listen: "%s"}
`, sw.Addr(), ingest, ingest, api))
	p := startServe(t, cfg)
	line := p.waitLog(t, "authentication refused")
	assert.Contains(t, line, "level=ERROR")
	assert.Contains(t, line, "FreeSWITCH west")
	assert.Contains(t, line, "check freeswitch[1].password")
	assert.Contains(t, line, "key=freeswitch[1].password")
	assert.Regexp(t, `next attempt in \d+(\.\d+)?m?s`, line)
	assert.Regexp(t, `next_retry=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`, line)
	assert.NotContains(t, p.logs.String(), "hunter2-bad")

	status, body := httpGet(t, http.DefaultClient, "http://"+api+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status, body)
	var rb readyBody
	require.NoError(t, json.Unmarshal([]byte(body), &rb))
	assert.Equal(t, "auth_failed", rb.switchState("west"))
	assert.Contains(t, rb.NotReady, "required switch west is auth_failed")
	p.stop(t)
}

type readyBody struct {
	Ready      bool     `json:"ready"`
	Listening  bool     `json:"listening"`
	NotReady   []string `json:"not_ready"`
	FreeSWITCH []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Required bool   `json:"required"`
		Since    string `json:"since"`
	} `json:"freeswitch"`
}

func (b readyBody) switchState(name string) string {
	for _, s := range b.FreeSWITCH {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}

func httpGet(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// /readyz: a down optional switch keeps the instance ready; a down required
// one does not. The body lists every switch with its state and since when.
func TestReadyzRequiredSwitches(t *testing.T) {
	for _, required := range []bool{false, true} {
		t.Run(fmt.Sprintf("required=%v", required), func(t *testing.T) {
			before := time.Now().Add(-time.Second)
			s := newStack(t, 1, func(c *conf.Config) {
				c.FreeSWITCH[0].Required = true // up
				c.FreeSWITCH = append(c.FreeSWITCH, conf.FreeSWITCH{Name: "far", Address: "127.0.0.1:1", Password: "x", Required: required})
			})
			// The down switch has tried once (refused at once): its state is down.
			require.Eventually(t, func() bool {
				st, _ := s.d.bridge.Clients()[1].State()
				return st == "down"
			}, 5*time.Second, 5*time.Millisecond)
			status, body := s.call("GET", "/readyz", "", "")
			var rb readyBody
			require.NoError(t, json.Unmarshal([]byte(body), &rb), body)
			require.Len(t, rb.FreeSWITCH, 2)
			assert.Equal(t, "far", rb.FreeSWITCH[0].Name)
			assert.Equal(t, "down", rb.FreeSWITCH[0].State)
			assert.Equal(t, required, rb.FreeSWITCH[0].Required)
			assert.Equal(t, "fs1", rb.FreeSWITCH[1].Name)
			assert.Equal(t, "connected", rb.FreeSWITCH[1].State)
			assert.True(t, rb.FreeSWITCH[1].Required)
			for _, sw := range rb.FreeSWITCH {
				since, err := time.Parse(time.RFC3339, sw.Since)
				require.NoError(t, err, "since is RFC 3339: %q", sw.Since)
				assert.False(t, since.Before(before.Truncate(time.Second)))
			}
			assert.True(t, rb.Listening)
			if required {
				assert.Equal(t, http.StatusServiceUnavailable, status, body)
				assert.False(t, rb.Ready)
				assert.Equal(t, []string{"required switch far is down"}, rb.NotReady)
			} else {
				assert.Equal(t, http.StatusOK, status, "one optional switch down keeps the instance ready: %s", body)
				assert.True(t, rb.Ready)
				assert.Empty(t, rb.NotReady)
			}
			status, body = s.call("GET", "/healthz", "", "")
			assert.Equal(t, http.StatusOK, status)
			assert.JSONEq(t, `{"status":"ok"}`, body, "healthz as it was")
		})
	}
}

// TLS end to end on the real binary: wss:// ingest and HTTPS API from a
// generated CA; the simulated switch (trusting the CA) forks a call over wss;
// a hand-typed wss fork arrives byte for byte; a client trusting another CA
// fails; new certificate files are served without a restart.
func TestTLSEndToEnd(t *testing.T) {
	ca := testcert.NewCA(t, "mediafork test CA")
	dir := t.TempDir()
	first := ca.Leaf(t, "127.0.0.1", "localhost")
	certFile, keyFile := first.Write(t, dir)

	sink, err := tlvdump.Listen("127.0.0.1:0", tlvdump.Options{Keep: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); sink.Run(ctx) }()
	defer func() { cancel(); <-sinkDone }()

	sw := fssim.NewSwitch("ClueCon", nil)
	sw.TLS = ca.ClientConfig("") // the switch trusts the CA (system store or SSL_CERT_FILE)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()

	ingest, api := testport.Reserved(t), testport.Reserved(t)
	tlsKeys := fmt.Sprintf("{cert_file: %q, key_file: %q}", certFile, keyFile)
	cfg := writeConfig(t, fmt.Sprintf(`
freeswitch: [{name: fs1, address: "%s", password: ClueCon, required: true}]
outbound: {listen: ""}
ingest: {listen: "%s", url: "wss://%s", tls: %s}
api: {listen: "%s", tls: %s}
profiles:
  analytics: {endpoints: ["%s"]}
rules:
  - {name: support, match: {Caller-Destination-Number: "^2000$"}, profile: analytics}
`, sw.Addr(), ingest, ingest, tlsKeys, api, tlsKeys, sink.Addr()))
	p := startServe(t, cfg)
	p.waitLog(t, "API listening")

	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig("127.0.0.1")}}
	defer trusting.CloseIdleConnections()
	require.Eventually(t, func() bool {
		status, _ := httpGet(t, trusting, "https://"+api+"/readyz")
		return status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "readyz over HTTPS:\n%s", p.logs)

	// The switch forks a call by the rule: uuid_audio_fork with the wss:// URL.
	sw.Answer(fssim.CallOptions{Dest: "2000", ReadHz: 440, WriteHz: 1000})
	require.Eventually(t, func() bool {
		n := 0
		for _, st := range sink.Streams() {
			if st.Packets >= 25 {
				n++
			}
		}
		return n == 2
	}, 10*time.Second, 10*time.Millisecond, "the rule's fork over wss:\n%s", p.logs)
	for _, st := range sink.Streams() {
		want := map[tlvcodec.Direction]float64{tlvcodec.RX: 440, tlvcodec.TX: 1000}[st.Direction]
		assert.InDelta(t, want, st.DominantHz(st.Rate), 10)
	}
	assert.Contains(t, strings.Join(sw.APICommands(), "\n"), "start wss://"+ingest+"/fork/")

	// A hand-typed wss:// fork: every byte arrives.
	pcm := fssim.Tone(8000, 1, 8000, 300, 700)
	a, err := fssim.DialAudioFork(context.Background(), "wss://"+ingest+"/fork/hand-typed?profile=analytics",
		fssim.AudioForkOptions{Metadata: `{"channel_id":"hand-typed"}`, TLSConfig: ca.ClientConfig("127.0.0.1")})
	require.NoError(t, err)
	require.NoError(t, a.Stream(context.Background(), pcm, 640, 0))
	var ce *websocket.CloseError
	require.ErrorAs(t, a.Stop(""), &ce)
	left, right := deinterleave(pcm)
	require.Eventually(t, func() bool {
		ended := 0
		for _, st := range sink.Streams() {
			if st.Signaling != nil && st.Signaling.ChannelID == "hand-typed" && st.End != nil {
				ended++
			}
		}
		return ended == 2
	}, 5*time.Second, 10*time.Millisecond)
	for _, st := range sink.Streams() {
		if st.Signaling.ChannelID == "hand-typed" {
			want := map[tlvcodec.Direction][]byte{tlvcodec.RX: left, tlvcodec.TX: right}[st.Direction]
			assert.Equal(t, want, st.Payload, "%s byte for byte through wss", st.Direction)
		}
	}
	// Both on the epoll reader, their records decrypted there.
	_, metrics := httpGet(t, trusting, "https://"+api+"/metrics")
	assert.Contains(t, metrics, `mediafork_ingest_tls_connections_total{reader="epoll"} 2`+"\n")
	assert.Contains(t, metrics, `mediafork_ingest_tls_connections_total{reader="goroutine"} 0`+"\n")

	// A client that trusts another CA fails, on both listeners.
	other := testcert.NewCA(t, "someone else")
	untrusting := &http.Client{Transport: &http.Transport{TLSClientConfig: other.ClientConfig("127.0.0.1")}}
	_, err = untrusting.Get("https://" + api + "/readyz")
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown)
	_, err = fssim.DialAudioFork(context.Background(), "wss://"+ingest+"/fork/x", fssim.AudioForkOptions{TLSConfig: other.ClientConfig("127.0.0.1")})
	require.ErrorAs(t, err, &unknown)
	// Plain ws:// to a TLS listener is no WebSocket.
	_, err = fssim.DialAudioFork(context.Background(), "ws://"+ingest+"/fork/x", fssim.AudioForkOptions{})
	require.Error(t, err)

	// Rotation: new files, the next handshakes see the new serial on both
	// listeners, no restart.
	second := ca.Leaf(t, "127.0.0.1", "localhost")
	second.Write(t, dir)
	for _, addr := range []string{api, ingest} {
		require.Eventually(t, func() bool {
			c, derr := tls.Dial("tcp", addr, ca.ClientConfig("127.0.0.1"))
			if derr != nil {
				return false
			}
			defer c.Close()
			return c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(second.Serial) == 0
		}, 10*time.Second, 50*time.Millisecond, "%s never served the new certificate:\n%s", addr, p.logs)
	}
	p.waitLog(t, "TLS certificate reloaded")
	status, _ := httpGet(t, &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig("127.0.0.1")}}, "https://"+api+"/healthz")
	assert.Equal(t, http.StatusOK, status)
	// A fork after the rotation: the new certificate, the epoll reader.
	a, err = fssim.DialAudioFork(context.Background(), "wss://"+ingest+"/fork/after-rotation?profile=analytics",
		fssim.AudioForkOptions{Metadata: `{"channel_id":"after-rotation"}`, TLSConfig: ca.ClientConfig("127.0.0.1")})
	require.NoError(t, err)
	assert.Equal(t, 0, a.Conn.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Cmp(second.Serial))
	require.NoError(t, a.Stream(context.Background(), pcm, 640, 0))
	require.ErrorAs(t, a.Stop(""), &ce)
	require.Eventually(t, func() bool {
		for _, st := range sink.Streams() {
			if st.Signaling != nil && st.Signaling.ChannelID == "after-rotation" && st.End != nil && st.Direction == tlvcodec.RX {
				return bytes.Equal(st.Payload, left)
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "the fork after the rotation, byte for byte")
	_, metrics = httpGet(t, trusting, "https://"+api+"/metrics")
	assert.Contains(t, metrics, `mediafork_ingest_tls_connections_total{reader="epoll"} 3`+"\n")
	p.stop(t)
}

// wss:// without TLS on the ingest, and an unknown MEDIAFORK_* variable, stop
// serve before it listens, naming the key.
func TestServeRefusesWhatConfigCheckRefuses(t *testing.T) {
	ingest := testport.Reserved(t)
	cfg := writeConfig(t, fmt.Sprintf("freeswitch: []\noutbound: {listen: \"\"}\napi: {listen: \"\"}\ningest: {listen: \"%s\", url: \"wss://%s\"}\n", ingest, ingest))
	_, errOut, code := run(t, nil, "serve", "--config", cfg)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "ingest.url")
	assert.Contains(t, errOut, "tls_terminated_by_proxy")

	_, errOut, code = run(t, []string{"MEDIAFORK_INGEST_MAXFORKS=5"}, "serve", "--config", writeConfig(t, "freeswitch: []\n"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "MEDIAFORK_INGEST_MAXFORKS: unknown environment variable; did you mean MEDIAFORK_INGEST_MAX_FORKS?")
}

// config check: every error in one run, each naming its key; on success the
// effective config as YAML, secrets masked, secrets from files and the
// environment included; the YAML loads back.
func TestConfigCheckEveryErrorAndYAML(t *testing.T) {
	bad := writeConfig(t, `
fork: {mix: quad, rate: abc}
ingest: {max_frks: 3, url: "wss://x:1"}
freeswitch: [{name: a, address: nowhere}]
rules: [{name: r, match: {A: "("}, profile: nope}]
`)
	_, errOut, code := run(t, []string{"MEDIAFORK_API_TOKN=x"}, "config", "check", "--config", bad)
	assert.Equal(t, 2, code)
	for _, key := range []string{"ingest.max_frks: unknown key", "fork.rate:", "MEDIAFORK_API_TOKN: unknown environment variable; did you mean MEDIAFORK_API_TOKEN?",
		"freeswitch[0].address:", "ingest.url:", "fork.mix:", "rules[0](r).match.A:", "rules[0](r).profile:"} {
		assert.Contains(t, errOut, "\n  "+key, "every error, one a line")
	}
	assert.Contains(t, errOut, "config: 8 errors:")

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte("file-pw\n"), 0o600))
	good := writeConfig(t, fmt.Sprintf(`
freeswitch:
  - {name: fs-a, address: "10.0.0.1:8021", password_file: %q, required: true}
  - {name: fs-b, address: "10.0.0.2:8021"}
ingest: {url: "wss://mf.example:8090", tls_terminated_by_proxy: true}
`, pwFile))
	out, errOut, code := run(t, []string{"MEDIAFORK_FREESWITCH_FS_B_PASSWORD=env-pw", "MEDIAFORK_API_TOKEN=api-secret"}, "config", "check", "--config", good)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, ": ok")
	for _, want := range []string{"freeswitch:\n  - name: fs-a\n    address: 10.0.0.1:8021\n    password: \"\"\n", "password_file: " + pwFile,
		"  - name: fs-b\n    address: 10.0.0.2:8021\n    password: \"********\"\n", "required: true",
		"url: wss://mf.example:8090", "tls_terminated_by_proxy: true", "max_forks: 10000", "backoff: 1s", "  token: \"********\""} {
		assert.Contains(t, out, want)
	}
	for _, secret := range []string{"file-pw", "env-pw", "api-secret"} {
		assert.NotContains(t, out+errOut, secret)
	}
	// The printed YAML with the same environment is the same config; without
	// it, the masked secrets are refused by name, not used as secrets.
	back := writeConfig(t, out)
	_, err := conf.LoadEnviron(back, []string{"MEDIAFORK_FREESWITCH_FS_B_PASSWORD=env-pw", "MEDIAFORK_API_TOKEN=api-secret"})
	assert.NoError(t, err, "the printed YAML is a config:\n%s", out)
	_, err = conf.LoadEnviron(back, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "freeswitch[1].password: is the mask")
	assert.Contains(t, err.Error(), "api.token: is the mask")
}

// The README's pair with a real FreeSWITCH, as written: tlvdump --wav with
// no flags, and the example config. Its analytics profile says pcmu, so every
// fork of the profile (the rule's, a hand-typed ?profile=analytics) is pcmu,
// and the WAV files tlvdump writes hold the tones at their own pitch.
func TestExampleConfigPairWritesRightWAVs(t *testing.T) {
	s, _ := prepareStack(t, 1)
	wavDir := t.TempDir()
	rcv, err := tlvdump.Listen("127.0.0.1:0", tlvdump.Options{WavDir: wavDir, Keep: true}) // `tlvdump --listen ... --wav ./wav`
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rcv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	c, err := conf.LoadEnviron("../../conf/mediafork.example.yaml", nil)
	require.NoError(t, err)
	c.FreeSWITCH[0].Address = s.switches[0].Addr()
	ingest, outbound, api := s.ports.bind(), s.ports.bind(), s.ports.bind()
	c.Ingest.Listen, c.Ingest.URL, c.Outbound.Listen, c.API.Listen = ingest, "ws://"+ingest, outbound, api
	s.ingest, s.outbound, s.api = ingest, outbound, api
	p := c.Profiles["analytics"]
	p.Endpoints = []string{rcv.Addr().String()}
	c.Profiles["analytics"] = p
	s.start(c, "")
	require.Eventually(t, func() bool { return s.d.switchesUp()["fs1"] }, 5*time.Second, 10*time.Millisecond)

	call := s.switches[0].Answer(fssim.CallOptions{Dest: "7002", ReadHz: 440, WriteHz: 1000})
	// The README's hand-typed fork: uuid_audio_fork <uuid> start ws://.../fork/<uuid>?profile=analytics stereo 8k
	a, err := fssim.DialAudioFork(context.Background(), "ws://"+ingest+"/fork/hand-typed-call?profile=analytics", fssim.AudioForkOptions{})
	require.NoError(t, err)
	require.NoError(t, a.Stream(context.Background(), fssim.Tone(8000, 1, 8000, 600, 1500), 640, 20*time.Millisecond))
	require.ErrorAs(t, a.Stop(""), new(*websocket.CloseError))
	require.Eventually(t, func() bool {
		n := 0
		for _, st := range rcv.Streams() {
			if st.Packets >= 50 {
				n++
			}
		}
		return n == 4
	}, 10*time.Second, 10*time.Millisecond)
	s.switches[0].Hangup(call.UUID, "NORMAL_CLEARING")
	require.Eventually(t, func() bool {
		for _, st := range rcv.Streams() {
			if st.End == nil {
				return false
			}
		}
		return len(rcv.Streams()) == 4
	}, 10*time.Second, 10*time.Millisecond, "every direction ended")

	want := map[string]map[tlvcodec.Direction]float64{
		"Support-7002":    {tlvcodec.RX: 440, tlvcodec.TX: 1000},
		"hand-typed-call": {tlvcodec.RX: 600, tlvcodec.TX: 1500},
	}
	for _, st := range rcv.Streams() {
		require.NotNil(t, st.Format)
		assert.Equal(t, uint8(3), st.Format.Encoding, "%s: the profile's pcmu", st.Signaling.ChannelID)
		require.NotEmpty(t, st.WavPath)
		rate, samples := readWAV(t, st.WavPath)
		assert.Equal(t, 8000, rate)
		assert.InDelta(t, want[st.Signaling.ChannelID][st.Direction], dominantHz(samples, rate), 10,
			"%s %s: the WAV's tone", st.Signaling.ChannelID, st.Direction)
	}
}

// readWAV reads a 16-bit mono PCM WAV as tlvdump writes it.
func readWAV(t *testing.T, path string) (int, []int16) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, len(b), 44)
	require.Equal(t, "RIFF", string(b[0:4]))
	require.Equal(t, "WAVEfmt ", string(b[8:16]))
	require.Equal(t, uint16(1), bin.LittleEndian.Uint16(b[20:]), "PCM")
	require.Equal(t, uint16(1), bin.LittleEndian.Uint16(b[22:]), "mono")
	require.Equal(t, uint16(16), bin.LittleEndian.Uint16(b[34:]), "16-bit")
	require.Equal(t, "data", string(b[36:40]))
	n := int(bin.LittleEndian.Uint32(b[40:]))
	require.Equal(t, len(b)-44, n, "the header's data size is the file's")
	out := make([]int16, n/2)
	for i := range out {
		out[i] = int16(bin.LittleEndian.Uint16(b[44+2*i:]))
	}
	return int(bin.LittleEndian.Uint32(b[24:])), out
}

// dominantHz is the strongest 5 Hz bin (Goertzel), independent of tlvdump's.
func dominantHz(x []int16, rate int) float64 {
	best, bestHz := 0.0, 0
	for hz := 100; hz < rate/2; hz += 5 {
		coeff := 2 * math.Cos(2*math.Pi*float64(hz)/float64(rate))
		var s1, s2 float64
		for _, v := range x {
			s1, s2 = float64(v)+coeff*s1-s2, s1
		}
		if p := s1*s1 + s2*s2 - coeff*s1*s2; p > best {
			best, bestHz = p, hz
		}
	}
	return float64(bestHz)
}

func deinterleave(pcm []byte) (left, right []byte) {
	for i := 0; i+4 <= len(pcm); i += 4 {
		left = append(left, pcm[i:i+2]...)
		right = append(right, pcm[i+2:i+4]...)
	}
	return left, right
}
