package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediafork/mediafork/checkpoint"
	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/esl"
	"github.com/mediafork/mediafork/ha"
	"github.com/mediafork/mediafork/internal/buildinfo"
	"github.com/mediafork/mediafork/internal/sdnotify"
	"github.com/mediafork/mediafork/internal/settings"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/transport/gso"
	"github.com/mediafork/mediafork/transport/udp"
	"github.com/mediafork/mediafork/transport/wsout"
	"github.com/mediafork/mediafork/web"
)

func serveCmd() *cobra.Command {
	var file, cpuProfile, reader string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon",
		Long: `Run the daemon: connect to every FreeSWITCH of the config over ESL, fork the calls
its rules match, take the audio on the ingest and send it to the profiles'
endpoints; the HTTP API, /metrics and the web console on api.listen.
Config: --config, else ./mediafork.yaml if present, else the defaults; any
scalar key from the environment (MEDIAFORK_<SECTION>_<KEY>). SIGHUP reloads
the config; SIGTERM or SIGINT end every fork with end packets and exit 0.`,
		Example: examples(
			"# The example config: ESL to 127.0.0.1:8021, ingest on 127.0.0.1:8090",
			"mediafork serve --config conf/mediafork.example.yaml",
			"# A key from the environment over the file's",
			"MEDIAFORK_INGEST_MAX_FORKS=500 mediafork serve --config /etc/mediafork/mediafork.yaml",
			"# Reload after an edit (systemd: systemctl reload mediafork)",
			"mediafork config check --config /etc/mediafork/mediafork.yaml && kill -HUP \"$(pidof mediafork)\"",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, path, err := loadConfig(file)
			if err != nil {
				return err
			}
			log, level := newLogger(c.Log, os.Stderr)
			bi := buildinfo.Get()
			log.Info("mediafork starting", "version", bi.Version, "commit", bi.Commit, "go", bi.GoVersion, "config", orDefaults(path))
			if reader != "epoll" && reader != "goroutine" {
				return fmt.Errorf("--ingest-reader %q: epoll or goroutine", reader)
			}
			d, err := newDaemon(c, options{goroutineReader: reader == "goroutine"}, log, level)
			if err != nil {
				return err
			}
			d.path = path
			// SIGTERM and SIGINT end every fork's streams (end packets,
			// reason 4); SIGUSR2 hands them over to the instance that
			// starts next: no end packets, a checkpoint to resume from.
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2)
			defer signal.Stop(sigs)
			go func() {
				select {
				case sig := <-sigs:
					if sig == syscall.SIGUSR2 {
						d.handover.Store(true)
					}
					stop()
				case <-ctx.Done():
				}
			}()
			if cpuProfile != "" { // for the load benchmark: profile until shutdown
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				pprof.StartCPUProfile(f)
				defer pprof.StopCPUProfile()
			}
			return d.run(ctx)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "config file (default ./mediafork.yaml if present)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to this file until shutdown")
	cmd.Flags().StringVar(&reader, "ingest-reader", "epoll", "how the ingest reads connections: epoll (Linux), or goroutine (one per connection: the reference path, the load benchmark's control)")
	return cmd
}

func orDefaults(path string) string {
	if path == "" {
		return "(defaults)"
	}
	return path
}

func newLogger(c conf.Log, w *os.File) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// shutdownGrace bounds how long the daemon waits for forks to end on SIGTERM.
const shutdownGrace = 4 * time.Second

// options are the daemon's settings that no config key sets. serve runs with
// the zero value (each field's default); tests give their daemons shorter
// ones. The config's own settings reach each component when it is built
// (newDaemon) and at a reload (reload.go).
type options struct {
	// requestTimeout bounds how long a client may take to send its HTTP
	// request (and its TLS handshake), on the ingest and API listeners: the
	// headers; on the ingest, the body too. Default 10 s.
	requestTimeout time.Duration
	// idleTimeout closes keep-alive connections that stay unused. Default 60 s.
	idleTimeout time.Duration
	// esl are the ESL clients' settings but the config's limits (which
	// newDaemon sets): reconnect backoff, command and handshake timeouts.
	esl esl.ClientSettings
	// lookupHost resolves destination names; nil is the system resolver.
	lookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// listen binds the ingest, API and outbound listeners; nil is
	// net.Listen. The demo and the tests hand in listeners they bound on
	// port 0 and keep: no other process can take the port between its choice
	// and its use.
	listen func(network, address string) (net.Listener, error)
	// goroutineReader serves every ingest connection with a goroutine and
	// gorilla's reader (wss:// with crypto/tls), not the epoll reader: the
	// reference path, for the load benchmark's control (serve
	// --ingest-reader goroutine).
	goroutineReader bool
}

