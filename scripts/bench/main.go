// Command bench is mediafork's load benchmark, all on loopback: mediafork as a
// separate process, N simulated mod_audio_fork clients and a UDP sink in this
// one. It prints one table.
//
//	go run ./scripts/bench                          # real time: 500, 1000 and 2000 calls, then saturation
//	go run ./scripts/bench -calls 1000 -duration 20s -mode realtime
//	go run ./scripts/bench -calls 200,500,1000 -duration 10s -mode realtime -runs 5
//	go run ./scripts/bench -mode idle -idle 10s -runs 3
//	go run ./scripts/bench -protocol rtp -calls 1000 -mode realtime   # the same load to an RTP endpoint
//	go run ./scripts/bench -protocol twilio -calls 1000 -mode realtime   # to a Twilio-protocol WebSocket server
//	go run ./scripts/bench -protocol tlv,rtp -calls 200,1000 -runs 3 -mode realtime   # two protocols, run by run in the same minutes
//	go run ./scripts/bench -bin /tmp/mf -ingress ws,wss,haproxy -control goroutine -calls 200,500 -runs 3 -idle 0
//	go run ./scripts/bench -bin old=/tmp/mf-a,new=/tmp/mf-b -calls 500,1000 -runs 3 -idle 0   # A/B, interleaved
//
// Several binaries (-bin a,b,c; label=path names one), ways in (-ingress) and
// a control (-control) are measured in the same minutes: each run of a row
// goes through every one of them in turn, and the row's table shows them side
// by side, with when its runs were and the load average before and after.
// -ingress: ws (plain), wss (TLS in mediafork, with a throwaway certificate)
// or haproxy (HAProxy terminating TLS in front of the plain ingest,
// ingest.tls_terminated_by_proxy: its CPU and mediafork's together).
// -control goroutine adds the first binary with the goroutine reader (serve
// --ingest-reader goroutine: crypto/tls for wss://) over each ingress but
// haproxy; -control PATH adds that binary over ws.
//
// -protocol says what the benchmark profile's one endpoint is: tlv (the
// default: one UDP destination per call's two directions), rtp (l16 in
// network order: RX and TX to their own ports, RTCP to two more, the sink
// reading all four), twilio (a WebSocket connection per call to a server in
// this process, both tracks as media messages, -twilio-encoding pcmu by
// default) or audiofork (a WebSocket connection per call, stereo L16 binary
// frames). A stream protocol's packets are its media messages (twilio: two a
// frame, audiofork: one); its latency is to the server's read (TCP has no
// receive stamps), and only where the stamp survives the encoding (l16:
// -twilio-encoding l16, audiofork).
// Every row is measured -runs times, each with a fresh mediafork process, and
// shows the median with the spread (min–max) of the runs: the VM is noisy.
// Idle (modes idle and all, and realtime unless -idle 0): mediafork with no
// fork, connected to a simulated switch, API and ingest listening; its CPU from
// /proc over -idle, and its context switches per second (wake-ups).
//
// Real time: every call sends a 640-byte stereo 8 kHz frame every 20 ms, as
// FreeSWITCH does. Saturation: -sat-calls connections send as fast as mediafork
// takes them. Each frame carries its send time in its first four left-channel
// samples, so the sink measures ingest-to-UDP latency from the RX packets.
// The same run measures the raw limit: a minimal Go loop sending the same
// datagrams to the same sink, one goroutine.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/ipv4"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/scripts/internal/probe"
)

