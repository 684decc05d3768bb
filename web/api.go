package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// Switches reports the connection state of every FreeSWITCH, by name.
type Switches func() map[string]bool

// API is the operator's HTTP API (SPEC section 4): forks, log level, health,
// readiness and metrics.
type API struct {
	o        *mediafork.Orchestrator
	switches Switches
	level    *slog.LevelVar
	metrics  http.Handler
	token    atomic.Pointer[string]
	log      *slog.Logger
	console  *Console // the web console, when set
	health   Health   // readiness (ready.go); nil: every switch must be up

	cluster   Cluster      // the instances it shares its switches with (cluster.go); nil: alone
	forwarder *http.Client // to the leaders of the switches it does not lead
}

// NewAPI serves the orchestrator's forks, with s. metrics may be nil.
func NewAPI(o *mediafork.Orchestrator, switches Switches, level *slog.LevelVar, s APISettings, metrics http.Handler, log *slog.Logger) *API {
	a := &API{o: o, switches: switches, level: level, metrics: metrics, log: log.With("component", "api")}
	a.Reload(s)
	return a
}

// Reload applies s: the Bearer token of the next requests.
func (a *API) Reload(s APISettings) { a.token.Store(&s.Token) }

// Handler routes the API. A known path asked with another method answers 405
// with Allow; anything else 404.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/forks", a.auth(a.startFork))
	mux.HandleFunc("GET /v1/forks", a.auth(a.listForks))
	mux.HandleFunc("GET /v1/forks/{uuid}", a.auth(a.getFork))
	mux.HandleFunc("DELETE /v1/forks/{uuid}", a.auth(a.stopFork))
	mux.HandleFunc("GET /v1/forks/{uuid}/sdp", a.auth(a.forkSDP))
	mux.HandleFunc("POST /v1/forks/{uuid}/pause", a.auth(a.pauseFork(true)))
	mux.HandleFunc("POST /v1/forks/{uuid}/resume", a.auth(a.pauseFork(false)))
	mux.HandleFunc("PUT /v1/log-level", a.auth(a.setLogLevel))
	mux.HandleFunc("GET /v1/profiles", a.auth(a.listProfiles))
	mux.HandleFunc("GET /v1/calls", a.auth(a.listCalls))
	mux.HandleFunc("GET /v1/cluster", a.auth(a.clusterInfo))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /readyz", a.ready)
	allow := map[string]string{"/v1/forks": "GET, POST", "/v1/forks/{uuid}": "GET, DELETE", "/v1/log-level": "PUT",
		"/v1/profiles": "GET", "/v1/calls": "GET", "/healthz": "GET", "/readyz": "GET", "/v1/cluster": "GET"}
	if a.metrics != nil {
		mux.Handle("GET /metrics", a.metrics)
		allow["/metrics"] = "GET"
	}
	for path, methods := range allow {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			httpError(w, http.StatusMethodNotAllowed, r.Method+" not allowed; use "+methods)
		})
	}
	if a.console != nil {
		a.console.routes(a, mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { httpError(w, http.StatusNotFound, "not found") })
	return mux
}

func (a *API) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if want := *a.token.Load(); want != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mediafork"`)
				httpError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		} else if !openTo(w, r) {
			return
		}
		next(w, r)
	}
}

// openTo is the check of a request when no token is set (the API then
// listens on loopback only): its Host must name loopback. A web page whose
// own name an attacker makes resolve to 127.0.0.1 (DNS rebinding) is
// same-origin with the API as far as the browser knows, so CORS and the
// WebSocket origin check let it through; its Host header, its own name, does
// not. Refused with 403.
func openTo(w http.ResponseWriter, r *http.Request) bool {
	if loopbackName(r.Host) {
		return true
	}
	httpError(w, http.StatusForbidden, "with no api.token the API answers only to a loopback name (localhost, 127.0.0.1, [::1]) in Host")
	return false
}

// loopbackName reports whether host (a Host header: name or address, with or
// without a port) is localhost or a loopback address.
func loopbackName(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil && addr.Unmap().IsLoopback()
}

// maxBody bounds a request body: a fork request with 16 destinations and its
// metadata is well under 8 KiB.
const maxBody = 64 << 10

// decodeJSON reads one JSON object from an application/json body into v: no
// unknown fields, nothing after it. Requiring the media type keeps a web page
// from posting here cross-origin: a browser sends application/json only after
// a CORS preflight, which this API never grants.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) (int, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, errors.New("Content-Type must be application/json")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", maxBody)
		}
		return http.StatusBadRequest, fmt.Errorf("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return http.StatusBadRequest, errors.New("bad JSON: data after the object")
	}
	return 0, nil
}

// DecodeStartRequest parses a POST /v1/forks body.
func DecodeStartRequest(w http.ResponseWriter, r *http.Request) (mediafork.StartRequest, int, error) {
	var req mediafork.StartRequest
	if status, err := decodeJSON(w, r, &req); err != nil {
		return req, status, err
	}
	if req.UUID == "" {
		return req, http.StatusBadRequest, errors.New("uuid is required")
	}
	return req, 0, nil
}

