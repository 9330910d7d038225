"""The RFC 7606 §7 audit, one row per attribute rule, each naming its section (plus RFC 7607
for AS 0, RFC 4456 §8 for reflection attributes from eBGP, RFC 4760 §7 / RFC 7606 §5.3 for the
MP attributes). Every row is decoded by the real codec and must produce exactly the action
its section prescribes."""

from __future__ import annotations

import pytest

from bgpd.codec.errors import BGPError, ErrorAction
from bgpd.codec.messages import CodecContext, Decoder
from bgpd.codec.types import Update
from tests.unit.bgpd.codec.test_codec_errors import AS_PATH, NEXT_HOP, ORIGIN, P24, h, update

IBGP4 = CodecContext()
IBGP2 = CodecContext(four_octet_as=False)
EBGP4 = CodecContext(ebgp=True)
TAW = ErrorAction.TREAT_AS_WITHDRAW
DISCARD = ErrorAction.ATTRIBUTE_DISCARD
RESET = ErrorAction.SESSION_RESET
AS_PATH2 = "40 02 04 02 01 fde9"  # 2-octet session
BASE = ORIGIN + AS_PATH + NEXT_HOP
BASE2 = ORIGIN + AS_PATH2 + NEXT_HOP

# (rule, attribute section, session, action, UPDATE error subcode)
ROWS = [
    ("7606 §7.1 ORIGIN length", "40 01 02 0000" + AS_PATH + NEXT_HOP, IBGP4, TAW, 5),
    ("7606 §7.1 ORIGIN value", "40 01 01 07" + AS_PATH + NEXT_HOP, IBGP4, TAW, 6),
    ("7606 §7.2 AS_PATH overrun", ORIGIN + "40 02 06 02 02 0000fde9" + NEXT_HOP, IBGP4, TAW, 11),
    ("7606 §7.2 AS_CONFED from eBGP", ORIGIN + "40 02 06 03 01 0000fde9" + NEXT_HOP, EBGP4, TAW,
     11),
    ("7607 §2 AS 0 in AS_PATH", ORIGIN + "40 02 0a 02 02 0000fde9 00000000" + NEXT_HOP, IBGP4,
     TAW, 11),
    ("7607 §2 AS 0 in AS4_PATH", BASE2 + "c0 11 06 02 01 00000000", IBGP2, DISCARD, 11),
    ("7607 §2 AS 0 in AGGREGATOR", BASE + "c0 07 08 00000000 0a000001", IBGP4, DISCARD, 9),
    ("7607 §2 AS 0 in AS4_AGGREGATOR", BASE2 + "c0 12 08 00000000 0a000001", IBGP2, DISCARD,
     9),
    ("7606 §7.3 NEXT_HOP length", ORIGIN + AS_PATH + "40 03 03 0a0000", IBGP4, TAW, 5),
    ("4271 §6.3 NEXT_HOP not a host", ORIGIN + AS_PATH + "40 03 04 ff000001", IBGP4, TAW, 8),
    ("7606 §7.4 MULTI_EXIT_DISC length", BASE + "80 04 05 0000000001", IBGP4, TAW, 5),
    ("7606 §7.5 LOCAL_PREF from eBGP", BASE + "40 05 04 00000064", EBGP4, DISCARD, 9),
    ("7606 §7.5 LOCAL_PREF length", BASE + "40 05 03 000064", IBGP4, TAW, 5),
    ("7606 §7.6 ATOMIC_AGGREGATE length", BASE + "40 06 01 00", IBGP4, DISCARD, 5),
    ("7606 §7.7 AGGREGATOR 4-octet length", BASE + "c0 07 06 fde8 0a000001", IBGP4, DISCARD, 5),
    ("7606 §7.7 AGGREGATOR 2-octet length", BASE2 + "c0 07 08 0000fde8 0a000001", IBGP2,
     DISCARD, 5),
    ("7606 §7.8 COMMUNITIES length", BASE + "c0 08 06 000000010000", IBGP4, TAW, 5),
    ("7606 §7.9 ORIGINATOR_ID length", BASE + "80 09 05 0a00000100", IBGP4, TAW, 5),
    ("4456 §8 ORIGINATOR_ID from eBGP", BASE + "80 09 04 0a000001", EBGP4, DISCARD, 9),
    ("7606 §7.10 CLUSTER_LIST length", BASE + "80 0a 06 0a0000010a00", IBGP4, TAW, 5),
    ("4456 §8 CLUSTER_LIST from eBGP", BASE + "80 0a 04 0a000001", EBGP4, DISCARD, 9),
    ("7606 §7.14 EXTENDED_COMMUNITIES length", BASE + "c0 10 07 00020000fde800", IBGP4, TAW, 5),
    ("7606 §7.14 EXTENDED_COMMUNITIES empty", BASE + "c0 10 00", IBGP4, TAW, 5),
    ("8092 §6 LARGE_COMMUNITY length", BASE + "c0 20 0d" + "00" * 13, IBGP4, TAW, 5),
    ("7606 §3 flags of a known attribute", BASE + "c0 04 04 00000001", IBGP4, TAW, 4),
    ("7606 §3 repeated attribute", BASE + "80 04 04 00000001 80 04 04 00000002", IBGP4, DISCARD,
     1),
    ("7606 §3 d missing well-known", AS_PATH + NEXT_HOP, IBGP4, TAW, 3),
]  # fmt: skip


@pytest.mark.parametrize(
    ("section", "ctx", "action", "subcode"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_attribute_rule(section: str, ctx: CodecContext, action: ErrorAction, subcode: int) -> None:
    decoded = Decoder(ctx).decode(update(section, nlri=P24))
    assert isinstance(decoded, Update)
    errors = [e for e in decoded.errors if isinstance(e, BGPError)]
    assert [(e.code, e.subcode, e.action) for e in errors] == [(3, subcode, action)]
    if action is TAW:
        assert decoded.nlri == () and decoded.withdrawn == (h(P24),)
    else:
        assert decoded.nlri == (h(P24),) and decoded.attributes is not None


MP_ROWS = [
    # RFC 7606 §7.11 / RFC 4760 §7: a next hop length that does not fit its family hides the
    # NLRI, so nothing can be withdrawn reliably: session reset.
    ("7606 §7.11 MP_REACH next hop length", "80 0e 0a 0002 01 05 2001db8000 00 00"),
    ("7606 §5.3 MP_REACH next hop overruns", "80 0e 06 0002 01 10 2001"),
    ("7606 §5.3 MP_REACH prefix overruns", "80 0e 16 0002 01 10" + "20010db8" + "00" * 12
     + "00 40 2001"),
    ("7606 §5.3 MP_UNREACH prefix overruns", "80 0f 05 0002 01 40 20"),
    ("7606 §3 MP_UNREACH repeated", "80 0f 03 0002 01 80 0f 03 0002 01"),
]  # fmt: skip


@pytest.mark.parametrize("section", [r[1] for r in MP_ROWS], ids=[r[0] for r in MP_ROWS])
def test_mp_attribute_errors_reset_the_session(section: str) -> None:
    with pytest.raises(BGPError) as info:
        Decoder(IBGP4).decode(update(ORIGIN + AS_PATH + section))
    assert (info.value.code, info.value.action) == (3, RESET)


def test_extended_communities_round_trip_and_are_kept() -> None:
    decoded = Decoder(IBGP4).decode(update(BASE + "c0 10 08 00020000fde80001", nlri=P24))
    assert isinstance(decoded, Update) and decoded.attributes is not None
    assert decoded.attributes.extended_communities == (0x00020000FDE80001,)
    assert decoded.errors == ()
