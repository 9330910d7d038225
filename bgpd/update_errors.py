"""What a peer's malformed UPDATEs cost it (RFC 7606), counted for the API, and the semantic
NEXT_HOP check of RFC 4271 §6.3 that needs the session (our own address as next hop).

Pure: the speaker records each UPDATE's errors here; the REST API shows the counts per peer
(UPDATEs treated as withdraw, attributes discarded, NEXT_HOPs ignored) and the last reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.codec.errors import BGPError, ErrorAction


@dataclass(slots=True)
class UpdateErrorStats:
    treat_as_withdraw: int = 0  # UPDATEs whose prefixes were withdrawn instead (RFC 7606 §2)
    attributes_discarded: int = 0  # attributes dropped, the route kept (RFC 7606 §2)
    own_next_hop: int = 0  # routes ignored: their NEXT_HOP is our address (RFC 4271 §6.3)
    last_reason: str = ""

    def record(self, errors: Iterable[object]) -> None:
        withdrawn = False
        for err in errors:
            if not isinstance(err, BGPError):
                continue
            if err.action is ErrorAction.TREAT_AS_WITHDRAW:
                withdrawn = True
            elif err.action is ErrorAction.ATTRIBUTE_DISCARD:
                self.attributes_discarded += 1
            self.last_reason = f"{err.action.name.lower().replace('_', '-')}: {err.reason}"
        if withdrawn:
            self.treat_as_withdraw += 1

    def ignored_next_hop(self, next_hop: str, count: int) -> None:
        self.own_next_hop += count
        self.last_reason = (
            f"ignored {count} route(s): NEXT_HOP {next_hop} is our own address (RFC 4271 §6.3)"
        )
