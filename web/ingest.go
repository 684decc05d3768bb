package web

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/transport/tlsrecord"
)

// Subprotocol is what mod_audio_fork offers; it aborts on any other answer.
const Subprotocol = "audio.drachtio.org"

// closeWait is how long the peer's answer to our close is awaited.
const closeWait = 2 * time.Second

// CredentialParam is the query parameter carrying a fork's signed description.
const CredentialParam = "cred"

// Ingest is the WebSocket endpoint mod_audio_fork connects to: /fork/{uuid}.
// Each connection feeds one Fork.
type Ingest struct {
	registry *mediafork.Registry
	signer   *mediafork.Signer
	lookup   atomic.Pointer[lookupBox] // may hold nil
	log      *slog.Logger
	settings atomic.Pointer[IngestSettings]
	upgrader websocket.Upgrader
	conns    sync.WaitGroup
	// lingering holds a place per refused connection draining (linger.go).
	lingering chan struct{}
	poller    *pollers // nil: one goroutine per connection with gorilla's reader

	testHook  func(p []byte) // tests: called with every message
	beginHook func(*session) // tests: called as a fork begins, with its session (talk-back's MediaConn)

	tlsFallbackLogged atomic.Bool // the first wss:// connection left to crypto/tls was logged

	// Stats count what the ingest refused or cut short, for metrics.
	Stats IngestStats
}

// IngestStats are the ingest's counters of limits hit and refusals.
type IngestStats struct {
	Refused [600]atomic.Uint64 // connections refused before the upgrade, by HTTP status
	TooBig  atomic.Uint64      // messages over max_message_bytes (close 1009)
	Panics  atomic.Uint64      // connections ended by a recovered panic
	// Descriptions counts credentialed connections refused after the
	// upgrade (close 1008): their first text frame did not carry the
	// description their credential signed.
	Descriptions atomic.Uint64
	// TLSEpoll counts the wss:// connections upgraded onto the epoll reader
	// (their records decrypted there: transport/tlsrecord); TLSGoroutine
	// those served by crypto/tls and the goroutine reader (no epoll reader,
	// or a cipher suite tlsrecord does not implement).
	TLSEpoll, TLSGoroutine atomic.Uint64
}

func (s *IngestStats) refused(status int) {
	if status > 0 && status < len(s.Refused) {
		s.Refused[status].Add(1)
	}
}

// NewIngest serves forks into registry, with s (its zero fields take their
// defaults; a bad one is an error). lookup, when not nil, enriches forks typed
// by hand with the call's data.
func NewIngest(registry *mediafork.Registry, signer *mediafork.Signer, lookup mediafork.CallLookup, s IngestSettings, log *slog.Logger) (*Ingest, error) {
	if err := s.resolve(); err != nil {
		return nil, err
	}
	in := &Ingest{registry: registry, signer: signer, log: log.With("component", "ingest"), lingering: make(chan struct{}, maxLingering)}
	in.SetLookup(lookup)
	in.settings.Store(&s)
	in.upgrader = websocket.Upgrader{
		// No Subprotocols: the connection's Source picks the answer (serveFork).
		ReadBufferSize:  4096,
		WriteBufferSize: 256, // we only ever write close frames
		// mod_audio_fork sends Origin http://<host> with no port: not a browser.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			httpError(w, status, reason.Error())
		},
	}
	return in, nil
}

// Reload swaps in what of s reloads: Token, RefuseHandTyped, MaxMessageBytes,
// Defaults and Destinations, for the connections that come next (live forks
// keep theirs). The timeouts stay as the ingest was built. A bad s is refused
// and changes nothing.
func (in *Ingest) Reload(s IngestSettings) error {
	if err := s.resolve(); err != nil {
		return err
	}
	old := in.settings.Load()
	s.FirstMessageTimeout, s.MediaTimeout = old.FirstMessageTimeout, old.MediaTimeout
	in.settings.Store(&s)
	return nil
}

// SetLookup sets the call lookup (wired once the control plane exists).
// It may be set while connections are served.
func (in *Ingest) SetLookup(l mediafork.CallLookup) { in.lookup.Store(&lookupBox{l}) }

type lookupBox struct{ l mediafork.CallLookup }

