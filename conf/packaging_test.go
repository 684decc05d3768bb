package conf_test

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mediafork/mediafork/conf"
)

// containerfile is what the packaging tests read from ../Containerfile.
type containerfile struct {
	env                   map[string]string
	expose                []string
	user, entrypoint, cmd string
}

func readContainerfile(t *testing.T) containerfile {
	t.Helper()
	b, err := os.ReadFile("../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ") // continuation lines
	cf := containerfile{env: map[string]string{}}
	final := false
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		rest := strings.TrimSpace(strings.TrimPrefix(line, f[0]))
		switch f[0] {
		case "FROM":
			final = !strings.Contains(rest, " AS ")
		case "ENV":
			if final {
				for _, kv := range f[1:] {
					k, v, _ := strings.Cut(kv, "=")
					cf.env[k] = v
				}
			}
		case "EXPOSE":
			cf.expose = append(cf.expose, f[1:]...)
		case "USER":
			cf.user = rest
		case "ENTRYPOINT":
			cf.entrypoint = rest
		case "CMD":
			cf.cmd = rest
		}
	}
	return cf
}

func lookup(envs ...map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		for _, e := range envs {
			if v, ok := e[k]; ok {
				return v, true
			}
		}
		return "", false
	}
}

func port(t *testing.T, listen string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	return p + "/tcp"
}

// TestContainerfileMatchesTheConfig: the image exposes exactly the ports its
// own config and environment listen on, runs as 65532, and refuses to serve
// an open API.
func TestContainerfileMatchesTheConfig(t *testing.T) {
	t.Parallel()
	cf := readContainerfile(t)
	if cf.user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", cf.user)
	}
	if cf.entrypoint != `["/mediafork"]` || cf.cmd != `["serve", "--config", "/etc/mediafork/mediafork.yaml"]` {
		t.Errorf("ENTRYPOINT %s CMD %s", cf.entrypoint, cf.cmd)
	}
	if _, err := conf.Load("mediafork.example.yaml", lookup(cf.env)); err == nil || !strings.Contains(err.Error(), "api.token") {
		t.Errorf("the image's config without MEDIAFORK_API_TOKEN: %v, want an api.token error", err)
	}
	c, err := conf.Load("mediafork.example.yaml", lookup(cf.env, map[string]string{"MEDIAFORK_API_TOKEN": "t"}))
	if err != nil {
		t.Fatal(err)
	}
	listens := []string{port(t, c.Ingest.Listen), port(t, c.API.Listen), port(t, c.Outbound.Listen)}
	for _, l := range []string{c.Ingest.Listen, c.API.Listen, c.Outbound.Listen} {
		if conf.IsLoopback(l) {
			t.Errorf("%s in a container: loopback is the container's own", l)
		}
	}
	slices.Sort(listens)
	expose := slices.Clone(cf.expose)
	slices.Sort(expose)
	if !slices.Equal(listens, expose) {
		t.Errorf("EXPOSE %v, but the image listens on %v", cf.expose, listens)
	}
}

// TestComposeExample: compose.yaml parses, names FreeSWITCH's image by a
// required variable, mounts files that exist, and gives mediafork a config
// that loads.
func TestComposeExample(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			NetworkMode string            `yaml:"network_mode"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Build       struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
		} `yaml:"services"`
	}
	if err = yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	fs, mf := compose.Services["freeswitch"], compose.Services["mediafork"]
	if !strings.HasPrefix(fs.Image, "${FREESWITCH_IMAGE:?") {
		t.Errorf("freeswitch image %q: want a required ${FREESWITCH_IMAGE:?...}", fs.Image)
	}
	if fs.NetworkMode != mf.NetworkMode {
		t.Errorf("network modes differ (%q, %q): the loopback addresses in the example config would not connect them", fs.NetworkMode, mf.NetworkMode)
	}
	if _, statErr := os.Stat(filepath.Join("..", mf.Build.Context, mf.Build.Dockerfile)); statErr != nil {
		t.Errorf("mediafork build: %v", statErr)
	}
	mounts := map[string]string{} // container path -> host path
	for _, v := range slices.Concat(fs.Volumes, mf.Volumes) {
		parts := strings.Split(v, ":")
		if _, statErr := os.Stat(filepath.Join("..", parts[0])); statErr != nil {
			t.Errorf("volume %q: %v", v, statErr)
		}
		mounts[strings.Join(parts[1:len(parts)-1], ":")] = parts[0]
	}
	if mounts["${FREESWITCH_CONF:-/etc/freeswitch}/dialplan/mediafork.xml"] != "./conf/dialplan.xml" {
		t.Errorf("conf/dialplan.xml is not mounted into FreeSWITCH's dialplan: %v", fs.Volumes)
	}
	cfgFile, ok := mounts["/etc/mediafork/mediafork.yaml"]
	if !ok {
		t.Fatalf("no config mounted at /etc/mediafork/mediafork.yaml: %v", mf.Volumes)
	}
	// The image's environment, then compose's over it.
	c, err := conf.Load(filepath.Join("..", cfgFile), lookup(mf.Environment, readContainerfile(t).env))
	if err != nil {
		t.Fatalf("mediafork's config under compose: %v", err)
	}
	for _, l := range []string{c.Ingest.Listen, c.API.Listen, c.Outbound.Listen} {
		if mf.NetworkMode == "host" && !conf.IsLoopback(l) {
			t.Errorf("%s on the host's network: listen on loopback or set a token", l)
		}
	}
}

// TestSystemdUnit: the unit runs the binary where the README installs it,
// with the config where the image has it, as a notify service.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("mediafork.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify",
		"ExecStart=/usr/local/bin/mediafork serve --config /etc/mediafork/mediafork.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"Restart=on-failure",
		"DynamicUser=yes",
		"CapabilityBoundingSet=",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", // AF_UNIX: $NOTIFY_SOCKET
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(b) {
			t.Errorf("no line %q in conf/mediafork.service", want)
		}
	}
}
