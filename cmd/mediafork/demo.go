package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
)

func demoCmd() *cobra.Command {
	var (
		wavDir   string
		receiver string
		seconds  float64
		verbose  bool
		console  bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "The whole path on this machine: a simulated FreeSWITCH, mediafork, and a TLV receiver writing WAVs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			talk := time.Duration(seconds * float64(time.Second))
			if console {
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return runDemoWith(ctx, cmd.OutOrStdout(), wavDir, talk, verbose, receiver, &demoConsole{})
			}
			return runDemoTo(cmd.Context(), cmd.OutOrStdout(), wavDir, talk, verbose, receiver)
		},
	}
	cmd.Flags().StringVar(&wavDir, "wav", "demo-wav", "where the receiver writes its WAV files")
	cmd.Flags().Float64Var(&seconds, "seconds", 3, "how long each call streams")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "show mediafork's log")
	cmd.Flags().BoolVar(&console, "console", false, "keep the calls up with the web console on a loopback URL (a random token, printed once) until Ctrl-C")
	cmd.Flags().StringVar(&receiver, "receiver", "", "send the forks to this external receiver (host:port) instead of the built-in one; "+
		"the built-in checks are skipped (the receiver checks), --wav is unused")
	return cmd
}

// demoCall is one call the demo places, with the tones of its two sides.
type demoCall struct {
	dest, caller    string
	readHz, writeHz float64
	outbound        bool // through the dialplan socket, with mediafork=...
	forked          bool // expected to be forked
	stream          bool // placed on the switch that has only mod_audio_stream
	uuid            string
}

// module is the media module the call's fork goes through.
func (dc *demoCall) module() string {
	if dc.stream {
		return fssim.ModAudioStream
	}
	return fssim.ModAudioFork
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func runDemo(ctx context.Context, out io.Writer, wavDir string, talk time.Duration, verbose bool) error {
	return runDemoTo(ctx, out, wavDir, talk, verbose, "")
}

// externalReceiver checks a --receiver address: a literal IP and a non-zero
// port (the demo adds it to destinations.allow for the dialplan-socket call).
func externalReceiver(s string) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--receiver: %w", err)
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("--receiver %q: need host:port with a port and an address other than 0.0.0.0", s)
	}
	return ap, nil
}

// demoConsole is `demo --console`: the API and its web console on a
// loopback port with a random token (listen-in on); the calls stay up until
// the context ends. ready, when set, is told the console's URL and token.
type demoConsole struct {
	ready func(url, token string)
}

// runDemoTo is runDemo; with receiver set, the forks go to that address
// instead of the built-in tlvdump, and the checks are left to that receiver.
func runDemoTo(ctx context.Context, out io.Writer, wavDir string, talk time.Duration, verbose bool, receiver string) error {
	return runDemoWith(ctx, out, wavDir, talk, verbose, receiver, nil)
}