func (o *options) resolve() error {
	c := settings.New("daemon")
	settings.Default(c, "requestTimeout", &o.requestTimeout, 10*time.Second)
	settings.Default(c, "idleTimeout", &o.idleTimeout, 60*time.Second)
	if o.listen == nil {
		o.listen = net.Listen
	}
	return c.Err()
}

// daemon is mediafork serve: the media path (ingest, registry, sender) and the
// control path (ESL clients, outbound listener, orchestrator), wired.
type daemon struct {
	cfg          atomic.Pointer[conf.Config]
	opts         options
	path         string // the config file, for reloads ("" for none)
	log          *slog.Logger
	level        *slog.LevelVar
	registry     *mediafork.Registry
	orchestrator *mediafork.Orchestrator
	ingest       *web.Ingest
	api          *web.API
	console      *web.Console
	bridge       *esl.Bridge
	known        *mediafork.KnownEndpoints // config endpoints: what metrics may name
	// endpointKey keys stream endpoints' fingerprints in credentials:
	// ingest.key as it was at start (as the signer's), or a random key when
	// that is empty (this process alone serves its credentials then).
	endpointKey []byte
	reloads     web.ReloadStats

	ingestLn   net.Listener
	apiLn      net.Listener
	certs      []*web.CertReloader // of the TLS listeners
	outbound   *esl.Outbound
	onListened func(ingest, outbound, api net.Addr) // tests and demo
	serving    atomic.Bool                          // every listener is served (readiness)
	node       *ha.Node                             // in a cluster (ha.go); nil: alone
	// handover: the shutdown hands the streams over (SIGUSR2) instead of
	// ending them.
	handover atomic.Bool
}

