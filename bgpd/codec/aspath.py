"""AS paths (RFC 4271 §4.3, RFC 6793): their length for the decision, the merge of AS_PATH
with AS4_PATH from a 2-octet speaker, and the AS_PATH/AS4_PATH value encoding. The parsing,
with its RFC 7606 error actions, stays with the attribute table (``attributes``)."""

from __future__ import annotations

import struct

from bgpd.codec.types import AS_TRANS, AsPath, SegmentType

CONFED = frozenset((SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET))
SETS = frozenset((SegmentType.AS_SET, SegmentType.AS_CONFED_SET))
SEGMENT_TYPES = frozenset(int(t) for t in SegmentType)
# AS numbers of one segment (at most 255 of them), 2- and 4-octet, precompiled per count.
AS2 = tuple(struct.Struct(f">{n}H") for n in range(256))
AS4 = tuple(struct.Struct(f">{n}I") for n in range(256))


def path_length(path: AsPath) -> int:
    """AS count for path comparison: an AS_SET counts 1, confederation segments 0."""
    total = 0
    for stype, asns in path:
        if stype == SegmentType.AS_SEQUENCE:
            total += len(asns)
        elif stype == SegmentType.AS_SET:
            total += 1
    return total


def merge_as_paths(as_path: AsPath, as4_path: AsPath) -> AsPath:
    """RFC 6793 §4.2.3: leading ASes of AS_PATH that AS4_PATH lacks, then AS4_PATH."""
    need = path_length(as_path) - path_length(as4_path)
    if need < 0:
        return as_path  # AS4_PATH is longer: ignore it
    lead: list[tuple[int, tuple[int, ...]]] = []
    for stype, asns in as_path:
        if stype in CONFED:
            lead.append((stype, asns))
            continue
        if need == 0:
            break
        if stype == SegmentType.AS_SET:
            lead.append((stype, asns))
            need -= 1
        else:
            taken = asns[:need]
            lead.append((stype, taken))
            need -= len(taken)
    return (*lead, *as4_path)


def has_as0(path: AsPath) -> bool:
    return any(0 in asns for _stype, asns in path)


def encode_as_path_value(path: AsPath, four_octet: bool) -> bytes:
    """AS_PATH/AS4_PATH value; 2-octet form maps ASes above 65535 to AS_TRANS (RFC 6793 §4.2.2)."""
    out: list[bytes] = []
    for stype, asns in path:
        if not four_octet:
            asns = tuple(a if a <= 0xFFFF else AS_TRANS for a in asns)
        if len(asns) > 255 and stype in SETS:
            raise ValueError("an AS_SET cannot be split into segments of 255 ASes")
        for i in range(0, len(asns), 255):  # long sequences become several segments
            chunk = asns[i : i + 255]
            out.append(bytes((stype, len(chunk))))
            out.append((AS4 if four_octet else AS2)[len(chunk)].pack(*chunk))
    return b"".join(out)


def needs_as4(path: AsPath) -> bool:
    return any(a > 0xFFFF for stype, asns in path if stype not in CONFED for a in asns)
