"""Outgoing NAT for pools with ``natOutgoing``: one nftables table of felix's own, reconciled.

Traffic from a ``natOutgoing`` pool's addresses to any destination outside every pool leaves
with the node's address (masquerade); pod-to-pod traffic, to any pool, is never rewritten — as
Calico does. Both families, in one ``inet`` table (``table inet podbgp-nat``, a ``postrouting``
chain at the source-NAT priority) whose address sets hold the pool CIDRs.

The table is reconciled like routes: :func:`ruleset` is the pure desired state; :class:`NatTable`
applies it in one nft transaction (create-if-missing, delete, re-create: atomic, so no packet
sees a half-made table), remembers the kernel's own listing of the result, and on every full
resync re-reads the table and repairs it if anything changed it behind felix's back. It never
touches another table, and deletes its own once no pool asks for NAT.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from felix.command import CommandError, run_command
from felix.plan import Pool

log = logging.getLogger("podbgp.felix.nat")

TABLE = "podbgp-nat"
NFT_TIMEOUT = 10.0


def ruleset(pools: Iterable[Pool]) -> str | None:
    """The nft definition of the NAT table for ``pools``, or None when no pool needs NAT.

    Disabled pools still count as pool destinations (their addresses may still be in use) but
    no longer ask for NAT.
    """
    all_pools = sorted(pools, key=lambda p: (p.network.version, p.cidr))
    nat = [p for p in all_pools if p.nat_outgoing and not p.disabled]
    if not nat:
        return None
    lines = [f"table inet {TABLE} {{"]
    rules = []
    for version, family, kind in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
        members = [p.cidr for p in all_pools if p.network.version == version]
        masq = [p.cidr for p in nat if p.network.version == version]
        if not masq:
            continue
        lines += _set(f"pools{version}", kind, members) + _set(f"nat{version}", kind, masq)
        rules.append(
            f"\t\t{family} saddr @nat{version} {family} daddr != @pools{version} masquerade"
        )
    lines += [
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        *rules,
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _set(name: str, kind: str, cidrs: list[str]) -> list[str]:
    elements = ", ".join(str(ipaddress.ip_network(c, strict=False)) for c in cidrs)
    return [
        f"\tset {name} {{",
        f"\t\ttype {kind}; flags interval;",
        f"\t\telements = {{ {elements} }}",
        "\t}",
    ]


NftError = CommandError  # nft failed; the message carries its stderr


class NatTable:
    """felix's NAT table in one network namespace (``netns`` None: this process's)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.applied: str | None = None  # the definition last applied (None: table absent)
        self._listing: str | None = None  # the kernel's listing right after that
        self.repairs = 0
        self._known_absent = False  # checked: no table of ours, and none wanted
        self.last_error: str | None = None

    async def sync(self, pools: Iterable[Pool]) -> None:
        """Make the table match ``pools``; repair it if it changed behind our back."""
        want = ruleset(pools)
        if want is None and self.applied is None and self._known_absent:
            return  # no pool asks for NAT and the table is gone: no nft process per resync
        try:
            listing = await self._list()
            if want == self.applied and listing == self._listing:
                self._known_absent = want is None and listing is None
                return
            if want == self.applied and self.applied is not None:
                self.repairs += 1
                log.warning("event=nat-table-repaired table=%s", TABLE)
            if want is None:
                if listing is not None:
                    await self._nft(f"delete table inet {TABLE}\n")
                    log.info("event=nat-table-removed table=%s", TABLE)
            else:
                # One transaction: make sure the table exists, drop it, define it afresh.
                script = f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n{want}"
                await self._nft(script)
                log.info("event=nat-table-applied table=%s", TABLE)
            self.applied = want
            self._listing = await self._list()
            self._known_absent = want is None and self._listing is None
            self.last_error = None
        except (NftError, OSError, TimeoutError) as exc:
            self.last_error = str(exc)
            self.applied = self._listing = None  # unknown: the next pass re-applies
            self._known_absent = False
            log.warning("event=nat-table-failed error=%s", exc)

    async def _list(self) -> str | None:
        try:
            return await self._nft(None, "list", "table", "inet", TABLE)
        except NftError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise

    async def _nft(self, script: str | None, *args: str) -> str:
        argv = ["nft", *args] if script is None else ["nft", "-f", "-"]
        return await run_command(argv, netns=self.netns, stdin=script, timeout=NFT_TIMEOUT)

    def snapshot(self) -> dict[str, object]:
        return {
            "table": f"inet {TABLE}",
            "present": self.applied is not None,
            "repairs": self.repairs,
            "lastError": self.last_error,
        }
