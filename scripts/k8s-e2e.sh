#!/usr/bin/env bash
# Opt-in end-to-end run of podbgp on a real one-node Kubernetes cluster (too slow for every CI run).
#
#   scripts/k8s-e2e.sh build    fetch Debian's `kubernetes` source package and build the binaries
#                               into the cache (only what is missing)
#   scripts/k8s-e2e.sh run      build if missing, then start the cluster, apply the manifests of
#                               deploy/kubernetes unchanged, show the DaemonSet Ready, two pods
#                               pinging each other, an address released on pod delete; tear down
#
# Build cache: $PODBGP_K8S_CACHE (default /var/cache/podbgp-k8s): the source tree (its Go build
# cache under _output), bin/ with kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kubectl, and docker/, the engine's data root (images). The build runs under
# `nice -n 19`. The daemons' logs of the last run are kept in logs/. Everything the cluster makes at run time lives in a per-run directory
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
    for p in golang-go jq rsync gcc libc6-dev; do dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p"); done
    if ((${#pkgs[@]})); then
        say "installing ${pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null
    fi
    fetch_source
    local src
    src=$(compgen -G "$CACHE/src/kubernetes-*/Makefile" | head -1)
    src=${src%/Makefile}
    mkdir -p "$BIN"
    say "building ${WHAT[*]} in $src (nice -n 19)"
    local t0=$SECONDS
    # The tree's make sets up GOPATH, GOCACHE (under _output) and GO111MODULE=off itself.
    (cd "$src" && GOFLAGS= KUBE_BUILD_PLATFORMS=linux/amd64 nice -n 19 make WHAT="${WHAT[*]}")
    local w out
    for w in "${WHAT[@]}"; do
        out=$(find "$src/_output" -path "*/bin/${w#cmd/}" -type f | head -1)
        [[ -n $out ]] || die "build made no ${w#cmd/}"
        install -m 0755 "$out" "$BIN/"
    done
    say "built in $((SECONDS - t0)) s"
}

# --- the cluster -----------------------------------------------------------------------------
# Everything below runs in a private mount namespace (`unshare --mount`): /etc, /opt, /var/lib
# and /var/log are overlays whose writes land in the run directory, so the hostPaths of the
# manifests (/opt/cni/bin, /etc/cni/net.d, /opt/podbgp, ...) and whatever kubelet and dockerd
# write there never reach the host; the kernel tunables kubelet would set host-wide are shadowed
# by files holding the values it wants. The node is the network namespace of the Docker engine
# (scripts/dockerd.sh): etcd, the control plane and kubelet run there too.

ID=${PODBGP_K8S_ID:-k$(($$ % 100000))}
RUN=/run/podbgp-k8s/$ID
NODE=podbgp-e2e
# The image the DaemonSet names, built here from the Dockerfile under that name.
IMAGE=$(awk '$1 == "image:" {print $2; exit}' "$here/deploy/kubernetes/daemonset-node.yaml")
PAUSE=podbgp-k8s/pause:3.2
T0=$SECONDS
declare -A PIDS=()
phase() { printf '\nk8s-e2e: [%4d s] %s\n' "$((SECONDS - T0))" "$*" >&2; }
timing() { printf 'k8s-e2e: timing: %-52s %5d s\n' "$1" "$2" | tee -a "$RUN/logs/timings" >&2; }
ns() { nsenter --net="/run/netns/pbd-$ID" "$@"; }
kubectl() { "$BIN/kubectl" --kubeconfig "$RUN/pki/admin.kubeconfig" "$@"; }
docker() { DOCKER_HOST=unix:///run/podbgp-docker/$ID/docker.sock /usr/bin/docker "$@"; }

start_bg() { # start_bg NAME CMD...: a daemon in the node namespace, its PID remembered
    local name=$1
    shift
    # nsenter and setsid exec: $! is the daemon itself (a function here would be a subshell).
    nsenter --net="/run/netns/pbd-$ID" setsid "$@" >"$RUN/logs/$name.log" 2>&1 </dev/null &
    PIDS[$name]=$!
}

wait_for() { # wait_for WHAT SECONDS CMD...: until CMD succeeds, bounded
    local what=$1 limit=$2 t=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - t > limit)); then
            say "$what: not within $limit s"
            return 1
        fi
        sleep 1
    done
}

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    phase "teardown (exit status $rc)"
    if ((rc != 0)) && [[ -d $RUN/logs ]]; then
        local f
        for f in "$RUN"/logs/*.log; do
            say "--- last lines of $f"
            tail -15 "$f" >&2
        done
        kubectl get pods -A -o wide >&2 2>/dev/null
        kubectl describe nodes >&2 2>/dev/null | tail -30
    fi
    [[ -n ${PIDS[kubelet]:-} ]] && stop_pid "${PIDS[kubelet]}"
    # The daemons' logs of the last run stay for reading: $CACHE/logs.
    if [[ -d $RUN/logs ]]; then
        rm -rf "$CACHE/logs"
        cp -r "$RUN/logs" "$CACHE/logs"
    fi
    if [[ -S /run/podbgp-docker/$ID/docker.sock ]]; then
        local ids
        ids=$(docker ps -aq)
        [[ -n $ids ]] && docker rm -f $ids >/dev/null
    fi
    local name
    for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
        [[ -n ${PIDS[$name]:-} ]] && stop_pid "${PIDS[$name]}"
    done
    bash "$here/scripts/dockerd.sh" stop "$ID" >/dev/null
    # Any process still naming this run's directory was started by this run: stop it by PID.
    local proc
    for proc in /proc/[0-9]*; do
        if { tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null | grep -qF "$RUN/"; then
            say "still running: ${proc#/proc/} $(cut -c1-80 <"$proc/cmdline" | tr '\0' ' ')"
            stop_pid "${proc#/proc/}"
        fi
    done
    # Mounts of this namespace under the run directory (secrets, overlays), innermost first.
    local m
    for m in $(awk -v r="$RUN/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m"
    done
    for m in /var/log /var/lib /opt /etc; do umount -l "$m"; done
    rm -rf "$RUN"
    rmdir /run/podbgp-k8s 2>/dev/null
    say "torn down in $((SECONDS - T0)) s total; exit status $rc"
    exit "$rc"
}

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
}

private_host() {
    local d
    for d in /etc /opt /var/lib /var/log; do
        mkdir -p "$RUN/ovl$d/upper" "$RUN/ovl$d/work"
        mount -t overlay overlay -o "lowerdir=$d,upperdir=$RUN/ovl$d/upper,workdir=$RUN/ovl$d/work" "$d"
    done
    mkdir -p /opt/cni/bin /etc/cni/net.d /var/log/pods /var/log/containers
    # kubelet sets these host-wide tunables if they differ from what it wants: show it its values.
    local kv key want
    for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
        kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
        key=${kv%=*} want=${kv#*=}
        if [[ $(cat "/proc/sys/$key") != "$want" ]]; then
            mkdir -p "$RUN/sysctl/$(dirname "$key")"
            echo "$want" >"$RUN/sysctl/$key"
            mount --bind "$RUN/sysctl/$key" "/proc/sys/$key"
        fi
    done
}

# A runc that clamps negative OOM score adjustments to 0: kubelet asks for -998 for the pod
# sandbox, which needs CAP_SYS_RESOURCE (root has not got it on this machine).
write_runc_wrapper() {
    cat >"$RUN/bin/runc" <<'WRAPPER'
#!/bin/sh
bundle= prev=
for a in "$@"; do
  case $prev in --bundle | -b) bundle=$a ;; esac
  case $a in --bundle=*) bundle=${a#--bundle=} ;; esac
  prev=$a
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  jq -c '.process.oomScoreAdj |= (if . == null or . >= 0 then . else 0 end)' \
    "$bundle/config.json" > "$bundle/config.json.clamped" && mv "$bundle/config.json.clamped" "$bundle/config.json"
fi
exec /usr/sbin/runc "$@"
WRAPPER
    chmod 0755 "$RUN/bin/runc"
}

images() {
    local t=$SECONDS cache=/var/cache/podbgp-test/images
    [[ -d $cache ]] || cache=/var/cache/podbgp-image
    DOCKER_HOST=unix:///run/podbgp-docker/$ID/docker.sock DOCKER=/usr/bin/docker \
        PODBGP_IMAGE_CACHE=$cache bash "$here/deploy/image/base.sh" >"$RUN/logs/base.log"
    # The node namespace has the way out (NAT on the engine's veth); builds use the host
    # network, not the engine's bridge.
    docker build -q --network host -t "$IMAGE" "$here" >"$RUN/logs/build.log"
    if ! docker image inspect "$PAUSE" >/dev/null 2>&1; then
        local src
        src=$(compgen -G "$CACHE/src/kubernetes-*/build/pause/linux/pause.c" | head -1)
        mkdir -p "$RUN/pause"
        gcc -Os -static -o "$RUN/pause/pause" "$src"
        printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$RUN/pause/Dockerfile"
        docker build -q -t "$PAUSE" "$RUN/pause" >/dev/null
    fi
    timing "images ($IMAGE built, pause)" $((SECONDS - t))
}

