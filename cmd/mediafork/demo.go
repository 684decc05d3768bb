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
	"sync"
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
		Long: `The whole path on this machine, no FreeSWITCH needed: two simulated switches
(one with mod_audio_fork, one with only mod_audio_stream) place six calls with
a tone on each side; rules and the dialplan socket fork five; a TLV receiver
writes their WAVs and checks every tone. Exit 0 when every check passes.
With --console the calls stay up with the web console (a loopback URL and a
token, printed) until Ctrl-C: stopping, restarting or starting forks there or
with "mediafork fork" is not a failure (the checks judge the demo's own forks).`,
		Example: examples(
			"mediafork demo",
			"# Keep the calls up and watch them in the web console; Ctrl-C ends it",
			"mediafork demo --console",
			"# Send to your own receiver, ten seconds a call",
			"mediafork demo --receiver 127.0.0.1:9000 --seconds 10",
		),
		Args: cobra.NoArgs,
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

// demoListeners are the listeners the demo binds on loopback port 0 and
// hands to mediafork (options.listen): a port chosen and then bound by
// mediafork could be taken by another process in between.
type demoListeners struct{ byAddr map[string]net.Listener }

// bind binds one on 127.0.0.1:0 and returns its address.
func (l *demoListeners) bind() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	if l.byAddr == nil {
		l.byAddr = map[string]net.Listener{}
	}
	l.byAddr[ln.Addr().String()] = ln
	return ln.Addr().String(), nil
}

// listen is options.listen: each listener bound here is handed over once.
func (l *demoListeners) listen(network, address string) (net.Listener, error) {
	if ln, ok := l.byAddr[address]; ok {
		delete(l.byAddr, address)
		return ln, nil
	}
	return net.Listen(network, address)
}

