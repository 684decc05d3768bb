#!/usr/bin/env bash
# Release binaries without make: static linux/amd64 and linux/arm64 builds of
# mediafork with the version and commit stamped in, and their SHA256SUMS.
#
#   scripts/release.sh [VERSION]
#
# VERSION defaults to $VERSION, else `git describe --tags --always --dirty`.
# OUT (default dist/) is where the binaries go; ARCHES (default "amd64 arm64")
# which ones. Each binary is checked: CGO off (static), -trimpath, the right
# GOARCH, and the one this machine can run prints the stamped version.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:-${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}}
commit=${COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo devel)}
if [ "$commit" != devel ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit+=-dirty
fi
out=${OUT:-dist}
arches=${ARCHES:-amd64 arm64}
pkg=github.com/mediafork/mediafork/internal/buildinfo
ldflags="-s -w -X $pkg.version=$version -X $pkg.commit=$commit"

mkdir -p "$out"
bins=()
for arch in $arches; do
  bin="$out/mediafork-$version-linux-$arch"
  start=$(date +%s.%N)
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$bin" ./cmd/mediafork
  meta=$(go version -m "$bin")
  for want in "CGO_ENABLED=0" "-trimpath=true" "GOOS=linux" "GOARCH=$arch"; do
    grep -qF -- "build	$want" <<<"$meta" || { echo "release: $bin: no '$want' in go version -m" >&2; exit 1; }
  done
  if [ "$(go env GOOS)/$(go env GOARCH)" = "linux/$arch" ]; then
    want="mediafork $version (commit $commit, $(go env GOVERSION), linux/$arch)"
    got=$("$bin" --version)
    [ "$got" = "$want" ] || { echo "release: $bin --version: got '$got', want '$want'" >&2; exit 1; }
  fi
  printf 'release: %s  %s bytes  %.1f s\n' "$bin" "$(stat -c %s "$bin")" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
  bins+=("$(basename "$bin")")
done
(cd "$out" && sha256sum "${bins[@]}" >SHA256SUMS)
echo "release: $out/SHA256SUMS"