certificates() {
    local p=$RUN/pki
    mkdir -p "$p"
    cd "$p"
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -key ca.key -days 2 -subj /CN=podbgp-e2e-ca -out ca.crt
    cat >apiserver.ext <<EXT
subjectAltName=IP:$NODE_IP,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EXT
    sign apiserver /CN=kube-apiserver apiserver.ext
    # One client identity in system:masters for kubectl, the controller manager, the scheduler
    # and the kubelet: a test cluster of one node.
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    sign admin "/O=system:masters/CN=podbgp-e2e-admin" client.ext
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # Written by hand: `kubectl config set-*` of 1.20 built with Go 1.19 crashes.
    cat >admin.kubeconfig <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster:
      server: https://$NODE_IP:6443
      certificate-authority-data: $(base64 -w0 ca.crt)
users:
  - name: admin
    user:
      client-certificate-data: $(base64 -w0 admin.crt)
      client-key-data: $(base64 -w0 admin.key)
contexts:
  - name: e2e
    context: {cluster: e2e, user: admin}
current-context: e2e
KUBECONFIG
    cd - >/dev/null
}

sign() { # sign NAME SUBJECT EXTFILE (in the pki directory)
    openssl genrsa -out "$1.key" 2048 2>/dev/null
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$3" -out "$1.crt" 2>/dev/null
}

