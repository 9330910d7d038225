"""Per-device settings felix makes without pyroute2: raw rtnetlink requests and a tunnel ioctl.

* ``net.ipv4.conf.<dev>.*`` by RTM_SETLINK (``IFLA_AF_SPEC`` → ``AF_INET`` → ``IFLA_INET_CONF``)
  and ``net.ipv4.neigh.<dev>.proxy_delay`` by RTM_SETNEIGHTBL: the values ``/proc/sys`` holds,
  set with only CAP_NET_ADMIN in the namespace, so they work in a container, where ``/proc/sys``
  is mounted read-only;
* path-MTU discovery of an IPIP device (the DF bit of its outer header template) by the tunnel
  ioctls SIOCGETTUNNEL / SIOCCHGTUNNEL, as ``ip tunnel change`` does: the kernel refuses netlink
  changes to the fallback device ``tunl0``.

Message building and blocking I/O on a socket the caller opened in the right namespace
(felix.kernel.netlink, in a worker thread where it waits); errors come back as ``OSError``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
from collections.abc import Mapping

from felix.kernel.batch import NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, NLMSGERR, NLMSGHDR, attr

# rtnetlink constants for the per-device settings (linux/rtnetlink.h, if_link.h, neighbour.h).
RTM_SETLINK = 19
RTM_SETNEIGHTBL = 67
IFLA_AF_SPEC = 26
IFLA_INET_CONF = 1
NDTA_NAME = 1
NDTA_PARMS = 6
NDTPA_IFINDEX = 1
NDTPA_PROXY_DELAY = 13
# linux/ip.h IPV4_DEVCONF_*: the index of each net.ipv4.conf.<dev> setting.
IPV4_DEVCONF = {"forwarding": 1, "proxy_arp": 3, "rp_filter": 8, "arp_ignore": 20}
# linux/if_tunnel.h: SIOCDEVPRIVATE + 0 / + 3; struct ip_tunnel_parm is name[16], link, i_flags,
# o_flags, i_key, o_key, then struct iphdr (frag_off at offset 6 of the header).
SIOCGETTUNNEL = 0x89F0
SIOCCHGTUNNEL = 0x89F3
_TUNNEL_PARM_SIZE = 16 + 4 + 2 + 2 + 4 + 4 + 20
_FRAG_OFF_AT = 32 + 6
IP_DF = 0x4000


def ipv4_conf(index: int, settings: Mapping[str, int]) -> tuple[int, bytes]:
    """The request setting ``net.ipv4.conf.<dev>.<key>`` (keys of :data:`IPV4_DEVCONF`) on the
    device ``index``: (message type, body)."""
    conf = b"".join(
        attr(IPV4_DEVCONF[key], struct.pack("=I", value)) for key, value in settings.items()
    )
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    return RTM_SETLINK, body + attr(IFLA_AF_SPEC, attr(socket.AF_INET, attr(IFLA_INET_CONF, conf)))


def proxy_delay(index: int, milliseconds: int) -> tuple[int, bytes]:
    """The request setting ``net.ipv4.neigh.<dev>.proxy_delay``: (message type, body)."""
    parms = attr(NDTPA_IFINDEX, struct.pack("=I", index))
    parms += attr(NDTPA_PROXY_DELAY, struct.pack("=Q", milliseconds))
    body = struct.pack("=Bxxx", socket.AF_INET) + attr(NDTA_NAME, b"arp_cache\0")
    return RTM_SETNEIGHTBL, body + attr(NDTA_PARMS, parms)


def request(sock: socket.socket, msg_type: int, body: bytes) -> None:
    """Send one acknowledged request on a bound rtnetlink socket and wait for the answer; a
    refusal raises ``OSError`` with the kernel's errno."""
    header = NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    sock.sendall(header + body)
    reply = sock.recv(65536)
    _length, reply_type, _flags, _seq, _pid = NLMSGHDR.unpack_from(reply)
    if reply_type == NLMSG_ERROR:  # code 0 is the acknowledgement
        (code,) = NLMSGERR.unpack_from(reply, NLMSGHDR.size)
        if code:
            raise OSError(-code, errno.errorcode.get(-code, "netlink error"))


def ipip_df(sock: socket.socket, name: str, enable: bool | None = None) -> bool:
    """Read (and with ``enable`` set, change) path-MTU discovery of the IPIP device ``name``
    through an ``AF_INET`` datagram socket; whether it is on now."""
    parm = ctypes.create_string_buffer(_TUNNEL_PARM_SIZE)
    ifreq = struct.pack("16sP16x", name.encode(), ctypes.addressof(parm))
    fcntl.ioctl(sock.fileno(), SIOCGETTUNNEL, ifreq)
    (frag_off,) = struct.unpack_from("!H", parm.raw, _FRAG_OFF_AT)
    if enable is not None and bool(frag_off & IP_DF) != enable:
        frag_off = frag_off | IP_DF if enable else frag_off & ~IP_DF
        struct.pack_into("!H", parm, _FRAG_OFF_AT, frag_off)
        fcntl.ioctl(sock.fileno(), SIOCCHGTUNNEL, ifreq)
    return bool(frag_off & IP_DF)
