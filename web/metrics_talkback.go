package web

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Talk-back's metrics (SPEC §9): what receivers sent back into calls, per
// endpoint label (bounded: the config's endpoints, "adhoc" for the rest).
type talkbackDescs struct {
	seconds, refused, datagrams *prometheus.Desc
}

func newTalkbackDescs(d func(name, help string, labels ...string) *prometheus.Desc) talkbackDescs {
	return talkbackDescs{
		seconds: d("mediafork_talkback_seconds_total", "Talk-back audio receivers sent into calls, by profile, endpoint, protocol and outcome: "+
			"played (handed to the switch), cleared (dropped by a clear or the call's end), refused (beyond talkback.max_queue, or to a party the endpoint may not speak to).",
			"profile", "endpoint", "protocol", "outcome"),
		refused: d("mediafork_talkback_refused_total", "Talk-back messages refused (a full queue, another receiver speaking to the party, invalid audio or marks), by profile, endpoint and protocol.",
			"profile", "endpoint", "protocol"),
		datagrams: d("mediafork_talkback_datagrams_refused_total", "Datagrams TLV receivers sent back that were refused: not a talk-back packet of a live stream of theirs, or invalid."),
	}
}

func (d *talkbackDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.seconds, d.refused, d.datagrams} {
		ch <- x
	}
}

func (m *Metrics) collectTalkback(ch chan<- prometheus.Metric) {
	for _, c := range m.forks.Endpoints() {
		played, cleared, refusedMs := c.TalkbackPlayedMs.Load(), c.TalkbackClearedMs.Load(), c.TalkbackRefusedMs.Load()
		refused := c.TalkbackRefused.Load()
		if played+cleared+refusedMs+refused == 0 {
			continue // an endpoint that never spoke
		}
		for outcome, ms := range map[string]uint64{"played": played, "cleared": cleared, "refused": refusedMs} {
			ch <- prometheus.MustNewConstMetric(m.tb.seconds, prometheus.CounterValue, float64(ms)/1000, c.Profile, c.Endpoint, c.Protocol.String(), outcome)
		}
		ch <- prometheus.MustNewConstMetric(m.tb.refused, prometheus.CounterValue, float64(refused), c.Profile, c.Endpoint, c.Protocol.String())
	}
	ch <- prometheus.MustNewConstMetric(m.tb.datagrams, prometheus.CounterValue, float64(m.forks.TLVTalkbackRefused()))
}
