"""``podbgp-cni``: the CNI 1.0 plugin that wires a pod into this node's block.

Implements the Container Network Interface specification 1.0 (ADD, DEL, CHECK, VERSION; network
configuration on stdin, parameters in ``CNI_*`` environment variables, the result or an error
object as JSON on stdout, the spec's well-known error codes). Per pod attachment (container ID +
interface name):

* ADD assigns the next free address of the node's block through IPAM (handle
  ``<container id>.<ifname>``, persisted, so an address is never handed out twice and a repeated
  ADD gets the same one) — on a dual-stack node one IPv4 and one IPv6 address under that one
  handle (:func:`podbgp.cluster.ipam.pod_families` decides) — creates a veth pair with the pod
  end directly in the pod's namespace, gives the pod each address as a host prefix (/32, /128;
  the IPv6 one without duplicate address detection, IPAM makes it unique), a default route via
  the link-local gateway 169.254.1.1 and, for IPv6, via fe80::ecee:eeff:feee:eeee — the host
  end's own EUI-64 link-local address, as every host end has the MAC ee:ee:ee:ee:ee:ee — with a
  permanent neighbour entry for each gateway; the host end answers ARP for 169.254.1.1 (proxy
  ARP, set by netlink: it works where /proc/sys is read-only, as in a container) and ND for its
  link-local address (which ADD puts there without DAD, so it answers at once), so pods need no
  L2 neighbour but the host.
  The host end gets a ``/32`` and a ``/128`` route (felix's route protocol) and an alias that
  tells felix which pod addresses it serves (felix.plan.workload_alias). A repeated ADD is
  idempotent; a failed ADD rolls back what it made (veth, routes, newly assigned addresses of
  both families), so the runtime's next ADD succeeds once the cause is gone.
* DEL deletes the veth (which removes the pod routes with it) and releases the addresses. DEL of
  anything unknown or already gone succeeds, as the spec requires.
* CHECK verifies the veth, each of the pod's addresses and default routes, and the host routes.

Runtimes that speak an older CNI (kubelet 1.20's libcni, older containerd and CRI-O: at most
0.4.0) get results shaped for the version they ask for: 0.3.0, 0.3.1, 0.4.0 and 1.0.0 are
accepted (VERSION lists them), 0.3.x/0.4.0 results carry each address's ``version``, and CHECK
(new in 0.4.0) is refused for 0.3.x.

Kernel work goes through felix.kernel.netlink; this module never imports pyroute2.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from felix.kernel.netlink import KernelError, Netlink
from felix.plan import Neighbour, Route, Scope, workload_alias, workload_ips
from podbgp.cluster import ipam
from podbgp.cluster.datastore.kv import DatastoreUnavailable

log = logging.getLogger("podbgp.cni")

CNI_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
PLUGIN_TYPE = "podbgp-cni"
GATEWAY = "169.254.1.1"  # link-local: never collides with a pod address, never leaves the veth
# Every host end carries this MAC, so its EUI-64 link-local address (RFC 4291 §2.5.6,
# RFC 4862 §5.3) is the pods' IPv6 gateway: the same on every veth, as Calico does it.
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"
DEFAULT_ROUTES = {4: "0.0.0.0/0", 6: "::/0"}
GATEWAYS = {4: GATEWAY, 6: GATEWAY_V6}
HOST_VETH_PREFIX = "pbg"
DEFAULT_ROUTE_PROTOCOL = 80
POD_ROUTE_PROTOCOL = 3  # RTPROT_BOOT: the pod's own routes are plain static configuration
KNOWN_KEYS = {
    "cniVersion", "name", "type", "nodeName", "datastore", "mtu", "routeProtocol",
    "args", "prevResult", "runtimeConfig", "capabilities", "ipam", "dns", "logLevel",
}  # fmt: skip


class CniCode(IntEnum):
    """Well-known error codes of the CNI specification (1.0, "Error")."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODE_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN = 11
    IPAM_FAILURE = 100  # plugin-specific (>= 100): no address could be assigned


class CniError(Exception):
    """An error the plugin reports as the spec's error object."""

    def __init__(self, code: CniCode, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str = CNI_VERSION) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": int(self.code), "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class DatastoreSettings:
    """The ``datastore`` object of the network configuration."""

    type: str = "file"
    endpoints: tuple[str, ...] = ()
    prefix: str = "/podbgp/"
    path: str | None = None
    state_path: str | None = None
    ca_file: str | None = None  # etcd client TLS, as in node.yaml's datastore.tls
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class NetConf:
    """The network configuration (stdin) fields podbgp-cni uses."""

    cni_version: str
    name: str
    node_name: str
    datastore: DatastoreSettings
    mtu: int | None = None
    route_protocol: int = DEFAULT_ROUTE_PROTOCOL
    prev_result: dict[str, Any] | None = None


