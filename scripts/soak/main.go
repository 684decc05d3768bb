// Command soak runs mediafork for a while under call churn and fails if it
// leaks: goroutines, open file descriptors or memory growing beyond noise.
//
//	go run ./scripts/soak                         # 500 real-time calls, 10 minutes
//	go run ./scripts/soak -calls 100 -duration 45s
//
// mediafork runs as its own process against the FreeSWITCH simulator: calls are
// answered and hung up continuously (a rule forks them), every one streaming
// stereo 8 kHz at 20 ms, into a UDP sink that counts packets.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/scripts/internal/probe"
)

var (
	calls    = flag.Int("calls", 500, "concurrent calls")
	duration = flag.Duration("duration", 10*time.Minute, "how long to churn")
	binPath  = flag.String("bin", "", "mediafork binary (default: build ./cmd/mediafork)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak: FAIL:", err)
		os.Exit(1)
	}
}

type sample struct {
	goroutines, fds int
	rssKiB          int64
	forks           int
}

func run() error {
	dir, err := os.MkdirTemp("", "mediafork-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := *binPath
	if bin == "" {
		bin = filepath.Join(dir, "mediafork")
		if out, berr := exec.Command("go", "build", "-o", bin, "./cmd/mediafork").CombinedOutput(); berr != nil {
			return fmt.Errorf("build: %v\n%s", berr, out)
		}
	}
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer sink.Close()
	sink.SetReadBuffer(16 << 20)
	var packets atomic.Uint64
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, rerr := sink.ReadFromUDPAddrPort(buf); rerr != nil {
				return
			}
			packets.Add(1)
		}
	}()
	sw := fssim.NewSwitch("ClueCon", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err = sw.Listen("127.0.0.1:0"); err != nil {
		return err
	}
	defer sw.Close()
	ingest, err := probe.FreeAddr()
	if err != nil {
		return err
	}
	api, err := probe.FreeAddr()
	if err != nil {
		return err
	}
	cfg := filepath.Join(dir, "mediafork.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`log: {level: warn}
freeswitch: [{name: sim, address: "%s", password: ClueCon}]
outbound: {listen: ""}
api: {listen: "%s"}
ingest: {listen: "%s", url: "ws://%s"}
profiles:
  soak: {endpoints: ["%s"]}
rules:
  - {name: soak, match: {Caller-Destination-Number: "^7"}, profile: soak}
`, sw.Addr(), api, ingest, ingest, sink.LocalAddr())), 0o600)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	if err := waitFor(10*time.Second, func() bool { return probe.Metric(api, "mediafork_esl_connected{freeswitch=\"sim\"}") == 1 }); err != nil {
		return fmt.Errorf("mediafork did not connect to the simulator")
	}

	// Churn: every call lives a random while, then another takes its place.
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	life := func() time.Duration {
		lo, hi := *duration/40, *duration/8
		lo, hi = max(lo, time.Second), max(hi, 2*time.Second)
		return lo + time.Duration(rand.Int64N(int64(hi-lo)))
	}
	var started, ended atomic.Uint64
	done := make(chan struct{})
	for i := 0; i < *calls; i++ {
		go func() {
			for ctx.Err() == nil {
				c := sw.Answer(fssim.CallOptions{Dest: fmt.Sprintf("7%04d", rand.IntN(10000)), ReadHz: 440, WriteHz: 1000})
				started.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(life()):
				}
				sw.Hangup(c.UUID, "NORMAL_CLEARING")
				ended.Add(1)
			}
			done <- struct{}{}
		}()
		time.Sleep(time.Millisecond) // spread the starts
	}
	warm := min(*duration/10, 30*time.Second)
	time.Sleep(warm)
	// On a loaded machine the calls may still be ramping up: the first sample
	// is of a full house, as the later ones are (fds grow with forks).
	waitFor(warm, func() bool { return probe.Metric(api, "mediafork_forks_active") >= float64(*calls) })
	first := measure(pid, api)
	fmt.Printf("soak: %d calls with churn for %s (mediafork pid %d)\n", *calls, *duration, pid)
	fmt.Printf("start: %+v\n", first)
	t := time.NewTicker(max(*duration/10, 5*time.Second))
	defer t.Stop()
	var last sample
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			last = measure(pid, api)
			fmt.Printf("  %s: %+v packets=%d calls started=%d ended=%d\n", time.Now().Format("15:04:05"), last, packets.Load(), started.Load(), ended.Load())
		}
	}
	if last.fds == 0 {
		last = measure(pid, api)
	}
	for i := 0; i < *calls; i++ {
		<-done
	}
	time.Sleep(2 * time.Second) // forks end after the hangups
	after := measure(pid, api)
	fmt.Printf("end (last sample with all calls up): %+v\n", last)
	fmt.Printf("after every call hung up: %+v\n", after)
	fmt.Printf("calls: %d started, %d ended; forks ended by hangup: %.0f; packets received: %d\n",
		started.Load(), ended.Load(), probe.Metric(api, `mediafork_forks_ended_total{outcome="hangup"}`), packets.Load())

	var problems []string
	if grow := last.goroutines - first.goroutines; grow > first.goroutines/10+20 {
		problems = append(problems, fmt.Sprintf("goroutines grew by %d", grow))
	}
	if grow := last.fds - first.fds; grow > first.fds/10+20 {
		problems = append(problems, fmt.Sprintf("file descriptors grew by %d", grow))
	}
	if grow := last.rssKiB - first.rssKiB; grow > first.rssKiB/4+16384 {
		problems = append(problems, fmt.Sprintf("RSS grew by %d KiB", grow))
	}
	if after.forks != 0 {
		problems = append(problems, fmt.Sprintf("%d forks still live after every call ended", after.forks))
	}
	if after.goroutines > first.goroutines/2+50 && after.goroutines >= first.goroutines {
		problems = append(problems, fmt.Sprintf("%d goroutines left with no call up", after.goroutines))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	fmt.Println("soak: PASS: no growth beyond noise")
	return nil
}

func measure(pid int, api string) sample {
	s := sample{goroutines: int(probe.Metric(api, "go_goroutines")), forks: int(probe.Metric(api, "mediafork_forks_active"))}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			s.rssKiB, _ = strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		}
	}
	return s
}

func waitFor(d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
