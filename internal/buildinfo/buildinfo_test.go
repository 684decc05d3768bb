package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/mediafork/mediafork/cmd/mediafork", Version: "(devel)"}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	installed := vcs()
	installed.Main.Version = "v1.4.0"
	for _, tc := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		ok              bool
		want            Info
	}{
		{"ldflags win", "v2.0.0", "abc1234", vcs("vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), true,
			Info{Version: "v2.0.0", Commit: "abc1234", GoVersion: "go1.26.0"}},
		{"git checkout, modified", "", "", vcs("vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), true,
			Info{Version: Unknown, Commit: "0123456789ab-dirty", GoVersion: "go1.26.0"}},
		{"git checkout, clean", "", "", vcs("vcs.revision", "0123456789abcdef0123", "vcs.modified", "false"), true,
			Info{Version: Unknown, Commit: "0123456789ab", GoVersion: "go1.26.0"}},
		{"go install @version, no vcs", "", "", installed, true,
			Info{Version: "v1.4.0", Commit: Unknown, GoVersion: "go1.26.0"}},
		{"-buildvcs=false", "", "", vcs(), true,
			Info{Version: Unknown, Commit: Unknown, GoVersion: "go1.26.0"}},
		{"no build info", "", "", nil, false,
			Info{Version: Unknown, Commit: Unknown, GoVersion: runtime.Version()}},
		{"version stamped, commit from vcs", "v3.1.0", "", vcs("vcs.revision", "feedface"), true,
			Info{Version: "v3.1.0", Commit: "feedface", GoVersion: "go1.26.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.OS, tc.want.Arch = runtime.GOOS, runtime.GOARCH
			if got := resolve(tc.version, tc.commit, tc.bi, tc.ok); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v1.0.0", Commit: "abc", GoVersion: "go1.26.0", OS: "linux", Arch: "arm64"}
	if got, want := i.String(), "mediafork v1.0.0 (commit abc, go1.26.0, linux/arm64)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
