package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediafork/mediafork/mediafork"
)

// Cluster is what the API shows of, and asks of, the instances this one
// shares its switches with (package ha). nil: a single instance.
type Cluster interface {
	Instance() string
	// LeaderAPI is the instance leading server and its API's base URL.
	LeaderAPI(server string) (instance, url string, ok bool)
	// Leading are the switches this instance leads; Switches those it is
	// connected to.
	Leading() []string
	Switches() []string
	// TransitionCounts: leaderships gained and lost here, by switch.
	TransitionCounts() map[string][2]uint64
	// View is the cluster as this instance sees it (GET /v1/cluster).
	View() any
}

// ForwardedHeader marks a write a standby forwarded to the leader of its
// switch: it is never forwarded again.
const ForwardedHeader = "X-Mediafork-Forwarded-By"

// SetCluster makes the API one instance's of a cluster: writes on a call
// of a switch this instance does not lead are forwarded to its leader, and
// /readyz and /v1/cluster show the cluster. Set it before serving.
func (a *API) SetCluster(c Cluster) {
	a.cluster = c
	a.forwarder = &http.Client{Timeout: 20 * time.Second,
		// The leader answers; a redirect would take the token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// clusterBody is GET /v1/cluster's answer.
func (a *API) clusterInfo(w http.ResponseWriter, r *http.Request) {
	if a.cluster == nil {
		writeJSON(w, http.StatusOK, map[string]any{"enabled": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enabled": true, "cluster": a.cluster.View(), "leading": a.leading()})
}

func (a *API) leading() []string {
	l := a.cluster.Leading()
	if l == nil {
		l = []string{}
	}
	return l
}

// forward sends a write about a call on server to the switch's leader when
// this instance does not lead it, and answers with the leader's answer;
// false when the request is this instance's to serve. body is the request's
// body as it was read (nil for none).
func (a *API) forward(w http.ResponseWriter, r *http.Request, server string, body []byte) bool {
	if a.cluster == nil || server == "" || a.o.Leads(server) {
		return false
	}
	who, base, ok := a.cluster.LeaderAPI(server)
	switch {
	case r.Header.Get(ForwardedHeader) != "":
		// The leadership moved while the request travelled: the client tries again.
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("instance %s no longer leads switch %s; try again", a.cluster.Instance(), server))
		return true
	case !ok || base == "":
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("switch %s has no leader now (an election is under way); try again", server))
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, base+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		httpError(w, http.StatusBadGateway, err.Error())
		return true
	}
	// The caller's own credentials: the leader checks the token again.
	for _, h := range []string{"Authorization", "Content-Type"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(ForwardedHeader, a.cluster.Instance())
	resp, err := a.forwarder.Do(req)
	if err != nil {
		a.log.Warn("forwarding to the switch's leader failed", "freeswitch", server, "leader", who, "error", err)
		httpError(w, http.StatusBadGateway, fmt.Sprintf("switch %s is led by instance %s, which did not answer: %v", server, who, err))
		return true
	}
	defer resp.Body.Close()
	a.log.Info("write forwarded to the switch's leader", "method", r.Method, "path", r.URL.Path, "freeswitch", server, "leader", who, "status", resp.StatusCode)
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.Header().Set("X-Mediafork-Served-By", who)
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, 1<<20))
	return true
}

// ClusterMetrics exports, for Prometheus, which switches this instance
// leads and how often leaderships changed.
type clusterCollector struct {
	c                   Cluster
	leader, transitions *prometheus.Desc
}

// SetCluster adds the cluster's metrics.
func (m *Metrics) SetCluster(c Cluster) {
	m.reg.MustRegister(&clusterCollector{c: c,
		leader:      prometheus.NewDesc("mediafork_ha_leader", "1 while this instance leads the switch (it applies its rules, fs_cli commands and resync), 0 while it stands by.", []string{"freeswitch"}, nil),
		transitions: prometheus.NewDesc("mediafork_ha_leadership_transitions_total", "Leaderships of the switch this instance took (gained) and gave up or lost (lost).", []string{"freeswitch", "direction"}, nil),
	})
}

func (k *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- k.leader
	ch <- k.transitions
}

func (k *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	leading := map[string]bool{}
	for _, s := range k.c.Leading() {
		leading[s] = true
	}
	counts := k.c.TransitionCounts()
	for _, s := range k.c.Switches() {
		v := 0.0
		if leading[s] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(k.leader, prometheus.GaugeValue, v, s)
		n := counts[s]
		ch <- prometheus.MustNewConstMetric(k.transitions, prometheus.CounterValue, float64(n[0]), s, "gained")
		ch <- prometheus.MustNewConstMetric(k.transitions, prometheus.CounterValue, float64(n[1]), s, "lost")
	}
}

// haReady is /readyz's view of the cluster.
type haReady struct {
	Instance string   `json:"instance"`
	Leading  []string `json:"leading"`
	Standby  []string `json:"standby"` // connected, led by another instance
}

func (a *API) haReady() *haReady {
	if a.cluster == nil {
		return nil
	}
	h := &haReady{Instance: a.cluster.Instance(), Leading: a.leading(), Standby: []string{}}
	lead := map[string]bool{}
	for _, s := range h.Leading {
		lead[s] = true
	}
	for _, s := range a.cluster.Switches() {
		if !lead[s] {
			h.Standby = append(h.Standby, s)
		}
	}
	sort.Strings(h.Standby)
	return h
}

// readBody reads a write's JSON body once, bounded, so that it can be
// decoded here or forwarded as is.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, err
}

// startForkServer is the switch a POST /v1/forks is about: the one it
// names, else the one the call is on.
func (a *API) startForkServer(ctx context.Context, req mediafork.StartRequest) string {
	if req.FreeSWITCH != "" {
		return req.FreeSWITCH
	}
	s, _ := a.o.SwitchOf(ctx, req.UUID)
	return s
}
