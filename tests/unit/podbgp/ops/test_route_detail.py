"""Every attribute of a path in the API's words (podbgp.ops.route_detail)."""

from __future__ import annotations

from bgpd.codec.types import Aggregator, PathAttributes, UnknownAttribute
from podbgp.ops.route_detail import attributes_view, extended_community_text


def test_extended_communities_as_bird_names_them() -> None:
    assert extended_community_text(0x0002FDE800000007) == "rt:65000:7"  # 2-octet AS
    assert extended_community_text(0x0003FDE800000007) == "ro:65000:7"
    assert extended_community_text(0x020200010000_0005) == "rt:65536:5"  # 4-octet AS
    assert extended_community_text(0x030C000000000008) == "0x030c000000000008"  # other: hex


def test_every_attribute_is_shown() -> None:
    attrs = PathAttributes(
        as_path=((2, (65001, 65002)), (1, (7, 8))),
        next_hop="10.0.0.1",
        atomic_aggregate=True,
        aggregator=Aggregator(65001, "10.0.0.9"),
        communities=((65000 << 16) | 1,),
        originator_id="192.0.2.1",
        cluster_list=("1.0.0.1",),
        large_communities=((1, 2, 3),),
        extended_communities=(0x0002FDE800000007,),
        unknown=(UnknownAttribute(0xC0, 99, b"\xab"),),
    )
    view = attributes_view(attrs)
    assert view["asPath"] == "65001 65002 {7 8}"
    assert view["atomicAggregate"] is True and view["aggregator"] == "65001 10.0.0.9"
    assert view["communities"] == ["65000:1"] and view["largeCommunities"] == ["1:2:3"]
    assert view["originatorId"] == "192.0.2.1" and view["clusterList"] == ["1.0.0.1"]
    assert view["extendedCommunities"] == ["rt:65000:7"]
    assert view["unknown"] == [{"code": 99, "flags": 0xC0, "value": "ab"}]
