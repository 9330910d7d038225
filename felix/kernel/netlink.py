"""felix's kernel adapter: rtnetlink (RFC 3549) through pyroute2's ``AsyncIPRoute``.

The only module in podbgp that imports pyroute2 (pinned: its core is being refactored between
releases; NDB is never used, its transactions are far too slow for bulk routes). It translates
between felix's plain values (``felix.plan.Route``, ``Neighbour``, ``FdbEntry``, :class:`LinkInfo`)
and netlink messages, and exposes only what felix needs:

* routes of one route protocol number in the main table: dump (with the destinations that other
  protocols hold, which felix must not touch), replace, delete; large batches of changes go
  through felix.kernel.batch (many messages per send on a socket opened here, in the same
  namespace), small ones one pyroute2 request each;
* links: list, look up, set up/MTU/MAC/alias, create ``tunl0`` (IPIP) and the VXLAN devices
  (IPv4 or IPv6 underlay), create veth pairs with one end in a pod's namespace (CNI);
* addresses, permanent neighbours and VXLAN FDB entries;
* per-interface IPv4 settings (``net.ipv4.conf.<dev>.*``) and ARP proxy delay
  (``net.ipv4.neigh.<dev>.proxy_delay``), set through rtnetlink rather than ``/proc/sys``, which
  is read-only inside a container (where ``podbgp-cni`` runs under docker-compose), and an IPIP
  device's path-MTU discovery (messages and ioctl in felix.kernel.devconf, sockets here);
* the ``/etc/iproute2/rt_protos.d`` entry that names felix's route protocol.

With ``netns`` set, the socket is opened inside that named namespace (or ``/proc/.../ns/net``
path), so a test process can drive several "nodes" without entering them.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK
from pyroute2.netns import create_socket

from felix.kernel import devconf
from felix.kernel.batch import apply_bulk, dump_routes, enable_strict_check, size_buffers
from felix.plan import FdbEntry, Neighbour, Route, Scope
from felix.reconcile import ApplyError, KernelRoutes

log = logging.getLogger("podbgp.felix.netlink")

MAIN_TABLE = 254
RTNH_F_ONLINK = 4
IFF_UP = 1
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
IFA_F_NODAD = 0x02  # linux/if_addr.h
NTF_SELF = 0x02
RT_PROTOS_DIR = Path("/etc/iproute2/rt_protos.d")
PROTOCOL_NAME = "podbgp"
_DEFAULT_PRIORITY = {4: 0, 6: 1024}  # what the kernel gives a route added without a metric
NETLINK_ROUTE = 0
BULK_THRESHOLD = 64  # route changes at which one chunked send beats one request per route


class KernelError(Exception):
    """A netlink request the kernel refused; ``code`` is the errno."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message}: {os.strerror(code)} (errno {code})")
        self.code = code


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What felix reads about a network interface."""

    index: int
    name: str
    kind: str | None  # "veth", "ipip", "vxlan", ... (None for plain devices)
    up: bool  # administratively up (IFF_UP)
    mtu: int
    mac: str | None
    alias: str | None


def ensure_protocol_name(
    number: int, name: str = PROTOCOL_NAME, directory: Path = RT_PROTOS_DIR
) -> Path | None:
    """Register ``number`` as ``name`` for iproute2 (``ip route show proto podbgp``).

    Idempotent: returns the file it wrote, or None when the entry was already there (so a caller
    that wrote it can remove it again). Other files in the folder are never changed.
    """
    target = directory / f"{name}.conf"
    line = f"{number}\t{name}\n"
    for path in sorted(directory.glob("*.conf")) if directory.is_dir() else []:
        for entry in path.read_text().splitlines():
            fields = entry.split("#", 1)[0].split()
            if fields[:2] == [str(number), name]:
                return None
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(f"# podbgp (felix) kernel routes\n{line}")
    return target


def _family(prefix: str) -> int:
    return socket.AF_INET6 if ":" in prefix else socket.AF_INET


class Netlink:
    """One rtnetlink socket (in one network namespace) speaking for route protocol ``protocol``."""

    def __init__(self, protocol: int, netns: str | None = None) -> None:
        self.protocol = protocol
        self.netns = netns
        self._ipr: Any = None
        self._index: dict[str, int] = {}
        # _index comes from a link dump made since the last route write: a pass that has just
        # dumped the links (to plan) reads and writes routes with it instead of dumping again.
        self._index_fresh = False
        self._bulk_sock: socket.socket | None = None
        self._dump_sock: socket.socket | None = None
        self._dump_strict = False

    async def open(self) -> Netlink:
        if self._ipr is None:
            # groups=0: this socket only asks; broadcasts would pile up unread in its queue.
            kwargs: dict[str, Any] = {"groups": 0}
            if self.netns is not None:
                kwargs.update(netns=self.netns, flags=0)  # flags=0: never create a namespace
            self._ipr = AsyncIPRoute(**kwargs)
            await self._ipr.setup_endpoint()
        return self

    async def close(self) -> None:
        for sock in (self._bulk_sock, self._dump_sock):
            if sock is not None:
                sock.close()
        self._bulk_sock = self._dump_sock = None
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def __aenter__(self) -> Netlink:
        return await self.open()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            raise RuntimeError("Netlink is not open")
        return self._ipr

    async def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.ipr, method)(*args, **kwargs)
        except NetlinkError as exc:
            raise KernelError(exc.code, what) from None

    # -- links --------------------------------------------------------------------------------

    async def links(self) -> list[LinkInfo]:
        out = [_link_info(msg) async for msg in await self.ipr.link("dump")]
        self._index = {link.name: link.index for link in out}
        self._index_fresh = True
        return out

    def reuse_links(self) -> None:
        """The caller knows no link changed since the last :meth:`links` (a link monitor said
        nothing): the next route write may use the indexes of that dump."""
        self._index_fresh = True

    async def link(self, name: str) -> LinkInfo | None:
        try:
            msgs = await _collect(await self.ipr.link("get", ifname=name))
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                self._index.pop(name, None)  # gone (or deleted from another namespace)
                return None
            raise KernelError(exc.code, f"get link {name}") from None
        if not msgs:
            self._index.pop(name, None)
            return None
        info = _link_info(msgs[0])
        self._index[info.name] = info.index
        return info

    async def index(self, name: str) -> int:
        idx = self._index.get(name)
        if idx is None:
            info = await self.link(name)
            if info is None:
                raise KernelError(errno.ENODEV, f"device {name}")
            idx = info.index
        return idx

    async def set_link(
        self,
        name: str,
        *,
        up: bool | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        alias: str | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if up is not None:
            changes["state"] = "up" if up else "down"
        if mtu is not None:
            changes["mtu"] = mtu
        if mac is not None:
            changes["address"] = mac
        if alias is not None:
            changes["ifalias"] = alias
        if changes:
            index = await self.index(name)
            await self._call(f"set link {name}", "link", "set", index=index, **changes)

    async def delete_link(self, name: str) -> bool:
        info = await self.link(name)
        if info is None:
            return False
        await self._call(f"delete link {name}", "link", "del", index=info.index)
        self._index.pop(name, None)
        return True

    async def create_ipip(self, name: str) -> None:
        """Create the IPIP fallback device (``tunl0`` appears when the module loads)."""
        try:
            await self.ipr.link("add", ifname=name, kind="ipip")
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise KernelError(exc.code, f"create ipip device {name}") from None

    def ipip_pmtudisc(self, name: str, enable: bool | None = None) -> bool:
        """Read (and with ``enable`` set) path-MTU discovery on an IPIP device, by the tunnel
        ioctls (``felix.kernel.devconf``: the kernel refuses netlink changes to ``tunl0``)."""
        sock = create_socket(self.netns, socket.AF_INET, socket.SOCK_DGRAM, flags=0)
        try:
            return devconf.ipip_df(sock, name, enable)
        except OSError as exc:
            raise KernelError(exc.errno or errno.EIO, f"tunnel ioctl on {name}") from None
        finally:
            sock.close()

    async def create_vxlan(
        self, name: str, *, vni: int, port: int, local: str, uplink: str, mac: str
    ) -> None:
        """A VXLAN device whose underlay family is ``local``'s (IPv4 or IPv6)."""
        family = "vxlan_local6" if ":" in local else "vxlan_local"
        await self._call(
            f"create vxlan device {name}",
            "link",
            "add",
            ifname=name,
            kind="vxlan",
            vxlan_id=vni,
            vxlan_port=port,
            **{family: local},
            vxlan_link=await self.index(uplink),
            vxlan_learning=0,  # felix programs the FDB; never learn from the wire
            address=mac,
        )

    async def vxlan_settings(self, name: str) -> dict[str, Any] | None:
        """The VXLAN device's VNI, port, local address and lower device index."""
        msgs = await _collect(await self.ipr.link("dump", ifname=name))
        if not msgs:
            return None
        data = msgs[0].get(("linkinfo", "data"))
        if data is None:
            return None
        return {
            "vni": data.get("vxlan_id"),
            "port": data.get("vxlan_port"),
            "local": data.get("vxlan_local") or data.get("vxlan_local6"),
            "link": data.get("vxlan_link"),
        }

    async def create_veth(
        self, host: str, peer: str, peer_netns: str, *, mtu: int | None = None
    ) -> None:
        """A veth pair: ``host`` here, ``peer`` created directly inside ``peer_netns`` (a path)."""
        fd = os.open(peer_netns, os.O_RDONLY)
        try:
            peer_spec: dict[str, Any] = {"ifname": peer, "net_ns_fd": fd}
            extra: dict[str, Any] = {}
            if mtu is not None:
                peer_spec["mtu"] = mtu
                extra["mtu"] = mtu
            await self._call(
                f"create veth {host}", "link", "add", ifname=host, kind="veth", peer=peer_spec,
                **extra,
            )  # fmt: skip
        finally:
            os.close(fd)

    # -- per-device settings (sysctls by netlink) -----------------------------------------------

    async def set_ipv4_conf(self, name: str, **settings: int) -> None:
        """Set ``net.ipv4.conf.<name>.<key>`` (keys of ``devconf.IPV4_DEVCONF``) by rtnetlink,
        which works in a container, where ``/proc/sys`` is read-only."""
        msg_type, body = devconf.ipv4_conf(await self.index(name), settings)
        await asyncio.to_thread(
            self._request, f"set ipv4 conf {settings} on {name}", msg_type, body
        )

    async def set_arp_proxy_delay(self, name: str, milliseconds: int) -> None:
        """Set ``net.ipv4.neigh.<name>.proxy_delay`` by RTM_SETNEIGHTBL (works in containers)."""
        msg_type, body = devconf.proxy_delay(await self.index(name), milliseconds)
        await asyncio.to_thread(self._request, f"set arp proxy_delay on {name}", msg_type, body)

    def _request(self, what: str, msg_type: int, body: bytes) -> None:
        """One acknowledged rtnetlink request on a socket of its own, in this namespace."""
        sock = create_socket(self.netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0)
        try:
            sock.bind((0, 0))
            sock.settimeout(5.0)
            devconf.request(sock, msg_type, body)
        except OSError as exc:
            raise KernelError(exc.errno or errno.EIO, what) from None
        finally:
            sock.close()

    # -- addresses ----------------------------------------------------------------------------

    async def addresses(self, name: str) -> list[str]:
        index = await self.index(name)
        out = []
        async for msg in await self.ipr.addr("dump", index=index):
            out.append(f"{msg.get('address')}/{msg['prefixlen']}")
        return out

    async def add_address(self, name: str, cidr: str, *, nodad: bool = False) -> None:
        """Add ``cidr`` to ``name``; ``nodad``: an IPv6 address usable at once, without
        duplicate address detection (IFA_F_NODAD)."""
        iface = ipaddress.ip_interface(cidr)
        index = await self.index(name)
        extra = {"flags": IFA_F_NODAD} if nodad else {}
        try:
            await self.ipr.addr(
                "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                **extra,
            )  # fmt: skip
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise KernelError(exc.code, f"add address {cidr} to {name}") from None

    async def delete_address(self, name: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        index = await self.index(name)
        await self._call(
            f"delete address {cidr} from {name}", "addr", "del", index=index,
            address=str(iface.ip), prefixlen=iface.network.prefixlen,
        )  # fmt: skip

    # -- routes -------------------------------------------------------------------------------

    async def dump_routes(self) -> KernelRoutes:
        """felix's routes in the main table, and destinations held there by other protocols.

        Read with a raw rtnetlink dump decoded by felix.kernel.batch (pyroute2's message
        objects cost ~80 µs a route; a 100,000-route resync took 8-16 s that way). The device
        names come from the pass's link dump when there is one (a dump of 100 links through
        pyroute2 costs ~17 ms)."""
        if not self._index_fresh:
            await self.links()
        names = {index: name for name, index in self._index.items()}
        if self._dump_sock is None:
            self._dump_sock = self._raw_socket()
            self._dump_strict = enable_strict_check(self._dump_sock)
        sock = self._dump_sock
        try:
            dumped = await asyncio.to_thread(
                dump_routes, sock, self.protocol, names, _DEFAULT_PRIORITY,
                strict=self._dump_strict,
            )  # fmt: skip
        except OSError:
            sock.close()
            self._dump_sock = None
            raise
        own = {route.dst: route for route in dumped.own}
        return KernelRoutes(own, frozenset(dumped.foreign))

    def _raw_socket(self) -> socket.socket:
        """A plain rtnetlink socket in our namespace, for the bulk writer and the dump."""
        sock: socket.socket = create_socket(
            self.netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
        )
        size_buffers(sock)
        sock.bind((0, 0))
        return sock

    async def replace_route(self, route: Route) -> None:
        request = await self._route_request(route)
        await self._call(f"replace {route.describe()}", "route", "replace", **request)

    async def delete_route(self, route: Route) -> bool:
        """Delete felix's route to ``route.dst``; False when it was not there."""
        net = ipaddress.ip_network(route.dst)
        try:
            await self.ipr.route(
                "del", dst=str(net.network_address), dst_len=net.prefixlen,
                family=_family(route.dst), table=MAIN_TABLE, proto=self.protocol,
                scope=int(Scope.NOWHERE),  # any scope: pod routes are scope link
            )  # fmt: skip
        except NetlinkError as exc:
            if exc.code in (errno.ESRCH, errno.ENOENT):
                return False
            raise KernelError(exc.code, f"delete {route.dst}") from None
        return True

    async def apply_routes(
        self, replace: Sequence[Route], delete: Sequence[Route]
    ) -> list[ApplyError]:
        """Delete then replace; errors are collected, not raised. Large batches go through
        felix.kernel.batch (many messages per send), small ones one pyroute2 request each."""
        errors: list[ApplyError] = []
        if replace and not self._index_fresh:
            await self.links()  # devices may have been re-created with new indexes
        self._index_fresh = False  # the next write dumps the links again unless someone did
        if len(replace) + len(delete) >= BULK_THRESHOLD:
            return await self._apply_bulk(replace, delete)
        for route in delete:
            try:
                await self.delete_route(route)
            except KernelError as exc:
                errors.append(ApplyError(f"delete {route.dst}", str(exc)))
        for route in replace:
            try:
                await self.replace_route(route)
            except KernelError as exc:
                errors.append(ApplyError(f"replace {route.describe()}", str(exc)))
        return errors

    async def _apply_bulk(
        self, replace: Sequence[Route], delete: Sequence[Route]
    ) -> list[ApplyError]:
        if self._bulk_sock is None:
            self._bulk_sock = self._raw_socket()
        index = dict(self._index)
        try:
            refused = await asyncio.to_thread(
                apply_bulk, self._bulk_sock, replace, delete, self.protocol, index.__getitem__
            )
        except OSError as exc:  # e.g. ENOBUFS: state unknown, the caller re-dumps
            self._bulk_sock.close()
            self._bulk_sock = None
            return [ApplyError(f"bulk apply of {len(replace) + len(delete)} routes", str(exc))]
        return [
            ApplyError(f"{'delete' if e.delete else 'replace'} {e.route.describe()}", e.message)
            for e in refused
        ]

    async def _route_request(self, route: Route) -> dict[str, Any]:
        net = ipaddress.ip_network(route.dst)
        request: dict[str, Any] = {
            "dst": str(net.network_address),
            "dst_len": net.prefixlen,
            "family": _family(route.dst),
            "table": MAIN_TABLE,
            "proto": self.protocol,
            "type": int(route.type),
            "scope": int(route.scope),
        }
        if route.gateway_family_differs:  # IPv4 via an IPv6 gateway: RTA_VIA, not RTA_GATEWAY
            request["via"] = {"family": _family(route.gateway or ""), "addr": route.gateway}
        elif route.gateway:
            request["gateway"] = route.gateway
        if route.dev:
            request["oif"] = await self.index(route.dev)
        if route.onlink:
            request["flags"] = RTNH_F_ONLINK
        if route.mtu:
            request["metrics"] = {"mtu": route.mtu}
        return request

    # -- neighbours and FDB -------------------------------------------------------------------

    async def dump_neighbours(self, dev: str) -> frozenset[Neighbour]:
        index = await self._index_or_none(dev)
        if index is None:
            return frozenset()
        out = set()
        async for msg in await self.ipr.neigh("dump", ifindex=index):
            if msg["state"] & NUD_PERMANENT and msg.get("lladdr") and msg.get("dst"):
                out.add(Neighbour(dev, msg.get("dst"), msg.get("lladdr")))
        return frozenset(out)

    async def dump_fdb(self, dev: str) -> frozenset[FdbEntry]:
        index = await self._index_or_none(dev)
        if index is None:
            return frozenset()
        out = set()
        async for msg in await self.ipr.fdb("dump", ifindex=index):
            if msg["ifindex"] != index or not msg["state"] & NUD_PERMANENT:
                continue
            if msg.get("dst") and msg.get("lladdr"):
                out.add(FdbEntry(dev, msg.get("lladdr"), msg.get("dst")))
        return frozenset(out)

    async def apply_neighbours(
        self, add: Sequence[Neighbour], remove: Sequence[Neighbour]
    ) -> list[ApplyError]:
        errors: list[ApplyError] = []
        for entry, command in [(n, "del") for n in remove] + [(n, "replace") for n in add]:
            try:
                index = await self.index(entry.dev)
                await self.ipr.neigh(
                    command, ifindex=index, dst=entry.ip, lladdr=entry.mac, state=NUD_PERMANENT
                )
            except (NetlinkError, KernelError) as exc:
                if command == "del" and getattr(exc, "code", 0) == errno.ENOENT:
                    continue
                errors.append(ApplyError(f"{command} neighbour {entry}", str(exc)))
        return errors

    async def apply_fdb(
        self, add: Sequence[FdbEntry], remove: Sequence[FdbEntry]
    ) -> list[ApplyError]:
        errors: list[ApplyError] = []
        for entry, command in [(f, "del") for f in remove] + [(f, "replace") for f in add]:
            try:
                index = await self.index(entry.dev)
                await self.ipr.fdb(
                    command, ifindex=index, lladdr=entry.mac, dst=entry.dst,
                    state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF,
                )  # fmt: skip
            except (NetlinkError, KernelError) as exc:
                if command == "del" and getattr(exc, "code", 0) == errno.ENOENT:
                    continue
                errors.append(ApplyError(f"{command} fdb {entry}", str(exc)))
        return errors

    async def _index_or_none(self, name: str) -> int | None:
        info = await self.link(name)
        return None if info is None else info.index


class LinkMonitor:
    """Netlink link broadcasts: lets felix heal a link change before the next resync."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None

    async def open(self) -> None:
        groups = RTMGRP_LINK  # route changes are caught by the periodic resync
        kwargs: dict[str, Any] = {"groups": groups}
        if self.netns is not None:
            kwargs.update(netns=self.netns, flags=0)
        self._ipr = AsyncIPRoute(**kwargs)
        await self._ipr.setup_endpoint()
        await self._ipr.bind(groups=groups)  # subscribe: the constructor only records them

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        """The next batch of events as ``(event, fields)``; fields hold ifname and up."""
        out: list[tuple[str, dict[str, Any]]] = []
        async for msg in self._ipr.get():
            event = str(msg.get("event"))
            fields: dict[str, Any] = {}
            if event.endswith("LINK"):
                fields = {"ifname": msg.get("ifname"), "up": bool(msg["flags"] & IFF_UP)}
            out.append((event, fields))
        return out

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


async def _collect(result: Any) -> list[Any]:
    """pyroute2 answers dumps with async generators and single requests with lists."""
    if hasattr(result, "__aiter__"):
        return [msg async for msg in result]
    return list(result)


def _link_info(msg: Any) -> LinkInfo:
    return LinkInfo(
        index=msg["index"],
        name=msg.get("ifname"),
        kind=msg.get(("linkinfo", "kind")),
        up=bool(msg["flags"] & IFF_UP),
        mtu=msg.get("mtu") or 0,
        mac=msg.get("address"),
        alias=msg.get("ifalias"),
    )