@dataclass(frozen=True)
class CniEnv:
    """The ``CNI_*`` parameters."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: str = ""


def parse_netconf(data: bytes, default_node: str | None = None) -> NetConf:
    """Decode and validate the network configuration; CniError with the spec's code if not."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(
            CniCode.DECODE_FAILURE, "network configuration is not JSON", str(exc)
        ) from None
    if not isinstance(doc, dict):
        raise CniError(CniCode.DECODE_FAILURE, "network configuration is not a JSON object")
    version = doc.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CniError(CniCode.INVALID_CONFIG, "cniVersion is missing")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            CniCode.INCOMPATIBLE_VERSION,
            f"cniVersion {version} is not supported",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    unknown = sorted(set(doc) - KNOWN_KEYS)
    if unknown:
        raise CniError(CniCode.UNSUPPORTED_FIELD, f"unsupported field {unknown[0]!r}")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(CniCode.INVALID_CONFIG, "name is missing")
    if doc.get("type", PLUGIN_TYPE) != PLUGIN_TYPE:
        raise CniError(CniCode.INVALID_CONFIG, f"type must be {PLUGIN_TYPE!r}")
    node = doc.get("nodeName") or default_node or os.uname().nodename
    mtu = doc.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or not 576 <= mtu <= 65535):
        raise CniError(CniCode.INVALID_CONFIG, "mtu must be an integer from 576 to 65535")
    proto = doc.get("routeProtocol", DEFAULT_ROUTE_PROTOCOL)
    if not isinstance(proto, int) or not 1 <= proto <= 255:
        raise CniError(CniCode.INVALID_CONFIG, "routeProtocol must be an integer from 1 to 255")
    prev = doc.get("prevResult")
    return NetConf(
        version, name, str(node), _datastore(doc.get("datastore")), mtu, proto,
        prev if isinstance(prev, dict) else None,
    )  # fmt: skip


def _datastore(raw: Any) -> DatastoreSettings:
    if raw is None:
        return DatastoreSettings()
    if not isinstance(raw, dict):
        raise CniError(CniCode.INVALID_CONFIG, "datastore must be an object")
    kind = raw.get("type", "file")
    if kind not in ("etcd", "file"):
        raise CniError(CniCode.INVALID_CONFIG, f"datastore.type {kind!r}: etcd or file")
    endpoints = raw.get("endpoints") or ()
    if kind == "etcd" and (not isinstance(endpoints, list) or not endpoints):
        raise CniError(CniCode.INVALID_CONFIG, "datastore.endpoints: a list of etcd URLs")
    if not all(isinstance(e, str) for e in endpoints):
        raise CniError(CniCode.INVALID_CONFIG, "datastore.endpoints: a list of etcd URLs")
    unknown = sorted(set(raw) - {"type", "endpoints", "prefix", "path", "statePath", "tls"})
    if unknown:
        raise CniError(CniCode.UNSUPPORTED_FIELD, f"unsupported field datastore.{unknown[0]}")
    tls = raw.get("tls") or {}
    if not isinstance(tls, dict) or not all(isinstance(v, str) for v in tls.values()):
        raise CniError(CniCode.INVALID_CONFIG, "datastore.tls: {caFile, certFile, keyFile}")
    unknown = sorted(set(tls) - {"caFile", "certFile", "keyFile"})
    if unknown:
        raise CniError(CniCode.UNSUPPORTED_FIELD, f"unsupported field datastore.tls.{unknown[0]}")
    return DatastoreSettings(
        kind, tuple(endpoints), str(raw.get("prefix", "/podbgp/")),
        raw.get("path"), raw.get("statePath"),
        tls.get("caFile"), tls.get("certFile"), tls.get("keyFile"),
    )  # fmt: skip