// newDaemon builds every component with its settings: from c, and from opts
// for what no config key sets.
func newDaemon(c *conf.Config, opts options, log *slog.Logger, level *slog.LevelVar) (_ *daemon, err error) {
	if err = opts.resolve(); err != nil {
		return nil, err
	}
	d := &daemon{opts: opts, log: log, level: level, known: mediafork.NewKnownEndpoints(), endpointKey: []byte(c.Ingest.Key)}
	if len(d.endpointKey) == 0 {
		d.endpointKey = make([]byte, 32)
		rand.Read(d.endpointKey)
	}
	d.cfg.Store(c)
	d.reloads.Loaded(time.Now())
	d.registry = mediafork.NewRegistry(transport(log), c.Ingest.MaxForks, c.Fork.EndPacket, log)
	d.registry.SetKnownEndpoints(d.known)
	d.registry.SetFormatPackets(c.Fork.FormatPacket)
	d.registry.SetDTMFPackets(c.Fork.DTMFPacket)
	d.registry.SetGapPackets(c.Fork.GapPacket)
	d.registry.SetStreamDialer(wsout.New())
	d.registry.SetTalkback(mediafork.TalkbackSettings{MaxQueue: time.Duration(c.Talkback.MaxQueue)})
	d.registry.SetStreamEndpoints(d.destinations(c))
	signer := mediafork.NewSigner([]byte(c.Ingest.Key))
	d.orchestrator = mediafork.NewOrchestrator(d.registry, signer, d.tracked(d.policy(c)), log)
	d.orchestrator.OnLogger = loggerSwitch(level)
	host, _ := os.Hostname()
	d.orchestrator.SetInstance(c.InstanceName(host))
	if c.Fork.Checkpoint != "" {
		saved, lerr := checkpoint.Load(c.Fork.Checkpoint)
		if lerr != nil {
			// A checkpoint that cannot be read costs exactness only: the
			// streams are resumed from the calls' own records.
			log.Warn("checkpoint not read; resuming from the calls' records alone", "path", c.Fork.Checkpoint, "error", lerr)
		} else if len(saved.Forks) > 0 {
			log.Info("checkpoint read", "path", c.Fork.Checkpoint, "forks", len(saved.Forks), "alive", saved.Alive)
		}
		d.orchestrator.SetSaved(saved)
	}
	if d.ingest, err = web.NewIngest(d.registry, signer, d.orchestrator, d.ingestSettings(c), log); err != nil {
		return nil, err
	}
	d.bridge = esl.NewBridge(d.orchestrator)
	for i, fs := range c.FreeSWITCH {
		var cl *esl.Client
		if cl, err = esl.NewClient(fs.Name, fs.Address, fs.Password, d.bridge, d.eslSettings(c.Limits), log); err != nil {
			return nil, err
		}
		cl.SetConfigKey(fmt.Sprintf("freeswitch[%d]", i)) // log lines name the key to fix
		d.bridge.Add(cl, fs.Module)
	}
	metrics := d.metrics()
	bi := buildinfo.Get()
	metrics.RegisterBuildInfo(bi.Version, bi.Commit, bi.GoVersion)
	d.api = web.NewAPI(d.orchestrator, d.switchesUp, level, apiSettings(c), metrics.Handler(), log)
	if d.console, err = web.NewConsole(d.registry, d.switchesUp, consoleSettings(c), log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			d.console.Close() // its level sampler
		}
	}()
	d.console.SetSwitchStatus(d.switchStatuses)
	d.api.SetConsole(d.console)
	d.api.SetHealth(d.health)
	if err = d.joinCluster(c, metrics); err != nil {
		return nil, err
	}
	if d.ingestLn, err = d.opts.listen("tcp", c.Ingest.Listen); err != nil {
		d.leaveCluster()
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if c.API.Listen != "" {
		if d.apiLn, err = d.opts.listen("tcp", c.API.Listen); err != nil {
			d.leaveCluster()
			d.ingestLn.Close()
			return nil, fmt.Errorf("api: %w", err)
		}
	}
	// The epoll readers are goroutines: a step below that fails stops them
	// (the ingest's TLS listener depends on them).
	switch {
	case opts.goroutineReader:
		log.Info("ingest: one goroutine per connection", "reason", "--ingest-reader goroutine")
	default:
		if err = d.ingest.UsePoller(web.ReaderSettings{MaxRoundInterval: time.Duration(c.Ingest.MaxRoundInterval)}); err != nil {
			log.Info("ingest: one goroutine per connection", "reason", err)
		}
	}
	if err = d.useTLS(c); err != nil {
		d.ingest.Close()
		d.leaveCluster()
		return nil, err
	}
	if c.Outbound.Listen != "" {
		out := esl.OutboundSettings{ConnSettings: d.eslSettings(c.Limits).ConnSettings, MaxConns: c.Limits.OutboundConnections}
		var ln net.Listener
		if ln, err = d.opts.listen("tcp", c.Outbound.Listen); err != nil {
			err = fmt.Errorf("outbound: %w", err)
		} else {
			d.outbound, err = esl.NewOutbound(ln, d.bridge.HandleOutbound, out, log)
		}
		if err != nil {
			d.leaveCluster()
			d.ingestLn.Close()
			if d.apiLn != nil {
				d.apiLn.Close()
			}
			d.closeCerts()
			d.ingest.Close()
			return nil, err
		}
	}
	return d, nil
}

func (d *daemon) switchStats() map[string]web.SwitchStat {
	out := map[string]web.SwitchStat{}
	for _, c := range d.bridge.Clients() {
		// Connected once forks can be started on it: the ESL session is up and
		// the orchestrator has it (alias installed, module known).
		up := c.Connected() && d.orchestrator.Knows(c.Name())
		out[c.Name()] = web.SwitchStat{Connected: up, Reconnects: c.Reconnects.Load(), QueuedEvents: c.QueuedEvents()}
	}
	return out
}

// limitStats sums the bounds hit and panics recovered over the edges.
func (d *daemon) limitStats() web.LimitStats {
	in := &d.ingest.Stats
	l := web.LimitStats{
		Hits: map[string]uint64{
			"ingest_max_forks":         in.Refused[http.StatusServiceUnavailable].Load(),
			"ingest_max_message_bytes": in.TooBig.Load(),
			"esl_event_queue":          0,
			"outbound_connections":     0,
			"outbound_header_bytes":    0,
		},
		Panics: map[string]uint64{"ingest": in.Panics.Load(), "esl": 0, "outbound": 0, "stream": d.registry.StreamPanics()},
	}
	for _, c := range d.bridge.Clients() {
		l.Hits["esl_event_queue"] += c.QueueOverflows.Load()
		l.Panics["esl"] += c.HandlerPanics.Load()
	}
	if d.outbound != nil {
		l.Hits["esl_event_queue"] += d.outbound.QueueOverflows.Load()
		l.Hits["outbound_connections"] += d.outbound.Refused.Load()
		l.Hits["outbound_header_bytes"] += d.outbound.HeadersTooBig.Load()
		l.Panics["outbound"] += d.outbound.HandlerPanics.Load()
	}
	return l
}