control_plane() {
    local t=$SECONDS p=$RUN/pki
    start_bg etcd etcd --name e2e --data-dir "$RUN/etcd" \
        --listen-client-urls "http://127.0.0.1:2379,http://$NODE_IP:2379" \
        --advertise-client-urls "http://$NODE_IP:2379" --listen-peer-urls http://127.0.0.1:2380 \
        --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster e2e=http://127.0.0.1:2380
    wait_for "etcd" 30 ns etcdctl --endpoints "http://$NODE_IP:2379" endpoint health
    start_bg kube-apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
        --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port=6443 \
        --insecure-port=0 --service-cluster-ip-range=10.96.0.0/24 \
        --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
        --client-ca-file="$p/ca.crt" --service-account-key-file="$p/sa.pub" \
        --service-account-signing-key-file="$p/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --authorization-mode=Node,RBAC --kubelet-preferred-address-types=InternalIP \
        --cert-dir="$RUN/apiserver"
    wait_for "kube-apiserver /readyz" 60 kubectl get --raw /readyz
    timing "etcd + kube-apiserver ready" $((SECONDS - t))
    start_bg kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig="$p/admin.kubeconfig" --service-account-private-key-file="$p/sa.key" \
        --root-ca-file="$p/ca.crt" --leader-elect=false --bind-address=127.0.0.1 \
        --cert-dir="$RUN/controller-manager" --use-service-account-credentials=false
    start_bg kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$p/admin.kubeconfig" \
        --leader-elect=false --bind-address=127.0.0.1 --cert-dir="$RUN/scheduler"
    wait_for "the kube-system default service account" 60 \
        kubectl -n kube-system get serviceaccount default
    timing "control plane (etcd, apiserver, controller manager, scheduler)" $((SECONDS - t))
}

kubelet_up() {
    local t=$SECONDS
    mkdir -p "$RUN/kubelet" "$RUN/dockershim" "$RUN/volume-plugins" "$RUN/cni-cache"
    start_bg kubelet "$BIN/kubelet" --kubeconfig="$RUN/pki/admin.kubeconfig" \
        --hostname-override="$NODE" --node-ip="$NODE_IP" \
        --container-runtime=docker --docker-endpoint="unix:///run/podbgp-docker/$ID/docker.sock" \
        --container-runtime-endpoint="unix://$RUN/dockershim.sock" \
        --experimental-dockershim-root-directory="$RUN/dockershim" \
        --pod-infra-container-image="$PAUSE" \
        --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= \
        --network-plugin=cni --cni-bin-dir=/opt/cni/bin --cni-conf-dir=/etc/cni/net.d \
        --cni-cache-dir="$RUN/cni-cache" --root-dir="$RUN/kubelet" --cert-dir="$RUN/kubelet/pki" \
        --volume-plugin-dir="$RUN/volume-plugins" --fail-swap-on=false \
        --anonymous-auth=true --authorization-mode=AlwaysAllow --read-only-port=0 \
        --make-iptables-util-chains=false --image-gc-high-threshold=100 \
        --image-gc-low-threshold=99 --eviction-hard='memory.available<1Mi' \
        --resolv-conf=/etc/resolv.conf --v=2
    wait_for "node $NODE registered" 90 kubectl get node "$NODE"
    timing "kubelet up, node registered" $((SECONDS - t))
    kubectl get node "$NODE" -o wide >&2
}

