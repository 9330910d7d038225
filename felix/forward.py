"""Forwarded pod traffic through a host firewall that drops: one iptables chain of felix's own.

A node routes its pods' traffic, so that traffic crosses the netfilter ``forward`` hook. Hosts
often drop there by default (the Docker engine sets the iptables ``filter`` table's ``FORWARD``
policy to DROP; so do many firewalls). In nftables an accept in one base chain does not override
a drop in another base chain on the same hook — every base chain must accept — so the accept has
to go where the drop lives: the iptables ``filter`` ``FORWARD`` chain, of whichever backend the
host uses (legacy xtables or nf_tables; both can be in use at once).

felix owns one chain per family, ``PODBGP-FORWARD``, holding ``-s <pool> -j ACCEPT`` and
``-d <pool> -j ACCEPT`` for every pool of that family, and one jump to it at the top of
``FORWARD``. Which backend gets it (:func:`targets`): every backend whose ``FORWARD`` policy is
DROP; if none drops, the one with the most ``filter`` rules (a tie: the backend the ``iptables``
command uses), so a policy set to DROP later finds the chain in place.

Reconciled like felix.nat's table: the pure desired chain (:func:`chain_rules`), the kernel's
state read with ``iptables-save -t filter`` (:func:`parse`), the difference applied in one
``iptables-restore --noflush`` transaction (:func:`restore_script`), repaired on every full
resync, removed once no pool exists. No other rule or chain is touched. With no pool and the
chain known to be gone, or with no iptables at all, no process is started per resync. A host
without iptables whose forward hook drops (seen through ``nft``) is reported, not crashed on.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field

from felix.command import CommandError, run_command
from felix.plan import Pool

log = logging.getLogger("podbgp.felix.forward")

CHAIN = "PODBGP-FORWARD"
JUMP = f"-A FORWARD -j {CHAIN}"
BACKENDS = ("legacy", "nft")
IPTABLES_TIMEOUT = 10.0
XTABLES_WAIT = "5"  # seconds iptables-restore waits for the lock, inside IPTABLES_TIMEOUT
_FORWARD_DROP = re.compile(r"hook forward .*policy drop", re.IGNORECASE)


def chain_rules(pools: Iterable[Pool], version: int) -> tuple[str, ...]:
    """``PODBGP-FORWARD``'s rules for one family, as ``iptables-save`` prints them.

    Every pool counts, disabled ones too: their addresses may still be in use.
    """
    cidrs = sorted({p.network for p in pools if p.network.version == version})
    rules: list[str] = []
    for net in cidrs:
        rules += [f"-A {CHAIN} -s {net} -j ACCEPT", f"-A {CHAIN} -d {net} -j ACCEPT"]
    return tuple(rules)


@dataclass(frozen=True)
class FilterState:
    """What matters to felix in one backend's ``filter`` table."""

    policy: str | None = None  # FORWARD's policy (None: no filter table)
    forward: tuple[str, ...] = ()  # FORWARD's rules, in order
    chain: tuple[str, ...] | None = None  # our chain's rules (None: no such chain)
    rules: int = 0  # rules in the whole filter table


def parse(save: str) -> FilterState:
    """Read ``iptables-save -t filter`` output."""
    policy: str | None = None
    forward: list[str] = []
    chain: list[str] | None = None
    rules = 0
    for raw in save.splitlines():
        line = raw.strip()
        if line.startswith(":FORWARD "):
            policy = line.split()[1]
        elif line.startswith(f":{CHAIN} "):
            chain = [] if chain is None else chain
        elif line.startswith("-A "):
            rules += 1
            if line.startswith("-A FORWARD "):
                forward.append(line)
            elif line.startswith(f"-A {CHAIN} "):
                chain = [*(chain or []), line]
    return FilterState(policy, tuple(forward), None if chain is None else tuple(chain), rules)


def targets(states: dict[str, FilterState], default: str) -> set[str]:
    """The backends that get the chain: every one whose FORWARD drops, else the busiest."""
    dropping = {name for name, s in states.items() if s.policy in ("DROP", "REJECT")}
    if dropping or not states:
        return dropping
    most = max(s.rules for s in states.values())
    busiest = [name for name, s in states.items() if s.rules == most]
    return {default if default in busiest else busiest[0]}


def restore_script(state: FilterState, want: tuple[str, ...] | None) -> str | None:
    """The ``iptables-restore --noflush`` input taking ``state`` to ``want`` (None: no chain),
    or None when nothing needs doing. Only our chain and our jump are touched."""
    jumps = state.forward.count(JUMP)
    if want is None:
        if state.chain is None and jumps == 0:
            return None
        lines = [f"-D FORWARD -j {CHAIN}"] * jumps
        if state.chain is not None:
            lines += [f"-F {CHAIN}", f"-X {CHAIN}"]
    else:
        if state.chain == want and jumps == 1 and state.forward[0] == JUMP:
            return None
        # Declaring the chain creates it, or flushes it when it exists (--noflush mode).
        lines = [f":{CHAIN} - [0:0]", *want]
        lines += [f"-D FORWARD -j {CHAIN}"] * jumps + [f"-I FORWARD 1 -j {CHAIN}"]
    return "\n".join(["*filter", *lines, "COMMIT"]) + "\n"


def available(version: int) -> dict[str, str]:
    """Backend name -> command prefix (``iptables-nft``, ...) installed on this host."""
    base = "iptables" if version == 4 else "ip6tables"
    found = {name: f"{base}-{name}" for name in BACKENDS if shutil.which(f"{base}-{name}-save")}
    if not found and shutil.which(f"{base}-save"):
        found[default_backend(version)] = base
    return found