var (
	mode     = flag.String("mode", "all", "realtime, saturation, idle or all")
	callsArg = flag.String("calls", "500,1000,2000", "real-time call counts, comma separated")
	satCalls = flag.Int("sat-calls", 64, "connections in saturation mode")
	duration = flag.Duration("duration", 10*time.Second, "measurement window per run (after ramp-up)")
	binPath  = flag.String("bin", "", "mediafork binaries, comma separated, label=path to name one; interleaved run by run (default: build ./cmd/mediafork)")
	ingress  = flag.String("ingress", "ws", "how the calls reach mediafork, comma separated: ws, wss (TLS in mediafork) or haproxy (HAProxy terminating TLS in front of the plain ingest)")
	control  = flag.String("control", "none", "a control in the same minutes: goroutine (the first binary's goroutine reader, over each -ingress but haproxy), a binary (over ws), or none")
	haproxyB = flag.String("haproxy", "haproxy", "the HAProxy binary for -ingress haproxy")
	quiet    = flag.Float64("quiet", 0, "before each row, wait until the 1-minute load average is below this (0: do not wait), at most -quiet-max")
	quietMax = flag.Duration("quiet-max", 10*time.Minute, "the longest -quiet waits before a row (then it starts anyway, and says so)")
	profile  = flag.String("cpuprofile", "", "write mediafork's CPU profile of the last run here")
	runs     = flag.Int("runs", 1, "runs per row; the table shows the median and the spread (min–max)")
	idleFor  = flag.Duration("idle", 60*time.Second, "idle row window (0: no idle row)")
	protocol = flag.String("protocol", "tlv", "the endpoint's output protocol, comma separated to compare several run by run: tlv, rtp, twilio or audiofork")
	twEnc    = flag.String("twilio-encoding", "pcmu", "a twilio endpoint's encoding: pcmu (no latency: µ-law loses the stamp) or l16")
)

const frameBytes = 640 // stereo, 8 kHz, 20 ms

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name                 string
	calls                int
	framesIn, packetsOut float64       // per second
	sent, received       uint64        // audio packets expected and counted
	p50, p99, max        time.Duration // stamp → the datagram in the sink's socket (kernel receive time)
	p99Read              time.Duration // stamp → the sink's read of it (its own scheduling included)
	cpu                  float64       // % of one core
	loadCPU, hostCPU     float64       // the load generator's (this process) and the whole machine's, % of one core
	rssPerFork           float64       // KiB
	drops                float64       // packets mediafork could not send (whole run)
	allocsPer1k          float64       // heap allocations in mediafork per 1,000 frames in (the whole process, in the window)
	ctxPerSec            float64       // context switches per second (idle row)
	proxyCPU             float64       // HAProxy's, % of one core (counted in cpu too)
	at                   time.Time     // when the run began
}

func (r result) loss() float64 {
	if r.sent == 0 {
		return 0
	}
	return 100 * (1 - float64(r.received)/float64(r.sent))
}

// row is one line of the table: the runs of one measurement.
type row []result

