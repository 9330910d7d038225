"""A bounds-checked big-endian reader: truncated input becomes a ``BGPError``, never ``IndexError``.

Every field read from the wire outside the two hot loops (NLRI and attribute framing, which check
their bounds inline for speed) goes through :class:`Reader`. The caller chooses which NOTIFICATION
code/subcode and RFC 7606 action a truncation maps to, because the same short read means
"Bad Message Length" in a header, "Malformed Attribute List" in an UPDATE and "Unspecific" in an
OPEN optional parameter (RFC 4271 §6).
"""

from __future__ import annotations

import struct

from bgpd.codec.errors import BGPError, ErrorAction

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Reader:
    """Cursor over ``data[start:end]``; each read advances it or raises the configured error."""

    __slots__ = ("_action", "_code", "_data", "_end", "_pos", "_subcode", "_what")

    def __init__(
        self,
        data: bytes,
        code: int,
        subcode: int,
        *,
        start: int = 0,
        end: int | None = None,
        action: ErrorAction = ErrorAction.SESSION_RESET,
        what: str = "field",
    ) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else min(end, len(data))
        self._code = code
        self._subcode = subcode
        self._action = action
        self._what = what

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._end

    def error(self, reason: str, data: bytes = b"") -> BGPError:
        """The error this reader raises, for callers that find a semantic problem themselves."""
        return BGPError(self._code, self._subcode, data, self._action, reason)

    def _need(self, count: int) -> int:
        pos = self._pos
        if count < 0 or pos + count > self._end:
            raise self.error(
                f"truncated {self._what}: need {count} octets at offset {pos}, "
                f"{self._end - pos} left"
            )
        self._pos = pos + count
        return pos

    def u8(self) -> int:
        pos = self._need(1)
        return self._data[pos]

    def u16(self) -> int:
        pos = self._need(2)
        value: int = _U16.unpack_from(self._data, pos)[0]
        return value

    def u32(self) -> int:
        pos = self._need(4)
        value: int = _U32.unpack_from(self._data, pos)[0]
        return value

    def take(self, count: int) -> bytes:
        pos = self._need(count)
        return self._data[pos : pos + count]

    def rest(self) -> bytes:
        """Everything up to the end; never fails."""
        pos = self._pos
        self._pos = self._end
        return self._data[pos : self._end]

    def sub(self, count: int, what: str | None = None) -> Reader:
        """A reader over the next ``count`` octets (same error mapping); advances past them."""
        pos = self._need(count)
        return Reader(
            self._data,
            self._code,
            self._subcode,
            start=pos,
            end=pos + count,
            action=self._action,
            what=what or self._what,
        )
