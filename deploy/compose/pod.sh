#!/bin/sh
# A pod for docker-compose.yml: this container shares its node's network namespace (as a
# container runtime does on a host), makes a pod network namespace, and wires it with
# podbgp-cni exactly as a runtime would: CNI ADD on start, CNI DEL on stop. The pod's address
# comes from the node's block; `docker compose exec pod-1 ip netns exec pod ping <other pod>`.
set -eu
: "${NODE_NAME:?}" "${POD_NAME:?}" "${ETCD_ENDPOINTS:?}"
netconf=$(printf '{"cniVersion": "1.0.0", "name": "podbgp", "type": "podbgp-cni", "nodeName": "%s", "datastore": {"type": "etcd", "endpoints": ["%s"], "prefix": "/podbgp/"}}' "$NODE_NAME" "$ETCD_ENDPOINTS")

cni() {
  printf '%s' "$netconf" | CNI_COMMAND="$1" CNI_CONTAINERID="$POD_NAME" \
    CNI_NETNS=/var/run/netns/pod CNI_IFNAME=eth0 CNI_PATH=/usr/local/bin podbgp-cni
}

stop() {  # stop [EXIT_STATUS]
  cni DEL >/dev/null || true
  ip netns delete pod 2>/dev/null || true
  exit "${1:-0}"
}

ip netns add pod
trap stop TERM INT
# The node claims its block once it has synced with etcd; retry until it has one.
tries=0
until cni ADD; do
  tries=$((tries + 1))
  if [ "$tries" -ge 30 ]; then echo "pod $POD_NAME: CNI ADD kept failing" >&2; stop 1; fi
  sleep 2
done
echo
echo "pod $POD_NAME on $NODE_NAME: $(ip netns exec pod ip -4 -o addr show dev eth0)"
sleep infinity &
wait $!
