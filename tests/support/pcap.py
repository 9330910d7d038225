"""BGP messages on the wire, in order and timed: ``tcpdump`` in a namespace, then a pcap reader.

Owns: one ``tcpdump -U -w`` process capturing TCP port 179 on every interface of a namespace
(:class:`BgpCapture`), and a reader for the classic pcap format it writes (link types Ethernet,
Linux cooked v1 and v2; IPv4 and IPv6; TCP) that rebuilds each direction's byte stream by
sequence number and cuts it into BGP messages (RFC 4271 §4.1 header), each stamped with the
capture time of the segment it starts in. It parses nothing inside a message beyond its type;
the tests read what they need. Independent of ``bgpd.codec`` on purpose: it checks what podbgp
and its peers really sent.
"""

from __future__ import annotations

import ipaddress
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.netns import NetnsFactory, wait_until

LINK_HEADER = {1: 14, 113: 16, 276: 20}  # Ethernet, Linux cooked (SLL), SLL2
HEADER_LEN = 19
UPDATE = 2


@dataclass(frozen=True)
class BgpMessage:
    at: float  # capture time (seconds since the epoch)
    src: str
    dst: str
    type: int  # 1 OPEN, 2 UPDATE, 3 NOTIFICATION, 4 KEEPALIVE
    body: bytes  # after the 19-octet header

    @property
    def ipv4_end_of_rib(self) -> bool:
        """RFC 4724 §2: the IPv4 unicast End-of-RIB is an UPDATE with nothing in it."""
        return self.type == UPDATE and self.body == b"\x00\x00\x00\x00"


def _segments(data: bytes) -> list[tuple[float, str, str, int, int, bytes]]:
    """(time, src, dst, seq, flags, payload) of every TCP segment in a pcap file."""
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    link = struct.unpack(endian + "I", data[20:24])[0]
    skip = LINK_HEADER[link]
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[pos : pos + 16])
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        at = sec + frac / (1e9 if nano else 1e6)
        ip = frame[skip:]
        if not ip:
            continue
        if ip[0] >> 4 == 4:
            ihl = (ip[0] & 0x0F) * 4
            proto, total = ip[9], struct.unpack("!H", ip[2:4])[0]
            src, dst = ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20])
            tcp, end = ip[ihl:total], total - ihl
        elif ip[0] >> 4 == 6:
            proto, length = ip[6], struct.unpack("!H", ip[4:6])[0]
            src, dst = ipaddress.ip_address(ip[8:24]), ipaddress.ip_address(ip[24:40])
            tcp, end = ip[40 : 40 + length], length
        else:
            continue
        if proto != 6 or len(tcp) < 20:
            continue
        seq = struct.unpack("!I", tcp[4:8])[0]
        offset, flags = (tcp[12] >> 4) * 4, tcp[13]
        out.append((at, str(src), str(dst), seq, flags, bytes(tcp[offset:end])))
    return out


def bgp_messages(path: Path) -> list[BgpMessage]:
    """Every BGP message in the capture at ``path``, in capture order of its first octet. A
    direction's stream restarts with each SYN (a new connection)."""
    streams: dict[tuple[str, str], tuple[int, bytearray, list[tuple[int, float]]]] = {}
    done: list[tuple[tuple[str, str], bytearray, list[tuple[int, float]]]] = []
    for at, src, dst, seq, flags, payload in _segments(path.read_bytes()):
        key = (src, dst)
        if flags & 0x02:  # SYN: a new stream starts after it
            if key in streams:
                done.append((key, streams[key][1], streams[key][2]))
            streams[key] = (seq + 1, bytearray(), [])
            continue
        if key not in streams or not payload:
            continue
        base, buf, starts = streams[key]
        offset = (seq - base) % 2**32
        if offset != len(buf):  # a retransmission or out of order: keep the first copy only
            if offset < len(buf):
                continue
            raise ValueError(f"gap in the TCP stream {src} -> {dst} at offset {len(buf)}")
        starts.append((len(buf), at))
        buf.extend(payload)
    done += [(key, buf, starts) for key, (_b, buf, starts) in streams.items()]
    messages = []
    for (src, dst), buf, starts in done:
        pos = 0
        while pos + HEADER_LEN <= len(buf):
            length = struct.unpack("!H", buf[pos + 16 : pos + 18])[0]
            if length < HEADER_LEN or pos + length > len(buf):
                break
            at = max(t for start, t in starts if start <= pos)
            messages.append(
                BgpMessage(at, src, dst, buf[pos + 18], bytes(buf[pos + 19 : pos + length]))
            )
            pos += length
    return sorted(messages, key=lambda m: m.at)


class BgpCapture:
    """``tcpdump`` on every interface of ``ns``, TCP port 179, written to ``path``."""

    def __init__(self, factory: NetnsFactory, ns: str, path: Path) -> None:
        self.factory, self.ns, self.path = factory, ns, path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BgpCapture:
        log = self.path.with_suffix(".log")
        argv = ["tcpdump", "-i", "any", "-U", "-n", "-w", str(self.path), "tcp", "port", "179"]
        self.proc = self.factory.popen(self.ns, argv, log)
        wait_until(lambda: "listening on" in log.read_text(errors="replace"), 10)
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            time.sleep(0.3)  # the last segments reach the file (-U: packet-buffered)
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(10)

    def messages(self) -> list[BgpMessage]:
        return bgp_messages(self.path)