// runDemoWith is runDemoTo, with the web console when console is set.
func runDemoWith(ctx context.Context, out io.Writer, wavDir string, talk time.Duration, verbose bool, receiver string, console *demoConsole) error {
	if ctx == nil {
		ctx = context.Background()
	}
	logLevel := slog.LevelWarn
	if verbose {
		logLevel = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	// 1. The receiving end: tlvdump, writing WAVs, or the external receiver.
	var (
		sink     *tlvdump.Receiver
		sinkAddr string
		external netip.AddrPort
		err      error
	)
	stopSink, sinkDone := func() {}, make(chan struct{})
	if receiver != "" {
		if external, err = externalReceiver(receiver); err != nil {
			return err
		}
		sinkAddr = external.String()
		close(sinkDone)
	} else {
		sink, err = tlvdump.Listen("127.0.0.1:0", tlvdump.Options{WavDir: wavDir})
		if err != nil {
			return err
		}
		sinkAddr = sink.Addr().String()
		var sinkCtx context.Context
		sinkCtx, stopSink = context.WithCancel(context.Background())
		go func() { defer close(sinkDone); sink.Run(sinkCtx) }()
	}
	defer func() { stopSink(); <-sinkDone }()

	// 2. Two simulated FreeSWITCHes: one with mod_audio_fork, one with only
	// mod_audio_stream (mediafork finds out with module_exists).
	sw := fssim.NewSwitch("ClueCon", log)
	if err = sw.Listen("127.0.0.1:0"); err != nil {
		return err
	}
	defer sw.Close()
	swStream := fssim.NewSwitch("ClueCon", log)
	swStream.SetModules(fssim.ModAudioStream)
	if err = swStream.Listen("127.0.0.1:0"); err != nil {
		return err
	}
	defer swStream.Close()

	// 3. mediafork, configured by a rule: calls to 2000-2099 go to the receiver.
	ingest, err := freeAddr()
	if err != nil {
		return err
	}
	outbound, err := freeAddr()
	if err != nil {
		return err
	}
	c := conf.Defaults()
	c.FreeSWITCH = []conf.FreeSWITCH{{Name: "sim", Address: sw.Addr(), Password: "ClueCon", Module: conf.ModuleAuto},
		{Name: "sim-stream", Address: swStream.Addr(), Password: "ClueCon", Module: conf.ModuleAuto}}
	c.Ingest.Listen, c.Ingest.URL = ingest, "ws://"+ingest
	c.Outbound.Listen, c.API.Listen = outbound, ""
	if console != nil {
		if c.API.Listen, err = freeAddr(); err != nil {
			return err
		}
		tok := make([]byte, 16)
		rand.Read(tok)
		c.API.Token, c.API.ListenIn = hex.EncodeToString(tok), true
	}
	c.Profiles = map[string]conf.Profile{"demo": {Endpoints: []string{sinkAddr}}}
	if external.IsValid() { // the dialplan-socket call names it ad hoc: allow it
		c.Destinations.Allow = append(c.Destinations.Allow, netip.PrefixFrom(external.Addr(), external.Addr().BitLen()).String())
	}
	c.Rules = []conf.Rule{{Name: "demo-calls", Match: map[string]string{"Caller-Destination-Number": "^20[0-9][0-9]$"}, Profile: "demo",
		Metadata: map[string]string{"channel_id": "demo-${Caller-Destination-Number}"}}}
	if err = c.Validate(); err != nil {
		return err
	}
	d, err := newDaemon(c, options{}, log, new(slog.LevelVar))
	if err != nil {
		return err
	}
	listening := make(chan net.Addr, 1)
	d.onListened = func(_, outbound, _ net.Addr) { listening <- outbound }
	parent := ctx
	if console != nil { // the context ending (Ctrl-C) ends the calls; mediafork stays to end their forks
		parent = context.Background()
	}
	dctx, stopDaemon := context.WithCancel(parent)
	daemonDone := make(chan error, 1)
	go func() { daemonDone <- d.run(dctx) }()
	defer func() { stopDaemon(); <-daemonDone }()
	outboundAddr := <-listening
	if err := waitFor(5*time.Second, func() bool {
		return d.bridge.Clients()[0].Connected() && d.bridge.Clients()[1].Connected() &&
			d.bridge.Module("sim") == mediafork.ModuleAudioFork && d.bridge.Module("sim-stream") == mediafork.ModuleAudioStream
	}); err != nil {
		return errors.New("mediafork did not connect to the simulated FreeSWITCHes and find their modules")
	}

	calls := []*demoCall{
		{dest: "2000", caller: "+15550001", readHz: 440, writeHz: 1000, forked: true},
		{dest: "2001", caller: "+15550002", readHz: 600, writeHz: 1500, forked: true},
		{dest: "2002", caller: "+15550003", readHz: 800, writeHz: 2000, forked: true},
		{dest: "3000", caller: "+15550004", readHz: 700, writeHz: 1200, forked: false}, // no rule matches
		{dest: "4000", caller: "+15550005", readHz: 500, writeHz: 1700, forked: true, outbound: true},
		{dest: "2003", caller: "+15550006", readHz: 900, writeHz: 1300, forked: true, stream: true},
	}
	fmt.Fprintf(out, "mediafork demo: simulated FreeSWITCH on %s (mod_audio_fork) and on %s (only mod_audio_stream), ingest on %s, receiver on %s\n",
		sw.Addr(), swStream.Addr(), ingest, sinkAddr)
	for _, dc := range calls {
		sw := sw
		if dc.stream {
			sw = swStream
		}
		o := fssim.CallOptions{Dest: dc.dest, CallerID: dc.caller, ReadHz: dc.readHz, WriteHz: dc.writeHz}
		if dc.outbound {
			o.Vars = map[string]string{"mediafork": sinkAddr + ",Demo-Socket," + dc.dest + "," + dc.caller + "," + dc.dest}
		}
		call := sw.Answer(o)
		dc.uuid = call.UUID
		how := "answered"
		if dc.stream {
			how = "answered on sim-stream: mod_audio_stream (uuid_audio_stream), found by module_exists"
		}
		if dc.outbound {
			res, err := sw.DialOutbound(ctx, outboundAddr.String(), call)
			if err != nil {
				return fmt.Errorf("dialplan socket: %w", err)
			}
			how = fmt.Sprintf("dialplan socket (%s)", redactCredentials(strings.Join(res.Commands, ", ")))
		}
		fmt.Fprintf(out, "  call %s -> %s  %4.0f Hz / %4.0f Hz  %s\n", dc.caller, dc.dest, dc.readHz, dc.writeHz, how)
	}
	began := time.Now()
	if console != nil {
		url := "http://" + c.API.Listen + "/"
		fmt.Fprintf(out, "\nweb console: %s\ntoken:       %s\n(listen-in is on; Ctrl-C hangs the calls up and ends the demo)\n", url, c.API.Token)
		if console.ready != nil {
			console.ready(url, c.API.Token)
		}
		<-ctx.Done()
		time.Sleep(talk - time.Since(began)) // each call streams --seconds at least, for the checks
	} else {
		time.Sleep(talk)
	}
	// Each forked call's caller presses 1 then # (uuid_send_dtmf): FreeSWITCH's
	// DTMF events reach the forks, which send each digit to the receiver as a
	// DTMF packet, on the stream's media clock.
	pressed := 0
	for _, dc := range calls {
		if !dc.forked {
			continue
		}
		on := sw
		if dc.stream {
			on = swStream
		}
		on.FsCli("uuid_send_dtmf " + dc.uuid + " " + demoDigits)
		pressed += len(demoDigits)
	}
	if sink != nil {
		waitFor(5*time.Second, func() bool { return sink.Counts().DTMF >= pressed })
	}
	for _, dc := range calls {
		if dc.stream {
			swStream.Hangup(dc.uuid, "NORMAL_CLEARING")
		} else {
			sw.Hangup(dc.uuid, "NORMAL_CLEARING")
		}
	}
	// Each fork went through its switch's module.
	forkedBy := func(dc *demoCall) bool {
		if dc.stream {
			return countStarts(swStream.APICommands(), "uuid_audio_stream "+dc.uuid+" start ") > 0 &&
				countStarts(swStream.APICommands(), "uuid_audio_fork ") == 0
		}
		return countStarts(sw.APICommands(), "uuid_audio_fork "+dc.uuid+" start ") > 0
	}
	var wrongModule []string
	for _, dc := range calls {
		if dc.forked && !forkedBy(dc) {
			wrongModule = append(wrongModule, dc.caller)
		}
	}
	if len(wrongModule) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("demo: not forked with their switch's module: %s", strings.Join(wrongModule, ", "))}
	}
	if sink == nil {
		return demoExternalEnd(out, d, stopDaemon, daemonDone, calls, sinkAddr)
	}
	wantDirs := 0
	for _, dc := range calls {
		if dc.forked {
			wantDirs += 2
		}
	}
	ended := func() int {
		n := 0
		for _, s := range sink.Streams() {
			if s.End != nil {
				n++
			}
		}
		return n
	}
	waitFor(5*time.Second, func() bool { return ended() >= wantDirs })
	stopDaemon()
	if err := <-daemonDone; err != nil {
		return err
	}
	daemonDone <- nil
	stopSink()
	<-sinkDone
	sinkDone = make(chan struct{})
	close(sinkDone)
	return demoSummary(out, sink, calls, pressed)
}