// callLookup is the call lookup in force, or nil.
func (in *Ingest) callLookup() mediafork.CallLookup {
	if b := in.lookup.Load(); b != nil {
		return b.l
	}
	return nil
}

// unadmitter is a CallLookup whose Admit takes something (a cluster's
// claim, ha) that must be given back when the connection is refused after.
type unadmitter interface {
	Unadmit(uuid mediafork.CallID, bug string)
}

// Wait blocks until every connection's goroutine has returned.
func (in *Ingest) Wait() { in.conns.Wait() }

// Handler routes /fork/{uuid}; everything else is 404.
func (in *Ingest) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fork/{uuid}", in.serveFork)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpError(w, http.StatusNotFound, "not found: mod_audio_fork connects to /fork/{uuid}")
	})
	return mux
}

func (in *Ingest) serveFork(w http.ResponseWriter, r *http.Request) {
	// A panic before a reader has the connection (each recovers its own) must
	// not leave a claimed fork behind: it would hold its slot forever.
	var fork *mediafork.Fork
	defer func() {
		if v := recover(); v != nil {
			in.Stats.Panics.Add(1)
			in.log.Error("panic serving a fork", "panic", v, "stack", string(debug.Stack()), "remote", r.RemoteAddr)
			if fork != nil {
				fork.Finish(mediafork.EndMediaLost)
			}
		}
	}()
	// A request that is no WebSocket upgrade (a probe, curl) is refused like
	// any bad request, before it can claim the uuid or use up a credential.
	if !websocket.IsWebSocketUpgrade(r) {
		in.Stats.refused(http.StatusBadRequest)
		httpError(w, http.StatusBadRequest, "not a WebSocket upgrade: mod_audio_fork and mod_audio_stream connect here with one")
		return
	}
	set := in.settings.Load()
	req, status, err := in.parseRequest(r, set)
	if err != nil {
		in.log.Warn("fork refused", "uuid", req.uuid, "status", status, "error", err, "remote", r.RemoteAddr)
		in.Stats.refused(status)
		httpError(w, status, err.Error())
		return
	}
	fork, err = in.registry.Claim(req.uuid, req.bug)
	if u, ok := in.callLookup().(unadmitter); ok && err != nil && req.pass != nil {
		u.Unadmit(req.uuid, req.bug) // its credential was admitted: give that back
	}
	switch {
	case errors.Is(err, mediafork.ErrDuplicate):
		in.Stats.refused(http.StatusConflict)
		httpError(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, mediafork.ErrFull):
		in.log.Warn("fork refused: ingest.max_forks reached", "uuid", req.uuid, "remote", r.RemoteAddr)
		in.Stats.refused(http.StatusServiceUnavailable)
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	// The epoll reader parses frames off the raw socket; a TLS connection
	// goes there when its records are transport/tlsrecord's (TLSListener),
	// which the hijack tells; one crypto/tls serves stays on the goroutine
	// reader.
	hw := &hijackWriter{ResponseWriter: w, in: in, polled: in.poller != nil && !isTLS(r),
		watch: &frameWatch{max: set.MaxMessageBytes}}
	src := sourceFor(req.pass, websocket.Subprotocols(r))
	var answer http.Header // the Source's subprotocol, echoed when offered; none otherwise
	if p := src.Subprotocol(); p != "" && slices.Contains(websocket.Subprotocols(r), p) {
		answer = http.Header{"Sec-Websocket-Protocol": {p}}
	}
	// Counted in before the upgrade, while the HTTP server still counts the
	// request as its own: a server shut down (or closed) has seen every
	// handler either return or hijack its connection, so Wait after it sees
	// this connection (counted in after the hijack, it could be missed).
	// Counted out when this handler returns, unless the epoll reader took the
	// connection (it counts it out when it ends).
	in.conns.Add(1)
	handedOver := false
	defer func() {
		if !handedOver {
			in.conns.Done()
		}
	}()
	conn, err := in.upgrader.Upgrade(hw, r, answer)
	polled := hw.polled
	var watch *frameWatch
	if !polled {
		watch = hw.watch
	}
	if err != nil {
		// The upgrader has answered: a broken handshake never streamed.
		fork.Fail(fmt.Errorf("websocket handshake: %w", err))
		fork.Finish(mediafork.EndMediaLost)
		return
	}
	s := &session{in: in, fork: fork, req: req, set: set, src: src.NewStream(req.pass != nil),
		log: in.log.With("uuid", req.uuid, "stream_id", fork.StreamID, "source", src.Name()), watch: watch}
	if polled {
		// The epoll reader takes the connection over; it says Done when it ends.
		handedOver = true
		in.streamPolled(conn, s)
		return
	}
	defer func() {
		if s.refused {
			in.lingerClose(conn.NetConn())
		} else {
			conn.Close()
		}
	}()
	defer s.recoverPanic()
	in.stream(conn, s)
}

// recoverPanic, deferred by the goroutine reader, turns a panic into the end of
// this connection alone: logged with its stack, the fork finished.
func (s *session) recoverPanic() {
	if v := recover(); v != nil {
		s.in.Stats.Panics.Add(1)
		s.log.Error("panic on an ingest connection; closing it", "panic", v, "stack", string(debug.Stack()))
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic while ending an ingest connection", "panic", v, "stack", string(debug.Stack()))
			}
		}()
		s.fork.Finish(mediafork.EndMediaLost)
	}
}

