#!/usr/bin/env bash
# Debian's Docker engine (docker.io: dockerd 20.10 + containerd + runc), started by hand in a
# network namespace of its own, for machines where no engine runs (PID 1 is not systemd) and the
# host's network must not be touched: own data root, exec root, pidfile and socket; containers'
# cgroups under their own parent; one veth + one MASQUERADE rule give it the outside world (for
# package downloads during `docker build`), and both go again on stop.
#
#   scripts/dockerd.sh start NAME    start the engine; prints `export DOCKER_HOST=unix://...`
#   scripts/dockerd.sh stop NAME     stop it by its PID, remove its netns, veth, NAT rule, run dir
#   scripts/dockerd.sh env NAME      print the DOCKER_HOST line again
#   scripts/dockerd.sh exec NAME CMD run CMD in the engine's network namespace (e.g. curl a port)
#
# NAME: [a-z0-9-], at most 10 characters. Images and build cache persist in the data root
# $PODBGP_DOCKER_DATA (default /var/cache/podbgp-test/docker/NAME/data), so the next start finds
# them (one engine at a time per data root); `stop NAME --purge` removes the default one.
# Everything else lives in /run/podbgp-docker/NAME and is gone after `stop`.
# $PODBGP_DOCKERD_EXTRA: more daemon.json members, as JSON text (`"iptables": false, ...`).
#
# Started with `nsenter --net=/run/netns/...`, not `ip netns exec`, which remounts /sys and so
# hides /sys/fs/cgroup from dockerd ("Devices cgroup isn't mounted").
set -euo pipefail

cmd=${1:-}
name=${2:-}
say() { printf 'dockerd.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[[ $cmd =~ ^(start|stop|env|exec)$ && $name =~ ^[a-z0-9-]{1,10}$ ]] || {
    sed -n '2,20p' "$0" >&2
    exit 2
}
[[ $(id -u) -eq 0 ]] || die "must run as root"

run=/run/podbgp-docker/$name
cache=/var/cache/podbgp-test/docker/$name
data=${PODBGP_DOCKER_DATA:-$cache/data}
netns=pbd-$name
veth_host=pbdh-$name
veth_ns=pbdn-$name
sock=$run/docker.sock
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-/usr/bin/docker}

# A /30 for the veth, chosen from NAME so two engines never share one: 10.254.X.Y/30.
sum=$(printf '%s' "$name" | cksum | cut -d' ' -f1)
net="10.254.$(((sum >> 8) % 256)).$(((sum % 64) * 4))"
host_ip=${net%.*}.$((${net##*.} + 1))
ns_ip=${net%.*}.$((${net##*.} + 2))
nat_rule=(POSTROUTING -s "$net/30" ! -o "$veth_host" -j MASQUERADE -m comment --comment "podbgp-docker-$name")

ns() { nsenter --net="/run/netns/$netns" "$@"; }

start() {
    if [[ -s $run/docker.pid ]] && kill -0 "$(cat "$run/docker.pid")" 2>/dev/null; then
        die "engine $name already runs (pid $(cat "$run/docker.pid"))"
    fi
    command -v "$DOCKERD" >/dev/null || die "$DOCKERD is missing (apt-get install docker.io)"
    mkdir -p "$run" "$data"
    local t0=$SECONDS
    # Network: own namespace, a veth to the host, NAT for the downloads of `docker build`.
    ip netns add "$netns"
    ip link add "$veth_host" type veth peer name "$veth_ns" netns "$netns"
    ip addr add "$host_ip/30" dev "$veth_host"
    ip link set "$veth_host" up
    ns ip link set lo up
    ns ip addr add "$ns_ip/30" dev "$veth_ns"
    ns ip link set "$veth_ns" up
    ns ip route add default via "$host_ip"
    # Forwarding for this veth's traffic: the host's switch, remembered and restored on stop.
    if [[ $(sysctl -n net.ipv4.ip_forward) != 1 ]]; then
        echo 0 >"$run/ip_forward.was"
        sysctl -qw net.ipv4.ip_forward=1
    fi
    iptables -t nat -A "${nat_rule[@]}"
    cat >"$run/daemon.json" <<JSON
{
  "data-root": "$data",
  "exec-root": "$run/exec",
  "pidfile": "$run/docker.pid",
  "deprecated-key-path": "$run/key.json",
  "hosts": ["unix://$sock"],
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "cgroup-parent": "/podbgp-docker-$name",
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "features": {"buildkit": false}${PODBGP_DOCKERD_EXTRA:+,
  $PODBGP_DOCKERD_EXTRA}
}
JSON
    # setsid: its own session, so the engine outlives this script and a terminal's signals.
    ns setsid "$DOCKERD" --config-file "$run/daemon.json" >"$run/dockerd.log" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 150; i++)); do  # 30 s
        if [[ -S $sock ]] && DOCKER_HOST=unix://$sock "$DOCKER" version >/dev/null 2>&1; then
            say "engine $name up in $((SECONDS - t0)) s (pid $(cat "$run/docker.pid"), netns $netns)"
            printf 'export DOCKER_HOST=unix://%s\n' "$sock"
            return 0
        fi
        sleep 0.2
    done
    tail -20 "$run/dockerd.log" >&2 || true
    stop
    die "engine $name did not answer within 30 s (log above)"
}

stop() {
    local pid i
    if [[ -s $run/docker.pid ]]; then
        pid=$(cat "$run/docker.pid")
        if kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
            kill -TERM "$pid"
            for ((i = 0; i < 300; i++)); do  # 30 s, then SIGKILL
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                say "dockerd $pid ignored SIGTERM for 30 s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    iptables -t nat -D "${nat_rule[@]}" 2>/dev/null || true
    if [[ -e $run/ip_forward.was ]]; then
        # Another engine still running needs forwarding: it restores the setting when it stops.
        local other
        other=$(find /run/podbgp-docker -mindepth 1 -maxdepth 1 -type d ! -name "$name" | head -1)
        if [[ -n $other ]]; then
            mv "$run/ip_forward.was" "$other/ip_forward.was"
        else
            sysctl -qw net.ipv4.ip_forward="$(cat "$run/ip_forward.was")"
        fi
    fi
    ip link delete "$veth_host" 2>/dev/null || true
    ip netns delete "$netns" 2>/dev/null || true
    # Mounts the engine may have left behind after a SIGKILL (overlays, netns bind mounts).
    local m
    for m in $(awk -v r="$run/" -v c="$data/" 'index($5, r) == 1 || index($5, c) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    local cg
    for cg in /sys/fs/cgroup/*/podbgp-docker-"$name"; do
        [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$run"
    rmdir /run/podbgp-docker 2>/dev/null || true
    if [[ ${3:-} == --purge ]]; then
        rm -rf "$cache"
        rmdir "$(dirname "$cache")" 2>/dev/null || true
    fi
    say "engine $name stopped and cleaned up"
}

case $cmd in
start) start ;;
stop) stop "$@" ;;
env) printf 'export DOCKER_HOST=unix://%s\n' "$sock" ;;
exec) shift 2; ns "$@" ;;
esac