def parse_env(environ: Mapping[str, str]) -> CniEnv:
    """Read the ``CNI_*`` variables; CniError(INVALID_ENVIRONMENT) when a needed one is missing."""
    command = environ.get("CNI_COMMAND", "")
    if command not in ("ADD", "DEL", "CHECK", "VERSION"):
        raise CniError(CniCode.INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not supported")
    if command == "VERSION":
        return CniEnv(command)
    needed = ["CNI_CONTAINERID", "CNI_IFNAME"] + ([] if command == "DEL" else ["CNI_NETNS"])
    missing = [name for name in needed if not environ.get(name)]
    if missing:
        raise CniError(CniCode.INVALID_ENVIRONMENT, f"{missing[0]} is not set")
    ifname = environ["CNI_IFNAME"]
    if len(ifname) > 15 or "/" in ifname or ifname in (".", ".."):
        raise CniError(CniCode.INVALID_ENVIRONMENT, f"CNI_IFNAME {ifname!r} is not a valid name")
    args: dict[str, str] = {}
    for item in filter(None, environ.get("CNI_ARGS", "").split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise CniError(CniCode.INVALID_ENVIRONMENT, f"CNI_ARGS item {item!r} is not K=V")
        args[key] = value
    return CniEnv(
        command, environ["CNI_CONTAINERID"], environ.get("CNI_NETNS", ""), ifname, args,
        environ.get("CNI_PATH", ""),
    )  # fmt: skip


def host_veth_name(container_id: str, ifname: str) -> str:
    """The host end's name: stable per attachment, 14 characters (IFNAMSIZ allows 15)."""
    digest = hashlib.sha1(f"{container_id}.{ifname}".encode()).hexdigest()
    return HOST_VETH_PREFIX + digest[:11]


def ipam_handle(container_id: str, ifname: str) -> str:
    return f"{container_id}.{ifname}"


def version_result(cni_version: str = CNI_VERSION) -> dict[str, Any]:
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def build_result(
    conf: NetConf, env: CniEnv, ips: list[str], host_mac: str | None, pod_mac: str | None
) -> dict[str, Any]:
    """The ADD result: both interfaces, each pod address (a /32, a /128) with its gateway, and
    a default route per family."""
    entries: list[dict[str, Any]] = []
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        entry: dict[str, Any] = {
            "address": f"{addr}/{addr.max_prefixlen}",
            "gateway": GATEWAYS[addr.version],
            "interface": 1,
        }
        if conf.cni_version != CNI_VERSION:
            entry["version"] = str(addr.version)  # 0.3.x / 0.4.0 results carry it
        entries.append(entry)
    return {
        "cniVersion": conf.cni_version,
        "interfaces": [
            {"name": host_veth_name(env.container_id, env.ifname), "mac": host_mac or ""},
            {"name": env.ifname, "mac": pod_mac or "", "sandbox": env.netns},
        ],
        "ips": entries,
        "routes": [{"dst": DEFAULT_ROUTES[ipaddress.ip_address(ip).version]} for ip in ips],
        "dns": {},
    }


def pod_reference(env: CniEnv) -> str:
    """``namespace/pod`` from Kubernetes' CNI_ARGS, else the short container ID."""
    ns, pod = env.args.get("K8S_POD_NAMESPACE"), env.args.get("K8S_POD_NAME")
    return f"{ns}/{pod}" if ns and pod else env.container_id[:12]


# -- the commands -------------------------------------------------------------------------------


async def cmd_add(conf: NetConf, env: CniEnv, store: Any) -> dict[str, Any]:
    """ADD: address, veth, pod addressing and routes, host route; idempotent.

    All or nothing: when a step fails, ADD removes what it made (the veth pair, and with it the
    pod end and both routes; the address, if this ADD assigned it) before it reports the error,
    so the runtime's retry starts from a clean slate (CNI 1.0: ADD after a failed ADD).
    """
    if not Path(env.netns).exists():
        raise CniError(CniCode.UNKNOWN_CONTAINER, f"network namespace {env.netns} does not exist")
    handle = ipam_handle(env.container_id, env.ifname)
    try:
        had_address = await ipam.handle_addresses(store, handle) is not None
        families = await ipam.pod_families(store, conf.node_name)
        ips = [(await ipam.assign_address(store, conf.node_name, handle, v))[0] for v in families]
    except DatastoreUnavailable as exc:
        raise CniError(CniCode.TRY_AGAIN, "the datastore is unreachable", str(exc)) from None
    except Exception as exc:  # no pool, pool full, contention: the runtime cannot retry it away
        raise CniError(CniCode.IPAM_FAILURE, "no address could be assigned", str(exc)) from None
    host_name = host_veth_name(env.container_id, env.ifname)
    made_veth = False
    try:
        async with (
            Netlink(conf.route_protocol) as host,
            Netlink(POD_ROUTE_PROTOCOL, env.netns) as pod,
        ):
            existing = await host.link(host_name)
            if existing is not None and not await _attachment_ok(
                host, pod, host_name, env.ifname, ips
            ):
                await host.delete_link(host_name)  # half-made by an earlier, interrupted ADD
                existing = None
            if existing is None:
                if await pod.link(env.ifname) is not None:
                    raise CniError(
                        CniCode.INVALID_ENVIRONMENT, f"{env.ifname} already exists in the pod"
                    )
                await host.create_veth(host_name, env.ifname, env.netns, mtu=conf.mtu)
                made_veth = True
                # Before the link comes up, so its link-local address is the IPv6 gateway.
                await host.set_link(host_name, mac=HOST_VETH_MAC)
                await _configure_pod(pod, env.ifname, ips, HOST_VETH_MAC)
                await _configure_host(host, host_name, ips, pod_reference(env))
            host_link = await host.link(host_name)
            pod_link = await pod.link(env.ifname)
    except BaseException as exc:
        undone = await _roll_back_add(conf, store, host_name, handle, made_veth, not had_address)
        if isinstance(exc, CniError) or not isinstance(exc, Exception):
            raise
        raise CniError(CniCode.IO_FAILURE, f"ADD failed: {exc}", f"rolled back: {undone}") from None
    return build_result(
        conf, env, ips, host_link.mac if host_link else None, pod_link.mac if pod_link else None
    )


async def _roll_back_add(
    conf: NetConf, store: Any, host_name: str, handle: str, veth: bool, address: bool
) -> str:
    """Undo a failed ADD: the veth pair it made, the addresses it assigned (both families: they
    share the handle). Says what it did."""
    done: list[str] = []
    if veth:
        try:
            async with Netlink(conf.route_protocol) as host:
                if await host.delete_link(host_name):
                    done.append(f"deleted {host_name}")
        except Exception as exc:  # keep going: the address must not leak either
            log.warning("event=cni-rollback-failed what=veth name=%s error=%s", host_name, exc)
            done.append(f"could not delete {host_name}: {exc}")
    if address:
        try:
            await ipam.release_address(store, handle)
            done.append(f"released the address of {handle}")
        except Exception as exc:
            log.warning("event=cni-rollback-failed what=address handle=%s error=%s", handle, exc)
            done.append(f"could not release the address of {handle}: {exc}")
    log.info("event=cni-add-rolled-back %s", "; ".join(done) or "nothing to undo")
    return "; ".join(done) or "nothing to undo"


async def _configure_pod(pod: Netlink, ifname: str, ips: list[str], gateway_mac: str) -> None:
    """Each address as a host prefix, a default route per family via its link-local gateway,
    and a permanent neighbour entry for each gateway.

    The gateways are the host end itself: permanent entries spare the pod an ARP/ND round trip
    and do not depend on the host answering yet (proxy ARP needs a route back to 169.254.1.1;
    the host end's IPv6 link-local address is usable only after its duplicate address
    detection). The pod's IPv6 address skips DAD (it is unique by IPAM), so it answers at once.
    """
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        await pod.add_address(ifname, f"{addr}/{addr.max_prefixlen}", nodad=addr.version == 6)
    await pod.set_link(ifname, up=True)
    neighbours = []
    for version in sorted({ipaddress.ip_address(ip).version for ip in ips}):
        gateway = GATEWAYS[version]
        if version == 4:
            await pod.replace_route(Route(f"{GATEWAY}/32", dev=ifname, scope=Scope.LINK))
        await pod.replace_route(Route(DEFAULT_ROUTES[version], gateway=gateway, dev=ifname))
        neighbours.append(Neighbour(ifname, gateway, gateway_mac))
    errors = await pod.apply_neighbours(neighbours, [])
    if errors:
        raise KernelError(errno.EIO, f"{errors[0].what}: {errors[0].error}")


async def _configure_host(host: Netlink, host_name: str, ips: list[str], ref: str) -> None:
    # The host end answers ARP for the gateway address (and anything else) on the pod's behalf,
    # at once. Set through rtnetlink, not /proc/sys: that is read-only in a container (compose
    # runs podbgp-cni in one), and netlink needs only the CAP_NET_ADMIN that ADD needs anyway.
    # For IPv6 the host end's own link-local address is the gateway: plain ND answers it. It is
    # added here, before the link comes up, without DAD: the kernel's own (the same EUI-64
    # address) would stay tentative for a second or two, and until then the host neither
    # answers ND for it nor resolves the pod's address (its solicitations need a usable
    # link-local source), so the first packets either way would be lost.
    await host.set_ipv4_conf(host_name, proxy_arp=1)
    await host.set_arp_proxy_delay(host_name, 0)
    if any(ipaddress.ip_address(ip).version == 6 for ip in ips):
        await host.add_address(host_name, f"{GATEWAY_V6}/64", nodad=True)
    await host.set_link(host_name, up=True, alias=workload_alias(ips, ref))
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        await host.replace_route(
            Route(f"{addr}/{addr.max_prefixlen}", dev=host_name, scope=Scope.LINK)
        )


async def _attachment_ok(
    host: Netlink, pod: Netlink, host_name: str, ifname: str, ips: list[str]
) -> bool:
    """Is the attachment complete: veth both ends, pod addresses, default routes, host routes?"""
    return not await attachment_problems(host, pod, host_name, ifname, ips)


async def attachment_problems(
    host: Netlink, pod: Netlink, host_name: str, ifname: str, ips: list[str]
) -> list[str]:
    """What is wrong with an attachment, in words (empty: nothing); every address checked."""
    problems: list[str] = []
    host_link = await host.link(host_name)
    if host_link is None:
        return [f"host interface {host_name} is missing"]
    if not host_link.up:
        problems.append(f"host interface {host_name} is down")
    tagged = workload_ips(host_link.alias)
    problems += [f"host interface {host_name} is not tagged for {ip}" for ip in ips
                 if ip not in tagged]  # fmt: skip
    v6 = any(ipaddress.ip_address(ip).version == 6 for ip in ips)
    if v6 and f"{GATEWAY_V6}/64" not in await host.addresses(host_name):
        problems.append(f"host interface {host_name} lacks the gateway {GATEWAY_V6}")
    pod_link = await pod.link(ifname)
    if pod_link is None:
        return [*problems, f"pod interface {ifname} is missing"]
    if not pod_link.up:
        problems.append(f"pod interface {ifname} is down")
    pod_addresses = await pod.addresses(ifname)
    pod_routes = (await pod.dump_routes()).own
    host_routes = (await host.dump_routes()).own
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        prefix = f"{addr}/{addr.max_prefixlen}"
        if prefix not in pod_addresses:
            problems.append(f"pod interface {ifname} lacks {prefix}")
        default = pod_routes.get(DEFAULT_ROUTES[addr.version])
        if default is None or default.gateway != GATEWAYS[addr.version]:
            problems.append(f"pod has no default route via {GATEWAYS[addr.version]}")
        host_route = host_routes.get(prefix)
        if host_route is None or host_route.dev != host_name:
            problems.append(f"host route to {addr} via {host_name} is missing")
    return problems


async def cmd_del(conf: NetConf, env: CniEnv, store: Any) -> None:
    """DEL: remove the veth (and with it the host routes), release the addresses (both
    families: one handle)."""
    host_name = host_veth_name(env.container_id, env.ifname)
    async with Netlink(conf.route_protocol) as host:
        try:
            await host.delete_link(host_name)
        except KernelError as exc:
            raise CniError(CniCode.IO_FAILURE, f"cannot delete {host_name}", str(exc)) from None
    try:
        await ipam.release_address(store, ipam_handle(env.container_id, env.ifname))
    except Exception as exc:
        raise CniError(CniCode.TRY_AGAIN, "the address could not be released", str(exc)) from None


async def cmd_check(conf: NetConf, env: CniEnv, store: Any) -> None:
    """CHECK: the attachment is as ADD left it; CniError listing what is wrong if not."""
    if conf.cni_version in ("0.3.0", "0.3.1"):  # CHECK arrived with CNI 0.4.0
        raise CniError(
            CniCode.INCOMPATIBLE_VERSION,
            f"CHECK is not part of cniVersion {conf.cni_version}",
            "CHECK needs cniVersion 0.4.0 or later",
        )
    if not Path(env.netns).exists():
        raise CniError(CniCode.UNKNOWN_CONTAINER, f"network namespace {env.netns} does not exist")
    handle = ipam_handle(env.container_id, env.ifname)
    held = await ipam.handle_addresses(store, handle)
    if held is None:
        raise CniError(CniCode.UNKNOWN_CONTAINER, f"no address is allocated to {handle}")
    ips = [ip for ip, _block in held.addresses]
    host_name = host_veth_name(env.container_id, env.ifname)
    async with Netlink(conf.route_protocol) as host, Netlink(POD_ROUTE_PROTOCOL, env.netns) as pod:
        problems = await attachment_problems(host, pod, host_name, env.ifname, ips)
    if problems:
        raise CniError(CniCode.IO_FAILURE, problems[0], "; ".join(problems))
