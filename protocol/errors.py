"""Error codes shared by server and client, and the protocol layer's own exceptions.

Every failure that crosses the wire is an ERROR frame carrying one of the `ErrorCode`
strings below (or, for a single sub-request, the same string in its outcome). The codes
of SPEC section 3 are business outcomes; the others belong to the transport.

Exception tree of this package (the client has its own, public one in `cc_client`)::

    ProtocolError            code: ErrorCode
    +-- FrameTooLarge        a header announced more than the size limit
    +-- MalformedFrame       a header that cannot be valid (reserved bits set, ...)
    +-- InvalidMessage       a body whose fields do not validate (INVALID_REQUEST, or a
        |                    size cap's own code)
        +-- BadBody          a body no valid peer sends: not one msgpack map with string
                             keys, or an unknown message type (PROTOCOL_ERROR; the
                             connection closes)
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

E = TypeVar("E", bound=type[StrEnum])


def unique_codes(cls: E) -> E:
    """Refuse, at import, a code table where two names share a value (an Enum would
    silently make the second an alias of the first) or a name differs from its value."""
    seen: dict[str, str] = {}
    for name, member in cls.__members__.items():
        if member.name != name or str(member.value) in seen:
            first = seen.get(str(member.value), member.name)
            raise ValueError(f"{cls.__name__}: {name} repeats the code {member.value!r} "
                             f"of {first}")
        if str(member.value) != name:
            raise ValueError(f"{cls.__name__}: {name} has the value {member.value!r}, "
                             "not its own name")
        seen[str(member.value)] = name
    return cls


@unique_codes
class ErrorCode(StrEnum):
    """Every error code that may appear on the wire."""

    # business outcomes (SPEC section 3); whole container or one sub-request
    SESSION_EXISTS = "SESSION_EXISTS"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    DUPLICATE_RESERVATION = "DUPLICATE_RESERVATION"
    RESERVATION_NOT_FOUND = "RESERVATION_NOT_FOUND"
    CREDIT_LIMIT_REACHED = "CREDIT_LIMIT_REACHED"
    UNKNOWN_CHARGEABLE_ITEM = "UNKNOWN_CHARGEABLE_ITEM"
    INVALID_REQUEST = "INVALID_REQUEST"
    USER_UNKNOWN = "USER_UNKNOWN"
    USER_EXISTS = "USER_EXISTS"
    UNKNOWN_PLAN = "UNKNOWN_PLAN"
    FORBIDDEN = "FORBIDDEN"
    OPERATION_ID_REUSED = "OPERATION_ID_REUSED"
    # connection and transport
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    HANDSHAKE_REQUIRED = "HANDSHAKE_REQUIRED"
    PROTOCOL_ERROR = "PROTOCOL_ERROR"
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    CONTAINER_TOO_LARGE = "CONTAINER_TOO_LARGE"
    STRING_TOO_LONG = "STRING_TOO_LONG"
    TOO_MANY_PROPERTIES = "TOO_MANY_PROPERTIES"
    EXTERNAL_DATA_TOO_LARGE = "EXTERNAL_DATA_TOO_LARGE"
    TOO_MANY_NOTIFICATIONS = "TOO_MANY_NOTIFICATIONS"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    HANDSHAKE_TIMEOUT = "HANDSHAKE_TIMEOUT"
    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    SERVER_ERROR = "SERVER_ERROR"


class RetryWhere(StrEnum):
    """Where a refused request may be sent again (see `RETRYABLE`)."""

    SAME_CONNECTION = "same connection"   # refused unapplied for load: again, after a pause
    NEW_CONNECTION = "new connection"     # this connection is going away: on another one


#: The single table of codes after which the same request (same bytes, same operation id)
#: is sent again, and where. Every other code is final. A refused handshake
#: (TOO_MANY_CONNECTIONS, ...) is retried on a new connection, possibly at another address.
RETRYABLE: Mapping[str, RetryWhere] = MappingProxyType({
    ErrorCode.TOO_MANY_REQUESTS: RetryWhere.SAME_CONNECTION,
    ErrorCode.SHUTTING_DOWN: RetryWhere.NEW_CONNECTION,
    ErrorCode.TOO_MANY_CONNECTIONS: RetryWhere.NEW_CONNECTION,
    ErrorCode.HANDSHAKE_TIMEOUT: RetryWhere.NEW_CONNECTION,
})

#: Characters of an ERROR frame's message: a peer's input is never echoed whole.
MAX_ERROR_TEXT = 500


#: Codes that say a configured limit (PROTOCOL.md section 5) was exceeded.
LIMIT_CODES = frozenset({
    ErrorCode.FRAME_TOO_LARGE, ErrorCode.CONTAINER_TOO_LARGE, ErrorCode.STRING_TOO_LONG,
    ErrorCode.TOO_MANY_PROPERTIES, ErrorCode.EXTERNAL_DATA_TOO_LARGE,
    ErrorCode.TOO_MANY_NOTIFICATIONS, ErrorCode.TOO_MANY_REQUESTS,
    ErrorCode.TOO_MANY_CONNECTIONS, ErrorCode.HANDSHAKE_TIMEOUT, ErrorCode.IDLE_TIMEOUT})


class ProtocolError(Exception):
    """Raised by the sans-IO core for bytes that break the protocol."""

    code: ErrorCode = ErrorCode.PROTOCOL_ERROR

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        """The human-readable text."""
        return str(self.args[0]) if self.args else ""


class FrameTooLarge(ProtocolError):
    """A frame header announced a body larger than the negotiated limit."""

    code = ErrorCode.FRAME_TOO_LARGE


class MalformedFrame(ProtocolError):
    """A frame header that no valid peer sends."""

    code = ErrorCode.PROTOCOL_ERROR


class InvalidMessage(ProtocolError):
    """A frame body that does not decode, or a field that fails validation."""

    code = ErrorCode.INVALID_REQUEST
    #: (user, op) of an EXECUTE that was read as a map with a valid user and op
    operation: tuple[str, bytes] | None = None


class BadBody(InvalidMessage):
    """A frame body no valid peer sends (the connection is closed after the ERROR)."""

    code = ErrorCode.PROTOCOL_ERROR
