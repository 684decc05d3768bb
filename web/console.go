package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mediafork/mediafork/mediafork"
)

// The web console (SPEC section 4.1): a page on the API listener, its live
// feed and listen-in, behind the API's token.

//go:embed console
var consoleFiles embed.FS

// Console serves the web console of one registry.
type Console struct {
	reg      *mediafork.Registry
	switches Switches
	status   func() []SwitchStatus // SetSwitchStatus; nil: from switches
	calls    CallSource            // the API's orchestrator (SetConsole); nil: no calls
	api      *API                  // SetConsole: its token says whether the console is open
	log      *slog.Logger
	set      ConsoleSettings // the bounds; ListenIn is listenIn's
	listenIn atomic.Bool
	upgrader websocket.Upgrader

	feeds     atomic.Int32 // open live feeds
	listeners atomic.Int32 // open listen-ins

	ctx    context.Context // done when the console closes
	cancel context.CancelFunc
	cmu    sync.Mutex     // orders enter and Close
	closed bool           // guarded by cmu
	conns  sync.WaitGroup // the goroutines of upgraded connections

	mu     sync.Mutex // guards the feed's state below
	rows   map[*mediafork.Fork]*liveFork
	byID   map[uint64]*mediafork.Fork // the forks of rows, by their row's id
	nextID uint64
	snap   *snapshot
	ended  []*forkRow // the last ended forks, oldest first, at most MaxEnded
	endSeq uint64
	callV  uint64    // the calls' version callRows was read at
	callRs []callRow // the live calls, as last read
	sample sync.WaitGroup
	parked atomic.Bool // the level sampler waits for a fork, not ticking
}

// MaxEnded is how many ended forks the console remembers.
const MaxEnded = 200

// NewConsole serves reg's forks and switches' states, with s (its zero fields
// take their defaults; a bad one is an error). Make it before forks start: it
// observes their ends.
func NewConsole(reg *mediafork.Registry, switches Switches, s ConsoleSettings, log *slog.Logger) (*Console, error) {
	if err := s.resolve(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Console{reg: reg, switches: switches, log: log.With("component", "console"), set: s, ctx: ctx, cancel: cancel,
		rows: map[*mediafork.Fork]*liveFork{}, byID: map[uint64]*mediafork.Fork{}}
	c.listenIn.Store(s.ListenIn)
	// It answers with the console's subprotocol, never the bearer one; it
	// keeps gorilla's same-origin check.
	c.upgrader = websocket.Upgrader{
		HandshakeTimeout:  10 * time.Second,
		ReadBufferSize:    1024,
		WriteBufferSize:   16 << 10,
		Subprotocols:      []string{consoleProtocol},
		EnableCompression: true,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			httpError(w, status, reason.Error())
		},
	}
	reg.ObserveEnd(c.forkEnded)
	c.sample.Add(1)
	go c.sampleLevels()
	return c, nil
}

// SetConsole serves c's page, feed and listen-in on the API's listener; the
// console lists the calls of the API's orchestrator.
func (a *API) SetConsole(c *Console) {
	a.console = c
	c.api = a
	if a.o != nil {
		c.calls = a.o
	}
}

// CallSource is what lists the live calls (the orchestrator).
type CallSource interface {
	Calls() []mediafork.LiveCall
	CallsVersion() uint64
}

// SwitchStatus is one switch as the console shows it: its state and, when
// it is not connected, why and when it tries again.
type SwitchStatus struct {
	Name, Addr string
	Up         bool   // forks can be started on it
	State      string // connected, connecting, auth_failed, down
	Reason     string
	Since      time.Time
	Next       time.Time // the next attempt; zero while connected
	// In a cluster (ha): the instance leading the switch ("" during an
	// election, and when alone), and whether it is this one.
	Leader string
	Leads  bool
}

// SetSwitchStatus makes the console show each switch's state from fn (the
// daemon's ESL clients). Without it, up or down from the Switches func. Set
// before serving.
func (c *Console) SetSwitchStatus(fn func() []SwitchStatus) { c.status = fn }

// open reports whether the console asks for no token (api.token empty: the
// API listens on loopback only and answers loopback names).
func (c *Console) open() bool { return c.api != nil && *c.api.token.Load() == "" }

// Reload applies what of s reloads: ListenIn (listen-ins under way go on).
// The bounds stay as the console was built.
func (c *Console) Reload(s ConsoleSettings) { c.listenIn.Store(s.ListenIn) }

