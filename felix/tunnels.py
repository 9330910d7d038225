"""The tunnel devices felix owns: ``tunl0`` (IPIP, RFC 2003), ``vxlan.podbgp`` and
``vxlan-v6.podbgp`` (RFC 7348).

Each ``ensure_*`` call converges one device to what felix wants and reports a
:class:`TunnelState` (ready or not, and why not in words): it is cheap when nothing changed, so
the dataplane calls it on every full resync, which also heals a device that was set down, had its
MTU or address changed, or was deleted behind felix's back.

* ``tunl0``: the kernel's IPIP fallback device (it appears in every namespace once the ``ipip``
  module is loaded; asking for it loads the module). Up, MTU = uplink MTU - 20, path-MTU
  discovery on, and one /32 address from this node's block, so traffic the node itself sends
  into the tunnel has a routable source.
* ``vxlan.podbgp``: VNI 4096, UDP port 4789, local = the node's address, learning off (felix
  programs the FDB), a stable MAC derived from the node name, MTU = uplink MTU - 50, and its own
  /32 address from the block (the VTEP IP that other nodes route to).
* ``vxlan-v6.podbgp`` (dual-stack nodes whose IPv6 pools ask for VXLAN): the same VNI 4096 and
  port 4789 over the IPv6 underlay (local = the node's IPv6 address), learning off, its own
  stable MAC (:func:`vtep_mac` with ``version=6``, different from the IPv4 device's), MTU =
  uplink MTU - 70, and a /128 VTEP address from the node's IPv6 block (added without duplicate
  address detection: felix's IPAM already made it unique). The kernel tells VXLAN devices apart
  by VNI, port *and* underlay family, so both devices share VNI and port (checked in
  tests/integration/test_felix_v6.py); each has its own UDP socket (IPv4, and IPv6-only).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
from dataclasses import dataclass

from felix.kernel.netlink import KernelError, LinkInfo, Netlink
from felix.plan import IPIP_DEVICE, VXLAN_DEVICE

log = logging.getLogger("podbgp.felix.tunnels")

VXLAN_VNI = 4096
VXLAN_PORT = 4789
# What the kernel answers when a link kind has no driver (module missing or not built).
_NO_DRIVER = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOENT, errno.EAFNOSUPPORT)


@dataclass(frozen=True)
class TunnelState:
    """One tunnel device as felix last saw it; ``error`` says why it is not ready."""

    device: str
    ready: bool
    error: str | None = None
    address: str | None = None
    mtu: int = 0
    mac: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "ready": self.ready,
            "error": self.error,
            "address": self.address,
            "mtu": self.mtu,
            "mac": self.mac,
        }


def vtep_mac(node_name: str, version: int = 4) -> str:
    """A stable, locally administered unicast MAC for the node's VXLAN device of ``version``."""
    seed = node_name if version == 4 else f"{node_name}\0ipv{version}"
    digest = hashlib.sha256(seed.encode()).digest()
    octets = [(digest[0] & 0xFC) | 0x02, *digest[1:6]]  # U/L bit set, I/G bit clear
    return ":".join(f"{b:02x}" for b in octets)


async def ensure_ipip(nl: Netlink, *, mtu: int, address: str | None) -> TunnelState:
    """Bring ``tunl0`` to: up, ``mtu``, pmtudisc, and ``address`` (/32) as its only address."""
    link = await nl.link(IPIP_DEVICE)
    if link is None:
        try:
            await nl.create_ipip(IPIP_DEVICE)
        except KernelError as exc:
            if exc.code in _NO_DRIVER:
                return TunnelState(IPIP_DEVICE, False, "the kernel lacks the ipip module")
            return TunnelState(IPIP_DEVICE, False, f"cannot create {IPIP_DEVICE}: {exc}")
        link = await nl.link(IPIP_DEVICE)
        if link is None:
            return TunnelState(IPIP_DEVICE, False, f"{IPIP_DEVICE} did not appear")
    try:
        if not nl.ipip_pmtudisc(IPIP_DEVICE, enable=True):
            log.warning("event=pmtudisc-off device=%s", IPIP_DEVICE)
        await _converge_link(nl, link, mtu=mtu, address=address)
    except KernelError as exc:
        return TunnelState(IPIP_DEVICE, False, str(exc), address, link.mtu)
    return TunnelState(IPIP_DEVICE, True, None, address, mtu)


async def ensure_vxlan(
    nl: Netlink,
    *,
    local: str,
    uplink: str,
    mac: str,
    mtu: int,
    address: str | None,
    vni: int = VXLAN_VNI,
    port: int = VXLAN_PORT,
    device: str = VXLAN_DEVICE,
) -> TunnelState:
    """Bring ``device`` (``vxlan.podbgp``, or ``vxlan-v6.podbgp`` with an IPv6 ``local``) to the
    wanted VNI/port/local/MAC/MTU/address, re-creating it when a setting that cannot be changed
    in place differs."""
    local = str(ipaddress.ip_address(local))
    try:
        link = await nl.link(device)
        if link is not None:
            settings = await nl.vxlan_settings(device)
            uplink_index = await nl.index(uplink)
            wanted = {"vni": vni, "port": port, "local": local, "link": uplink_index}
            if link.kind != "vxlan" or settings != wanted:
                log.info("event=recreate device=%s had=%s want=%s", device, settings, wanted)
                await nl.delete_link(device)
                link = None
        if link is None:
            await nl.create_vxlan(device, vni=vni, port=port, local=local, uplink=uplink, mac=mac)
            link = await nl.link(device)
            if link is None:
                return TunnelState(device, False, f"{device} did not appear")
        await _converge_link(nl, link, mtu=mtu, address=address, mac=mac)
    except KernelError as exc:
        if exc.code in _NO_DRIVER:
            return TunnelState(device, False, "the kernel lacks the vxlan module")
        return TunnelState(device, False, str(exc), address)
    return TunnelState(device, True, None, address, mtu, mac)


async def _converge_link(
    nl: Netlink, link: LinkInfo, *, mtu: int, address: str | None, mac: str | None = None
) -> None:
    if mac is not None and (link.mac or "").lower() != mac.lower():
        await nl.set_link(link.name, mac=mac)
    if link.mtu != mtu:
        await nl.set_link(link.name, mtu=mtu)
    if address is not None:
        ip = ipaddress.ip_address(address)
        wanted = f"{ip}/{ip.max_prefixlen}"
        present = await nl.addresses(link.name)
        for cidr in present:
            other = ipaddress.ip_interface(cidr)
            if cidr != wanted and other.version == ip.version and not other.is_link_local:
                await nl.delete_address(link.name, cidr)  # felix owns the device's address
        if wanted not in present:  # IPAM made it unique: no duplicate address detection
            await nl.add_address(link.name, wanted, nodad=ip.version == 6)
    if not link.up:
        await nl.set_link(link.name, up=True)