// stat is the median and spread of f over the runs, formatted by format.
func (rw row) stat(f func(result) float64, format string) string {
	v := make([]float64, len(rw))
	for i, r := range rw {
		v[i] = f(r)
	}
	sort.Float64s(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	if len(v) == 1 {
		return fmt.Sprintf(format, med)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", med, v[0], v[len(v)-1])
}

func usf(d time.Duration) float64 { return float64(d) / 1e3 }

func run() error {
	bins := strings.Split(*binPath, ",")
	if *binPath == "" {
		dir, err := os.MkdirTemp("", "mediafork-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bins = []string{filepath.Join(dir, "mediafork")}
		out, err := exec.Command("go", "build", "-o", bins[0], "./cmd/mediafork").CombinedOutput()
		if err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	protocols := strings.Split(*protocol, ",")
	subs, err := subjects(bins, strings.Split(*ingress, ","), protocols, *control)
	if err != nil {
		return err
	}
	var cert *testCert
	for _, sub := range subs {
		if sub.ingress != "ws" && cert == nil {
			if cert, err = newTestCert(); err != nil {
				return err
			}
			defer os.RemoveAll(cert.dir)
		}
	}
	sinks := map[string]*sink{} // one per protocol, shared by its subjects
	for _, p := range protocols {
		if sinks[p] != nil {
			continue
		}
		sk, err := newSink(p)
		if err != nil {
			return err
		}
		defer sk.close()
		sinks[p] = sk
	}
	start, loadStart := time.Now(), loadAvg()
	raw := rawLimit(sinks[protocols[0]])

	// One measurement: every subject in turn, -runs times.
	type table struct {
		title        string
		from, to     time.Time
		loadA, loadB string
		rows         []row // by subject
	}
	interleave := func(title string, subs []subject, measure func(subject) (result, error)) (table, error) {
		if *quiet > 0 {
			waitQuiet(title, *quiet, *quietMax)
		}
		t := table{title: title, from: time.Now(), loadA: loadAvg(), rows: make([]row, len(subs))}
		for range max(1, *runs) {
			for i, sub := range subs {
				r, err := measure(sub)
				if err != nil {
					return t, fmt.Errorf("%s, %s: %w", title, sub, err)
				}
				t.rows[i] = append(t.rows[i], r)
			}
		}
		t.to, t.loadB = time.Now(), loadAvg()
		return t, nil
	}
	var tables []table
	var idle *table
	var idleSubs []subject // the binaries over ws, with their own reader
	if *idleFor > 0 && *mode != "saturation" {
		for _, sub := range subs {
			if sub.ingress == "ws" && sub.reader == "" {
				idleSubs = append(idleSubs, sub)
			}
		}
		t, err := interleave("idle", idleSubs, func(sub subject) (result, error) { return runIdle(sub.bin) })
		if err != nil {
			return err
		}
		idle = &t
	}
	if *mode == "realtime" || *mode == "all" {
		for _, f := range strings.Split(*callsArg, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return err
			}
			t, err := interleave(fmt.Sprintf("%d calls, real time", n), subs, func(sub subject) (result, error) { return runLoad(sub, cert, sinks[sub.protocol], n, false) })
			if err != nil {
				return err
			}
			tables = append(tables, t)
		}
	}
	if *mode == "saturation" || *mode == "all" {
		t, err := interleave(fmt.Sprintf("saturation, %d connections", *satCalls), subs, func(sub subject) (result, error) { return runLoad(sub, cert, sinks[sub.protocol], *satCalls, true) })
		if err != nil {
			return err
		}
		tables = append(tables, t)
	}

	clock := func(t time.Time) string { return t.Format("15:04:05") }
	fmt.Printf("\nmediafork load benchmark — %s–%s, %d CPUs, %s, window %s, endpoint protocol %s\n", start.Format("2006-01-02 15:04:05"), clock(time.Now()), runtime.NumCPU(), cpuModel(), *duration, strings.Join(protocols, ", "))
	fmt.Printf("load average (1, 5, 15 min) before %s, after %s\n", loadStart, loadAvg())
	if sinks["twilio"] != nil {
		fmt.Printf("twilio encoding %s\n", *twEnc)
	}
	fmt.Printf("raw UDP send limit (one Go goroutine, 332-byte datagrams to the same sink): %.0f packets/s\n", raw)
	fmt.Printf("%d run(s) per row and subject, the subjects in turn: median (min–max)\n", max(1, *runs))
	for _, sub := range subs {
		fmt.Printf("  %s: %s\n", sub, sub.bin)
	}
	fmt.Println()
	if idle != nil {
		fmt.Printf("idle (0 forks, switch connected, API and ingest listening, %s), %s–%s, load %s → %s:\n", *idleFor, clock(idle.from), clock(idle.to), idle.loadA, idle.loadB)
		for i, rw := range idle.rows {
			fmt.Printf("  %s: CPU %s %% of a core, %s context switches/s\n", idleSubs[i],
				rw.stat(func(r result) float64 { return r.cpu }, "%.3f"), rw.stat(func(r result) float64 { return r.ctxPerSec }, "%.0f"))
		}
		fmt.Println()
	}
	for _, t := range tables {
		fmt.Printf("%s — %s–%s, load average %s → %s\n", t.title, clock(t.from), clock(t.to), t.loadA, t.loadB)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "subject\tframes/s in\tpackets/s out\tloss %\tmediafork drops\tp50 µs\tp99 µs\tmax µs\tp99 µs at the sink's read\tCPU %/core\tCPU per 1000 calls\tof which proxy\tRSS/fork KiB\tallocs per 1000 frames\tof raw limit\tload gen CPU %\thost CPU %\truns at\t")
		for i, rw := range t.rows {
			var at []string
			for _, x := range rw {
				at = append(at, clock(x.at))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", subs[i],
				rw.stat(func(r result) float64 { return r.framesIn }, "%.0f"),
				rw.stat(func(r result) float64 { return r.packetsOut }, "%.0f"),
				rw.stat(result.loss, "%.3f"),
				rw.stat(func(r result) float64 { return r.drops }, "%.0f"),
				rw.stat(func(r result) float64 { return usf(r.p50) }, "%.0f"),
				rw.stat(func(r result) float64 { return usf(r.p99) }, "%.0f"),
				rw.stat(func(r result) float64 { return usf(r.max) }, "%.0f"),
				rw.stat(func(r result) float64 { return usf(r.p99Read) }, "%.0f"),
				rw.stat(func(r result) float64 { return r.cpu }, "%.1f"),
				rw.stat(func(r result) float64 { return r.cpu * 1000 / float64(r.calls) }, "%.1f"),
				rw.stat(func(r result) float64 { return r.proxyCPU * 1000 / float64(r.calls) }, "%.1f"),
				rw.stat(func(r result) float64 { return r.rssPerFork }, "%.1f"),
				rw.stat(func(r result) float64 { return r.allocsPer1k }, "%.2f"),
				rw.stat(func(r result) float64 { return 100 * r.packetsOut / raw }, "%.0f"),
				rw.stat(func(r result) float64 { return r.loadCPU }, "%.1f"),
				rw.stat(func(r result) float64 { return r.hostCPU }, "%.1f"),
				strings.Join(at, " "))
		}
		tw.Flush()
		fmt.Println()
	}
	return nil
}

// startMediafork runs bin serve on loopback ports of its own, with the config
// config makes from the API and ingest addresses (logging at warn, no
// outbound listener added).
func startMediafork(bin string, config func(api, ingest string) string, extra ...string) (p *benchProc, api, ingest string, err error) {
	if ingest, err = probe.FreeAddr(); err != nil {
		return nil, "", "", err
	}
	if api, err = probe.FreeAddr(); err != nil {
		return nil, "", "", err
	}
	dir, err := os.MkdirTemp("", "mediafork-bench-cfg")
	if err != nil {
		return nil, "", "", err
	}
	cfg := filepath.Join(dir, "mediafork.yaml")
	if err = os.WriteFile(cfg, []byte("log: {level: warn}\noutbound: {listen: \"\"}\n"+config(api, ingest)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, "", "", err
	}
	cmd := exec.Command(bin, append([]string{"serve", "--config", cfg}, extra...)...)
	cmd.Stderr = os.Stderr
	if err = cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, "", "", err
	}
	return &benchProc{cmd: cmd, dir: dir}, api, ingest, nil
}

// benchProc is a mediafork under measurement and its config's directory
// (kept while it runs: it watches the file).
type benchProc struct {
	cmd *exec.Cmd
	dir string
}

// stop ends it as an operator would: SIGTERM, then waits.
func (p *benchProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	os.RemoveAll(p.dir)
}

// runIdle starts mediafork connected to a simulated switch, with no fork, and
// measures its CPU and context switches over -idle.
func runIdle(bin string) (result, error) {
	sw := fssim.NewSwitch("ClueCon", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := sw.Listen("127.0.0.1:0"); err != nil {
		return result{}, err
	}
	defer sw.Close()
	mf, api, _, err := startMediafork(bin, func(api, ingest string) string {
		return fmt.Sprintf(`freeswitch: [{name: sim, address: "%s", password: ClueCon}]
api: {listen: "%s"}
ingest: {listen: "%s", url: "ws://%s"}
`, sw.Addr(), api, ingest, ingest)
	})
	if err != nil {
		return result{}, err
	}
	defer mf.stop()
	cmd := mf.cmd
	connected := false
	for i := 0; i < 400 && !connected; i++ {
		connected = probe.Metric(api, "mediafork_esl_connected{freeswitch=\"sim\"}") == 1
		if !connected {
			time.Sleep(25 * time.Millisecond)
		}
	}
	if !connected {
		return result{}, fmt.Errorf("idle: mediafork did not connect to the simulated switch")
	}
	time.Sleep(2 * time.Second) // start-up work done
	pid := cmd.Process.Pid
	cpu0, cs0 := cpuTime(pid), ctxSwitches(pid)
	t0 := time.Now()
	time.Sleep(*idleFor)
	cpu1, cs1 := cpuTime(pid), ctxSwitches(pid)
	el := time.Since(t0).Seconds()
	return result{name: "idle", at: t0, cpu: 100 * (cpu1 - cpu0).Seconds() / el, ctxPerSec: float64(cs1-cs0) / el}, nil
}

// ctxSwitches sums the voluntary and involuntary context switches of every
// thread of pid.
func ctxSwitches(pid int) int64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n int64
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "voluntary_ctxt_switches:") || strings.HasPrefix(line, "nonvoluntary_ctxt_switches:") {
				v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				n += v
			}
		}
	}
	return n
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			_, v, _ := strings.Cut(line, ":")
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// rawLimit sends 332-byte datagrams to the sink from one goroutine for two seconds.
func rawLimit(s *sink) float64 {
	conn, err := net.DialUDP("udp", nil, s.udpAddr())
	if err != nil {
		return 0
	}
	defer conn.Close()
	pkt := make([]byte, 332)
	pkt[0] = 0xFF // not a TLV type: the sink ignores it
	start := time.Now()
	n := 0
	for time.Since(start) < 2*time.Second {
		for i := 0; i < 1000; i++ {
			if _, err := conn.Write(pkt); err == nil {
				n++
			}
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// runLoad starts mediafork, connects calls and measures one window.
func runLoad(sub subject, cert *testCert, s *sink, calls int, saturate bool) (result, error) {
	at := time.Now()
	var extra []string
	if *profile != "" && !sub.control {
		extra = append(extra, "--cpuprofile", *profile)
	}
	if sub.reader != "" {
		extra = append(extra, "--ingest-reader", sub.reader)
	}
	// The proxy's address comes first: the ingest's url names it.
	var proxyAddr string
	if sub.ingress == "haproxy" {
		var err error
		if proxyAddr, err = probe.FreeAddr(); err != nil {
			return result{}, err
		}
	}
	mf, api, ingest, err := startMediafork(sub.bin, func(api, ingest string) string {
		in := fmt.Sprintf(`{listen: "%s", url: "ws://%s", max_forks: 20000}`, ingest, ingest)
		switch sub.ingress {
		case "wss":
			in = fmt.Sprintf(`{listen: "%s", url: "wss://%s", max_forks: 20000, tls: {cert_file: "%s", key_file: "%s"}}`, ingest, ingest, cert.certFile, cert.keyFile)
		case "haproxy":
			in = fmt.Sprintf(`{listen: "%s", url: "wss://%s", max_forks: 20000, tls_terminated_by_proxy: true}`, ingest, proxyAddr)
		}
		return fmt.Sprintf(`freeswitch: []
api: {listen: "%s"}
ingest: %s
profiles:
  bench: {endpoints: [%s]}
`, api, in, s.endpoint())
	}, extra...)
	if err != nil {
		return result{}, err
	}
	defer mf.stop()
	cmd := mf.cmd
	if werr := waitListening(ingest); werr != nil {
		return result{}, werr
	}
	dial, opts := "ws://"+ingest, fssim.AudioForkOptions{}
	var proxy *haproxy
	switch sub.ingress {
	case "wss":
		dial, opts.TLSConfig = "wss://"+ingest, cert.client
	case "haproxy":
		if proxy, err = startHAProxy(*haproxyB, ingest, cert, proxyAddr); err != nil {
			return result{}, err
		}
		defer proxy.stop()
		dial, opts.TLSConfig = "wss://"+proxyAddr, cert.client
	}
	time.Sleep(200 * time.Millisecond)
	baseRSS := rss(cmd.Process.Pid)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	forks := make([]*fssim.AudioFork, 0, calls)
	for i := 0; i < calls; i++ {
		a, err := fssim.DialAudioFork(ctx, fmt.Sprintf("%s/fork/bench-%d?profile=bench", dial, i), opts)
		if err != nil {
			return result{}, fmt.Errorf("call %d: %w", i, err)
		}
		forks = append(forks, a)
	}
	defer func() {
		for _, a := range forks {
			a.Conn.Close()
		}
	}()
	var sent atomic.Uint64
	var wg sync.WaitGroup
	if saturate {
		for _, a := range forks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				frame := make([]byte, frameBytes)
				for ctx.Err() == nil {
					stamp(frame)
					if a.Send(frame) != nil {
						return
					}
					sent.Add(1)
				}
			}()
		}
	} else {
		// Shards of calls, each on its own 20 ms tick, spread over the period
		// (FreeSWITCH's media ticks are per channel, not one burst for all).
		shards := min(50, calls)
		for sh := 0; sh < shards; sh++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(sh) * 20 * time.Millisecond / time.Duration(shards))
				frame := make([]byte, frameBytes)
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					for i := sh; i < len(forks); i += shards {
						stamp(frame)
						if forks[i].Send(frame) == nil {
							sent.Add(1)
						}
					}
				}
			}()
		}
	}
	time.Sleep(2 * time.Second) // ramp up
	s.reset()
	sent0 := sent.Load()
	proxyCPU := func() time.Duration {
		if proxy == nil {
			return 0
		}
		return cpuTime(proxy.cmd.Process.Pid)
	}
	// Allocations: the Go runtime's count before and after the window, less
	// what a scrape of /metrics allocates itself (measured by a pair of
	// scrapes back to back: the counter is read in the middle of each).
	mallocs := func() float64 { return probe.Sum(api, "go_memstats_mallocs_total") }
	scrapeA := mallocs()
	malloc0 := mallocs()
	scrapeCost := malloc0 - scrapeA
	cpu0, self0, host0, px0 := cpuTime(cmd.Process.Pid), cpuTime(os.Getpid()), hostIdle(), proxyCPU()
	t0 := time.Now()
	time.Sleep(*duration)
	cpu1, self1, host1, px1 := cpuTime(cmd.Process.Pid), cpuTime(os.Getpid()), hostIdle(), proxyCPU()
	malloc1 := mallocs()
	elapsed := time.Since(t0)
	inWindow, _, _ := s.snapshot()
	rssNow := rss(cmd.Process.Pid)
	cancel()
	wg.Wait()
	sentN := sent.Load() - sent0
	time.Sleep(2 * time.Second) // frames queued in mediafork's sockets, packets in flight
	received, lat, latRead := s.snapshot()

	r := result{name: "real time", calls: calls, drops: probe.Sum(api, "mediafork_drops_total")}
	if saturate {
		r.name = "saturation"
	}
	r.framesIn = float64(inWindow) / float64(s.perFrame()) / elapsed.Seconds()
	if inWindow > 0 && malloc0 >= 0 && malloc1 >= 0 {
		r.allocsPer1k = max(malloc1-malloc0-scrapeCost, 0) * 1000 / (float64(inWindow) / float64(s.perFrame()))
	}
	r.sent = uint64(s.perFrame()) * sentN
	r.received = received
	if r.received > r.sent {
		r.received = r.sent // packets of frames sent just before the window
	}
	r.packetsOut = float64(inWindow) / elapsed.Seconds()
	r.at = at
	r.proxyCPU = 100 * (px1 - px0).Seconds() / elapsed.Seconds()
	r.cpu = 100*(cpu1-cpu0).Seconds()/elapsed.Seconds() + r.proxyCPU
	r.loadCPU = 100 * (self1 - self0).Seconds() / elapsed.Seconds()
	r.hostCPU = 100 * (float64(runtime.NumCPU()) - (host1-host0).Seconds()/elapsed.Seconds())
	r.rssPerFork = float64(rssNow-baseRSS) / float64(calls)
	if len(latRead) > 0 {
		sort.Slice(latRead, func(i, j int) bool { return latRead[i] < latRead[j] })
		r.p99Read = latRead[len(latRead)*99/100]
	}
	if len(lat) == 0 { // no kernel stamps (not Linux): the sink's read times
		lat = latRead
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return r, nil
}

