"""The codec's single error type: a NOTIFICATION code/subcode/data plus an RFC 7606 action.

RFC 4271 §4.5 and §6 define the codes; RFC 7606 §2 defines the revised error handling where most
UPDATE attribute errors are "treat-as-withdraw" or "attribute discard" instead of a session reset.
When several problems are found in one message the strongest action wins (GoBGP does the same).
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    MESSAGE_HEADER = 1
    OPEN_MESSAGE = 2
    UPDATE_MESSAGE = 3
    HOLD_TIMER_EXPIRED = 4
    FSM = 5
    CEASE = 6
    ROUTE_REFRESH = 7


class HeaderSubcode(IntEnum):
    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenSubcode(IntEnum):
    UNSUPPORTED_VERSION = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7
    ROLE_MISMATCH = 11


class UpdateSubcode(IntEnum):
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FsmSubcode(IntEnum):
    UNSPECIFIED = 0
    UNEXPECTED_IN_OPENSENT = 1
    UNEXPECTED_IN_OPENCONFIRM = 2
    UNEXPECTED_IN_ESTABLISHED = 3


class CeaseSubcode(IntEnum):
    MAX_PREFIXES_REACHED = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DECONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION_RESOLUTION = 7
    OUT_OF_RESOURCES = 8
    HARD_RESET = 9
    BFD_DOWN = 10  # RFC 9384


class ErrorAction(IntEnum):
    """RFC 7606 error-handling approaches, ordered weakest to strongest."""

    ATTRIBUTE_DISCARD = 1
    TREAT_AS_WITHDRAW = 2
    SESSION_RESET = 3


class BGPError(Exception):
    """A protocol error found while decoding or validating a message.

    ``action`` says what the session must do; for SESSION_RESET the session sends a NOTIFICATION
    with ``code``/``subcode``/``data`` and closes.
    """

    def __init__(
        self,
        code: int,
        subcode: int = 0,
        data: bytes = b"",
        action: ErrorAction = ErrorAction.SESSION_RESET,
        reason: str = "",
    ) -> None:
        self.code = int(code)
        self.subcode = int(subcode)
        self.data = bytes(data)
        self.action = action
        self.reason = reason or f"BGP error {self.code}/{self.subcode}"
        super().__init__(self.reason)

    def __repr__(self) -> str:
        return (
            f"BGPError(code={self.code}, subcode={self.subcode}, data={self.data.hex()!r}, "
            f"action={self.action.name}, reason={self.reason!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BGPError):
            return NotImplemented
        return (self.code, self.subcode, self.data, self.action) == (
            other.code,
            other.subcode,
            other.data,
            other.action,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.subcode, self.data, self.action))
