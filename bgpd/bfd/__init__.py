"""Bidirectional Forwarding Detection: notice a dead peer in well under a second.

Implements asynchronous-mode BFD, RFC 5880 (base protocol), over UDP for single hop (RFC 5881,
port 3784, TTL 255 sent and checked) and multihop (RFC 5883, port 4784) sessions.

``packet`` is the pure codec of the BFD Control packet (RFC 5880 §4.1) with the reception checks
of §6.8.6; ``session`` is the sans-IO §6.2 state machine with explicit time (packets in, packets
and deadlines out); ``udp`` is the asyncio driver that owns the sockets, the timers and the
demultiplexing, and can run on a thread of its own so a busy BGP event loop cannot starve it.
Our BFD shares fate with the control plane, so the C bit is always 0 (RFC 5882: a BFD Down
takes the BGP session down at once and graceful restart does not keep the routes).
"""

from bgpd.bfd.packet import ControlPacket, Diag, PacketError, Rule, State, decode, encode
from bgpd.bfd.session import BfdSession, Output, SessionConfig, StateChange

__all__ = [
    "BfdSession",
    "ControlPacket",
    "Diag",
    "Output",
    "PacketError",
    "Rule",
    "SessionConfig",
    "State",
    "StateChange",
    "decode",
    "encode",
]