// stamp writes the send time into the first four left-channel samples.
// (wall clock, as the kernel's receive stamps are).
func stamp(frame []byte) {
	ns := uint64(time.Now().UnixNano())
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint16(frame[4*i:], uint16(ns>>(16*i)))
	}
}

func waitListening(addr string) error {
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("mediafork did not listen on %s", addr)
}

// cpuTime is the process's user+system time, from /proc/<pid>/stat.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// hostIdle is the time every CPU of the machine spent idle, waiting for I/O
// or stolen by the hypervisor, from /proc/stat. The machine's busy time is
// the window times the CPUs minus this: the idle fields are measured, where
// user and system are sampled at the tick, which a load woken by a 1 ms timer
// can dodge.
func hostIdle() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var idle int64
	for _, i := range []int{4, 5, 8} {
		if i < len(f) {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			idle += n
		}
	}
	return time.Duration(idle) * time.Second / 100 // USER_HZ
}

// rss is VmRSS in KiB.
func rss(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	return 0
}

// sink counts audio packets and measures latency from RX packets' stamps.
// For tlv it is one socket; for rtp four from an even port: RX's RTP and
// RTCP, TX's RTP and RTCP; for twilio and audiofork a WebSocket server
// (and one UDP socket, for the raw limit).
type sink struct {
	protocol string
	conns    []*net.UDPConn
	wg       sync.WaitGroup

	stamped bool // the kernel stamps each datagram's arrival

	ws     *http.Server // stream protocols'
	wsLn   net.Listener
	wsMu   sync.Mutex
	wsConn map[*websocket.Conn]bool

	mu       sync.Mutex
	received uint64
	lat      []time.Duration // to the kernel's receive stamp
	latRead  []time.Duration // to the sink's read
}

