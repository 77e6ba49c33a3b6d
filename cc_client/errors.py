"""The client's exceptions, and the one place where wire error codes become them.

    ChargingError                 code: str, message: str
    +-- CommunicationFailure      closed, message too long, timed out, unreachable
    +-- ServerFailure             the server failed; nothing was applied
    +-- AuthenticationFailed      wrong user or password
    +-- OperationFailure          a business outcome (SPEC section 3)
        +-- SessionNotFound, SessionExists, ReservationNotFound, DuplicateReservation,
        +-- CreditLimitReached, UserUnknown, UserExists, UnknownChargeableItem,
        +-- InvalidRequest, Forbidden, OperationIdReused
        +-- LimitExceeded         a server limit (container size, in-flight requests, ...)
"""

from __future__ import annotations

from protocol.errors import ErrorCode


class ChargingError(Exception):
    """Root of every error the client raises; `code` is the wire error code."""

    default_code = "CHARGING_ERROR"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        self.code: str = code or self.default_code
        self.message = message or self.code
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class CommunicationFailure(ChargingError):
    """No answer: connection closed, timed out, unreachable, or message too long."""

    default_code = "COMMUNICATION_FAILURE"


class ServerFailure(ChargingError):
    """The server failed while handling the request; nothing was applied."""

    default_code = ErrorCode.SERVER_ERROR.value


class AuthenticationFailed(ChargingError):
    """The server refused the user or password."""

    default_code = ErrorCode.AUTHENTICATION_FAILED.value


class OperationFailure(ChargingError):
    """A business outcome of SPEC section 3 (or an operator command refused)."""

    default_code = "OPERATION_FAILURE"


def _failure(name: str, code: ErrorCode) -> type[OperationFailure]:
    cls = type(name, (OperationFailure,), {"default_code": code.value,
                                           "__doc__": f"Error code {code.value}."})
    cls.__module__ = __name__
    return cls


SessionNotFound = _failure("SessionNotFound", ErrorCode.SESSION_NOT_FOUND)
SessionExists = _failure("SessionExists", ErrorCode.SESSION_EXISTS)
ReservationNotFound = _failure("ReservationNotFound", ErrorCode.RESERVATION_NOT_FOUND)
DuplicateReservation = _failure("DuplicateReservation", ErrorCode.DUPLICATE_RESERVATION)
CreditLimitReached = _failure("CreditLimitReached", ErrorCode.CREDIT_LIMIT_REACHED)
UserUnknown = _failure("UserUnknown", ErrorCode.USER_UNKNOWN)
UserExists = _failure("UserExists", ErrorCode.USER_EXISTS)
UnknownChargeableItem = _failure("UnknownChargeableItem", ErrorCode.UNKNOWN_CHARGEABLE_ITEM)
InvalidRequest = _failure("InvalidRequest", ErrorCode.INVALID_REQUEST)
Forbidden = _failure("Forbidden", ErrorCode.FORBIDDEN)
OperationIdReused = _failure("OperationIdReused", ErrorCode.OPERATION_ID_REUSED)


class LimitExceeded(OperationFailure):
    """A request over one of the server's limits; `code` names which."""

    default_code = "LIMIT_EXCEEDED"


_BY_CODE: dict[str, type[ChargingError]] = {
    cls.default_code: cls for cls in (
        SessionNotFound, SessionExists, ReservationNotFound, DuplicateReservation,
        CreditLimitReached, UserUnknown, UserExists, UnknownChargeableItem, InvalidRequest,
        Forbidden, OperationIdReused, ServerFailure, AuthenticationFailed)
}
_BY_CODE.update({code.value: LimitExceeded for code in (
    ErrorCode.CONTAINER_TOO_LARGE, ErrorCode.TOO_MANY_REQUESTS, ErrorCode.STRING_TOO_LONG,
    ErrorCode.TOO_MANY_PROPERTIES, ErrorCode.EXTERNAL_DATA_TOO_LARGE,
    ErrorCode.TOO_MANY_NOTIFICATIONS)})
_BY_CODE.update({code.value: CommunicationFailure for code in (
    ErrorCode.FRAME_TOO_LARGE, ErrorCode.PROTOCOL_ERROR, ErrorCode.HANDSHAKE_REQUIRED,
    ErrorCode.HANDSHAKE_TIMEOUT, ErrorCode.IDLE_TIMEOUT, ErrorCode.TOO_MANY_CONNECTIONS,
    ErrorCode.UNSUPPORTED_VERSION, ErrorCode.SHUTTING_DOWN)})


def error_from_code(code: str, message: str = "") -> ChargingError:
    """The exception for a wire error code (unknown codes: OperationFailure)."""
    return _BY_CODE.get(code, OperationFailure)(message, code)
