package main

import (
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/web"
)

// tracked makes p's destinations record what the config's endpoints resolve
// to, so that metrics may name them (and only them: the label set stays
// bounded by the config).
func (d *daemon) tracked(p *mediafork.Policy) *mediafork.Policy {
	if p.Destinations != nil {
		p.Destinations.Known = d.known
	}
	d.known.AddConfig(p)
	return p
}

// trackedIngest is tracked for the ingest's destinations (forks typed by hand).
func (d *daemon) trackedIngest(s web.IngestSettings) web.IngestSettings {
	if s.Destinations != nil {
		s.Destinations.Known = d.known
	}
	return s
}

// metrics is the daemon's /metrics.
func (d *daemon) metrics() *web.Metrics {
	m := web.NewMetrics(d.registry, d.switchStats, d.limitStats)
	m.SetIngest(&d.ingest.Stats)
	m.SetRetries(d.orchestrator.RetryStats)
	m.SetReloads(&d.reloads)
	return m
}