// session is one module's connection feeding one Fork, message by message,
// as its Source reads them; both readers (the goroutine reader and the epoll
// reader) drive it.
type session struct {
	in     *Ingest
	fork   *mediafork.Fork
	req    request
	set    *IngestSettings
	src    mediafork.SourceStream
	begun  bool // the fork has begun: its Source no longer looks at arrival times
	failed bool // the fork could not begin: refused (1008)
	// refused: mediafork sent a refusal's close frame (1008, 1009, 1002);
	// the connection lingers before it closes (linger.go).
	refused bool
	log     *slog.Logger
	watch   *frameWatch      // the goroutine reader's
	batch   *mediafork.Batch // where the fork's packets gather (nil: sent at once)

	mu      sync.Mutex     // the goroutine reader's read deadline, and writers
	until   time.Time      // no read deadline later than this: our close
	ended   bool           // the goroutine reader is done: no more writers
	writers sync.WaitGroup // the goroutine reader's stop writes under way

	// Talk-back's writes into the connection (outbox.go): the outbox, made
	// at the first, by the reader's newOutbox, each message framed by
	// frameOf. Guarded by mu.
	ob        *outbox
	obClosed  bool
	newOutbox func() *outbox
	frameOf   func(text bool, b []byte) outFrame
}

// Send queues a message to the module, for talk-back (mediafork.MediaConn):
// never waiting; false when the connection has ended or its outbox is full.
func (s *session) Send(text bool, b []byte) bool {
	s.mu.Lock()
	if s.obClosed || s.newOutbox == nil {
		s.mu.Unlock()
		return false
	}
	if s.ob == nil {
		s.ob = s.newOutbox()
	}
	ob, frame := s.ob, s.frameOf
	s.mu.Unlock()
	return ob.push(frame(text, b), false, func() { s.in.conns.Add(1) })
}

// outbox is the connection's outbox, nil until talk-back wrote into it.
func (s *session) outbox() *outbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ob
}

// closeOutbox stops talk-back's writes: the connection has ended.
func (s *session) closeOutbox() {
	s.mu.Lock()
	ob := s.ob
	s.obClosed = true
	s.mu.Unlock()
	if ob != nil {
		ob.close()
	}
}

// goWrite runs write (a close frame for Stop, which may wait up to its
// deadline on a peer that reads nothing) on a goroutine of the connection's
// own, so that Stop's caller never waits on the peer; the goroutine reader
// waits for it before it closes the connection (endWriters).
func (s *session) goWrite(write func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.writers.Add(1)
	go func() {
		defer s.writers.Done()
		write()
	}()
}

// endWriters waits for the writes goWrite started; none starts after it.
func (s *session) endWriters() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.writers.Wait()
}

// limit brings the connection's read deadline forward to d, for good.
func (s *session) limit(conn *websocket.Conn, d time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until.IsZero() || d.Before(s.until) {
		s.until = d
	}
	conn.SetReadDeadline(s.until)
}

// expect sets the read deadline for the next message to d, unless limit set an
// earlier one.
func (s *session) expect(conn *websocket.Conn, d time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.until.IsZero() && s.until.Before(d) {
		d = s.until
	}
	conn.SetReadDeadline(d)
}