podbgp_up() {
    local t=$SECONDS token
    # The cluster resources podbgp needs in its datastore (the node's etcd): one pool.
    cat >"$RUN/cluster.yaml" <<'YAML'
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Never, vxlanMode: Never}
YAML
    docker run --rm --network host -v "$RUN/cluster.yaml:/cluster.yaml:ro" "$IMAGE" \
        apply -f /cluster.yaml --etcd-endpoints "http://$NODE_IP:2379"
    # The two Secrets of deploy/kubernetes/secrets.example.yaml, filled in.
    token=$(openssl rand -hex 32)
    kubectl -n kube-system create secret generic podbgp-etcd \
        --from-literal=endpoints="http://$NODE_IP:2379"
    kubectl -n kube-system create secret generic podbgp-api-token --from-literal=token="$token"
    kubectl apply -f "$here/deploy/kubernetes/configmap.yaml" \
        -f "$here/deploy/kubernetes/daemonset-node.yaml"
    kubectl -n kube-system rollout status daemonset/podbgp-node --timeout=300s
    timing "podbgp-node DaemonSet Ready" $((SECONDS - t))
    kubectl wait --for=condition=Ready "node/$NODE" --timeout=120s
    timing "node Ready (after install-cni)" $((SECONDS - t))
    kubectl get node "$NODE" -o wide >&2
    local pod
    pod=$(kubectl -n kube-system get pods -l app.kubernetes.io/component=node -o name)
    say "install-cni's log:"
    kubectl -n kube-system logs "$pod" -c install-cni >&2
    ls -l /opt/cni/bin /etc/cni/net.d >&2
    kubectl -n kube-system get daemonset,pods -o wide >&2
    PODBGP_POD=$pod
}

