"""The codec's view of a session: what both OPENs negotiated, as far as the wire depends on it.

RFC 6793 (4-octet AS numbers in AS_PATH/AGGREGATOR), RFC 8654 (extended message size), RFC 7911
(ADD-PATH path identifiers per family), and whether the session is eBGP (RFC 7606 treats some
attributes differently on eBGP). Built once per Established session from the negotiation result.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_SIZE = 4096  # RFC 4271 §4.1
MAX_EXTENDED_MESSAGE_SIZE = 65535  # RFC 8654


@dataclass(frozen=True, slots=True)
class CodecContext:
    """What the session negotiated, as far as the wire format depends on it."""

    four_octet_as: bool = True  # RFC 6793 negotiated
    max_message_size: int = MAX_MESSAGE_SIZE  # 65535 when RFC 8654 extended message negotiated
    ebgp: bool = False  # affects RFC 7606 handling (e.g. LOCAL_PREF from eBGP is discarded)
    # families where NLRI carry 4-octet path ids inbound / outbound (RFC 7911)
    add_path_receive: frozenset[tuple[int, int]] = frozenset()
    add_path_send: frozenset[tuple[int, int]] = frozenset()

    @classmethod
    def negotiated(
        cls,
        *,
        four_octet_as: bool,
        extended_message: bool,
        ebgp: bool,
        add_path_receive: frozenset[tuple[int, int]],
        add_path_send: frozenset[tuple[int, int]],
    ) -> CodecContext:
        """The context of an Established session from what its OPENs agreed on."""
        return cls(
            four_octet_as=four_octet_as,
            max_message_size=MAX_EXTENDED_MESSAGE_SIZE if extended_message else MAX_MESSAGE_SIZE,
            ebgp=ebgp,
            add_path_receive=add_path_receive,
            add_path_send=add_path_send,
        )


DEFAULT_CONTEXT = CodecContext()
