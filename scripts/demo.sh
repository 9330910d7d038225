#!/usr/bin/env bash
# Two-speaker demo on one machine, as root: two network namespaces joined by a veth pair
# (192.0.2.11/24 and 192.0.2.12/24), one `podbgp bgpd` in each with configs/bgpd.yaml and
# configs/bgpd-peer.yaml; prints both peer tables and Loc-RIBs, then removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${PODBGP_SKIP_SETUP:-}" = 1 ] || bash scripts/setup-test-host.sh >/dev/null
tag="pbdemo$$"
a="${tag}a" b="${tag}b"
logs=$(mktemp -d /tmp/podbgp-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$a"; ip netns add "$b"
ip link add "${tag}x" netns "$a" type veth peer name "${tag}y" netns "$b"
ip -n "$a" addr add 192.0.2.11/24 dev "${tag}x"; ip -n "$a" link set "${tag}x" up
ip -n "$b" addr add 192.0.2.12/24 dev "${tag}y"; ip -n "$b" link set "${tag}y" up
ip -n "$a" link set lo up; ip -n "$b" link set lo up
ip netns exec "$a" podbgp bgpd -c configs/bgpd.yaml >"$logs/a.log" 2>&1 & pids+=($!)
ip netns exec "$b" podbgp bgpd -c configs/bgpd-peer.yaml >"$logs/b.log" 2>&1 & pids+=($!)
echo "podbgp demo: speakers in namespaces $a (192.0.2.11) and $b (192.0.2.12); logs in $logs"
for _ in $(seq 1 100); do
  if ip netns exec "$a" podbgp routes -o json 2>/dev/null | grep -q 10.244.2.0/24 &&
     ip netns exec "$b" podbgp routes --api http://127.0.0.1:9180 -o json 2>/dev/null |
       grep -q 10.244.1.0/24; then
    break
  fi
  sleep 0.2
done
for side in "$a http://127.0.0.1:9179" "$b http://127.0.0.1:9180"; do
  set -- $side
  echo; echo "== namespace $1"; ip netns exec "$1" podbgp status --api "$2" || true
  echo; ip netns exec "$1" podbgp routes --api "$2" || true
done
