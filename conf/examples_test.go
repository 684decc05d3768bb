package conf

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/mediafork/mediafork/mediafork"
)

// The shipped examples work together as shipped: the example config, the
// example dialplan and compose.yaml (with its Prometheus and Grafana).

// exampleDialplan is conf/dialplan.xml as FreeSWITCH reads it.
type exampleDialplan struct {
	XMLName  xml.Name `xml:"include"`
	Contexts []struct {
		Name       string `xml:"name,attr"`
		Extensions []struct {
			Name       string `xml:"name,attr"`
			Conditions []struct {
				Field      string `xml:"field,attr"`
				Expression string `xml:"expression,attr"`
				Actions    []struct {
					App  string `xml:"application,attr"`
					Data string `xml:"data,attr"`
				} `xml:"action"`
			} `xml:"condition"`
		} `xml:"extension"`
	} `xml:"context"`
}

func loadDialplan(t *testing.T) exampleDialplan {
	t.Helper()
	f, err := os.Open("dialplan.xml")
	require.NoError(t, err)
	defer f.Close()
	var d exampleDialplan
	dec := xml.NewDecoder(f)
	dec.Strict = true
	require.NoError(t, dec.Decode(&d))
	return d
}

// The contexts of FreeSWITCH 1.10's stock configuration (conf/vanilla/
// dialplan: default.xml, public.xml, features.xml, skinny-patterns.xml) and
// of the dist build the real-switch tests use (default).
var stockContexts = []string{"default", "public", "features", "skinny-patterns"}

// expand is FreeSWITCH's ${var} expansion of the variables the example's
// actions use, for a call from 1000 to ext.
func expand(s, ext string) string {
	return strings.NewReplacer("${destination_number}", ext, "${caller_id_number}", "1000").Replace(s)
}

// numberOf is the one number an extension's ^NNNN$ condition matches.
var numberRE = regexp.MustCompile(`^\^(\d+)\$$`)

