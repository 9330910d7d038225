"""A peer as the speaker runs it (bgpd.peer): the capabilities its OPEN carries, and the spec a
peer range gives a dynamic neighbour. The OPEN on the wire is checked against BIRD and GoBGP in
tests/integration/test_interop_bird.py and test_interop_gobgp.py."""

from __future__ import annotations

from bgpd.codec.types import (
    AddPath,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    LongLivedGracefulRestart,
)
from bgpd.gr import NOTIFICATION, RESTART_STATE
from bgpd.peer import fsm_config
from bgpd.peerspec import PeerRange, PeerSpec, SpeakerConfig

CONFIG = SpeakerConfig(asn=64512, router_id="192.0.2.1", restart_time=120)
SPEC = PeerSpec(address="192.0.2.2", asn=64513)


def cap(caps: tuple[object, ...], kind: type) -> object | None:
    found = [c for c in caps if isinstance(c, kind)]
    assert len(found) <= 1
    return found[0] if found else None


def test_graceful_restart_sets_n_always_and_r_only_while_restarting() -> None:
    normal = cap(fsm_config(SPEC, CONFIG, restarting=False).capabilities, GracefulRestart)
    restarting = cap(fsm_config(SPEC, CONFIG, restarting=True).capabilities, GracefulRestart)
    assert isinstance(normal, GracefulRestart) and isinstance(restarting, GracefulRestart)
    assert normal.restart_flags == NOTIFICATION and normal.restart_time == 120
    assert restarting.restart_flags == NOTIFICATION | RESTART_STATE
    assert {flags for _afi, _safi, flags in normal.families} == {0x80}


def test_restart_time_per_peer_capped_to_twelve_bits() -> None:
    spec = PeerSpec(address="192.0.2.2", asn=64513, restart_time=10_000)
    gr = cap(fsm_config(spec, CONFIG, restarting=False).capabilities, GracefulRestart)
    assert isinstance(gr, GracefulRestart) and gr.restart_time == 4095


def test_long_lived_stale_time_from_the_peer_else_the_speaker_and_zero_is_off() -> None:
    default = cap(fsm_config(SPEC, CONFIG, restarting=False).capabilities, LongLivedGracefulRestart)
    assert isinstance(default, LongLivedGracefulRestart)
    assert {time for *_x, time in default.families} == {3600}
    spec = PeerSpec(address="192.0.2.2", asn=64513, long_lived_stale_time=0)
    assert (
        cap(fsm_config(spec, CONFIG, restarting=False).capabilities, LongLivedGracefulRestart)
        is None
    )


def test_without_graceful_restart_no_gr_or_llgr_capability() -> None:
    config = SpeakerConfig(asn=64512, router_id="192.0.2.1", graceful_restart=False)
    caps = fsm_config(SPEC, config, restarting=True).capabilities
    assert cap(caps, GracefulRestart) is None and cap(caps, LongLivedGracefulRestart) is None
    assert cap(caps, AddPath) is not None


def test_local_asn_and_extended_next_hop_follow_the_spec() -> None:
    spec = PeerSpec(address="2001:db8::2", asn=64513, local_asn=65000, extended_next_hop=True)
    config = fsm_config(spec, CONFIG, restarting=False)
    assert config.local_asn == 65000 and config.peer_asn == 64513
    assert cap(config.capabilities, FourOctetAs) == FourOctetAs(65000)
    assert cap(config.capabilities, ExtendedNextHop) is not None
    assert cap(fsm_config(SPEC, CONFIG, restarting=False).capabilities, ExtendedNextHop) is None


def test_a_peer_range_gives_a_passive_dynamic_neighbour() -> None:
    rng = PeerRange(prefix="10.0.0.0/24", asn=64520, rr_client=True, password="s", hold_time=30)
    spec = rng.spec_for("10.0.0.7")
    assert spec.passive and spec.asn == 64520 and spec.password == "s" and spec.hold_time == 30
    assert spec.peer_type == "rr-client" and spec.description == "from peer range 10.0.0.0/24"
    assert PeerRange(prefix="10.0.0.0/24", asn=1).spec_for("10.0.0.8").peer_type == "dynamic"