func (d *daemon) switchesUp() map[string]bool {
	out := map[string]bool{}
	for name, s := range d.switchStats() {
		out[name] = s.Connected
	}
	return out
}

// run serves until ctx is done, then ends every fork with end packets.
func (d *daemon) run(ctx context.Context) error {
	errLog := slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)
	// Every connection state has a deadline: the request, its headers
	// (ReadHeaderTimeout) and whatever body it announces (ReadTimeout: no
	// ingest request has one, but after answering the server reads the rest
	// of it to keep the connection, and a body announced and never sent held
	// it for ever); an idle keep-alive (IdleTimeout); an upgraded connection
	// has the ingest's own (the upgrade lifts these). The API's requests are
	// small and quick.
	srv := &http.Server{Handler: d.ingest.Handler(), ReadHeaderTimeout: d.opts.requestTimeout, ReadTimeout: d.opts.requestTimeout,
		IdleTimeout: d.opts.idleTimeout, MaxHeaderBytes: 16 << 10, ErrorLog: errLog}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(d.ingestLn) }()
	d.log.Info("ingest listening", "addr", d.ingestLn.Addr().String(), "url", d.cfg.Load().Ingest.URL)
	apiSrv := &http.Server{Handler: d.api.Handler(), ReadHeaderTimeout: d.opts.requestTimeout, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: d.opts.idleTimeout, MaxHeaderBytes: 16 << 10, ErrorLog: errLog}
	var apiAddr net.Addr
	if d.apiLn != nil {
		apiAddr = d.apiLn.Addr()
		go func() { errc <- apiSrv.Serve(d.apiLn) }()
		d.log.Info("API listening", "addr", apiAddr.String())
	}

	control, stopControl := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range d.bridge.Clients() {
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(control) }()
	}
	var outAddr net.Addr
	if d.outbound != nil {
		outAddr = d.outbound.Addr()
		d.log.Info("outbound ESL listening", "addr", outAddr.String())
		wg.Add(1)
		go func() { defer wg.Done(); d.outbound.Serve(control) }()
	}
	// The checkpoint: written until the forks are ended or handed over, then
	// once more.
	ckCtx, stopCheckpoint := context.WithCancel(context.Background())
	defer stopCheckpoint()
	ckDone := make(chan struct{})
	if path := d.cfg.Load().Fork.Checkpoint; path != "" {
		w := &checkpoint.Writer{Path: path, Positions: d.orchestrator.Positions, Changes: d.orchestrator.Changes, Log: d.log.With("component", "checkpoint")}
		go func() { defer close(ckDone); w.Run(ckCtx) }()
	} else {
		close(ckDone)
	}
	d.serving.Store(true)
	if d.onListened != nil {
		d.onListened(d.ingestLn.Addr(), outAddr, apiAddr)
	}
	// SIGHUP is ours before READY=1: systemd may send a reload at once, and an
	// unhandled SIGHUP ends a Go program.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	// Every listener is bound and served: systemd may start what depends on us.
	d.notify(sdnotify.Ready, d.listenStatus())
	wg.Add(1)
	go func() { defer wg.Done(); d.watchConfig(control, hup) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("http: %w", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if d.node != nil {
		// Leaving a cluster: the others lead this instance's switches from
		// now on, and resume the streams of the forks it serves, which it
		// hands over (below).
		d.node.ResignAll()
	}
	handOver := d.handover.Load() || d.node != nil
	endForks := func() {
		if handOver {
			if err := d.registry.HandOverAll(sctx); err != nil {
				d.log.Warn("forks were not all handed over in time", "left", d.registry.Len())
			}
		} else if err := d.registry.StopAll(sctx, mediafork.EndShutdown); err != nil {
			d.log.Warn("forks did not all end in time", "left", d.registry.Len())
		}
	}
	if handOver {
		// The streams go on in the next instance (this one restarted, or
		// another of the cluster): no end packets; the checkpoint's last
		// write and the calls' variables say where each stands.
		d.log.Info("shutting down: handing forks over", "forks", d.registry.Len())
		d.notify(sdnotify.Stopping, fmt.Sprintf("stopping: handing %d forks over", d.registry.Len()))
		d.orchestrator.HandOver()
	} else {
		d.log.Info("shutting down: ending forks", "forks", d.registry.Len())
		d.notify(sdnotify.Stopping, fmt.Sprintf("stopping: ending %d forks", d.registry.Len()))
	}
	d.orchestrator.Close()
	endForks()
	srv.Shutdown(sctx)
	// A module that connected while the forks were ending, before Shutdown
	// closed the listener, has a fork the first pass did not see.
	if d.registry.Len() > 0 {
		endForks()
	}
	apiSrv.Shutdown(sctx)
	d.console.Close() // its connections are hijacked: Shutdown does not close them
	ingestDone := make(chan struct{})
	go func() { d.ingest.Wait(); close(ingestDone) }()
	select {
	case <-ingestDone:
	case <-sctx.Done():
		// Bounded like the rest: the process ends, and its connections with it.
		d.log.Warn("ingest connections did not all end in time; exiting anyway")
	}
	d.ingest.Close()
	// The forks' ends reach the switches (ended streams lose their resume
	// record) while the event sockets are up; no fork ends after the ingest
	// has stopped (Wait), so no hook starts after this wait began.
	hooks := make(chan struct{})
	go func() { d.registry.WaitHooks(); close(hooks) }()
	select {
	case <-hooks:
	case <-sctx.Done():
	}
	stopCheckpoint()
	<-ckDone
	stopControl()
	d.closeCerts()

	wg.Wait()
	d.registry.WaitHooks()
	d.leaveCluster() // after the hooks: the forks' claims are released
	d.registry.WaitTalkbackReaders()
	if serveErr == nil {
		servers := 1
		if d.apiLn != nil {
			servers = 2
		}
		for i := 0; i < servers; i++ {
			if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr = err
			}
		}
	}
	d.log.Info("mediafork stopped")
	return serveErr
}