// demoDigits are what each forked call's caller presses.
const demoDigits = "1#"

// demoExternalEnd finishes a demo whose forks went to an external receiver: it
// waits for every fork to end (its end packets are sent by then), stops
// mediafork and lists what the receiver should have got.
func demoExternalEnd(out io.Writer, d *daemon, stopDaemon func(), daemonDone chan error, calls []*demoCall, addr string) error {
	ended := waitFor(10*time.Second, func() bool { return d.registry.Len() == 0 })
	stopDaemon()
	err := <-daemonDone
	daemonDone <- nil // for the deferred stop
	if err != nil {
		return err
	}
	if ended != nil {
		return &exitError{code: 1, err: fmt.Errorf("demo: %d fork(s) still live 10 s after hangup", d.registry.Len())}
	}
	fmt.Fprintf(out, "\n%-10s %-6s %-8s %-8s %s\n", "caller", "dest", "RX", "TX", "forked")
	for _, dc := range calls {
		fmt.Fprintf(out, "%-10s %-6s %-8s %-8s %v\n", dc.caller, dc.dest, fmt.Sprintf("%.0f Hz", dc.readHz), fmt.Sprintf("%.0f Hz", dc.writeHz), dc.forked)
	}
	for _, dc := range calls {
		if dc.stream {
			fmt.Fprintf(out, "(%s went through %s)\n", dc.caller, dc.module())
		}
	}
	fmt.Fprintf(out, "demo: every fork ended; its packets went to %s, which does the checking.\n", addr)
	return nil
}