func newSink(protocol string) (*sink, error) {
	s := &sink{protocol: protocol, stamped: true}
	listen := func(port int) (*net.UDPConn, error) {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			return nil, err
		}
		conn.SetReadBuffer(32 << 20)
		// SO_RCVBUF is capped at net.core.rmem_max; as root, force a buffer large
		// enough that the sink, sharing the CPUs, does not drop what mediafork sent.
		forceReadBuffer(conn, 64<<20)
		s.stamped = s.stamped && receiveTimes(conn)
		return conn, nil
	}
	first, err := listen(0)
	if err != nil {
		return nil, err
	}
	s.conns = append(s.conns, first)
	if protocol == "rtp" {
		// An even port and the three after it, all free: try until a block is.
		for try := 0; ; try++ {
			base := first.LocalAddr().(*net.UDPAddr).Port
			ok := base%2 == 0 && base+3 <= 65535
			for i := 1; ok && i < 4; i++ {
				c, lerr := listen(base + i)
				if lerr != nil {
					ok = false
					break
				}
				s.conns = append(s.conns, c)
			}
			if ok {
				break
			}
			for _, c := range s.conns {
				c.Close()
			}
			if try == 100 {
				return nil, fmt.Errorf("no four free UDP ports from an even one")
			}
			s.conns = nil
			if first, err = listen(0); err != nil {
				return nil, err
			}
			s.conns = append(s.conns, first)
		}
	}
	for i, c := range s.conns {
		s.wg.Add(1)
		go s.loop(c, i)
	}
	if protocol == "twilio" || protocol == "audiofork" {
		if err := s.serveWS(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// udpAddr is the first UDP socket's address.
func (s *sink) udpAddr() *net.UDPAddr { return s.conns[0].LocalAddr().(*net.UDPAddr) }

// perFrame is the audio packets (messages) one frame of a call makes.
func (s *sink) perFrame() int {
	if s.protocol == "audiofork" {
		return 1 // one stereo frame
	}
	return 2 // RX and TX (twilio: the inbound and outbound tracks)
}

// endpoint is the profile's endpoint for the sink, as YAML.
func (s *sink) endpoint() string {
	switch s.protocol {
	case "rtp":
		return fmt.Sprintf(`{address: "%s", protocol: rtp}`, s.udpAddr())
	case "twilio":
		return fmt.Sprintf(`{protocol: twilio, url: "ws://%s/media", encoding: %s}`, s.wsLn.Addr(), *twEnc)
	case "audiofork":
		return fmt.Sprintf(`{protocol: audiofork, url: "ws://%s/media"}`, s.wsLn.Addr())
	}
	return fmt.Sprintf(`"%s"`, s.udpAddr())
}

// serveWS serves the stream protocols' connections: each message read,
// media counted, RX stamps read where the encoding keeps them.
func (s *sink) serveWS() error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.wsLn, s.wsConn = ln, map[*websocket.Conn]bool{}
	up := websocket.Upgrader{Subprotocols: []string{"audio.drachtio.org"}, ReadBufferSize: 16 << 10}
	s.ws = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s.wsMu.Lock()
		s.wsConn[c] = true
		s.wsMu.Unlock()
		defer func() {
			s.wsMu.Lock()
			delete(s.wsConn, c)
			s.wsMu.Unlock()
			c.Close()
		}()
		buf := make([]byte, 64<<10)
		stampB := make([]byte, 16)
		for {
			mt, rd, err := c.NextReader()
			if err != nil {
				return
			}
			n, _ := io.ReadFull(rd, buf)
			if n == len(buf) {
				io.Copy(io.Discard, rd)
			}
			now := time.Now()
			b := buf[:n]
			var ok, hasStamp bool
			var ns uint64
			if s.protocol == "audiofork" {
				ok = mt == websocket.BinaryMessage && len(b) >= 16
				if ok {
					for i := 0; i < 4; i++ { // the left channel's first four samples
						ns |= uint64(binary.LittleEndian.Uint16(b[4*i:])) << (16 * i)
					}
					hasStamp = true
				}
			} else if ok = bytes.HasPrefix(b, []byte(`{"event":"media"`)); ok && *twEnc == "l16" && bytes.Contains(b, []byte(`"track":"inbound"`)) {
				if i := bytes.Index(b, []byte(`"payload":"`)); i >= 0 && len(b) >= i+11+12 {
					if k, err := base64.StdEncoding.Decode(stampB, b[i+11:i+11+12]); err == nil && k >= 8 {
						for j := 0; j < 4; j++ {
							ns |= uint64(binary.LittleEndian.Uint16(stampB[2*j:])) << (16 * j)
						}
						hasStamp = true
					}
				}
			}
			if !ok {
				continue
			}
			s.mu.Lock()
			s.received++
			if hasStamp && len(s.latRead) < 2_000_000 {
				if d := now.Sub(time.Unix(0, int64(ns))); d >= 0 && d < time.Minute {
					s.latRead = append(s.latRead, d)
				}
			}
			s.mu.Unlock()
		}
	})}
	go s.ws.Serve(ln)
	return nil
}

