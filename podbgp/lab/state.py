"""The lab's state and small tools: what `podbgp lab` created (written before it acts, so `down`
removes exactly that), its addresses, the cluster resources it applies, and the shell/wait
helpers every lab module uses."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path("/run/podbgp-lab")
API_TIMEOUT = 5.0
POOL = "10.244.0.0/16"
POOL_V6 = "fd00:10:244::/64"
ASN = 64512
FAMILIES = {"v4": (4,), "v6": (6,), "v4,v6": (4, 6), "v6,v4": (4, 6)}


def v6_address(address: str) -> str:
    """The member's IPv6 underlay address for its IPv4 one: 172.31.k.h/24 -> fd31:0:0:k::h/64."""
    _a, _b, k, h = address.split("/")[0].split(".")
    return f"fd31:0:0:{k}::{h}/64"


@dataclass
class Member:
    name: str  # node-1, rr-1, etcd
    ns: str
    address: str  # with prefix length
    subnet: int
    pid: int | None = None
    address6: str = ""  # IPv6, with prefix length (a dual-stack underlay)


@dataclass
class Pod:
    name: str
    ns: str
    node: str
    container_id: str
    ip: str = ""  # IPv4, if the pod has one
    ip6: str = ""  # IPv6, if the pod has one

    def address(self, version: int) -> str:
        return self.ip if version == 4 else self.ip6


@dataclass
class LabState:
    prefix: str
    directory: str
    encap: str
    subnets: int
    router_ns: str
    members: list[Member] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    families: list[int] = field(default_factory=lambda: [4])  # the pods' IP families
    outside_ns: str = ""  # the host beyond the router, outside every pool (podbgp.lab.outside)

    @property
    def dual_underlay(self) -> bool:
        """Do the members have IPv6 addresses (every lab whose pods have IPv6)?"""
        return 6 in self.families

    @property
    def nodes(self) -> list[Member]:
        return [m for m in self.members if m.name.startswith("node-")]

    def save(self) -> None:
        path = Path(self.directory) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path) -> LabState:
        data = json.loads((directory / "state.json").read_text())
        data["members"] = [Member(**m) for m in data["members"]]
        data["pods"] = [Pod(**p) for p in data["pods"]]
        return cls(**data)


class LabError(Exception):
    """A lab problem worth one line to the user (exit 2)."""


def say(text: str) -> None:
    print(text, flush=True)


def sh(*argv: str, ns: str | None = None, check: bool = True, timeout: float = 120,
       stdin: str | None = None, env: dict[str, str] | None = None,
       ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, input=stdin, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def etcd_url(state: LabState) -> str:
    etcd = next(m for m in state.members if m.name == "etcd")
    return f"http://{etcd.address.split('/')[0]}:2379"


def cluster_resources(state: LabState, reflectors: list[Member]) -> list[dict[str, Any]]:
    pool: dict[str, Any] = {"cidr": POOL, "blockSize": 24, "natOutgoing": True}
    if state.encap == "ipip":
        pool |= {"ipipMode": "CrossSubnet", "vxlanMode": "Never"}
    elif state.encap == "vxlan":
        pool |= {"ipipMode": "Never", "vxlanMode": "CrossSubnet"}
    else:
        pool |= {"ipipMode": "Never", "vxlanMode": "Never"}
    # IPIP carries IPv4 only: the IPv6 pool crosses subnets through vxlan-v6.podbgp then.
    pool6 = {"cidr": POOL_V6, "natOutgoing": True,
             "vxlanMode": "Never" if state.encap == "none" else "CrossSubnet"}  # fmt: skip
    docs: list[dict[str, Any]] = [
        {"apiVersion": "podbgp/v1", "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": not reflectors}},
    ]  # fmt: skip
    if 4 in state.families:
        docs.append({"apiVersion": "podbgp/v1", "kind": "IPPool",
                     "metadata": {"name": "lab-pool"}, "spec": pool})  # fmt: skip
    if 6 in state.families:
        docs.append({"apiVersion": "podbgp/v1", "kind": "IPPool",
                     "metadata": {"name": "lab-pool-v6"}, "spec": pool6})  # fmt: skip
    for rr in reflectors:
        # One peering per family, as Calico does: the reflector's IPv4 and IPv6 address.
        for suffix, address in (("", rr.address), ("-v6", rr.address6)):
            if address:
                docs.append({
                    "apiVersion": "podbgp/v1", "kind": "BGPPeer",
                    "metadata": {"name": rr.name + suffix},
                    "spec": {"peerIP": address.split("/")[0], "asNumber": ASN},
                })  # fmt: skip
    return docs
