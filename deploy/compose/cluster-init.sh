#!/bin/sh
# The one-shot cluster-init service of docker-compose.yml: apply the cluster resources
# (cluster.yaml) with the encapsulation between the two subnets that the Docker host's kernel
# can carry, as `podbgp lab up` does. Pod traffic within a subnet is routed directly; across the
# router it needs a tunnel: IPIP (tunl0, Calico's default) when the host kernel has the ipip
# module loaded, else VXLAN (vxlan.podbgp), which every kernel Docker runs on has.
#   ENCAP=auto (default) | ipip | vxlan     (`modprobe ipip` on the host before `up` for IPIP)
set -eu
file=${1:?usage: cluster-init.sh CLUSTER_YAML}
encap=${ENCAP:-auto}
if [ "$encap" = auto ]; then
  if [ -d /sys/module/ipip ]; then
    encap=ipip
  else
    encap=vxlan
    echo "cluster-init: the host kernel has no IPIP (no ipip module): VXLAN between the subnets"
  fi
fi
case $encap in
  ipip) ipip=CrossSubnet vxlan=Never ;;
  vxlan) ipip=Never vxlan=CrossSubnet ;;
  *) echo "cluster-init: ENCAP=$encap: auto, ipip or vxlan" >&2; exit 2 ;;
esac
echo "cluster-init: IPPool ipipMode $ipip, vxlanMode $vxlan"
out=$(mktemp)
sed -e "s/^\( *ipipMode:\).*/\1 $ipip/" -e "s/^\( *vxlanMode:\).*/\1 $vxlan/" "$file" >"$out"
podbgp apply -f "$out"
rm -f "$out"
