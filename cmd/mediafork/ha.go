package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/ha"
	"github.com/mediafork/mediafork/web"
)

// haJoinTimeout bounds the wait for etcd at start: an instance that cannot
// reach it does not start (its supervisor starts it again).
const haJoinTimeout = 30 * time.Second

// joinCluster makes the daemon one instance of a cluster when
// ha.etcd_endpoints is set (SPEC §10); with none, nothing here runs.
func (d *daemon) joinCluster(c *conf.Config, metrics *web.Metrics) error {
	if !c.HA.Enabled() {
		return nil
	}
	host, _ := os.Hostname()
	names := make([]string, len(c.FreeSWITCH))
	for i, fs := range c.FreeSWITCH {
		names[i] = fs.Name
	}
	ctx, cancel := context.WithTimeout(context.Background(), haJoinTimeout)
	defer cancel()
	node, err := ha.Open(ctx, ha.Settings{Endpoints: c.HA.EtcdEndpoints, TTL: time.Duration(c.HA.LeaseTTL), Prefix: c.HA.Prefix,
		Instance: c.InstanceName(host), APIURL: c.APIURL(host), Switches: names}, d.orchestrator, d.log)
	if err != nil {
		return fmt.Errorf("ha.etcd_endpoints: %w", err)
	}
	d.node = node
	d.orchestrator.SetCluster(ha.Gate{N: node})
	d.ingest.SetLookup(ha.Lookup{CallLookup: d.orchestrator, N: node})
	d.registry.ObserveEnd(node.ForkEnded)
	d.api.SetCluster(apiCluster{node})
	metrics.SetCluster(apiCluster{node})
	d.log.Info("in a cluster", "instance", node.Name(), "etcd", c.HA.EtcdEndpoints, "lease_ttl", time.Duration(c.HA.LeaseTTL), "api", c.APIURL(host))
	return nil
}

// apiCluster is the node as the API and metrics see it.
type apiCluster struct{ n *ha.Node }

func (a apiCluster) Instance() string                       { return a.n.Name() }
func (a apiCluster) Leading() []string                      { return a.n.Leading() }
func (a apiCluster) Switches() []string                     { return a.n.Switches() }
func (a apiCluster) TransitionCounts() map[string][2]uint64 { return a.n.TransitionCounts() }
func (a apiCluster) View() any                              { return a.n.View() }
func (a apiCluster) LeaderAPI(server string) (string, string, bool) {
	m, ok := a.n.Leader(server)
	return m.Name, m.API, ok
}
