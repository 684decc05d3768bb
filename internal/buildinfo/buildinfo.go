// Package buildinfo says which mediafork this is: the version and commit
// stamped in at link time (scripts/release.sh), else what the Go toolchain
// recorded (go install ...@v1.2.3 sets the module version; a build in a git
// checkout records the revision unless -buildvcs=false).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags "-X github.com/mediafork/mediafork/internal/buildinfo.version=v1.2.3
// -X github.com/mediafork/mediafork/internal/buildinfo.commit=0123abc".
var (
	version string
	commit  string
)

// Unknown is the version or commit when neither ldflags nor the toolchain
// recorded one (go build in a tree without VCS information).
const Unknown = "devel"

// Info identifies a build.
type Info struct {
	Version   string // v1.2.3, or "devel"
	Commit    string // VCS revision, "-dirty" appended when modified, or "devel"
	GoVersion string // go1.26.0
	OS, Arch  string
}

// Get returns this binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	return resolve(version, commit, bi, ok)
}

// resolve prefers the linker-stamped values, then the build info's.
func resolve(version, commit string, bi *debug.BuildInfo, ok bool) Info {
	in := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if ok && bi != nil {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		if in.Commit == "" {
			var rev string
			var modified bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if rev != "" {
				in.Commit = shortRev(rev)
				if modified {
					in.Commit += "-dirty"
				}
			}
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
	}
	if in.Version == "" {
		in.Version = Unknown
	}
	if in.Commit == "" {
		in.Commit = Unknown
	}
	return in
}

// shortRev keeps 12 hex digits: enough to name a commit, short enough for a log line.
func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// String is the one-line form `mediafork --version` prints.
func (i Info) String() string {
	return fmt.Sprintf("mediafork %s (commit %s, %s, %s/%s)", i.Version, i.Commit, i.GoVersion, i.OS, i.Arch)
}
