"""prefixAdvertisements → the attributes a node's blocks are originated with (pure)."""

from __future__ import annotations

from podbgp.node.advertise import block_attributes


def test_communities_of_every_covering_advertisement_once_in_order() -> None:
    ads = [
        ("10.244.0.0/16", ("64512:300", "64512:3:1")),
        ("10.244.1.0/24", ("64512:300", "65000:7")),
        ("10.99.0.0/16", ("64512:999",)),
        ("2001:db8::/32", ("64512:6",)),
    ]
    attrs = block_attributes("10.244.1.0/24", ads)
    assert attrs.communities == ((64512 << 16) | 300, (65000 << 16) | 7)
    assert attrs.large_communities == ((64512, 3, 1),)
    assert attrs.as_path == () and attrs.local_pref == 100
    other = block_attributes("10.244.2.0/24", ads)
    assert other.communities == ((64512 << 16) | 300,)
    plain = block_attributes("10.1.0.0/24", ads)
    assert plain.communities == () and plain.large_communities == ()
