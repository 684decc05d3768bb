package realswitch

import (
	"bytes"
	bin "encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/testport"
	"github.com/mediafork/mediafork/internal/tone"
)

// The README's "Next to your FreeSWITCH", walked on the real switch with
// the shipped examples: conf/dialplan.xml goes into the switch's
// conf/dialplan/ and `reloadxml`; `mediafork tlvdump --listen 127.0.0.1:9000
// --wav DIR` receives; `mediafork serve --config conf/mediafork.example.yaml`
// runs as shipped (the environment moves only its ingest and API to free
// ports, gives the switch's password and asks for JSON logs; the switch's
// address is the file's 127.0.0.1:8021 when the switch under test has it);
// two first calls with `originate`, one forked by the example dialplan's
// socket extension (7000), one by the example config's rule (7002); tlvdump's
// WAV files hold the right tones: RX 1000 Hz (what the example's 7999 sends),
// TX 440 Hz (what the forked extension plays).
func TestRealSwitchREADMEWalk(t *testing.T) {
	// The README gives these very steps.
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, walk, ok := strings.Cut(string(readme), "## Next to your FreeSWITCH")
	require.True(t, ok, "the README's section")
	walk, _, _ = strings.Cut(walk, "\n## ")
	for _, step := range []string{
		"cp conf/dialplan.xml /etc/freeswitch/dialplan/mediafork.xml", `fs_cli -x "global_getvar conf_dir"`, `fs_cli -x "reloadxml"`,
		"mediafork tlvdump --listen 127.0.0.1:9000 --wav ./wav", "mediafork serve --config conf/mediafork.example.yaml",
		`fs_cli -x "originate loopback/7002/mediafork 7999 XML mediafork"`, `fs_cli -x "originate loopback/7000/mediafork 7999 XML mediafork"`,
		`fs_cli -x "uuid_kill <uuid>"`, "RX file holds 1000 Hz", "TX file 440 Hz",
	} {
		assert.Contains(t, walk, step, "the README's walk says what this test does")
	}

	sw := useSwitch(t)

	// 1. The example dialplan, as the README says.
	confDir := strings.TrimSpace(sw.API("global_getvar conf_dir"))
	require.DirExists(t, filepath.Join(confDir, "dialplan"), "the switch's conf dir (global_getvar conf_dir): the switch must run on this machine")
	example, err := os.ReadFile("../conf/dialplan.xml")
	require.NoError(t, err)
	dst := filepath.Join(confDir, "dialplan", "mediafork.xml")
	switch old, rerr := os.ReadFile(dst); {
	case rerr == nil && !bytes.Equal(old, example):
		t.Fatalf("%s exists and is not conf/dialplan.xml: someone else's file, left alone", dst)
	case rerr == nil: // left by an earlier run: the same file
	default:
		require.NoError(t, os.WriteFile(dst, example, 0o644))
		t.Cleanup(func() {
			os.Remove(dst)
			sw.API("reloadxml")
		})
	}
	require.Contains(t, sw.API("reloadxml"), "+OK")
	require.Contains(t, sw.API("xml_locate dialplan context name mediafork"), `expression="^7002$"`, "the example's context is loaded")

	// 2. The receiving end.
	wavDir := t.TempDir()
	td := startTlvdump(t, "127.0.0.1:9000", wavDir)

	// 3. mediafork with the example config.
	d := startExample(t)

	// 4. First calls: the A leg runs 7999 (1000 Hz), the B leg the extension.
	calls := map[string]*call{}
	for _, ext := range []string{"7000", "7002"} {
		c := &call{A: newUUID()}
		sw.calls = append(sw.calls, c)
		cmd := fmt.Sprintf("originate {origination_uuid=%s,rs_tag=%s}loopback/%s/mediafork 7999 XML mediafork", c.A, sw.tag, ext)
		require.Equal(t, "+OK "+c.A, strings.TrimSpace(sw.API(cmd)), cmd)
		c.B = strings.TrimSpace(sw.API("uuid_getvar " + c.A + " other_loopback_leg_uuid"))
		require.Regexp(t, `^[0-9a-f-]{36}$`, c.B)
		calls[ext] = c
	}
	// The socket extension's fork (ForkStream-style: its channel_id
	// Support-Line) and the rule's (channel_id Support-7002, the profile
	// analytics: pcmu): both directions, two seconds of audio each.
	channels := map[string]string{"Support-Line": "7000", "Support-7002": "7002"}
	streams := map[string]string{} // "stream dir" -> channel
	td.waitLines(t, "both forks' signaling", func(lines []string) bool {
		for _, l := range lines {
			if m := signalingRE.FindStringSubmatch(l); m != nil {
				streams[m[1]+" "+m[2]] = m[3]
			}
		}
		return len(streams) >= 4
	})
	for k, ch := range streams {
		require.Contains(t, channels, ch, "stream %s: channel %q", k, ch)
	}
	td.waitLines(t, "two seconds of audio on each direction", func(lines []string) bool {
		seq := map[string]int{}
		for _, l := range lines {
			if m := audioRE.FindStringSubmatch(l); m != nil {
				var n int
				fmt.Sscan(m[3], &n)
				seq[m[1]+" "+m[2]] = max(seq[m[1]+" "+m[2]], n)
			}
		}
		for k := range streams {
			if seq[k] < 100 {
				return false
			}
		}
		return true
	})
	d.WaitLog("the socket fork", msg("fork requested", "uuid", calls["7000"].B))
	d.WaitLog("the rule's match", msg("rule matched", "uuid", calls["7002"].B, "rule", "support-line"))
	assert.Empty(t, d.Lines(msg("rule matched", "uuid", calls["7002"].A)), "the rule forks the inbound B leg only")

	// 5. Hang up: every direction ends; tlvdump's summary and WAVs.
	for _, c := range calls {
		sw.Kill(c)
	}
	td.waitLines(t, "the end packets", func(lines []string) bool {
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "END ") && strings.Contains(l, "reason=hangup") {
				n++
			}
		}
		return n >= 4
	})
	summary := td.stop(t)
	var checked int
	for _, l := range strings.Split(summary, "\n") {
		m := summaryRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		key, channel, encoding, wav := m[1]+" "+m[2], m[3], m[4], m[5]
		if _, ours := streams[key]; !ours {
			continue
		}
		want := map[string]float64{"RX": 1000, "TX": 440}[m[2]]
		rate, samples := readWAVFile(t, wav)
		require.Equal(t, 8000, rate, wav)
		require.Greater(t, len(samples), 8000, "%s: over a second of audio", wav)
		window := samples[1600:min(len(samples), 1600+3200)] // 400 ms after the first 200 ms
		assert.Greater(t, tone.Share(window, rate, want), 0.9, "%s %s (%s): %v Hz", channel, m[2], wav, want)
		if channel == "Support-7002" {
			assert.Equal(t, "pcmu", encoding, "the profile analytics sends G.711 µ-law")
		}
		checked++
	}
	assert.Equal(t, 4, checked, "two calls, RX and TX each, in the summary:\n%s", summary)
}

