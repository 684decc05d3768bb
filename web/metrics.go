package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mediafork/mediafork/mediafork"
)

// SwitchStats reports, per FreeSWITCH name, whether it is connected and how
// often it reconnected.
type SwitchStats func() map[string]SwitchStat

// SwitchStat is one switch's connection state.
type SwitchStat struct {
	Connected    bool
	Reconnects   uint64
	QueuedEvents int // ESL events waiting for the handler
}

// Limits reports how often each bound on outside input was hit and how many
// panics were recovered, by where.
type Limits func() LimitStats

// LimitStats are counters by name.
type LimitStats struct {
	Hits   map[string]uint64 // limit name -> times hit
	Panics map[string]uint64 // where -> panics recovered
}

// Metrics exposes mediafork's counters to Prometheus. Fork counters are read
// at scrape time from the registry, so the media path pays nothing for them;
// only the ingest-to-send latency is observed as it happens, one frame in fifty:
// from the frame's read to the end of the send of its packets (the flush of
// the reader's round that carried them).
type Metrics struct {
	reg      *prometheus.Registry
	forks    *mediafork.Registry
	switches SwitchStats
	limits   Limits
	latency  prometheus.Histogram
	more     moreSources // metrics_more.go

	active, forksEnded, framesIn, packetsOut, bytesOut, sendErrors, drops, eslUp, eslReconnects, limitHits, panics *prometheus.Desc
	streamConns, streamServer, streamsUp                                                                           *prometheus.Desc
	moreDescs
	tb talkbackDescs // metrics_talkback.go
}

// NewMetrics registers the collectors. limits may be nil.
func NewMetrics(forks *mediafork.Registry, switches SwitchStats, limits Limits) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), forks: forks, switches: switches, limits: limits}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "mediafork_ingest_to_send_latency_seconds",
		Help:    "Time from reading a WebSocket frame to handing its packets to the kernel (one frame in 50 per fork).",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025},
	})
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	m.active = d("mediafork_forks_active", "Forks live now (starting or streaming).")
	m.forksEnded = d("mediafork_forks_ended_total", "Forks that ended, by outcome: end reason, or failed (never streamed, or its start failed).", "outcome")
	m.framesIn = d("mediafork_frames_in_total", "WebSocket binary frames received.")
	m.packetsOut = d("mediafork_packets_out_total", "TLV packets sent, per destination, by direction.", "direction")
	m.bytesOut = d("mediafork_bytes_out_total", "TLV bytes sent, per destination, by direction.", "direction")
	m.sendErrors = d("mediafork_send_errors_total", "Sends that failed with an error (UDP: refused, unreachable; a stream: its connection lost), by profile, endpoint (\"adhoc\": not from the config) and protocol.", "profile", "endpoint", "protocol")
	m.drops = d("mediafork_drops_total", "Packets (a stream's messages) not sent: send errors, full socket buffers, a stream's full queue or connection down, by profile, endpoint (\"adhoc\": not from the config) and protocol.", "profile", "endpoint", "protocol")
	m.eslUp = d("mediafork_esl_connected", "1 while the inbound ESL connection to the switch is up.", "freeswitch")
	m.eslReconnects = d("mediafork_esl_reconnects_total", "ESL connections made after the first.", "freeswitch")
	m.limitHits = d("mediafork_limit_hits_total", "Times a bound on outside input was hit (SECURITY.md), by limit.", "limit")
	m.panics = d("mediafork_recovered_panics_total", "Panics recovered on a connection's path (that connection ended), by where.", "where")
	m.streamConns = d("mediafork_stream_connections_total", "Stream endpoints' connections (twilio, audiofork), by profile, endpoint, protocol and outcome: "+
		"connected (came up), failed (dial, TLS, upgrade or hello failed), lost (dropped while up: a write deadline, the server).", "profile", "endpoint", "protocol", "outcome")
	m.streamServer = d("mediafork_stream_server_messages_total", "Messages stream servers sent, by profile, endpoint, protocol and outcome: accepted, refused (invalid).",
		"profile", "endpoint", "protocol", "outcome")
	m.streamsUp = d("mediafork_streams_connected", "Stream outputs of live forks whose connection is up now, by protocol.", "protocol")
	m.moreDescs = newMoreDescs(d)
	m.tb = newTalkbackDescs(d)
	m.reg.MustRegister(m, m.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	forks.SetLatencyObserver(func(d time.Duration) { m.latency.Observe(d.Seconds()) })
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.active, m.forksEnded, m.framesIn, m.packetsOut, m.bytesOut, m.sendErrors, m.drops, m.eslUp, m.eslReconnects, m.limitHits, m.panics,
		m.streamConns, m.streamServer, m.streamsUp} {
		ch <- d
	}
	m.moreDescs.describe(ch)
	m.tb.describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	t := m.forks.Totals()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(m.active, prometheus.GaugeValue, float64(m.forks.Len()))
	for _, outcome := range []string{"hangup", "stopped", "media-lost", "shutdown", "failed"} {
		counter(m.forksEnded, t.Ended[outcome], outcome)
	}
	counter(m.framesIn, t.FramesIn)
	for _, dir := range []mediafork.Direction{mediafork.DirRX, mediafork.DirTX, mediafork.DirMixed} {
		counter(m.packetsOut, t.PacketsOut[dir-1], strings.ToLower(dir.String()))
		counter(m.bytesOut, t.BytesOut[dir-1], strings.ToLower(dir.String()))
	}
	for _, c := range m.forks.Endpoints() {
		counter(m.sendErrors, c.SendErrors.Load(), c.Profile, c.Endpoint, c.Protocol.String())
		counter(m.drops, c.Drops.Load(), c.Profile, c.Endpoint, c.Protocol.String())
		if mediafork.IsStream(c.Protocol) {
			for outcome, v := range map[string]uint64{"connected": c.Connects.Load(), "failed": c.ConnectFailures.Load(), "lost": c.Disconnects.Load()} {
				counter(m.streamConns, v, c.Profile, c.Endpoint, c.Protocol.String(), outcome)
			}
			counter(m.streamServer, c.ServerMessages.Load(), c.Profile, c.Endpoint, c.Protocol.String(), "accepted")
			counter(m.streamServer, c.ServerRefused.Load(), c.Profile, c.Endpoint, c.Protocol.String(), "refused")
		}
	}
	for p, n := range m.forks.StreamsConnected() {
		ch <- prometheus.MustNewConstMetric(m.streamsUp, prometheus.GaugeValue, float64(n), p.String())
	}
	for name, s := range m.switches() {
		up := 0.0
		if s.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(m.eslUp, prometheus.GaugeValue, up, name)
		counter(m.eslReconnects, s.Reconnects, name)
		ch <- prometheus.MustNewConstMetric(m.eslQueue, prometheus.GaugeValue, float64(s.QueuedEvents), name)
	}
	m.collectMore(ch)
	m.collectTalkback(ch)
	if m.limits != nil {
		l := m.limits()
		for name, v := range l.Hits {
			counter(m.limitHits, v, name)
		}
		for where, v := range l.Panics {
			counter(m.panics, v, where)
		}
	}
}
