#!/usr/bin/env bash
# Opt-in end-to-end run of podbgp on a real one-node Kubernetes cluster (too slow for every CI run).
#
#   scripts/k8s-e2e.sh build    fetch Debian's `kubernetes` source package and build the binaries
#                               into the cache (only what is missing)
#   scripts/k8s-e2e.sh run      build if missing, then start the cluster, apply the manifests of
#                               deploy/kubernetes unchanged, show the DaemonSet Ready, two pods
#                               pinging each other, an address released on pod delete; tear down
#
# Build cache: $PODBGP_K8S_CACHE (default /var/cache/podbgp-k8s): the source tree, the Go caches and
# bin/ with kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl. The build
# runs under `nice -n 19`. Everything the cluster makes at run time lives in a per-run directory
# under /run/podbgp-k8s and namespaces of its own, and is removed at the end (also on failure).
set -euo pipefail

cmd=${1:-run}
here=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${PODBGP_K8S_CACHE:-/var/cache/podbgp-k8s}
BIN=$CACHE/bin
WHAT=(cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kubectl)
say() { printf 'k8s-e2e: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root"

have_binaries() {
    local w
    for w in "${WHAT[@]}"; do [[ -x $BIN/${w#cmd/} ]] || return 1; done
}

# Debian's source package, fetched with a deb-src list of our own: the host's apt config is left
# as it is (its lists, its sources).
fetch_source() {
    local apt=$CACHE/apt
    mkdir -p "$apt/lists/partial" "$CACHE/src"
    if compgen -G "$CACHE/src/kubernetes-*/Makefile" >/dev/null; then return; fi
    local suite
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    printf 'deb-src http://deb.debian.org/debian %s main\n' "$suite" >"$apt/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt/lists")
    say "fetching Debian's kubernetes source package"
    apt-get "${opts[@]}" update -q
    (cd "$CACHE/src" && apt-get "${opts[@]}" source --download-only kubernetes)
    (cd "$CACHE/src" && dpkg-source --no-check -x ./kubernetes_*.dsc)
}

build() {
    if have_binaries; then say "binaries cached in $BIN"; return; fi
    local pkgs=() p
    for p in golang-go jq rsync; do dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p"); done
    if ((${#pkgs[@]})); then
        say "installing ${pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null
    fi
    fetch_source
    local src
    src=$(compgen -G "$CACHE/src/kubernetes-*/Makefile" | head -1)
    src=${src%/Makefile}
    mkdir -p "$BIN" "$CACHE/go-build" "$CACHE/gopath"
    say "building ${WHAT[*]} in $src (nice -n 19)"
    local t0=$SECONDS
    (cd "$src" && GOCACHE=$CACHE/go-build GOPATH=$CACHE/gopath GOFLAGS= GO111MODULE=off \
        KUBE_BUILD_PLATFORMS=linux/amd64 nice -n 19 make WHAT="${WHAT[*]}")
    local w out
    for w in "${WHAT[@]}"; do
        out=$(find "$src/_output" -path "*/bin/${w#cmd/}" -type f | head -1)
        [[ -n $out ]] || die "build made no ${w#cmd/}"
        install -m 0755 "$out" "$BIN/"
    done
    say "built in $((SECONDS - t0)) s"
}

case $cmd in
build) build ;;
*) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
