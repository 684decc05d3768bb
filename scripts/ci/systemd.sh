#!/usr/bin/env bash
# CI: check conf/mediafork.service with systemd-analyze verify (any message
# about our unit fails the check, not only the exit code) and report its
# systemd-analyze security exposure score (reported, not enforced).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "== installing systemd (for systemd-analyze)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq systemd >/dev/null
fi
systemd-analyze --version | head -1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# verify checks that ExecStart's binary exists: point the unit at a freshly
# built one rather than install into /usr/local/bin on the CI machine.
CGO_ENABLED=0 go build -trimpath -o "$work/mediafork" ./cmd/mediafork
grep -q '^ExecStart=/usr/local/bin/mediafork serve --config /etc/mediafork/mediafork.yaml$' conf/mediafork.service \
  || { echo "ExecStart is not /usr/local/bin/mediafork serve --config /etc/mediafork/mediafork.yaml" >&2; exit 1; }
sed "s,/usr/local/bin/mediafork,$work/mediafork,g" conf/mediafork.service >"$work/mediafork.service"

echo "== systemd-analyze verify conf/mediafork.service"
set +e
systemd-analyze verify "$work/mediafork.service" >"$work/verify" 2>&1
code=$?
set -e
cat "$work/verify"
if [ $code -ne 0 ] || grep -q 'mediafork' "$work/verify"; then
  echo "systemd-analyze verify: exit $code, or messages about mediafork.service" >&2
  exit 1
fi
# And the check can fail: a unit with a typo is refused.
mkdir "$work/bad"
sed 's/^ProtectHome=yes/ProtectHome=yse/' "$work/mediafork.service" >"$work/bad/mediafork.service"
systemd-analyze verify "$work/bad/mediafork.service" 2>&1 | grep -q 'mediafork.service:.*yse' \
  || { echo "systemd-analyze verify did not notice a bad value: the check checks nothing" >&2; exit 1; }

echo "== systemd-analyze security (exposure: 0 best, 10 worst; not enforced)"
systemd-analyze security --offline=yes "$work/mediafork.service" 2>&1 | tail -1 || true
echo "systemd: ok"
