"""Speaker.set_peer_type: a peer's type is a name; renaming it keeps the session object."""

from __future__ import annotations

from bgpd.speaker import PeerSpec, Speaker, SpeakerConfig


async def test_renaming_a_peer_keeps_its_session() -> None:
    speaker = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.1"))
    spec = PeerSpec(address="192.0.2.2", asn=64512, passive=True, peer_type="mesh")
    peer = speaker.add_peer(spec)
    try:
        speaker.set_peer_type("192.0.2.2", "route-reflector")
        assert speaker.peers["192.0.2.2"] is peer
        assert peer.spec.peer_type == "route-reflector"
        assert peer.spec == PeerSpec(
            address="192.0.2.2", asn=64512, passive=True, peer_type="route-reflector"
        )
    finally:
        await speaker.stop(graceful=True)