// begin handles the first message as the Source reads it: usually the fork
// begins (resolved from the metadata when the message is text); a Source may
// hold it back for a later one (mod_audio_stream's burst before its
// metadata). false: close the connection (normal closure) and stop reading
// (mod_audio_fork's graceful frame first); an error means: the fork could not
// begin (refuse, then end).
func (s *session) begin(binary bool, p []byte) (bool, error) {
	if binary {
		if h := s.in.testHook; h != nil {
			h(p)
		}
	}
	return s.apply(s.src.Message(s.now(), binary, p), binary, p)
}

// message handles every later message. It returns false when the server must
// close the connection (normal closure) and stop reading; an error when a fork
// its Source held back could not begin (refuse, then end).
func (s *session) message(binary bool, p []byte) (bool, error) {
	if h := s.in.testHook; h != nil {
		h(p)
	}
	return s.apply(s.src.Message(s.now(), binary, p), binary, p)
}

// refusal is the close of a connection whose fork could not begin: policy
// violation, and why.
func refusal(err error) (int, string) {
	return websocket.ClosePolicyViolation, truncate(err.Error(), 120)
}

// now is the arrival time a Source needs before the fork begins (the clock
// is not read per frame after).
func (s *session) now() time.Time {
	if s.begun {
		return time.Time{}
	}
	return time.Now()
}

// apply does what the Source made of one message, in order: begin the fork,
// write the held audio, write this audio, end gracefully, close. false: close
// the connection and stop reading; an error: the fork could not begin (it
// has failed).
func (s *session) apply(step mediafork.Step, binary bool, p []byte) (bool, error) {
	if step&mediafork.StepBegin != 0 {
		var first firstMessage
		if !binary {
			if err := json.Unmarshal(p, &first); err != nil {
				s.log.Info("metadata text frame is not JSON; ignored", "error", err)
				first = firstMessage{}
			}
		}
		spec, addrs, err := s.in.resolve(s.req, first, s.set)
		if err != nil && s.req.pass != nil {
			// Before any audio is forwarded: a forged, altered or missing
			// description, or another fork's.
			s.in.Stats.Descriptions.Add(1)
			s.log.Warn("fork refused: the first text frame does not carry the description its credential signed", "error", err)
		}
		if err == nil {
			err = s.fork.Begin(spec, addrs)
		}
		if err != nil {
			s.failed = true
			s.fork.Fail(err)
			return false, err
		}
		s.begun = true
		s.fork.SetMediaConn(s) // talk-back writes into the module's connection
		if h := s.in.beginHook; h != nil {
			h(s)
		}
	} else if !binary {
		// The module's text after its metadata: jambonz's mark echoes,
		// for talk-back; nothing else is acted on.
		s.log.Debug("text frame", "text", truncate(string(p), 200))
		if s.begun {
			s.fork.ModuleText(p)
		}
	}
	if step&mediafork.StepFlush != 0 {
		for _, f := range s.src.Held() {
			s.fork.Write(s.batch, f)
		}
	}
	if step&mediafork.StepAudio != 0 {
		s.fork.Write(s.batch, p)
	}
	if step&mediafork.StepGraceful != 0 {
		// Flush and send the end packets now: nothing more is coming.
		s.fork.Finish(mediafork.EndHangup)
	}
	return step&mediafork.StepClose == 0, nil
}

// finish ends the fork as its connection ended. A fork its Source still holds
// audio back for (typed by hand, its metadata not come yet) begins first,
// without metadata, and that audio is written: nothing that arrived is lost.
// Both readers call it once reading has stopped.
func (s *session) finish(reason mediafork.EndReason) {
	if !s.begun && !s.failed && s.fork.StopRequested() == 0 && len(s.src.Held()) > 0 {
		s.log.Debug("the connection ended while its audio was held; beginning without metadata", "frames", len(s.src.Held()))
		if _, err := s.apply(mediafork.StepBegin|mediafork.StepFlush, true, nil); err != nil {
			reason = mediafork.EndStopped
		}
	}
	s.fork.Finish(reason)
}