pods_ping() {
    local t=$SECONDS
    local name
    for name in web-a web-b; do
        cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: $IMAGE
      command: ["sleep", "3600"]
      securityContext: {runAsUser: 0}
---
YAML
    done >"$RUN/pods.yaml"
    kubectl apply -f "$RUN/pods.yaml"
    kubectl wait --for=condition=Ready pod/web-a pod/web-b --timeout=120s
    timing "two pods Ready" $((SECONDS - t))
    kubectl get pods -o wide >&2
    IP_A=$(kubectl get pod web-a -o jsonpath='{.status.podIP}')
    IP_B=$(kubectl get pod web-b -o jsonpath='{.status.podIP}')
    [[ $IP_A == 10.244.* && $IP_B == 10.244.* && $IP_A != "$IP_B" ]] ||
        die "pod addresses not from the pool: $IP_A $IP_B"
    # The loopback plugin install-cni shipped brought lo up; podbgp-cni made eth0.
    kubectl exec web-a -- ip -o addr show >&2
    kubectl exec web-a -- ip -o addr show dev lo | grep -q "inet 127.0.0.1/8" ||
        die "web-a has no loopback address"
    # The engine set FORWARD's policy to DROP; felix's chain, first in FORWARD, lets pods through.
    local i
    for i in $(seq 40); do  # felix applies it on its next full resync: 20 s at most
        ns iptables -S FORWARD | sed -n 2p | grep -qx -- "-A FORWARD -j PODBGP-FORWARD" && break
        sleep 0.5
    done
    ns iptables -S FORWARD >&2
    ns iptables -S FORWARD | grep -qx -- "-P FORWARD DROP" || die "FORWARD's policy is not DROP"
    if ! ns iptables -S FORWARD | sed -n 2p | grep -qx -- "-A FORWARD -j PODBGP-FORWARD"; then
        kubectl -n kube-system logs "$PODBGP_POD" -c podbgp-node | grep -i forward >&2 || true
        die "felix's PODBGP-FORWARD jump is not first in FORWARD"
    fi
    # felix's own account of it (/v1/node): the chain in place, every backend readable.
    local forward
    forward=$(kubectl -n kube-system exec "$PODBGP_POD" -c podbgp-node -- python3 -c '
import json, urllib.request as u
token = open("/etc/podbgp-api/token").read().strip()
req = u.Request("http://127.0.0.1:9179/v1/node", headers={"Authorization": "Bearer " + token})
print(json.dumps(json.load(u.urlopen(req, timeout=10))["felix"]["forward"]))')
    say "felix.forward: $forward"
    [[ $forward == *'"present": true'* && $forward != *'Permission denied'* ]] ||
        die "felix.forward does not show the chain with every backend readable"
    kubectl exec web-a -- ping -c 3 -W 2 "$IP_B" >&2
    kubectl exec web-b -- ping -c 3 -W 2 "$IP_A" >&2
    say "web-a ($IP_A) and web-b ($IP_B) ping each other"
}

# Does any IPAM record (blocks' allocations, handles) hold address $1?
held() {
    local values
    values=$(ns etcdctl --endpoints "http://$NODE_IP:2379" get --prefix /podbgp/ipam/ --print-value-only)
    printf '%s\n' "$values" | grep -qE "\"${1//./\\.}(/[0-9]+)?\""
}
released() { ! held "$1"; }

release() {
    local t=$SECONDS
    local ipam=(podbgp ipam show --show-blocks --etcd-endpoints "http://$NODE_IP:2379")
    kubectl -n kube-system exec "$PODBGP_POD" -c podbgp-node -- "${ipam[@]}" >&2
    held "$IP_B" || die "no IPAM record holds $IP_B"
    # The release (CNI DEL when kubelet stops the sandbox) and the pod object's removal (kubelet
    # housekeeping, afterwards) are timed apart.
    kubectl delete pod web-b --wait=false
    wait_for "$IP_B released" 120 released "$IP_B"
    timing "pod delete -> its address released in IPAM" $((SECONDS - t))
    kubectl wait --for=delete pod/web-b --timeout=120s
    timing "pod delete -> the pod object gone" $((SECONDS - t))
    kubectl -n kube-system exec "$PODBGP_POD" -c podbgp-node -- "${ipam[@]}" >&2
    held "$IP_A" || die "web-a's address went too"
    say "web-b's address $IP_B is released; web-a keeps $IP_A"
}

inner() {
    mkdir -p "$RUN/logs" "$RUN/bin"
    trap teardown EXIT
    trap 'exit 130' INT TERM
    phase "private mounts, engine"
    private_host
    write_runc_wrapper
    local t=$SECONDS
    # With the engine's own iptables rules: FORWARD's policy is DROP, as on a real Docker host;
    # felix's PODBGP-FORWARD chain lets pod traffic through.
    PODBGP_DOCKER_DATA=$CACHE/docker DOCKER=/usr/bin/docker \
        PODBGP_DOCKERD_EXTRA='"runtimes": {"e2e": {"path": "'"$RUN/bin/runc"'"}}, "default-runtime": "e2e"' \
        bash "$here/scripts/dockerd.sh" start "$ID" >/dev/null
    timing "Docker engine up" $((SECONDS - t))
    NODE_IP=$(ns ip -4 -o addr show dev "pbdn-$ID" | awk '{print $4}' | cut -d/ -f1)
    say "node $NODE: netns pbd-$ID, address $NODE_IP"
    phase "images"
    images
    phase "certificates, control plane"
    certificates
    control_plane
    phase "kubelet"
    kubelet_up
    phase "podbgp: cluster resources, Secrets, ConfigMap, DaemonSet (unchanged manifests)"
    podbgp_up
    phase "two pods ping each other"
    pods_ping
    phase "a pod delete releases its address"
    release
    timing "whole run (build cached)" $((SECONDS - T0))
    say "PASS"
}

run() {
    build
    mkdir -p "$CACHE"
    exec 9>"$CACHE/run.lock"
    flock -n 9 || die "another k8s-e2e run holds $CACHE/run.lock"
    command -v /usr/sbin/dockerd etcd etcdctl jq gcc openssl nsenter unshare >/dev/null ||
        die "needs docker.io, etcd-server, etcd-client, jq, gcc, openssl, util-linux"
    local rc=0
    PODBGP_K8S_ID=$ID unshare --mount --propagation private "$0" _inner || rc=$?
    # Back in the host's mount namespace: nothing of the run may be left.
    local left=()
    [[ -e /run/netns/pbd-$ID ]] && left+=("netns pbd-$ID")
    [[ -e /sys/class/net/pbdh-$ID ]] && left+=("veth pbdh-$ID")
    [[ -e $RUN ]] && left+=("$RUN")
    local d
    for d in /opt/cni /etc/cni /opt/podbgp /var/log/pods /var/lib/kubelet; do
        [[ -e $d ]] && left+=("$d")
    done
    if pgrep -f "$RUN/" >/dev/null; then left+=("processes: $(pgrep -f "$RUN/" | tr '\n' ' ')"); fi
    if ((${#left[@]})); then
        say "left behind: ${left[*]}"
        exit 1
    fi
    say "nothing left behind on the host"
    exit "$rc"
}

case $cmd in
build) build ;;
run) run ;;
_inner) inner ;;
*) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