var (
	signalingRE = regexp.MustCompile(`^SIGNALING\s+stream=(\d+) dir=(\w+) .*channel="([^"]*)"`)
	audioRE     = regexp.MustCompile(`^AUDIO\s+stream=(\d+) dir=(\w+) seq=(\d+) `)
	summaryRE   = regexp.MustCompile(`stream=(\d+) dir=(\w+)\s+channel="([^"]*)".* (\w+)/8000Hz .*wav=(\S+)`)
)

// tlvdumpProc is `mediafork tlvdump` running as a process.
type tlvdumpProc struct {
	cmd    *exec.Cmd
	out    *logWatch // its stdout, a line per packet
	exited chan struct{}
	err    error
}

// startTlvdump runs `mediafork tlvdump --listen addr --wav dir` and waits
// until it receives (a junk datagram it reports as INVALID).
func startTlvdump(t *testing.T, addr, dir string) *tlvdumpProc {
	t.Helper()
	p := &tlvdumpProc{cmd: exec.Command(binary, "tlvdump", "--listen", addr, "--wav", dir), out: newLogWatch(), exited: make(chan struct{})}
	p.cmd.Env = daemonEnv()
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	p.cmd.Stderr = &stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		p.out.read(stdout)
		p.err = p.cmd.Wait()
		p.out.mu.Lock()
		close(p.exited)
		p.out.notify()
		p.out.mu.Unlock()
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("tlvdump's stderr:\n%s", stderr.String())
		}
	})
	probe, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer probe.Close()
	deadline := time.After(waitFor)
	for {
		probe.Write([]byte{0xff})
		if strings.Contains(p.out.text(), "INVALID") {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("tlvdump exited (%v): %s%s", p.err, stderr.String(), p.out.text())
		case <-deadline:
			t.Fatalf("tlvdump on %s does not receive", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitLines waits until ok holds of tlvdump's lines so far.
func (p *tlvdumpProc) waitLines(t *testing.T, what string, ok func([]string) bool) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		p.out.mu.Lock()
		lines, changed := append([]string(nil), p.out.raw...), p.out.changed
		p.out.mu.Unlock()
		if ok(lines) {
			return
		}
		select {
		case <-changed:
		case <-p.exited:
			t.Fatalf("tlvdump exited (%v) waiting for %s", p.err, what)
		case <-deadline:
			t.Fatalf("tlvdump: no %s", what)
		}
	}
}

// stop ends tlvdump as Ctrl-C does and returns its summary (what it printed
// after the last packet line).
func (p *tlvdumpProc) stop(t *testing.T) string {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	select {
	case <-p.exited:
	case <-time.After(waitFor):
		t.Fatal("tlvdump did not exit on SIGINT")
	}
	require.NoError(t, p.err, "tlvdump's exit")
	return p.out.text()
}

// startExample runs `mediafork serve --config conf/mediafork.example.yaml`
// as the README does, and waits until it is connected, resynced and
// listening for the dialplan's socket.
func startExample(t *testing.T) *daemon {
	t.Helper()
	cfg, err := filepath.Abs("../conf/mediafork.example.yaml")
	require.NoError(t, err)
	if eslAddr != "127.0.0.1:8021" { // a switch elsewhere: the file's one change
		b, rerr := os.ReadFile(cfg)
		require.NoError(t, rerr)
		require.Contains(t, string(b), "address: 127.0.0.1:8021")
		cfg = filepath.Join(t.TempDir(), "mediafork.yaml")
		require.NoError(t, os.WriteFile(cfg, bytes.Replace(b, []byte("address: 127.0.0.1:8021"), []byte("address: "+eslAddr), 1), 0o600))
	}
	ingest := testport.Reserved(t)
	cmd := exec.Command(binary, "serve", "--config", cfg)
	cmd.Env = append(daemonEnv(), "MEDIAFORK_INGEST_LISTEN="+ingest, "MEDIAFORK_INGEST_URL=ws://"+ingest,
		"MEDIAFORK_API_LISTEN="+testport.Reserved(t), "MEDIAFORK_FREESWITCH_FS1_PASSWORD="+eslPassword,
		"MEDIAFORK_LOG_FORMAT=json", "MEDIAFORK_LOG_LEVEL=debug")
	d := spawn(t, cmd, ingest)
	for _, m := range []string{"outbound ESL listening", "resync done"} {
		if _, ok := d.Log.waitOrExit(d.exited, msg(m)); !ok {
			t.Fatalf("mediafork with the example config did not log %q (%v):\n%s", m, d.err, d.Log.text())
		}
	}
	return d
}

// readWAVFile reads a 16-bit mono WAV as tlvdump writes it.
func readWAVFile(t *testing.T, path string) (int, []int16) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, len(b), 44, path)
	require.Equal(t, "RIFF", string(b[0:4]))
	require.Equal(t, "WAVE", string(b[8:12]))
	require.Equal(t, uint16(1), bin.LittleEndian.Uint16(b[22:24]), "mono")
	require.Equal(t, uint16(16), bin.LittleEndian.Uint16(b[34:36]), "16-bit")
	rate := int(bin.LittleEndian.Uint32(b[24:28]))
	data := b[44:]
	out := make([]int16, len(data)/2)
	for i := range out {
		out[i] = int16(bin.LittleEndian.Uint16(data[2*i:]))
	}
	return rate, out
}