// Every fork the example dialplan asks for resolves under the example config
// as the daemon resolves it (SocketAsk, then Policy.Resolve): its ad-hoc
// destinations inside destinations.allow, its profiles among the config's,
// its socket on outbound.listen — under compose's environment too; the
// extension without a mediafork step is forked by the config's rule; and
// every destination the config names is inside destinations.allow.
func TestExampleDialplanAndConfigAgree(t *testing.T) {
	t.Parallel()
	d := loadDialplan(t)
	composeEnv := map[string]string{}
	for k, v := range readCompose(t).Services["mediafork"].Environment {
		composeEnv[k] = v
	}
	for name, env := range map[string]map[string]string{"as shipped": nil, "under compose": composeEnv} {
		t.Run(name, func(t *testing.T) {
			c, err := Load("mediafork.example.yaml", envOf(env))
			require.NoError(t, err)
			p := c.Policy()
			allowed := func(hostport string) bool {
				ap, err := netip.ParseAddrPort(hostport)
				require.NoError(t, err, hostport)
				return p.Destinations.Allowed(ap.Addr())
			}
			require.Len(t, d.Contexts, 1)
			var forked, ruled []string
			for _, ext := range d.Contexts[0].Extensions {
				require.Len(t, ext.Conditions, 1, ext.Name)
				cond := ext.Conditions[0]
				require.Equal(t, "destination_number", cond.Field, ext.Name)
				m := numberRE.FindStringSubmatch(cond.Expression)
				require.NotNil(t, m, "%s: a ^NNNN$ extension", ext.Name)
				num := m[1]
				data := map[string]string{"Unique-ID": "0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b", "Channel-Name": "loopback/" + num + "-b",
					"Caller-Destination-Number": num, "Caller-Caller-ID-Number": "1000", "Call-Direction": "inbound"}
				socket := ""
				for _, a := range cond.Actions {
					switch a.App {
					case "set":
						k, v, ok := strings.Cut(expand(a.Data, num), "=")
						require.True(t, ok, "%s: set %q", ext.Name, a.Data)
						data["variable_"+k] = v
					case "socket":
						socket = strings.Fields(a.Data)[0]
					}
				}
				cd := mediafork.NewChannelData(data)
				ask, err := mediafork.SocketAsk(cd)
				require.NoError(t, err, ext.Name)
				if socket != "" { // the dialplan socket: what its variables ask
					assert.Equal(t, c.Outbound.Listen, socket, "%s: the socket application dials outbound.listen", ext.Name)
					for _, to := range ask.To {
						assert.True(t, allowed(to), "%s: %s is outside destinations.allow %v", ext.Name, to, c.Destinations.Allow)
					}
					if ask.Profile != "" {
						assert.Contains(t, c.Profiles, ask.Profile, "%s: profile %q", ext.Name, ask.Profile)
					}
					spec, rerr := p.Resolve(context.Background(), mediafork.Request{Trigger: mediafork.TriggerSocket, Ask: ask, Data: cd})
					require.NoError(t, rerr, "%s: the fork its variables ask for", ext.Name)
					assert.NotEmpty(t, spec.Targets, ext.Name)
					forked = append(forked, num)
					continue
				}
				// No mediafork step: a rule may fork it on CHANNEL_ANSWER.
				spec, err := p.Resolve(context.Background(), mediafork.Request{Trigger: mediafork.TriggerRule, Data: cd})
				if err == nil {
					assert.NotEmpty(t, spec.Targets, ext.Name)
					ruled = append(ruled, num+"/"+spec.Rule)
				} else {
					require.ErrorIs(t, err, mediafork.ErrNoRule, ext.Name)
				}
			}
			assert.Equal(t, []string{"7000", "7001"}, forked, "the socket extensions")
			assert.Equal(t, []string{"7002/support-line"}, ruled, "the example rule forks the example's 7002, and nothing else")

			for name, prof := range c.Profiles {
				for _, ep := range prof.Endpoints {
					if strings.Contains(ep, "://") { // a stream endpoint's url: its host:port
						hp, err := mediafork.StreamHostPort(ep)
						require.NoError(t, err, ep)
						ep = hp
					}
					assert.True(t, allowed(ep), "profile %s: %s is outside destinations.allow", name, ep)
				}
				assert.NotEmpty(t, prof.Endpoints, name)
			}
			for _, r := range c.Rules {
				if r.Profile != "" {
					assert.Contains(t, c.Profiles, r.Profile, "rule %s", r.Name)
				}
				for _, to := range r.To {
					assert.True(t, allowed(to), "rule %s: %s", r.Name, to)
				}
			}
			assert.Equal(t, "127.0.0.1:8021", c.FreeSWITCH[0].Address, "the switch compose runs beside it")
		})
	}
}

// envOf is an environment of the variables in m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// composeFile is what these tests read of compose.yaml.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		NetworkMode string            `yaml:"network_mode"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
	} `yaml:"services"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../compose.yaml")
	require.NoError(t, err)
	var c composeFile
	require.NoError(t, yaml.Unmarshal(b, &c))
	return c
}

// mounts is a service's volumes: container path -> host path (relative to
// the repository), with ${VAR:-default} at its default.
func mounts(vols []string) map[string]string {
	def := regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`)
	out := map[string]string{}
	for _, v := range vols {
		v = def.ReplaceAllString(v, "$1")
		parts := strings.Split(v, ":")
		out[parts[1]] = strings.TrimPrefix(parts[0], "./")
	}
	return out
}

// compose.yaml's FreeSWITCH reads the example dialplan where its stock
// configuration includes dialplan files (freeswitch.xml: dialplan/*.xml), as
// a context of its own that no stock dialplan has: nothing stock is hunted
// before its extensions, and FreeSWITCH's stock extensions stay as they are.
func TestComposeDialplanIsReachedFirst(t *testing.T) {
	t.Parallel()
	c := readCompose(t)
	fs := mounts(c.Services["freeswitch"].Volumes)
	var target string
	for container, host := range fs {
		if host == "conf/dialplan.xml" {
			target = container
		}
	}
	require.NotEmpty(t, target, "conf/dialplan.xml is mounted into FreeSWITCH: %v", c.Services["freeswitch"].Volumes)
	assert.Equal(t, "/etc/freeswitch/dialplan", path.Dir(target), "in the dialplan/ directory freeswitch.xml includes (dialplan/*.xml), not in a context's")
	assert.Equal(t, ".xml", path.Ext(target))
	d := loadDialplan(t)
	require.Len(t, d.Contexts, 1, "one context")
	assert.NotContains(t, stockContexts, d.Contexts[0].Name, "a context of its own: a stock one's extensions would be hunted first, or shadowed")
	assert.Equal(t, "mediafork", d.Contexts[0].Name)
}

