package web

import (
	"runtime"
	"time"

	"github.com/mediafork/mediafork/internal/settings"
	"github.com/mediafork/mediafork/mediafork"
)

// The settings of the web edges. Each component takes its own when it is
// built (a zero field takes its default; a bad one is an error then) and
// keeps them: nothing of them lives in package variables, so two components
// (two tests) can run side by side with different ones. Where some reload,
// the component has one method for it, Reload, which says which.

// IngestSettings are the ingest's (NewIngest). Token, RefuseHandTyped,
// MaxMessageBytes, Defaults and Destinations reload (Ingest.Reload; live
// forks keep theirs); the timeouts are fixed when the ingest is built, as the
// config's limits: section takes effect at the next start.
type IngestSettings struct {
	Token           string           // required of forks without a credential, when set
	RefuseHandTyped bool             // refuse forks without a credential when no Token is set (non-loopback listener)
	MaxMessageBytes int              // larger messages: close 1009. Default 64 KiB (ingest.max_message_bytes)
	Defaults        mediafork.Params // for forks that say nothing
	Destinations    *mediafork.Destinations

	// FirstMessageTimeout is how long an upgraded connection may stay silent
	// before its first message (mod_audio_fork sends one within some 40 ms).
	// Default 30 s.
	FirstMessageTimeout time.Duration
	// MediaTimeout is how long a streaming connection may go without a
	// message before it is ended as media lost. mod_audio_fork sends a frame
	// every 20 ms, so silence means a dead or hostile peer (one trickling a
	// frame a byte at a time counts as silent: the deadline is per message,
	// not per byte); but its `pause` stops the frames for as long as the pause
	// lasts, hence minutes, not seconds. Default 5 min
	// (limits.ingest_media_timeout).
	MediaTimeout time.Duration
}

func (s *IngestSettings) resolve() error {
	c := settings.New("ingest")
	settings.Default(c, "MaxMessageBytes", &s.MaxMessageBytes, 64<<10)
	settings.Default(c, "FirstMessageTimeout", &s.FirstMessageTimeout, 30*time.Second)
	settings.Default(c, "MediaTimeout", &s.MediaTimeout, 5*time.Minute)
	return c.Err()
}

// ReaderSettings are the epoll readers' (Ingest.UsePoller), fixed for their
// life (ingest.max_round_interval takes effect at the next start).
type ReaderSettings struct {
	// Readers is how many epoll readers read the connections. Default one
	// per CPU but one, at least one (see UsePoller).
	Readers int
	// RoundInterval is the readers' shortest cadence while frames come, from
	// 500 calls up: a frame waits up to a round for it, so p99 ≤ 1 ms needs
	// rounds shorter than 1 ms (1 ms rounds measured p99 0.95–0.98 ms at 500
	// calls, 0.8 ms 0.85–0.91 ms). Each tick is a wake-up, which costs some
	// 35 µs of CPU on the 2-core VM of BENCHMARKS.md (BenchmarkFloorTick/
	// yielding): 0.8 ms rounds cost ~4.5 % of a core per reader. Default
	// 800 µs.
	RoundInterval time.Duration
	// MaxRoundInterval is the longest the cadence stretches to when few calls
	// stream (poller_linux.go, cadence): the latency a frame may wait for a
	// round, traded for the CPU of the ticks. At least RoundInterval. Default
	// 2 ms (ingest.max_round_interval).
	MaxRoundInterval time.Duration
}

func (s *ReaderSettings) resolve() error {
	c := settings.New("epoll reader")
	settings.Default(c, "Readers", &s.Readers, max(runtime.GOMAXPROCS(0)-1, 1))
	settings.Default(c, "RoundInterval", &s.RoundInterval, 800*time.Microsecond)
	settings.Default(c, "MaxRoundInterval", &s.MaxRoundInterval, 2*time.Millisecond)
	c.Check(s.MaxRoundInterval >= s.RoundInterval, "MaxRoundInterval", "is below RoundInterval")
	return c.Err()
}

// APISettings are the API's (NewAPI); they reload (API.Reload).
type APISettings struct {
	// Token is the Bearer token every call but /healthz and /readyz needs;
	// "" turns authentication off (the API then answers loopback names only).
	Token string
}

// ConsoleSettings are the web console's (NewConsole). ListenIn reloads
// (Console.Reload; listen-ins under way go on); the bounds are fixed when the
// console is built.
type ConsoleSettings struct {
	// ListenIn lets the console stream a fork's audio to the browser
	// (api.listen_in).
	ListenIn bool
	// MaxClients is how many live feeds may be open at once. Default 16.
	MaxClients int
	// MaxListeners is how many listen-ins may be open at once. Default 4.
	MaxListeners int
	// FeedInterval is how often the feed pushes what changed. Default 100 ms.
	FeedInterval time.Duration
	// FeedWriteTimeout bounds one write to a console client: a client that
	// cannot take a message in that long is disconnected. Default 5 s.
	FeedWriteTimeout time.Duration
	// FeedPing is how often the server pings; a client silent (no pong, no
	// message) for three of these is disconnected. Default 15 s.
	FeedPing time.Duration
}

func (s *ConsoleSettings) resolve() error {
	c := settings.New("console")
	settings.Default(c, "MaxClients", &s.MaxClients, 16)
	settings.Default(c, "MaxListeners", &s.MaxListeners, 4)
	settings.Default(c, "FeedInterval", &s.FeedInterval, 100*time.Millisecond)
	settings.Default(c, "FeedWriteTimeout", &s.FeedWriteTimeout, 5*time.Second)
	settings.Default(c, "FeedPing", &s.FeedPing, 15*time.Second)
	return c.Err()
}

// CertSettings are a CertReloader's (NewCertReloader), fixed for its life:
// changing the paths takes a restart; the files' contents reload by
// themselves.
type CertSettings struct {
	CertFile, KeyFile string // PEM
	// CheckInterval is how often the reloader looks at the files (which
	// file, size, mtime), and reads them when those changed. Default 1 s.
	CheckInterval time.Duration
	// HashInterval is how often the reloader reads the files even when their
	// size and time say nothing changed, and loads them when their content
	// did. Default 1 min.
	HashInterval time.Duration
}

func (s *CertSettings) resolve() error {
	c := settings.New("tls")
	c.Check(s.CertFile != "" && s.KeyFile != "", "CertFile, KeyFile", "must both be set")
	settings.Default(c, "CheckInterval", &s.CheckInterval, time.Second)
	settings.Default(c, "HashInterval", &s.HashInterval, time.Minute)
	return c.Err()
}
