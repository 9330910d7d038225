"""The unnumbered watcher (bgpd.unnumbered.UnnumberedPeers) with a scripted prober: the peer is
added once a neighbour answers, kept through a probe that finds nothing, and moved when another
address answers instead. The probe itself runs for real in tests/integration/test_unnumbered.py
and against BIRD in tests/integration/test_interop_bird_nexthop.py."""

from __future__ import annotations

import asyncio

from bgpd.peerspec import PeerSpec
from bgpd.unnumbered import UnnumberedPeers


class Table:
    def __init__(self) -> None:
        self.peers: dict[str, PeerSpec] = {}
        self.log: list[str] = []

    def add_peer(self, spec: PeerSpec) -> object:
        assert spec.address not in self.peers
        self.peers[spec.address] = spec
        self.log.append(f"+{spec.address}")
        return spec

    def remove_peer(self, address: str) -> None:
        del self.peers[address]
        self.log.append(f"-{address}")


def test_watcher_adds_keeps_and_moves_the_peer() -> None:
    answers = [[], ["fe80::2%eth0"], [], ["fe80::2%eth0"], ["fe80::3%eth0"], ["fe80::3%eth0"]]
    probes: list[tuple[str, float]] = []
    done = asyncio.Event()

    async def prober(interface: str, timeout: float) -> list[str]:
        probes.append((interface, timeout))
        if len(probes) >= len(answers):
            done.set()
        return answers[min(len(probes), len(answers)) - 1]

    async def scenario() -> Table:
        table = Table()
        watcher = UnnumberedPeers(table, prober=prober, probe_timeout=0.5, recheck=0.001)
        watcher.add(PeerSpec(address="", asn=65001, interface="eth0", extended_next_hop=True))
        await asyncio.wait_for(done.wait(), 30)
        assert watcher.addresses == {"eth0": "fe80::3%eth0"}
        watcher.remove("eth0")
        await watcher.close()
        return table

    table = asyncio.run(scenario())
    assert probes[0] == ("eth0", 0.5)
    assert table.log == ["+fe80::2%eth0", "-fe80::2%eth0", "+fe80::3%eth0", "-fe80::3%eth0"]
    assert table.peers == {}


def test_several_neighbours_take_the_lowest_and_probe_errors_retry() -> None:
    calls = 0

    async def prober(interface: str, timeout: float) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(19, "No such device")  # the link is not there yet
        return ["fe80::1%eth0", "fe80::9%eth0"]

    async def scenario() -> Table:
        table = Table()
        watcher = UnnumberedPeers(table, prober=prober, recheck=0.001)
        watcher.add(PeerSpec(address="", asn=65001, interface="eth0"))
        for _ in range(2000):
            if table.peers:
                break
            await asyncio.sleep(0.005)  # the first retry waits its 1 s backoff
        await watcher.close()
        return table

    table = asyncio.run(scenario())
    assert list(table.peers) == ["fe80::1%eth0"]
    assert table.peers["fe80::1%eth0"].interface == "eth0"
