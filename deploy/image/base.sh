#!/usr/bin/env bash
# Base images for machines that reach no container registry: build them from Debian's own
# packages with mmdebstrap and import them into the local Docker engine under the names that
# the Dockerfile's FROM and docker-compose.yml use, so both build and run unchanged.
#
#   python:3.11-slim            Debian 12 minbase + python3 (3.11), pip, venv, `python`, CA
#                               certificates (pip install works system-wide, as in the real image)
#   quay.io/coreos/etcd:v3.5.17 Debian 12 minbase + Debian's etcd-server/etcd-client (3.4; the
#                               compose file uses only flags and etcdctl calls that 3.4 has)
#
# On a machine with a registry, do not run this: `docker compose up --build` pulls the real ones.
#
# Usage: deploy/image/base.sh [--force | --rootfs-only]     (as root; mmdebstrap, a running Docker engine)
# Env:   DOCKER (docker CLI, default: docker; DOCKER_HOST selects the engine),
#        PODBGP_IMAGE_CACHE (rootfs tarballs, default /var/cache/podbgp-image),
#        DEBIAN_MIRROR (default http://deb.debian.org/debian).
#
# The machine's extra CA certificates (/usr/local/share/ca-certificates/*.crt) are copied into
# both images and trusted there, so pip and apt over https work behind a TLS-intercepting proxy.
# Cached: each rootfs tarball is kept under PODBGP_IMAGE_CACHE, keyed by a hash of this script,
# the package list and the CA certificates; an image already imported with that key is left as
# it is. A second run takes about a second.
set -euo pipefail

DOCKER=${DOCKER:-docker}
CACHE=${PODBGP_IMAGE_CACHE:-/var/cache/podbgp-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
PYTHON_IMAGE=python:3.11-slim
ETCD_IMAGE=quay.io/coreos/etcd:v3.5.17
PYTHON_PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates
ETCD_PACKAGES=etcd-server,etcd-client,ca-certificates
FORCE=no
[[ "${1:-}" == --force ]] && FORCE=yes

say() { printf 'base.sh: %s\n' "$*"; }

for tool in mmdebstrap; do
    command -v "$tool" >/dev/null || { say "$tool is not installed" >&2; exit 1; }
done
ROOTFS_ONLY=no
[[ "${1:-}" == --rootfs-only ]] && ROOTFS_ONLY=yes  # fill the cache only (no engine needed)
if [[ $ROOTFS_ONLY == no ]] && ! "$DOCKER" version >/dev/null; then
    say "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset})" >&2
    exit 1
fi

shopt -s nullglob
cas=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
ROOTFS_RECIPE=1  # bump when build_rootfs changes: cached tarballs and images are rebuilt
key_of() {  # key_of PACKAGES: what the rootfs depends on
    { echo "$ROOTFS_RECIPE $1 $SUITE $MIRROR $SECURITY_MIRROR"; [[ ${#cas[@]} -gt 0 ]] && cat "${cas[@]}"; } \
        | sha256sum | cut -c1-16
}

# build_rootfs PACKAGES TARBALL: a minbase Debian rootfs with PACKAGES, as a tarball.
build_rootfs() {
    local hooks=() ca
    for ca in "${cas[@]}"; do
        hooks+=(--customize-hook="copy-in $ca /usr/local/share/ca-certificates/")
    done
    hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null')
    # As in python:3.11-slim: `pip install` into the system Python is the image's purpose.
    hooks+=(--customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED')
    # Smaller image, nothing a container needs.
    hooks+=(--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc/* "$1"/usr/share/man/*')
    mmdebstrap --quiet --variant=minbase --mode=root --format=tar --include="$1" "${hooks[@]}" \
        "$SUITE" "$2.part" \
        "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
        "deb $SECURITY_MIRROR $SUITE-security main"
    mv -f "$2.part" "$2"
}

# image NAME PACKAGES CHANGES...: import the rootfs as NAME unless NAME already has this key.
image() {
    local name=$1 packages=$2 key tarball have start
    shift 2
    key=$(key_of "$packages")
    have=
    [[ $ROOTFS_ONLY == yes ]] || have=$("$DOCKER" image inspect -f '{{ index .Config.Labels "org.podbgp.base-key" }}' "$name" 2>/dev/null || true)
    if [[ $FORCE == no && "$have" == "$key" ]]; then
        say "$name is up to date (key $key)"
        return
    fi
    mkdir -p "$CACHE"
    tarball="$CACHE/$(printf '%s' "$name" | tr -c 'A-Za-z0-9.\n' '_')-$key.tar"
    if [[ $FORCE == yes || ! -s "$tarball" ]]; then
        start=$SECONDS
        say "building the $name rootfs with mmdebstrap ($packages)"
        build_rootfs "$packages" "$tarball"
        say "rootfs built in $((SECONDS - start)) s: $tarball ($(du -h "$tarball" | cut -f1 | tail -1))"
    fi
    [[ $ROOTFS_ONLY == no ]] || return 0
    start=$SECONDS
    "$DOCKER" import --change "LABEL org.podbgp.base-key=$key" \
        --change 'ENV LANG=C.UTF-8' "$@" "$tarball" "$name" >/dev/null
    say "imported $name in $((SECONDS - start)) s"
}

image "$PYTHON_IMAGE" "$PYTHON_PACKAGES" --change 'CMD ["python3"]'
image "$ETCD_IMAGE" "$ETCD_PACKAGES" --change 'CMD ["etcd"]' --change 'EXPOSE 2379 2380'
