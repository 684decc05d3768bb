package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
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
}

// NewAPI serves the orchestrator's forks. metrics may be nil.
func NewAPI(o *mediafork.Orchestrator, switches Switches, level *slog.LevelVar, token string, metrics http.Handler, log *slog.Logger) *API {
	a := &API{o: o, switches: switches, level: level, metrics: metrics, log: log.With("component", "api")}
	a.SetToken(token)
	return a
}

// SetToken changes the Bearer token (reload); "" turns authentication off.
func (a *API) SetToken(t string) { a.token.Store(&t) }

// Handler routes the API.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/forks", a.auth(a.startFork))
	mux.HandleFunc("GET /v1/forks", a.auth(a.listForks))
	mux.HandleFunc("GET /v1/forks/{uuid}", a.auth(a.getFork))
	mux.HandleFunc("DELETE /v1/forks/{uuid}", a.auth(a.stopFork))
	mux.HandleFunc("PUT /v1/log-level", a.auth(a.setLogLevel))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /readyz", a.ready)
	if a.metrics != nil {
		mux.Handle("GET /metrics", a.metrics)
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
		}
		next(w, r)
	}
}

func (a *API) startFork(w http.ResponseWriter, r *http.Request) {
	var req mediafork.StartRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
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

func (a *API) getFork(w http.ResponseWriter, r *http.Request) {
	forks := a.o.Fork(r.PathValue("uuid"))
	if len(forks) == 0 {
		httpError(w, http.StatusNotFound, "no fork on "+r.PathValue("uuid"))
		return
	}
	writeJSON(w, http.StatusOK, forks[len(forks)-1])
}

func (a *API) stopFork(w http.ResponseWriter, r *http.Request) {
	uuid := r.PathValue("uuid")
	live := false
	for _, in := range a.o.Fork(uuid) {
		if in.State == mediafork.StateStreaming || in.State == mediafork.StateStarting {
			live = true
		}
	}
	if !live {
		httpError(w, http.StatusNotFound, "no live fork on "+uuid)
		return
	}
	if err := a.o.Stop(r.Context(), uuid); err != nil {
		httpError(w, statusOf(err), err.Error())
		return
	}
	a.log.Info("fork stopped by API", "uuid", uuid)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) setLogLevel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Level string `json:"level"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(req.Level)); err != nil {
		httpError(w, http.StatusBadRequest, "level: want debug, info, warn or error")
		return
	}
	a.level.Set(l)
	mediafork.FrameLogging.Store(l <= slog.LevelDebug) // ForkStream's "set logger on"
	a.log.Info("log level set", "level", l.String())
	writeJSON(w, http.StatusOK, map[string]string{"level": strings.ToLower(l.String())})
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	sw := a.switches()
	ok := true
	for _, up := range sw {
		ok = ok && up
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "freeswitch": sw})
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
	case errors.Is(err, mediafork.ErrNoSwitch):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
