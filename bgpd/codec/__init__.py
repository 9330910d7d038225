"""podbgp's pure BGP codec: bytes in, typed dataclasses out, and back. No I/O, no asyncio.

``types`` holds the data model and ``errors`` the single error type; ``messages`` frames,
decodes and encodes whole messages; ``attributes``, ``capabilities`` and ``nlri`` hold the
per-attribute table, the OPEN capabilities and the prefix/MP_REACH codecs; ``reader`` is the
bounds-checked reader that turns truncation into a ``BGPError``.
"""

from bgpd.codec.errors import BGPError, ErrorAction
from bgpd.codec.messages import (
    HEADER_SIZE,
    CodecContext,
    Decoder,
    Framer,
    decode_message,
    encode_end_of_rib,
    encode_message,
    encode_updates,
    encode_withdrawals,
)

__all__ = [
    "HEADER_SIZE",
    "BGPError",
    "CodecContext",
    "Decoder",
    "ErrorAction",
    "Framer",
    "decode_message",
    "encode_end_of_rib",
    "encode_message",
    "encode_updates",
    "encode_withdrawals",
]
