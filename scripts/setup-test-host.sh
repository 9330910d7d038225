#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (as root) to run podbgp's whole test suite: the real BGP
# peers (BIRD 2, GoBGP), etcd, iproute2 for network namespaces, qemu + busybox for the IPIP VM,
# the deploy group's tools (docker-compose with Debian's docker.io engine, mmdebstrap for base
# images and the systemd rootfs, systemd-nspawn from systemd-container), then podbgp itself with
# its test extras. The engine that docker.io installs is never started here: on a machine where
# PID 1 is systemd its units are disabled below; the tests start their own (scripts/dockerd.sh). Safe to run again: it installs only what is missing.
#
# Daemons that a package would start (bird, gobgpd, etcd) are kept from starting while apt runs
# (policy-rc.d, the Debian mechanism for this); as a second guard, any such daemon that is
# running afterwards but was not running before is stopped. Daemons that were already running
# are left alone.
set -euo pipefail

PACKAGES=(bird2 gobgpd etcd-server etcd-client iproute2 iputils-ping tcpdump procps kmod
          qemu-system-x86 busybox-static docker-compose systemd openssl nftables
          mmdebstrap systemd-container iptables)
DAEMONS=(bird gobgpd etcd dockerd containerd)
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

say() { printf 'setup-test-host: %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    say "must run as root (apt-get, network namespaces)" >&2
    exit 1
fi
if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    if [[ "${ID:-}" != debian || "${VERSION_ID:-}" != 12 ]]; then
        say "warning: written for Debian 12, this is ${PRETTY_NAME:-unknown}; continuing"
    fi
fi

# PIDs whose command name is exactly $1, read from /proc (procps may not be installed yet).
pids_of() {
    local dir comm
    for dir in /proc/[0-9]*; do
        comm=$(cat "$dir/comm" 2>/dev/null) || continue
        [[ "$comm" == "$1" ]] && printf '%s\n' "${dir#/proc/}"
    done
    return 0
}

# -- packages -------------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

declare -A before
for daemon in "${DAEMONS[@]}"; do
    before[$daemon]=" $(pids_of "$daemon" | tr '\n' ' ')"
done

if ((${#missing[@]} == 0)); then
    say "all packages already installed: ${PACKAGES[*]}"
else
    policy=/usr/sbin/policy-rc.d
    created_policy=no
    if [[ ! -e $policy ]]; then
        # Exit status 101 = "action forbidden": invoke-rc.d/deb-systemd-invoke start nothing.
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=yes
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        say "installed a temporary $policy so packages start no daemon"
    fi
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    say "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    if [[ $created_policy == yes ]]; then
        rm -f "$policy"
        trap - EXIT
        say "removed the temporary $policy"
    fi
fi

# -- daemons the install may have started ---------------------------------------------------
for daemon in "${DAEMONS[@]}"; do
    for pid in $(pids_of "$daemon"); do
        if [[ "${before[$daemon]}" == *" $pid "* ]]; then
            say "$daemon (pid $pid) was running before; left alone"
            continue
        fi
        if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
            unit=$daemon
            [[ $daemon == dockerd ]] && unit=docker  # docker.io's unit names
            systemctl stop "$unit" 2>/dev/null || true
            systemctl disable "$unit" 2>/dev/null || true
            say "stopped and disabled $unit.service started by the install"
        fi
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            say "stopped $daemon (pid $pid) started by the install"
        fi
    done
done
say "no bird/gobgpd/etcd left running by the install"

# -- kernel features the tests use ----------------------------------------------------------
if ip netns list >/dev/null 2>&1; then
    say "ip netns works"
else
    say "warning: 'ip netns' does not work here; namespace tests will be skipped" >&2
fi

# -- podbgp ---------------------------------------------------------------------------------
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    say "installing python3-pip"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip
fi
pip_args=()
# Debian's own python3 refuses system-wide pip installs (PEP 668); this is a dedicated test
# host, so allow it there, but never inside a virtualenv (where it is not needed).
if "$PYTHON" - <<'EOF'
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if os.path.exists(marker) and sys.prefix == sys.base_prefix else 1)
EOF
then
    pip_args+=(--break-system-packages)
fi
say "pip install -e '.[test]' in $REPO with $("$PYTHON" --version 2>&1)"
had_egg_info=no
[[ -e "$REPO/podbgp.egg-info" ]] && had_egg_info=yes
(cd "$REPO" && "$PYTHON" -m pip install -q "${pip_args[@]}" -e '.[test]')
if [[ $had_egg_info == no && -d "$REPO/podbgp.egg-info" ]]; then
    # A build by-product of the editable install (the metadata lives in site-packages).
    rm -rf "$REPO/podbgp.egg-info"
fi
say "done"