// compose.yaml's Prometheus scrapes mediafork's /metrics where compose's
// mediafork serves it, and its Grafana is provisioned from files: the
// datasource is that Prometheus, the dashboard provider reads the folder the
// dashboard is mounted into, and the dashboard needs no import step (its
// Prometheus is a datasource variable, no ${DS_...} input). Checked by
// parsing what each reads, where compose mounts it.
func TestComposeMonitoringIsProvisioned(t *testing.T) {
	t.Parallel()
	c := readCompose(t)
	mf, err := Load("mediafork.example.yaml", envOf(c.Services["mediafork"].Environment))
	require.NoError(t, err)
	for _, svc := range []string{"prometheus", "grafana"} {
		assert.Equal(t, "host", c.Services[svc].NetworkMode, svc)
		assert.NotEmpty(t, c.Services[svc].Image, svc)
	}

	// Prometheus: its config file where its --config.file says, scraping api.listen.
	prom := c.Services["prometheus"]
	pm := mounts(prom.Volumes)
	var promConfig, promListen string
	for _, a := range prom.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			promConfig = v
		}
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			promListen = v
		}
	}
	require.Contains(t, pm, promConfig, "the config file Prometheus reads is mounted")
	b, err := os.ReadFile("../" + pm[promConfig])
	require.NoError(t, err)
	var pc struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			Scheme        string `yaml:"scheme"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(b, &pc))
	require.Len(t, pc.ScrapeConfigs, 1)
	sc := pc.ScrapeConfigs[0]
	assert.Equal(t, "/metrics", sc.MetricsPath)
	assert.Contains(t, []string{"", "http"}, sc.Scheme, "mediafork's API is plain HTTP in the example")
	require.Len(t, sc.StaticConfigs, 1)
	assert.Equal(t, []string{mf.API.Listen}, sc.StaticConfigs[0].Targets, "Prometheus scrapes mediafork's api.listen")

	// Grafana: provisioning where it looks (/etc/grafana/provisioning).
	gm := mounts(c.Services["grafana"].Volumes)
	read := func(container string, v any) {
		t.Helper()
		host, ok := gm[container]
		require.True(t, ok, "%s is mounted into Grafana: %v", container, gm)
		data, rerr := os.ReadFile("../" + host)
		require.NoError(t, rerr)
		if strings.HasSuffix(container, ".json") {
			require.NoError(t, json.Unmarshal(data, v), host)
		} else {
			require.NoError(t, yaml.Unmarshal(data, v), host)
		}
	}
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, Type, UID, URL, Access string
			IsDefault                    bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	dsDir := gm["/etc/grafana/provisioning/datasources"]
	require.NotEmpty(t, dsDir, "the datasources are mounted")
	entries, err := os.ReadDir("../" + dsDir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	b, err = os.ReadFile("../" + dsDir + "/" + entries[0].Name())
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &ds))
	assert.Equal(t, 1, ds.APIVersion)
	require.Len(t, ds.Datasources, 1)
	assert.Equal(t, "prometheus", ds.Datasources[0].Type)
	assert.True(t, ds.Datasources[0].IsDefault, "the dashboard's datasource variable picks the default Prometheus")
	assert.Equal(t, "http://"+promListen, ds.Datasources[0].URL, "Grafana queries compose's Prometheus")
	assert.Equal(t, "proxy", ds.Datasources[0].Access)

	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Type string
			Options    struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	dbDir := gm["/etc/grafana/provisioning/dashboards"]
	require.NotEmpty(t, dbDir, "the dashboard providers are mounted")
	entries, err = os.ReadDir("../" + dbDir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	b, err = os.ReadFile("../" + dbDir + "/" + entries[0].Name())
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &prov))
	assert.Equal(t, 1, prov.APIVersion)
	require.Len(t, prov.Providers, 1)
	assert.Equal(t, "file", prov.Providers[0].Type)
	dashDir := prov.Providers[0].Options.Path
	var dashboards []string
	for container := range gm {
		if path.Dir(container) == dashDir && path.Ext(container) == ".json" {
			dashboards = append(dashboards, container)
		}
	}
	require.Len(t, dashboards, 1, "the dashboard is mounted into the folder the provider reads (%s): %v", dashDir, gm)
	assert.Equal(t, "conf/grafana/mediafork.json", gm[dashboards[0]])
	home := c.Services["grafana"].Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	assert.Equal(t, dashboards[0], home, "the home dashboard is the provisioned one")

	var dash struct {
		Inputs     []json.RawMessage `json:"__inputs"`
		UID        string            `json:"uid"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	read(dashboards[0], &dash)
	assert.Empty(t, dash.Inputs, "no __inputs: provisioning leaves ${DS_...} unresolved (grafana/grafana#10786)")
	assert.NotEmpty(t, dash.UID)
	i := -1
	for k, v := range dash.Templating.List {
		if v.Type == "datasource" {
			i = k
		}
	}
	require.GreaterOrEqual(t, i, 0, "a datasource variable")
	assert.JSONEq(t, `"prometheus"`, string(dash.Templating.List[i].Query))
	raw, err := os.ReadFile("grafana/mediafork.json")
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "${DS_")
	assert.Contains(t, string(raw), `"uid": "${`+dash.Templating.List[i].Name+`}"`, "the panels use the variable")
}