func demoSummary(out io.Writer, sink *tlvdump.Receiver, calls []*demoCall, pressed int) error {
	fmt.Fprintln(out)
	sink.WriteSummary(out)
	streams := sink.Streams()
	byCaller := map[string][]*tlvdump.Stream{}
	for _, s := range streams {
		if s.Signaling != nil {
			byCaller[s.Signaling.CallerID] = append(byCaller[s.Signaling.CallerID], s)
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-10s %-6s %-5s %-8s %-10s %-9s %-8s %s\n", "caller", "dest", "dir", "packets", "bytes", "dominant", "expected", "result")
	failures := 0
	var packets, bytes [4]int
	for _, dc := range calls {
		got := byCaller[dc.caller]
		if !dc.forked {
			res := "ok (not forked: no rule)"
			if len(got) > 0 {
				res, failures = "FAIL: forked", failures+1
			}
			fmt.Fprintf(out, "%-10s %-6s %-5s %-8s %-10s %-9s %-8s %s\n", dc.caller, dc.dest, "-", "-", "-", "-", "-", res)
			continue
		}
		if len(got) != 2 {
			fmt.Fprintf(out, "%-10s %-6s FAIL: %d directions arrived\n", dc.caller, dc.dest, len(got))
			failures++
			continue
		}
		for _, s := range got {
			want := dc.readHz
			if s.Direction == tlvcodec.TX {
				want = dc.writeHz
			}
			hz := s.DominantHz(8000)
			res := "ok"
			switch {
			case s.End == nil || s.End.Reason != tlvcodec.ReasonHangup:
				res = "FAIL: no end packet"
			case s.Missing > 0:
				res = fmt.Sprintf("FAIL: %d missing", s.Missing)
			case abs(float64(hz)-want) > 15:
				res = "FAIL: wrong tone"
			}
			if res != "ok" {
				failures++
			} else if dc.stream {
				res = "ok (" + dc.module() + ")"
			}
			packets[s.Direction] += s.Packets
			bytes[s.Direction] += s.Bytes
			fmt.Fprintf(out, "%-10s %-6s %-5s %-8d %-10d %-9s %-8s %s\n", dc.caller, dc.dest, s.Direction, s.Packets, s.Bytes,
				fmt.Sprintf("%d Hz", hz), fmt.Sprintf("%.0f Hz", want), res)
		}
	}
	fmt.Fprintf(out, "\ncalls: %d placed, %d forked; RX: %d packets, %d bytes; TX: %d packets, %d bytes\n",
		len(calls), len(byCaller), packets[mediafork.DirRX], bytes[mediafork.DirRX], packets[mediafork.DirTX], bytes[mediafork.DirTX])
	dtmf := sink.Counts().DTMF
	fmt.Fprintf(out, "DTMF: %d digits pressed (uuid_send_dtmf %s on each forked call), %d DTMF packets received\n", pressed, demoDigits, dtmf)
	if dtmf != pressed {
		failures++
	}
	if failures > 0 {
		return &exitError{code: 1, err: fmt.Errorf("demo: %d check(s) failed", failures)}
	}
	fmt.Fprintln(out, "demo: every forked call arrived whole, RX and TX each with its own tone, and every digit pressed. WAV files are in the --wav folder.")
	return nil
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func waitFor(d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

var credRE = regexp.MustCompile(`cred=[^ &]*`)

// redactCredentials hides fork credentials in what the demo prints (SPEC
// section 5: credentials never appear).
func redactCredentials(s string) string { return credRE.ReplaceAllString(s, "cred=<redacted>") }

// countStarts counts the commands that begin with prefix.
func countStarts(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}
