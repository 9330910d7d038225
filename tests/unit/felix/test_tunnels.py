"""felix.tunnels: the VTEP MACs and how a VXLAN device's own address is converged.

The address bookkeeping runs here against an in-memory device (a pure unit); the same path
against real devices is tests/integration/test_felix_v6.py and test_felix_routes.py.
"""

from __future__ import annotations

from felix.kernel.netlink import LinkInfo
from felix.tunnels import _converge_link, vtep_mac


def test_vtep_macs_are_stable_unicast_local_and_differ_per_family() -> None:
    v4, v6 = vtep_mac("node-a"), vtep_mac("node-a", 6)
    assert v4 == vtep_mac("node-a", 4) == vtep_mac("node-a")
    assert v6 == vtep_mac("node-a", 6)
    assert v4 != v6 and vtep_mac("node-b", 6) != v6
    for mac in (v4, v6):
        first = int(mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
        assert len(mac.split(":")) == 6


class Device:
    """One link's addresses and settings, as much of Netlink as _converge_link uses."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses_: list[str] = list(addresses)
        self.nodad: list[str] = []
        self.changes: list[dict[str, object]] = []

    async def addresses(self, name: str) -> list[str]:
        return list(self.addresses_)

    async def delete_address(self, name: str, cidr: str) -> None:
        self.addresses_.remove(cidr)

    async def add_address(self, name: str, cidr: str, *, nodad: bool = False) -> None:
        self.addresses_.append(cidr)
        if nodad:
            self.nodad.append(cidr)

    async def set_link(self, name: str, **changes: object) -> None:
        self.changes.append(changes)


async def test_v6_vtep_address_is_a_128_without_dad_and_link_local_stays() -> None:
    dev = Device(["fe80::1/64", "fd00:10:0:9::/128", "10.245.1.0/32"])
    link = LinkInfo(7, "vxlan-v6.podbgp", "vxlan", False, 1500, "6a:00:00:00:00:01", None)
    await _converge_link(
        dev,
        link,
        mtu=1430,
        address="fd00:10:0:1::",
        mac="6a:00:00:00:00:01",  # type: ignore[arg-type]
    )
    # The stale v6 VTEP address goes; the link-local one and other families are not felix's.
    assert sorted(dev.addresses_) == ["10.245.1.0/32", "fd00:10:0:1::/128", "fe80::1/64"]
    assert dev.nodad == ["fd00:10:0:1::/128"]
    assert dev.changes == [{"mtu": 1430}, {"up": True}]


async def test_v4_vtep_address_is_a_32_and_other_families_stay() -> None:
    dev = Device(["10.245.9.0/32", "fd00:10:0:1::/128"])
    link = LinkInfo(7, "vxlan.podbgp", "vxlan", True, 1450, "66:00:00:00:00:01", None)
    await _converge_link(dev, link, mtu=1450, address="10.245.1.0")  # type: ignore[arg-type]
    assert sorted(dev.addresses_) == ["10.245.1.0/32", "fd00:10:0:1::/128"]
    assert dev.nodad == [] and dev.changes == []