// The README's minimal mediafork.yaml (its "3. mediafork.yaml") loads, says
// what the example config says, and forks the README's first calls (7000
// through the socket, 7002 by its rule) with the example dialplan.
func TestREADMEConfigSnippet(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, sec, ok := strings.Cut(string(b), "### 3. mediafork.yaml")
	require.True(t, ok)
	_, block, ok := strings.Cut(sec, "```yaml\n")
	require.True(t, ok)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	path := t.TempDir() + "/mediafork.yaml"
	require.NoError(t, os.WriteFile(path, []byte(block), 0o600))
	c, err := Load(path, envOf(nil))
	require.NoError(t, err, "the README's snippet loads")
	ex, err := Load("mediafork.example.yaml", envOf(nil))
	require.NoError(t, err)
	assert.Equal(t, ex.FreeSWITCH[0].Address, c.FreeSWITCH[0].Address)
	assert.Equal(t, ex.FreeSWITCH[0].Password, c.FreeSWITCH[0].Password)
	assert.Equal(t, ex.Outbound, c.Outbound)
	assert.Equal(t, ex.Ingest.Listen, c.Ingest.Listen)
	assert.Equal(t, ex.Ingest.URL, c.Ingest.URL)
	assert.Equal(t, ex.API.Listen, c.API.Listen)
	assert.Equal(t, ex.Profiles["analytics"], c.Profiles["analytics"])
	assert.Equal(t, ex.Rules, c.Rules)

	p := c.Policy()
	d := loadDialplan(t)
	for _, ext := range d.Contexts[0].Extensions {
		num := numberRE.FindStringSubmatch(ext.Conditions[0].Expression)[1]
		if num != "7000" && num != "7002" {
			continue
		}
		data := map[string]string{"Unique-ID": "0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b", "Caller-Destination-Number": num,
			"Caller-Caller-ID-Number": "1000", "Call-Direction": "inbound"}
		trigger := mediafork.TriggerRule
		for _, a := range ext.Conditions[0].Actions {
			if a.App == "set" {
				k, v, _ := strings.Cut(expand(a.Data, num), "=")
				data["variable_"+k] = v
			}
			if a.App == "socket" {
				trigger = mediafork.TriggerSocket
			}
		}
		cd := mediafork.NewChannelData(data)
		ask, err := mediafork.SocketAsk(cd)
		require.NoError(t, err)
		_, err = p.Resolve(context.Background(), mediafork.Request{Trigger: trigger, Ask: ask, Data: cd})
		assert.NoError(t, err, "the README's config forks %s", num)
	}
}
