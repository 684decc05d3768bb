package web

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediafork/mediafork/mediafork"
)

// The metrics an operator needs to tell why forks did not happen: starts by
// trigger, retries, ingest refusals, config reloads, the ESL event queue.
// Like the rest, they are read at scrape time from counters kept where things
// happen.

// ReloadStats count config reloads (SIGHUP, file changes).
type ReloadStats struct {
	Success, Failure atomic.Uint64
	lastSuccess      atomic.Int64 // unix nanoseconds
}

// Loaded notes a config that came into force at t: the start's, or a
// successful reload's (Record does it for those).
func (r *ReloadStats) Loaded(t time.Time) { r.lastSuccess.Store(t.UnixNano()) }

// Record counts one reload attempt at t.
func (r *ReloadStats) Record(ok bool, t time.Time) {
	if !ok {
		r.Failure.Add(1)
		return
	}
	r.Success.Add(1)
	r.Loaded(t)
}

// RefusalCodes are the statuses the ingest refuses an upgrade with; they are
// always exported (0 until one happens), any other only once it has.
var RefusalCodes = []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
	http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable}

// moreSources are where the further metrics come from; nil ones are left out.
type moreSources struct {
	ingest  *IngestStats
	retries func() mediafork.RetryStats
	reloads *ReloadStats
}

type moreDescs struct {
	started, retries, givenUp, refusals, descriptions, tlsConns, reloads, lastReload, eslQueue *prometheus.Desc
}

func newMoreDescs(d func(name, help string, labels ...string) *prometheus.Desc) moreDescs {
	return moreDescs{
		started:  d("mediafork_forks_started_total", "Forks that began streaming, by what asked for them: rule, socket, fs_cli, api, ingest (typed by hand), other.", "trigger"),
		retries:  d("mediafork_fork_retries_total", "Fork starts made again, by reason: connect_failed (the module could not reach the ingest), disconnected, start_failed, media_lost.", "reason"),
		givenUp:  d("mediafork_forks_given_up_total", "Forks abandoned once fork.retry.attempts ran out, by the last reason.", "reason"),
		refusals: d("mediafork_ingest_refusals_total", "Ingest connections refused before the WebSocket upgrade, by HTTP status code.", "code"),
		descriptions: d("mediafork_ingest_description_refusals_total",
			"Ingest connections with a valid fork credential closed 1008 after the upgrade: their first text frame did not carry the fork description the credential signed (missing, altered, another fork's, too long)."),
		tlsConns: d("mediafork_ingest_tls_connections_total",
			"wss:// connections upgraded, by the reader that serves them: epoll (its records decrypted where it reads them), goroutine (crypto/tls: no epoll reader, or a cipher suite only crypto/tls implements).", "reader"),
		reloads: d("mediafork_config_reloads_total", "Config reloads (SIGHUP, file change), by result: success, failure (the running config stayed).", "result"),
		lastReload: d("mediafork_config_last_reload_success_timestamp_seconds",
			"When the config in force was loaded (start or last successful reload), in seconds since the epoch."),
		eslQueue: d("mediafork_esl_event_queue_length", "ESL events read from the switch and not yet handled (bounded by limits.esl_event_queue).", "freeswitch"),
	}
}

func (d *moreDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.started, d.retries, d.givenUp, d.refusals, d.descriptions, d.tlsConns, d.reloads, d.lastReload, d.eslQueue} {
		ch <- x
	}
}

// SetIngest exports the ingest's refusals. Call before serving.
func (m *Metrics) SetIngest(s *IngestStats) { m.more.ingest = s }

// SetRetries exports the orchestrator's retries. Call before serving.
func (m *Metrics) SetRetries(fn func() mediafork.RetryStats) { m.more.retries = fn }

// SetReloads exports the config reloads. Call before serving.
func (m *Metrics) SetReloads(r *ReloadStats) { m.more.reloads = r }

func (m *Metrics) collectMore(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for t, n := range m.forks.Started() {
		counter(m.started, n, string(t))
	}
	if fn := m.more.retries; fn != nil {
		s := fn()
		for r, n := range s.Retries {
			counter(m.retries, n, r)
		}
		for r, n := range s.GivenUp {
			counter(m.givenUp, n, r)
		}
	}
	if in := m.more.ingest; in != nil {
		always := map[int]bool{}
		for _, code := range RefusalCodes {
			always[code] = true
		}
		for code := range in.Refused {
			if n := in.Refused[code].Load(); n > 0 || always[code] {
				counter(m.refusals, n, strconv.Itoa(code))
			}
		}
		counter(m.descriptions, in.Descriptions.Load())
		counter(m.tlsConns, in.TLSEpoll.Load(), "epoll")
		counter(m.tlsConns, in.TLSGoroutine.Load(), "goroutine")
	}
	if r := m.more.reloads; r != nil {
		counter(m.reloads, r.Success.Load(), "success")
		counter(m.reloads, r.Failure.Load(), "failure")
		if ns := r.lastSuccess.Load(); ns != 0 {
			ch <- prometheus.MustNewConstMetric(m.lastReload, prometheus.GaugeValue, float64(ns)/1e9)
		}
	}
}