// closeFor is the close frame a stop request sends.
func closeFor(reason mediafork.EndReason) (int, string) {
	if reason == mediafork.EndShutdown {
		return websocket.CloseGoingAway, "mediafork shutting down"
	}
	return websocket.CloseNormalClosure, "stopped"
}

// stream runs one connection with gorilla's reader, one goroutine per
// connection: the reference path.
func (in *Ingest) stream(conn *websocket.Conn, s *session) {
	conn.SetReadLimit(int64(s.set.MaxMessageBytes))
	conn.SetCloseHandler(func(code int, _ string) error {
		// Gorilla has refused invalid codes (1002); a close without a code is
		// answered with 1000, as the epoll reader does.
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeReply(code), ""), time.Now().Add(time.Second))
		return nil
	})
	defer s.endWriters() // before the deferred Close: the writes are done by then
	defer s.closeOutbox()
	s.mu.Lock()
	s.frameOf = func(text bool, b []byte) outFrame { return outFrame{text: text, data: append([]byte(nil), b...)} }
	s.newOutbox = func() *outbox {
		// Gorilla's one writer; its control frames (close, pong) may
		// interleave (WriteControl).
		return newOutbox(func(f outFrame, deadline time.Time) error {
			conn.SetWriteDeadline(deadline)
			mt := websocket.BinaryMessage
			if f.text {
				mt = websocket.TextMessage
			}
			return conn.WriteMessage(mt, f.data)
		}, func(err error) {
			s.log.Warn("talk-back: the module does not take what is written; closing", "error", err)
			conn.NetConn().Close()
		}, s.in.conns.Done)
	}
	s.mu.Unlock()
	s.fork.OnStop(func(reason mediafork.EndReason) {
		code, text := closeFor(reason)
		s.goWrite(func() {
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
		})
		// The peer answers with its close; if it does not, stop reading anyway.
		s.limit(conn, time.Now().Add(closeWait))
	})
	if s.fork.StopRequested() != 0 {
		s.fork.Finish(0)
		return
	}
	// A round of this reader is one message: its packets leave together.
	s.batch = in.registry.NewBatch()
	buf := make([]byte, 0, 2048)
	s.expect(conn, time.Now().Add(s.set.FirstMessageTimeout))
	mt, buf, err := readMessage(conn, buf)
	if err != nil {
		s.refuse(conn, err)
		s.finish(s.endReason(err))
		return
	}
	more, err := s.begin(mt == websocket.BinaryMessage, buf)
	if err != nil {
		code, text := refusal(err)
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
		s.refused = true
		s.fork.Finish(mediafork.EndStopped)
		return
	}
	s.batch.Flush()
	for more {
		// Each message within MediaTimeout (IngestSettings), a trickled one too.
		s.expect(conn, time.Now().Add(s.set.MediaTimeout))
		mt, buf, err = readMessage(conn, buf[:0])
		if err != nil {
			s.refuse(conn, err)
			s.finish(s.endReason(err))
			s.batch.Flush()
			return
		}
		more, err = s.message(mt == websocket.BinaryMessage, buf)
		s.batch.Flush()
		if err != nil {
			code, text := refusal(err)
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
			s.refused = true
			s.fork.Finish(mediafork.EndStopped)
			return
		}
	}
	// The Source asked to close (mod_audio_fork's graceful frame): the fork
	// has ended; the peer sends nothing more, not even its close.
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

// refuse answers what the frame watch refused (gorilla has not seen it).
func (s *session) refuse(conn *websocket.Conn, err error) {
	code, text := 0, ""
	var we wireError
	switch {
	case errors.Is(err, errTooBig):
		code = websocket.CloseMessageTooBig
		s.in.Stats.TooBig.Add(1)
	case errors.As(err, &we):
		code, text = websocket.CloseProtocolError, string(we)
	default:
		return
	}
	s.log.Debug("closing the connection", "error", err)
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	s.refused = true
}

// frameWatch sits under gorilla's reader and follows the headers of the
// frames the peer sends (not their payloads), to refuse what gorilla lets
// through or answers otherwise than the epoll reader: a close frame with a
// 1-byte payload (gorilla takes it for a close without a code), a 64-bit
// length with the top bit set or one that overflows what is buffered (gorilla
// hangs up without a close frame), a message over the limit. Then Read hands
// gorilla the bytes before that frame and the error, which NextReader returns.
type frameWatch struct {
	net.Conn
	max    int
	hdr    [14]byte
	have   int    // header bytes in hdr
	skip   uint64 // payload bytes left of the current frame
	msgLen uint64 // data bytes of the message so far
	err    error
}

