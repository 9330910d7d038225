"""Maximum prefixes per peer (RFC 4486 §4): a warning, then Cease and an optional restart.

Pure: no I/O. :class:`MaxPrefixes` is a peer's setting (``peers[].maxPrefixes`` in the bgpd YAML,
``BGPPeer.spec.maxPrefixes``); :class:`PrefixLimitState` follows one session's counts per address
family (prefixes accepted into the Adj-RIB-In, after import policy, as Junos' ``prefix-limit``
and Cisco's ``maximum-prefix`` count them) and says when to warn and when the limit is passed.
Passing it ends the session with NOTIFICATION Cease / Maximum Number of Prefixes Reached, whose
data is the AFI (2 octets), SAFI (1) and the limit (4) (RFC 4486 §4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bgpd.codec.types import Afi, Safi

DEFAULT_WARNING_THRESHOLD = 75  # percent of the limit


@dataclass(frozen=True, slots=True)
class MaxPrefixes:
    """``limit`` prefixes per family; warn at ``warning_threshold`` percent of it; after the
    Cease, start again after ``restart_after`` seconds (0: stay down until an operator acts)."""

    limit: int
    warning_threshold: int = DEFAULT_WARNING_THRESHOLD
    restart_after: int = 0

    @property
    def warn_at(self) -> int:
        return max(1, -(-self.limit * self.warning_threshold // 100))  # ceiling


def family_name(afi: int) -> str:
    return "IPv4 unicast" if afi == Afi.IPV4 else "IPv6 unicast"


def cease_data(afi: int, limit: int, safi: int = Safi.UNICAST) -> bytes:
    """RFC 4486 §4: AFI, SAFI and the upper bound, as the NOTIFICATION's data."""
    return struct.pack("!HBI", afi, safi, min(limit, 0xFFFFFFFF))


@dataclass(slots=True)
class PrefixLimitState:
    """One peer's progress towards its limit (reset when its session comes up)."""

    setting: MaxPrefixes
    warned: set[int] = field(default_factory=set)  # families past the warning threshold
    reached: str = ""  # why the session was stopped, while it is held down
    times_reached: int = 0

    def check(self, counts: dict[int, int]) -> tuple[list[str], int | None]:
        """Warnings newly due (in words), and the family over its limit, if any."""
        warnings: list[str] = []
        for afi, count in sorted(counts.items()):
            if count > self.setting.limit:
                return warnings, afi
            if count >= self.setting.warn_at:
                if afi not in self.warned:
                    self.warned.add(afi)
                    warnings.append(
                        f"{count} {family_name(afi)} prefixes, {self.setting.warning_threshold}% "
                        f"of the limit {self.setting.limit}"
                    )
            else:
                self.warned.discard(afi)
        return warnings, None

    def trip(self, afi: int, count: int) -> str:
        self.times_reached += 1
        self.warned.clear()
        restart = (
            f"restarting in {self.setting.restart_after}s"
            if self.setting.restart_after
            else "staying down until an operator acts (SIGHUP or a peer change)"
        )
        self.reached = (
            f"maximum prefixes reached: {count} {family_name(afi)} prefixes > limit "
            f"{self.setting.limit}; sent Cease/Maximum Number of Prefixes Reached, {restart}"
        )
        return self.reached