// audio reports whether b is an audio packet, and where the stamp of an RX
// one is (its first four samples) and in which byte order (-1: not RX).
func (s *sink) audio(b []byte, conn int) (ok bool, stampAt int, bigEndian bool) {
	switch s.protocol {
	case "rtp":
		switch {
		case conn%2 == 1 || len(b) < 20 || b[0]>>6 != 2 || b[1]&0x7f != 96:
			return false, -1, false // RTCP, or not l16
		case conn == 0:
			return true, 12, true // RX: L16 in network order
		}
		return true, -1, false
	case "twilio", "audiofork":
		return false, -1, false // the UDP socket only takes the raw limit's datagrams
	}
	if len(b) < 20 || b[0] != 0x02 {
		return false, -1, false
	}
	if b[7] == 0x01 { // RX: the left channel carries the stamp
		return true, 12, false
	}
	return true, -1, false
}

func (s *sink) loop(conn *net.UDPConn, index int) {
	defer s.wg.Done()
	pc := ipv4.NewPacketConn(conn)
	msgs := make([]ipv4.Message, 256)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
		msgs[i].OOB = make([]byte, 128)
	}
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			return
		}
		now := time.Now()
		var got uint64
		var lat, latRead []time.Duration
		for _, m := range msgs[:n] {
			b := m.Buffers[0][:m.N]
			ok, at, bigEndian := s.audio(b, index)
			if !ok {
				continue
			}
			got++
			if at < 0 {
				continue
			}
			var ns uint64
			for i := 0; i < 4; i++ {
				v := binary.LittleEndian.Uint16(b[at+2*i:])
				if bigEndian {
					v = binary.BigEndian.Uint16(b[at+2*i:])
				}
				ns |= uint64(v) << (16 * i)
			}
			sent := time.Unix(0, int64(ns))
			if d := now.Sub(sent); d >= 0 && d < time.Minute {
				latRead = append(latRead, d)
			}
			if at, ok := receiveTime(m.OOB[:m.NN]); ok && s.stamped {
				if d := at.Sub(sent); d >= 0 && d < time.Minute {
					lat = append(lat, d)
				}
			}
		}
		s.mu.Lock()
		s.received += got
		if len(s.latRead) < 2_000_000 {
			s.lat = append(s.lat, lat...)
			s.latRead = append(s.latRead, latRead...)
		}
		s.mu.Unlock()
	}
}

func (s *sink) reset() {
	s.mu.Lock()
	s.received, s.lat, s.latRead = 0, nil, nil
	s.mu.Unlock()
}

func (s *sink) snapshot() (received uint64, lat, latRead []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received, append([]time.Duration(nil), s.lat...), append([]time.Duration(nil), s.latRead...)
}

func (s *sink) close() {
	if s.ws != nil {
		s.ws.Close()
		s.wsMu.Lock()
		for c := range s.wsConn {
			c.Close()
		}
		s.wsMu.Unlock()
	}
	for _, c := range s.conns {
		c.Close()
	}
	s.wg.Wait()
}
