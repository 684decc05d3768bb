package web

import "github.com/prometheus/client_golang/prometheus"

// RegisterBuildInfo adds mediafork_build_info{version,commit,goversion} 1, the
// node_exporter-style gauge that lets a dashboard join any series to the build
// that produced it.
func (m *Metrics) RegisterBuildInfo(version, commit, goVersion string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "mediafork_build_info",
		Help:        "A metric with a constant '1' value labeled by the version, commit and Go version mediafork was built from.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "goversion": goVersion},
	})
	g.Set(1)
	m.reg.MustRegister(g)
}
