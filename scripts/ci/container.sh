#!/usr/bin/env bash
# CI: build the Containerfile with podman and check the result. This machine
# can neither pull images nor run containers (crun: "cgroups in hybrid mode
# not supported"), so: the build stage runs on a local image made of this
# machine's Go toolchain, RUN steps use chroot isolation, modules come from the
# host's module download cache (file:// proxy; the network proxy after it),
# and the check is the image's metadata plus the binary copied out of it and
# run here: it is the same static file the container would run.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

if ! command -v podman >/dev/null 2>&1; then
  echo "== installing podman"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq podman >/dev/null
fi
podman --version

toolchain=localhost/mediafork-go-toolchain:ci
image=localhost/mediafork:ci
work=$(mktemp -d)
ctr=""
cleanup() {
  [ -z "$ctr" ] || podman rm -f "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== toolchain image $toolchain from $(go env GOROOT) ($(go env GOVERSION))"
t0=$(date +%s)
mkdir -p "$work/skel/tmp" "$work/skel/root" "$work/skel/etc/ssl/certs" "$work/skel/go"
chmod 1777 "$work/skel/tmp"
cp -L /etc/ssl/certs/ca-certificates.crt "$work/skel/etc/ssl/certs/" 2>/dev/null || true
# RUN's shell form needs /bin/sh: this machine's, with the libraries it loads.
mkdir -p "$work/skel/bin"
cp -L /bin/sh "$work/skel/bin/sh"
for lib in $(ldd /bin/sh | grep -o '/[^ ]*'); do
  mkdir -p "$work/skel$(dirname "$lib")"
  cp -L "$lib" "$work/skel$lib"
done
tar -C "$(go env GOROOT)" --exclude=./test --exclude=./doc --transform 's,^\.,usr/local/go,' -cf "$work/toolchain.tar" .
tar -C "$work/skel" -rf "$work/toolchain.tar" .
# Re-running replaces this script's own images; leave others' alone.
old=$(podman image inspect --format '{{.Id}}' "$toolchain" "$image" 2>/dev/null || true)
modcache="$(go env GOMODCACHE)/cache/download"
mkdir -p "$modcache"
podman import --quiet \
  --change "ENV PATH=/usr/local/go/bin:/usr/bin:/bin" \
  --change "ENV HOME=/root" --change "ENV GOPATH=/go" \
  --change "ENV GOPROXY=file:///goproxy,$(go env GOPROXY)" --change "ENV GOSUMDB=$(go env GOSUMDB)" \
  "$work/toolchain.tar" "$toolchain" >/dev/null
t1=$(date +%s)
echo "toolchain image: $((t1 - t0)) s"

echo "== podman build"
version=ci-$(git rev-parse --short=12 HEAD 2>/dev/null || echo devel)
podman build --quiet --isolation chroot --pull=never --layers=false \
  --build-arg GO_IMAGE="$toolchain" --build-arg VERSION="$version" --build-arg COMMIT=ci \
  --volume "$modcache:/goproxy:ro" \
  -f Containerfile -t "$image" . >/dev/null
t2=$(date +%s)
for id in $old; do podman rmi "$id" >/dev/null 2>&1 || true; done
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image build: $((t2 - t1)) s; image size: $size bytes"

echo "== image metadata"
meta=$(podman image inspect --format '{{.Config.User}}|{{json .Config.ExposedPorts}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}' "$image")
echo "$meta"
want='65532:65532|{"8084/tcp":{},"8088/tcp":{},"8090/tcp":{}}|["/mediafork"]|["serve","--config","/etc/mediafork/mediafork.yaml"]'
[ "$meta" = "$want" ] || { echo "image metadata: got $meta, want $want" >&2; exit 1; }
mapfile -t env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" | grep '^MEDIAFORK_')
[ ${#env[@]} -gt 0 ] || { echo "image sets no MEDIAFORK_ variables" >&2; exit 1; }

echo "== the image's files: /mediafork and /etc/mediafork/mediafork.yaml, nothing else"
ctr=$(podman create "$image")
podman export "$ctr" | tar -t | grep -v '/$' | sort >"$work/files"
cat "$work/files"
expected=$'etc/mediafork/mediafork.yaml\nmediafork'
# podman adds empty mount points for /etc/hosts etc.; only real files count.
if [ "$(grep -vxE 'etc/(hosts|hostname|resolv.conf)|run/.containerenv' "$work/files")" != "$expected" ]; then
  echo "unexpected files in the image" >&2
  exit 1
fi
podman cp "$ctr:/mediafork" "$work/mediafork"
podman cp "$ctr:/etc/mediafork/mediafork.yaml" "$work/mediafork.yaml"
cmp -s conf/mediafork.example.yaml "$work/mediafork.yaml" || { echo "the image's config is not conf/mediafork.example.yaml" >&2; exit 1; }

echo "== the binary, outside the image"
out=$("$work/mediafork" --version)
echo "$out"
[[ "$out" == "mediafork $version (commit ci, go"*", linux/$(go env GOARCH))" ]] || { echo "unexpected --version" >&2; exit 1; }
meta=$(go version -m "$work/mediafork")
grep -qF "build	CGO_ENABLED=0" <<<"$meta" || { echo "not a static (CGO_ENABLED=0) build" >&2; exit 1; }
# As the image runs it: its environment, its config. Without an API token the
# API on 0.0.0.0 is refused (exit 2); with one the config checks out.
set +e
env -i "${env[@]}" "$work/mediafork" config check --config "$work/mediafork.yaml" >/dev/null 2>"$work/err"
code=$?
set -e
[ $code -eq 2 ] && grep -q 'api.token' "$work/err" || { echo "config check without a token: exit $code: $(cat "$work/err")" >&2; exit 1; }
env -i "${env[@]}" MEDIAFORK_API_TOKEN=ci-token "$work/mediafork" config check --config "$work/mediafork.yaml" >"$work/effective"
# config check prints the effective config as YAML: ingest.listen is the key.
awk '/^ingest:/{f=1; next} /^[^ ]/{f=0} f && $0 == "  listen: 0.0.0.0:8090" {ok=1} END{exit !ok}' "$work/effective" ||
  { echo "the image's ingest does not listen on 0.0.0.0:8090" >&2; exit 1; }
echo "container: ok (toolchain $((t1 - t0)) s, build $((t2 - t1)) s, image $size bytes)"