// transport is how packets leave: UDP GSO batches where the kernel has them
// (Linux), else one datagram per send.
func transport(log *slog.Logger) mediafork.Transport {
	t, err := gso.New()
	if err != nil {
		log.Info("sending one datagram per packet", "reason", err)
		return udp.New()
	}
	return t
}

// The settings of each component, from the config. Built at start and again
// at each reload: each component's Reload takes what of them reloads.

// destinations are c's destinations as the daemon uses them: names resolved
// by its resolver, stream endpoints fingerprinted with its key.
func (d *daemon) destinations(c *conf.Config) *mediafork.Destinations {
	dst := c.DomainDestinations()
	dst.LookupHost = d.opts.lookupHost
	dst.EndpointKey = d.endpointKey
	return dst
}

// ingestSettings are the ingest's (its destinations tracked for metrics).
func (d *daemon) ingestSettings(c *conf.Config) web.IngestSettings {
	dst := d.destinations(c)
	return d.trackedIngest(web.IngestSettings{
		Token:           c.Ingest.Token,
		RefuseHandTyped: !conf.IsLoopback(c.Ingest.Listen),
		MaxMessageBytes: c.Ingest.MaxMessageBytes,
		Defaults:        c.Fork.Params(),
		Destinations:    dst,
		MediaTimeout:    time.Duration(c.Limits.IngestMediaTimeout),
	})
}

// policy is the orchestrator's policy for c.
func (d *daemon) policy(c *conf.Config) *mediafork.Policy {
	p := c.Policy()
	p.Destinations = d.destinations(c)
	return p
}

// eslSettings are the ESL clients' (and, but the backoff, the outbound
// listener's): the options' with the config's limits.
func (d *daemon) eslSettings(l conf.Limits) esl.ClientSettings {
	s := d.opts.esl
	s.MaxQueuedEvents, s.MaxQueuedBytes = l.ESLEventQueue, l.ESLEventQueueBytes
	return s
}

func apiSettings(c *conf.Config) web.APISettings { return web.APISettings{Token: c.API.Token} }

func consoleSettings(c *conf.Config) web.ConsoleSettings {
	return web.ConsoleSettings{ListenIn: c.API.ListenIn}
}

// loggerSwitch is what fs_cli's `mediafork logger on|off` does to the log
// level: on makes sure the fork summaries (info) are printed; off restores the
// level in force before on — not the startup level, which the API or a reload
// may have changed since.
func loggerSwitch(level *slog.LevelVar) func(on bool) {
	var mu sync.Mutex
	var before *slog.Level
	return func(on bool) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case on && before == nil:
			l := level.Level()
			before = &l
			if l > slog.LevelInfo {
				level.Set(slog.LevelInfo)
			}
		case !on && before != nil:
			level.Set(*before)
			before = nil
		}
	}
}

// leaveCluster revokes the instance's lease (what is left of its claims and
// leaderships goes at once) and stops its etcd client.
func (d *daemon) leaveCluster() {
	if d.node != nil {
		d.node.Close()
		d.node = nil
	}
}
