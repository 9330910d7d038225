#!/usr/bin/env bash
# A Debian 12 root filesystem that boots with systemd as PID 1 under systemd-nspawn, with what
# podbgp's units need to run: python3 + podbgp's dependencies (from PyPI, pinned as in
# pyproject.toml), iproute2, and Debian's etcd (the node's datastore). podbgp itself is not in
# it: tests/deploy/test_systemd.py installs the wheel of the tree under test at each boot, into a
# throwaway overlay (`systemd-nspawn --volatile=overlay`), so this directory stays as built.
#
# Usage: scripts/nspawn-rootfs.sh        (as root) prints the rootfs directory
# Env:   PODBGP_TEST_CACHE (default /var/cache/podbgp-test), DEBIAN_MIRROR.
# Cached: the directory is keyed by a hash of the package lists, podbgp's dependencies and the
# machine's CA certificates (copied in for pip over https); a second run takes well under 1 s.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE=${PODBGP_TEST_CACHE:-/var/cache/podbgp-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,libnss-systemd,python3,python3-pip,iproute2,iputils-ping,procps,etcd-server,etcd-client,ca-certificates
RECIPE=2  # bump when the recipe below changes
say() { printf 'nspawn-rootfs.sh: %s\n' "$*" >&2; }

deps=$(python3 -c '
import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$REPO/pyproject.toml")
shopt -s nullglob
cas=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
key=$({ echo "$RECIPE $PACKAGES $SUITE $MIRROR $deps"; [[ ${#cas[@]} -gt 0 ]] && cat "${cas[@]}"; } | sha256sum | cut -c1-16)
root="$CACHE/nspawn-rootfs-$key"
if [[ -e "$root/.complete" ]]; then
    printf '%s\n' "$root"
    exit 0
fi
command -v mmdebstrap >/dev/null || { say "mmdebstrap is not installed"; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/nspawn-rootfs.lock"
flock -w 900 9 || { say "another build holds $CACHE/nspawn-rootfs.lock"; exit 1; }
if [[ -e "$root/.complete" ]]; then printf '%s\n' "$root"; exit 0; fi
rm -rf "$root" "$root.part"
start=$SECONDS
say "building $root ($PACKAGES; pip: $deps)"
hooks=()
for ca in "${cas[@]}"; do
    hooks+=(--customize-hook="copy-in $ca /usr/local/share/ca-certificates/")
done
printf '%s\n' $deps >"$CACHE/nspawn-requirements-$key.txt"
hooks+=(
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1'
    --customize-hook="copy-in $CACHE/nspawn-requirements-$key.txt /root/"
    --customize-hook="chroot \"\$1\" python3 -m pip install -q --no-cache-dir --break-system-packages -r /root/nspawn-requirements-$key.txt"
    # A console-less container: nothing should wait for a getty, and the boot stays quick.
    --customize-hook='chroot "$1" systemctl mask console-getty.service getty@tty1.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true'
    --customize-hook='echo podbgp-test >"$1/etc/hostname"'
    # minbase has no /etc/hosts: etcd resolves "localhost" through it.
    --customize-hook='printf "127.0.0.1 localhost\n::1 localhost\n" >"$1/etc/hosts"'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* "$1"/usr/share/man/*'
)
mmdebstrap --quiet --variant=minbase --mode=root --format=directory --include="$PACKAGES" \
    "${hooks[@]}" "$SUITE" "$root.part" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main"
touch "$root.part/.complete"
mv "$root.part" "$root"
rm -f "$CACHE/nspawn-requirements-$key.txt"
say "built in $((SECONDS - start)) s: $root ($(du -sh "$root" | cut -f1))"
printf '%s\n' "$root"