// close closes those not handed over.
func (l *demoListeners) close() {
	for _, ln := range l.byAddr {
		ln.Close()
	}
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
	var lns demoListeners
	defer lns.close()
	ingest, err := lns.bind()
	if err != nil {
		return err
	}
	outbound, err := lns.bind()
	if err != nil {
		return err
	}
	c := conf.Defaults()
	c.FreeSWITCH = []conf.FreeSWITCH{{Name: "sim", Address: sw.Addr(), Password: "ClueCon", Module: conf.ModuleAuto},
		{Name: "sim-stream", Address: swStream.Addr(), Password: "ClueCon", Module: conf.ModuleAuto}}
	c.Ingest.Listen, c.Ingest.URL = ingest, "ws://"+ingest
	c.Outbound.Listen, c.API.Listen = outbound, ""
	if console != nil {
		if c.API.Listen, err = lns.bind(); err != nil {
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
	// The talk-back call (issue 22), with the built-in receiver: a bot
	// answers it (demo_talkback.go).
	var talkback *demoTalkback
	if sink != nil {
		if talkback, err = startDemoTalkback(); err != nil {
			return err
		}
		defer talkback.close()
		talkback.configure(c)
	}
	if err = c.Validate(); err != nil {
		return err
	}
	d, err := newDaemon(c, options{listen: lns.listen}, log, new(slog.LevelVar))
	if err != nil {
		return err
	}
	// Every fork that ends, by stream id: the checks judge the forks the demo
	// started (rules, the dialplan socket), not those an operator started or
	// stopped from the console or the CLI meanwhile.
	origins := &forkOrigins{byStream: map[uint32]forkOrigin{}}
	d.registry.ObserveEnd(origins.ended)
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
		if !dc.forked {
			how = "answered; no rule matches: not forked"
		}
		fmt.Fprintf(out, "  call %s -> %s  %s  %4.0f Hz / %4.0f Hz  %s\n", dc.caller, dc.dest, dc.uuid, dc.readHz, dc.writeHz, how)
	}
	if talkback != nil {
		if err := talkback.place(sw); err != nil {
			return err
		}
		fmt.Fprintf(out, "  call %s -> %s  %s  %4.0f Hz / %4.0f Hz  bridged; its b-leg forked to a bot that talks back (audiofork, talkback: true)\n",
			tbCaller, tbDest, talkback.caller.UUID, tbCallerHz, tbCalleeHz)
	}
	// The talk begins once every fork asked for streams: on a busy machine
	// a module's connection to the ingest can take longer than the talk,
	// and the call would hang up (its digits pressed) before its fork began.
	var notLive []string
	if waitFor(10*time.Second, func() bool {
		notLive = notLive[:0]
		for _, dc := range calls {
			if dc.forked && len(d.registry.Get(mediafork.CallID(dc.uuid))) == 0 {
				notLive = append(notLive, dc.caller)
			}
		}
		return len(notLive) == 0
	}) != nil {
		return &exitError{code: 1, err: fmt.Errorf("demo: no fork streams 10 s after the call was answered: %s", strings.Join(notLive, ", "))}
	}
	began := time.Now()
	if console != nil {
		url := "http://" + c.API.Listen + "/"
		fmt.Fprintf(out, "\nweb console: %s\ntoken:       %s\n(listen-in is on; Ctrl-C hangs the calls up and ends the demo)\n", url, c.API.Token)
		for _, dc := range calls {
			if !dc.forked {
				fmt.Fprintf(out, "the call to %s is not forked: fork it from the console's Fork button, or\n"+
					"  MEDIAFORK_API_TOKEN=%s mediafork fork start %s --profile demo --api http://%s\n", dc.dest, c.API.Token, dc.uuid, c.API.Listen)
			}
		}
		fmt.Fprintln(out, "(forks you start, stop or restart meanwhile are shown, not judged: the checks are of the forks the demo started)")
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
	pressed, reaching := 0, 0 // reaching: digits pressed on a call with a live fork (an operator may have stopped one)
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
		if len(d.registry.Get(mediafork.CallID(dc.uuid))) > 0 {
			reaching += len(demoDigits)
		}
	}
	if sink != nil {
		waitFor(5*time.Second, func() bool { return sink.Counts().DTMF >= reaching })
	}
	if talkback != nil { // the bot has spoken, and heard back
		talkback.wait(10 * time.Second)
		talkback.hangup(sw)
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
	// Every fork ends with the hangups (an operator's ones too); then their
	// end packets reach the receiver.
	waitFor(10*time.Second, func() bool { return d.registry.Len() == 0 })
	waitFor(5*time.Second, func() bool {
		for _, s := range sink.Streams() {
			if s.End == nil {
				return false
			}
		}
		return true
	})
	stopDaemon()
	if err := <-daemonDone; err != nil {
		return err
	}
	daemonDone <- nil
	stopSink()
	<-sinkDone
	sinkDone = make(chan struct{})
	close(sinkDone)
	summary := demoSummary(out, sink, calls, origins, pressed)
	if failures := talkback.report(out); failures > 0 && summary == nil {
		return &exitError{code: 1, err: fmt.Errorf("demo: %d talk-back check(s) failed", failures)}
	}
	return summary
}

// forkOrigin is what started a fork and how it ended.
type forkOrigin struct {
	uuid    mediafork.CallID
	trigger mediafork.Trigger
	reason  string
}

// demoStarted reports whether the demo itself started a fork of this
// origin: its rules and its dialplan socket call do; the API (console,
// `mediafork fork start`) and fs_cli are an operator's.
func (o forkOrigin) demoStarted() bool {
	return o.trigger == mediafork.TriggerRule || o.trigger == mediafork.TriggerSocket
}

// forkOrigins are the ended forks by stream id (every output's).
type forkOrigins struct {
	mu       sync.Mutex
	byStream map[uint32]forkOrigin
}

// ended is a registry end observer.
func (fo *forkOrigins) ended(f *mediafork.Fork, reason mediafork.EndReason) {
	in := f.Info()
	o := forkOrigin{uuid: in.UUID, trigger: in.Trigger, reason: reason.String()}
	fo.mu.Lock()
	defer fo.mu.Unlock()
	fo.byStream[in.StreamID] = o
	for _, out := range in.Outputs {
		fo.byStream[out.StreamID] = o
	}
}

// of is the origin of a stream; ok false when no fork of it was seen ending.
func (fo *forkOrigins) of(id uint32) (forkOrigin, bool) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	o, ok := fo.byStream[id]
	return o, ok
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

// minJudged is how many packets a stream the demo started needs for its
// tone to be judged: one an operator stopped at once may have a handful.
const minJudged = 25

func demoSummary(out io.Writer, sink *tlvdump.Receiver, calls []*demoCall, origins *forkOrigins, pressed int) error {
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
	row := func(dc *demoCall, dir, packets, bytes, dominant, expected, res string) {
		fmt.Fprintf(out, "%-10s %-6s %-5s %-8s %-10s %-9s %-8s %s\n", dc.caller, dc.dest, dir, packets, bytes, dominant, expected, res)
	}
	fmt.Fprintf(out, "%-10s %-6s %-5s %-8s %-10s %-9s %-8s %s\n", "caller", "dest", "dir", "packets", "bytes", "dominant", "expected", "result")
	failures, forked, operator, stoppedByOperator := 0, 0, 0, 0
	var packets, bytes [4]int
	for _, dc := range calls {
		// The streams of the forks the demo started are judged; an
		// operator's are shown.
		var own, others []*tlvdump.Stream
		for _, s := range byCaller[dc.caller] {
			if o, ok := origins.of(s.StreamID); ok && !o.demoStarted() {
				others = append(others, s)
			} else {
				own = append(own, s)
			}
		}
		if len(own) > 0 {
			forked++
		}
		switch {
		case !dc.forked && len(own) > 0:
			row(dc, "-", "-", "-", "-", "-", "FAIL: forked by the demo, which has no rule for it")
			failures++
		case !dc.forked:
			row(dc, "-", "-", "-", "-", "-", "ok (not forked: no rule)")
		case len(own) == 0 || len(own)%2 != 0:
			fmt.Fprintf(out, "%-10s %-6s FAIL: %d directions arrived\n", dc.caller, dc.dest, len(own))
			failures++
		}
		for _, s := range own {
			if !dc.forked {
				break
			}
			want := dc.readHz
			if s.Direction == tlvcodec.TX {
				want = dc.writeHz
			}
			hz := s.DominantHz(8000)
			res := "ok"
			stopped := s.End != nil && s.End.Reason == tlvcodec.ReasonStopped
			switch {
			case s.End == nil || (s.End.Reason != tlvcodec.ReasonHangup && !stopped):
				res = "FAIL: no end packet"
			case s.Missing > 0:
				res = fmt.Sprintf("FAIL: %d missing", s.Missing)
			case stopped && s.Packets < minJudged:
				res = "ok (stopped by an operator before its tone could be judged)"
				stoppedByOperator++
			case abs(float64(hz)-want) > 15:
				res = "FAIL: wrong tone"
			}
			if strings.HasPrefix(res, "FAIL") {
				failures++
			} else if res == "ok" {
				var notes []string
				if stopped {
					stoppedByOperator++
					notes = append(notes, "stopped by an operator")
				}
				if dc.stream {
					notes = append(notes, dc.module())
				}
				if len(notes) > 0 {
					res = "ok (" + strings.Join(notes, "; ") + ")"
				}
			}
			packets[s.Direction] += s.Packets
			bytes[s.Direction] += s.Bytes
			row(dc, s.Direction.String(), fmt.Sprint(s.Packets), fmt.Sprint(s.Bytes), fmt.Sprintf("%d Hz", hz), fmt.Sprintf("%.0f Hz", want), res)
		}
		for _, s := range others {
			o, _ := origins.of(s.StreamID)
			operator++
			end := "no end packet"
			if s.End != nil {
				end = "ended: " + s.End.Reason.String()
			}
			row(dc, s.Direction.String(), fmt.Sprint(s.Packets), fmt.Sprint(s.Bytes), fmt.Sprintf("%d Hz", s.DominantHz(8000)), "-",
				fmt.Sprintf("not judged: started by an operator (%s), %s", o.trigger, end))
		}
	}
	fmt.Fprintf(out, "\ncalls: %d placed, %d forked by the demo; RX: %d packets, %d bytes; TX: %d packets, %d bytes\n",
		len(calls), forked, packets[mediafork.DirRX], bytes[mediafork.DirRX], packets[mediafork.DirTX], bytes[mediafork.DirTX])
	if operator > 0 {
		fmt.Fprintf(out, "(and %d stream(s) of forks an operator started, not judged)\n", operator)
	}
	dtmf := sink.Counts().DTMF
	fmt.Fprintf(out, "DTMF: %d digits pressed (uuid_send_dtmf %s on each forked call), %d DTMF packets received", pressed, demoDigits, dtmf)
	switch {
	case operator > 0 || stoppedByOperator > 0:
		fmt.Fprintln(out, " (not judged: an operator changed the forks, and the digits go to whichever fork is live)")
	case dtmf != pressed:
		fmt.Fprintln(out, ": FAIL")
		failures++
	default:
		fmt.Fprintln(out)
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

var (
	credRE = regexp.MustCompile(`cred=[^ &]*`)
	descRE = regexp.MustCompile(`"` + mediafork.DescriptionKey + `":"[A-Za-z0-9_-]*"`)
)

// redactCredentials hides fork credentials in what the demo prints (SPEC
// section 5: credentials never appear), and shortens the fork descriptions
// (signed, not secret, but hundreds of bytes of base64).
func redactCredentials(s string) string {
	s = credRE.ReplaceAllString(s, "cred=<redacted>")
	return descRE.ReplaceAllString(s, `"`+mediafork.DescriptionKey+`":"<description>"`)
}

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