func (a *API) startFork(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if a.cluster != nil {
		var err error
		if body, err = readBody(w, r); err != nil {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxBody))
			return
		}
	}
	req, status, err := DecodeStartRequest(w, r)
	if err != nil {
		httpError(w, status, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if a.cluster != nil && a.forward(w, r, a.startForkServer(ctx, req), body) {
		return
	}
	if _, err := a.o.StartCall(ctx, req); err != nil {
		httpError(w, statusOf(err), err.Error())
		return
	}
	a.log.Info("fork started by API", "uuid", req.UUID)
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	defer wcancel()
	a.o.WaitStreaming(wctx, req.UUID)
	forks := a.o.Fork(req.UUID)
	if len(forks) == 0 {
		httpError(w, http.StatusInternalServerError, "fork vanished")
		return
	}
	writeJSON(w, http.StatusCreated, forks[len(forks)-1])
}

func (a *API) listForks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"forks": a.o.Forks()})
}

// pathUUID is the {uuid} of the path, checked.
func pathUUID(w http.ResponseWriter, r *http.Request) (mediafork.CallID, bool) {
	uuid, err := mediafork.ParseCallID(r.PathValue("uuid"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return uuid, true
}

func (a *API) getFork(w http.ResponseWriter, r *http.Request) {
	uuid, ok := pathUUID(w, r)
	if !ok {
		return
	}
	forks := a.o.Fork(uuid)
	if len(forks) == 0 {
		httpError(w, http.StatusNotFound, "no fork on "+string(uuid))
		return
	}
	writeJSON(w, http.StatusOK, forks[len(forks)-1])
}

// forkSDP answers the SDP of the call's fork's RTP streams, for a receiver
// (ffmpeg -i, GStreamer's sdpdemux).
func (a *API) forkSDP(w http.ResponseWriter, r *http.Request) {
	uuid, ok := pathUUID(w, r)
	if !ok {
		return
	}
	text, err := a.o.SDP(uuid)
	if err != nil {
		httpError(w, http.StatusNotFound, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, text)
}

func (a *API) stopFork(w http.ResponseWriter, r *http.Request) {
	uuid, ok := pathUUID(w, r)
	if !ok {
		return
	}
	live := false
	for _, in := range a.o.Fork(uuid) {
		if in.State == mediafork.StateStreaming || in.State == mediafork.StateStarting {
			live = true
		}
	}
	if a.cluster != nil {
		// The fork may be served by any instance; its switch's leader stops it.
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		server, _ := a.o.SwitchOf(ctx, uuid)
		cancel()
		if a.forward(w, r, server, nil) {
			return
		}
		live = live || server != ""
	}
	if !live {
		httpError(w, http.StatusNotFound, "no live fork on "+string(uuid))
		return
	}
	if err := a.o.Stop(r.Context(), uuid); err != nil {
		httpError(w, statusOf(err), err.Error())
		return
	}
	a.log.Info("fork stopped by API", "uuid", uuid)
	w.WriteHeader(http.StatusNoContent)
}

// PauseRequest is the body of POST /v1/forks/{uuid}/pause and /resume: a
// JSON object (so that a browser sends it only after a CORS preflight, which
// this API never grants: no page can pause or resume a call), with an
// optional reason for the audit line.
type PauseRequest struct {
	Reason string `json:"reason,omitempty"`
}

// maxPauseReason bounds the reason an audit line quotes.
const maxPauseReason = 200

// pauseFork pauses (on) or resumes the call's fork (PCI): 200 with the fork,
// 404 when none streams.
func (a *API) pauseFork(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		uuid, ok := pathUUID(w, r)
		if !ok {
			return
		}
		var req PauseRequest
		if status, err := decodeJSON(w, r, &req); err != nil {
			httpError(w, status, err.Error())
			return
		}
		if len(req.Reason) > maxPauseReason {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("reason over %d bytes", maxPauseReason))
			return
		}
		by := "api"
		if req.Reason != "" {
			by = fmt.Sprintf("api (%q)", req.Reason)
		}
		if _, err := a.o.PauseFork(r.Context(), uuid, on, by); err != nil {
			if errors.Is(err, mediafork.ErrNotLive) {
				httpError(w, http.StatusNotFound, err.Error())
				return
			}
			httpError(w, statusOf(err), err.Error())
			return
		}
		forks := a.o.Fork(uuid)
		if len(forks) == 0 {
			httpError(w, http.StatusNotFound, "no fork on "+string(uuid))
			return
		}
		writeJSON(w, http.StatusOK, forks[len(forks)-1])
	}
}

// logLevels are the levels PUT /v1/log-level takes, by name only (slog would

// also take "ERROR+100").
var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

func (a *API) setLogLevel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Level string `json:"level"`
	}
	if status, err := decodeJSON(w, r, &req); err != nil {
		httpError(w, status, err.Error())
		return
	}
	l, ok := logLevels[strings.ToLower(req.Level)]
	if !ok {
		httpError(w, http.StatusBadRequest, "level: want debug, info, warn or error")
		return
	}
	a.level.Set(l)
	a.log.Info("log level set", "level", l.String())
	writeJSON(w, http.StatusOK, map[string]string{"level": strings.ToLower(l.String())})
}

// statusOf maps domain errors to HTTP statuses.
func statusOf(err error) int {
	var br *mediafork.BadRequest
	switch {
	case errors.As(err, &br), errors.Is(err, mediafork.ErrNotAllowed):
		return http.StatusBadRequest
	case errors.Is(err, mediafork.ErrNoSuchCall):
		return http.StatusNotFound
	case errors.Is(err, mediafork.ErrDuplicate):
		return http.StatusConflict
	case errors.Is(err, mediafork.ErrNoSwitch), errors.Is(err, mediafork.ErrSwitchUnavailable), errors.Is(err, mediafork.ErrStillEnding),
		errors.Is(err, mediafork.ErrNotLeader):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
