package web

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

const dashboardFile = "../conf/grafana/mediafork.json"

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

type dashboard struct {
	Inputs        []json.RawMessage `json:"__inputs"`
	SchemaVersion int               `json:"schemaVersion"`
	Panels        []dashPanel       `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource json.RawMessage `json:"datasource"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// A PromQL identifier starting with mediafork_, not inside a longer one, and
// PromQL's strings (label values), which are no metric names.
var (
	metricName = regexp.MustCompile(`(?:^|[^A-Za-z0-9_:])(mediafork_[a-z0-9_]+)`)
	promString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
)

func metricNames(expr string) []string {
	var out []string
	for _, m := range metricName.FindAllStringSubmatch(promString.ReplaceAllString(expr, `""`), -1) {
		out = append(out, m[1])
	}
	return out
}

// exported is every metric name the real /metrics registry describes: the
// labelled vectors too, which have no series until something happens.
func exported(t *testing.T) map[string]prometheus.ValueType {
	m := NewMetrics(mediafork.NewRegistry(nil, 1, true, nil), func() map[string]SwitchStat { return nil }, nil)
	m.SetIngest(&IngestStats{})
	m.SetRetries(func() mediafork.RetryStats { return mediafork.RetryStats{} })
	m.SetReloads(&ReloadStats{})
	descs := make(chan *prometheus.Desc, 100)
	m.Describe(descs)
	m.latency.Describe(descs)
	close(descs)
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	out := map[string]prometheus.ValueType{}
	for d := range descs {
		name := fq.FindStringSubmatch(d.String())
		require.NotNil(t, name, d.String())
		out[name[1]] = prometheus.UntypedValue
	}
	out["mediafork_ingest_to_send_latency_seconds"] = prometheus.UntypedValue // a histogram: _bucket, _sum, _count
	// What a scrape of the same registry gives is described (the registry
	// checks each collected metric against its Desc).
	families, err := m.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "mediafork_") {
			assert.Contains(t, out, f.GetName())
		}
	}
	return out
}

// known reports whether a name from a query is exported, a histogram's
// series by their suffix.
func known(names map[string]prometheus.ValueType, name string) bool {
	if _, ok := names[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && base == "mediafork_ingest_to_send_latency_seconds" {
			return true
		}
	}
	return false
}

// Every metric the dashboard's queries use is one mediafork exports, and the
// metrics an operator watches are all on it.
func TestDashboardMetricsExist(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d))
	assert.GreaterOrEqual(t, d.SchemaVersion, 36)
	// The Prometheus is a dashboard variable of type datasource, which
	// Grafana fills in both when the file is provisioned and when it is
	// imported: no __inputs, whose ${DS_...} provisioning leaves unresolved
	// (grafana/grafana#10786).
	assert.Empty(t, d.Inputs)
	assert.NotContains(t, string(raw), "${DS_")
	require.NotEmpty(t, d.Templating.List)
	assert.Equal(t, "datasource", d.Templating.List[0].Name)
	assert.Equal(t, "datasource", d.Templating.List[0].Type)
	assert.JSONEq(t, `"prometheus"`, string(d.Templating.List[0].Query))
	for _, v := range d.Templating.List[1:] {
		assert.JSONEq(t, `{"type": "prometheus", "uid": "${datasource}"}`, string(v.Datasource), v.Name)
	}

	names := exported(t)
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
			ids[p.ID] = true
			assert.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, p.Title)
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			assert.JSONEq(t, `{"type": "prometheus", "uid": "${datasource}"}`, string(p.Datasource), p.Title)
			for _, tg := range p.Targets {
				assert.JSONEq(t, `{"type": "prometheus", "uid": "${datasource}"}`, string(tg.Datasource), p.Title)
				found := metricNames(tg.Expr)
				assert.NotEmpty(t, found, "panel %q: %s", p.Title, tg.Expr)
				for _, n := range found {
					assert.True(t, known(names, n), "panel %q uses %s, which mediafork does not export", p.Title, n)
					used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
				}
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		for _, n := range metricNames(v.Definition) {
			assert.True(t, known(names, n), "variable uses %s", n)
		}
	}
	for _, n := range []string{
		"mediafork_forks_active", "mediafork_forks_started_total", "mediafork_forks_ended_total",
		"mediafork_packets_out_total", "mediafork_drops_total", "mediafork_send_errors_total",
		"mediafork_ingest_to_send_latency_seconds", "mediafork_esl_connected", "mediafork_esl_event_queue_length",
		"mediafork_ingest_refusals_total", "mediafork_ingest_description_refusals_total", "mediafork_fork_retries_total", "mediafork_config_reloads_total",
	} {
		assert.True(t, used[n], "%s is not on the dashboard", n)
	}
}

// The name extraction finds names wherever PromQL puts them, and only them.
func TestDashboardMetricNames(t *testing.T) {
	t.Parallel()
	assert.Equal(t, []string{"mediafork_a_total", "mediafork_b_bucket"},
		metricNames(`sum by (x) (rate(mediafork_a_total{x="y"}[5m])) / histogram_quantile(0.5, mediafork_b_bucket)`))
	assert.Empty(t, metricNames(`not_mediafork_x + up{job="mediafork_jobname", a='mediafork_b\'c'}`))
	assert.True(t, known(map[string]prometheus.ValueType{"mediafork_ingest_to_send_latency_seconds": 0}, "mediafork_ingest_to_send_latency_seconds_bucket"))
	assert.False(t, known(map[string]prometheus.ValueType{}, "mediafork_forks_total"))
}