def default_backend(version: int) -> str:
    """The backend the plain ``iptables`` command uses (no process: where its link points)."""
    path = shutil.which("iptables" if version == 4 else "ip6tables")
    if path is not None and "legacy" in os.path.basename(os.path.realpath(path)):
        return "legacy"
    return "nft"


def forward_drop(listing: str, version: int) -> str | None:
    """From ``nft list chains``: the problem when a forward-hook base chain of ``version``'s
    family drops by policy (felix, without iptables, cannot accept there), else None."""
    family = "ip" if version == 4 else "ip6"
    table = ""
    for line in listing.splitlines():
        words = line.split()
        if words[:1] == ["table"] and len(words) >= 3:
            table = f"{words[1]} {words[2]}"
        elif _FORWARD_DROP.search(line) and table.split()[:1] in ([family], ["inet"]):
            command = "iptables" if version == 4 else "ip6tables"
            return (
                f"a forward-hook chain in table {table} has policy drop and no {command} "
                "command is installed: pod traffic forwarded through this node is dropped"
            )
    return None


@dataclass
class _Family:
    version: int
    backends: tuple[str, ...] = ()  # where the chain is (as last applied)
    applied: tuple[str, ...] | None = None  # the chain last applied (None: nowhere)
    policy: dict[str, str | None] = field(default_factory=dict)  # backend -> FORWARD policy
    unreadable: dict[str, str] = field(default_factory=dict)  # backend -> why it is not used
    known_absent: bool = False  # checked: no chain of ours anywhere, and none wanted
    checked_missing: tuple[str, ...] | None = None  # pools checked on a host without iptables
    error: str | None = None


class ForwardRules:
    """felix's FORWARD accept chain in one network namespace (``netns`` None: this process's)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.families = {4: _Family(4), 6: _Family(6)}
        self.repairs = 0

    async def sync(self, pools: Iterable[Pool]) -> None:
        """Make the chain match ``pools`` in every family; repair what changed behind our back."""
        pools = tuple(pools)
        for fam in self.families.values():
            want = chain_rules(pools, fam.version) or None
            try:
                await self._sync_family(fam, want)
                if fam.checked_missing is None:
                    fam.error = None
            except (CommandError, OSError, TimeoutError) as exc:
                fam.error = str(exc)
                fam.applied, fam.backends, fam.known_absent = None, (), False
                log.warning("event=forward-chain-failed family=ipv%d error=%s", fam.version, exc)

    async def _sync_family(self, fam: _Family, want: tuple[str, ...] | None) -> None:
        if want is None and fam.applied is None and fam.known_absent:
            return  # no pool of this family and the chain is gone: no process per resync
        commands = available(fam.version)
        if not commands:
            fam.backends, fam.applied, fam.policy, fam.unreadable = (), None, {}, {}
            fam.known_absent = want is None
            if want is None:
                fam.checked_missing, fam.error = None, None
            elif want != fam.checked_missing:  # once per pool set, not a process per resync
                fam.error = await self._missing_iptables(fam.version)
                fam.checked_missing = want
            return
        fam.checked_missing = None
        states: dict[str, FilterState] = {}
        fam.unreadable = {}
        for name, cmd in commands.items():
            try:
                states[name] = parse(await self._run(cmd + "-save", "-t", "filter"))
            except CommandError as exc:
                # A backend this process cannot use (legacy iptables needs a raw socket, so
                # CAP_NET_RAW) holds no drop felix could lift anyway: listed, not fatal.
                fam.unreadable[name] = str(exc)
        if not states:
            raise CommandError("; ".join(fam.unreadable.values()))
        chosen = targets(states, default_backend(fam.version)) if want is not None else set()
        for name, state in states.items():
            script = restore_script(state, want if name in chosen else None)
            if script is None:
                continue
            # -w: wait for the xtables lock another writer (legacy backend) may hold.
            await self._run(commands[name] + "-restore", "--noflush", "-w", XTABLES_WAIT,
                            stdin=script)  # fmt: skip
            if name in chosen and want == fam.applied and name in fam.backends:
                self.repairs += 1  # ours, unchanged, yet the kernel differed: someone touched it
                event = "repaired"
            else:
                event = "applied" if name in chosen else "removed"
            log.log(logging.WARNING if event == "repaired" else logging.INFO,
                    "event=forward-chain-%s family=ipv%d backend=%s",
                    event, fam.version, name)  # fmt: skip
        fam.backends = tuple(sorted(chosen))
        fam.applied = want
        fam.policy = {name: s.policy for name, s in states.items()}
        fam.known_absent = want is None

    async def _missing_iptables(self, version: int) -> str | None:
        """No iptables command: a problem only if something on the forward hook drops."""
        if not shutil.which("nft"):
            return None
        return forward_drop(await self._run("nft", "list", "chains"), version)

    async def _run(self, *argv: str, stdin: str | None = None) -> str:
        return await run_command(argv, netns=self.netns, stdin=stdin, timeout=IPTABLES_TIMEOUT)

    def snapshot(self) -> dict[str, object]:
        return {
            "chain": CHAIN,
            "repairs": self.repairs,
            **{
                f"ipv{fam.version}": {
                    "present": fam.applied is not None,
                    "backends": list(fam.backends),
                    "forwardPolicy": dict(sorted(fam.policy.items())),
                    "unreadableBackends": dict(sorted(fam.unreadable.items())),
                    "lastError": fam.error,
                }
                for fam in self.families.values()
            },
        }
