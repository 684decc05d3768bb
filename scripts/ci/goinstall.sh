#!/usr/bin/env bash
# The README's `go install github.com/mediafork/mediafork/cmd/mediafork@latest`, proved without publishing:
# the committed tree is served as a module version from a local proxy (GOPROXY=file://...), installed from
# there like any remote module (which the go command refuses for a module with a `replace` directive,
# golang/go#44840), and the binary must answer --version with that version.
set -euo pipefail
cd "$(dirname "$0")/../.."
mod=github.com/mediafork/mediafork
ver=v0.0.0-ci.1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir="$work/proxy/$mod/@v"
mkdir -p "$dir" "$work/bin" "$work/home"
echo "$ver" > "$dir/list"
printf '{"Version":"%s","Time":"%s"}\n' "$ver" "$(git log -1 --format=%cI HEAD)" > "$dir/$ver.info"
git show HEAD:go.mod > "$dir/$ver.mod"
git archive --format=zip --prefix="$mod@$ver/" -o "$dir/$ver.zip" HEAD
# Outside the checkout (no go.mod around), dependencies from the usual proxy, this module's sum not in the
# public checksum database (it was never published).
cd "$work/home"
GOFLAGS= GOWORK=off GONOSUMDB="$mod" GOPROXY="file://$work/proxy,$(go env GOPROXY)" GOBIN="$work/bin" \
  go install "$mod/cmd/mediafork@latest"
out=$("$work/bin/mediafork" --version)
echo "go install $mod/cmd/mediafork@latest (from a local proxy): $out"
case "$out" in
  *"mediafork $ver "*) ;;
  *) echo "--version does not name the installed version $ver" >&2; exit 1 ;;
esac