// hijackWriter is the ResponseWriter gorilla upgrades through; its Hijack
// decides which reader serves the connection: the epoll reader (polled) takes
// a plain one, or a TLS one whose records tlsrecord took over; any other
// stays on the goroutine reader, under gorilla, which then reads through
// watch (it sees the frame headers first).
type hijackWriter struct {
	http.ResponseWriter
	in     *Ingest
	polled bool
	watch  *frameWatch
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return c, brw, err
	}
	switch tc := c.(type) {
	case *tlsrecord.Conn:
		if tc.Fast() && h.polled {
			h.in.Stats.TLSEpoll.Add(1)
		} else {
			h.polled = false
			h.in.Stats.TLSGoroutine.Add(1)
			if h.in.tlsFallbackLogged.CompareAndSwap(false, true) {
				h.in.log.Warn("a wss:// connection is served by crypto/tls and the goroutine reader, at several times the CPU of the epoll reader; "+
					"counted in mediafork_ingest_tls_connections_total{reader=\"goroutine\"}, logged once", "reason", tc.Reason(), "remote", c.RemoteAddr().String())
			}
		}
	case *tls.Conn:
		h.in.Stats.TLSGoroutine.Add(1)
	}
	if h.polled {
		return c, brw, nil
	}
	h.watch.Conn = c
	return h.watch, brw, nil
}

func (w *frameWatch) Read(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.Conn.Read(p)
	if ok, werr := w.watch(p[:n]); werr != nil {
		w.err = werr
		return ok, werr
	}
	return n, err
}

// watch follows the frames in b; on a refused frame it returns how many bytes
// of b come before it, and why.
func (w *frameWatch) watch(b []byte) (int, error) {
	i, start := 0, 0 // start: of the header being read (0: an earlier read, which gorilla has)
	for i < len(b) {
		if w.skip > 0 {
			k := min(w.skip, uint64(len(b)-i))
			w.skip -= k
			i += int(k)
			continue
		}
		if w.have == 0 {
			start = i // a header starts here
		}
		w.hdr[w.have] = b[i]
		w.have++
		i++
		if w.have < 2 {
			continue
		}
		need := 2
		switch w.hdr[1] & 0x7F {
		case 126:
			need = 4
		case 127:
			need = 10
		}
		if w.hdr[1]&0x80 != 0 {
			need += 4
		}
		if w.have < need {
			continue
		}
		w.have = 0
		fin, op, n := w.hdr[0]&0x80 != 0, w.hdr[0]&0x0F, uint64(w.hdr[1]&0x7F)
		switch n {
		case 126:
			n = uint64(binary.BigEndian.Uint16(w.hdr[2:]))
		case 127:
			n = binary.BigEndian.Uint64(w.hdr[2:])
		}
		switch {
		case n>>63 != 0:
			return start, errTopBit
		case op == opClose && n == 1:
			return start, errOneByte
		case op <= opBinary:
			if op != opContinuation {
				w.msgLen = 0
			}
			if n > uint64(w.max) || n > uint64(w.max)-min(w.msgLen, uint64(w.max)) {
				return start, errTooBig
			}
			w.msgLen += n
			if fin {
				w.msgLen = 0
			}
		}
		w.skip = n
	}
	return len(b), nil
}

// readMessage reads one whole message into buf (reused), within the read limit.
func readMessage(conn *websocket.Conn, buf []byte) (int, []byte, error) {
	mt, r, err := conn.NextReader()
	if err != nil {
		return 0, buf, err
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return mt, buf, nil
		}
		if err != nil {
			return 0, buf, err
		}
	}
}

// endReason maps how a connection ended to the end packets' reason: the
// peer's close frame means what its Source says; anything else is media lost.
func (s *session) endReason(err error) mediafork.EndReason {
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		return s.src.PeerClosed(ce.Code)
	}
	return mediafork.EndMediaLost
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:tlvcodec.TruncateLen(s, n)]
}

func httpError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