// Close ends every console connection and waits for their goroutines (the
// HTTP server's Shutdown does not know hijacked connections).
func (c *Console) Close() {
	c.cmu.Lock()
	c.closed = true
	c.cmu.Unlock()
	c.cancel()
	c.conns.Wait()
	c.sample.Wait()
}

// enter counts a connection in, unless the console is closed; leave with
// c.conns.Done.
func (c *Console) enter() bool {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if c.closed {
		return false
	}
	c.conns.Add(1)
	return true
}

// upgrade counts a console WebSocket in and upgrades it; done closes it and
// counts it out. Not ok: the client has had its answer.
func (c *Console) upgrade(w http.ResponseWriter, r *http.Request) (conn *websocket.Conn, done func(), ok bool) {
	if !c.enter() {
		httpError(w, http.StatusServiceUnavailable, "shutting down")
		return nil, nil, false
	}
	conn, err := c.upgrader.Upgrade(w, r, nil)
	if err != nil {
		c.conns.Done()
		return nil, nil, false // the upgrader answered
	}
	return conn, func() { conn.Close(); c.conns.Done() }, true
}

// routes adds the console's paths to the API's mux.
func (c *Console) routes(a *API, mux *http.ServeMux) {
	static, _ := fs.Sub(consoleFiles, "console")
	files := http.FileServer(http.FS(static))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w, r)
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.Handle("GET /console/", http.StripPrefix("/console/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w, r)
		files.ServeHTTP(w, r)
	})))
	mux.HandleFunc("GET /v1/console/snapshot", a.auth(c.serveSnapshot))
	mux.HandleFunc("GET /v1/console/forks/{id}", a.auth(c.serveDetail))
	mux.HandleFunc("GET /v1/console/feed", c.guard(a, c.serveFeed))
	// The token first: without it, whether listen-in is on is nobody's business.
	mux.HandleFunc("GET /v1/console/listen/{uuid}", c.guard(a, func(w http.ResponseWriter, r *http.Request, who string) {
		if !c.listenIn.Load() {
			httpError(w, http.StatusNotFound, "listen-in is off (api.listen_in)")
			return
		}
		c.serveListen(w, r, who)
	}))
}

// safeHost is what a Host header may hold to be named in the page's CSP.
var safeHost = regexp.MustCompile(`^[A-Za-z0-9.:\[\]-]{1,255}$`)

// pageHeaders: the page runs only its own code and talks only to its origin.
func pageHeaders(w http.ResponseWriter, r *http.Request) {
	connect := "'self'"
	if safeHost.MatchString(r.Host) {
		connect += " ws://" + r.Host + " wss://" + r.Host
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src "+
		connect+"; media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-cache")
}

// bearerPrefix is the WebSocket subprotocol a browser carries the token in
// (an EventSource or WebSocket cannot set Authorization; a URL would reach
// logs): "bearer." + base64url(token), offered after "mediafork.v1".
const (
	bearerPrefix    = "bearer."
	consoleProtocol = "mediafork.v1"
)

// presented is the token a request carries: the Authorization header, else
// the bearer subprotocol.
func presented(r *http.Request) (string, bool) {
	if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return got, true
	}
	for _, p := range websocket.Subprotocols(r) {
		if enc, ok := strings.CutPrefix(p, bearerPrefix); ok {
			tok, err := base64.RawURLEncoding.DecodeString(enc)
			return string(tok), err == nil
		}
	}
	return "", false
}

// fingerprint names a token in logs without giving it away.
func fingerprint(token string) string {
	if token == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}

// guard checks a WebSocket request's token before it is upgraded (401 on
// the wire) and recovers panics; next gets the token's fingerprint.
func (c *Console) guard(a *API, next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				c.log.Error("console connection panicked", "panic", p)
			}
		}()
		want := *a.token.Load()
		got, ok := presented(r)
		if want != "" && (!ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mediafork"`)
			httpError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		if want == "" && !openTo(w, r) {
			return
		}
		next(w, r, fingerprint(want))
	}
}

// credential-looking text (a fork URL's cred=, any ws URL) never reaches the page.
var secretRE = regexp.MustCompile(`(?i)(cred=[^ &"]*|wss?://[^ "]*)`)

func scrub(s string) string { return secretRE.ReplaceAllString(s, "<redacted>") }
