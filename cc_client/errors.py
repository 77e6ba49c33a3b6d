"""The client's exceptions, one class per error code, and the code -> class table.

The classes::

    ChargingError                      code: str, message: str
    +-- CommunicationFailure           closed, message too long, timed out, unreachable,
    |   |                              and the transport's codes (PROTOCOL_ERROR, ...)
    |   +-- InvalidReply               INVALID_REPLY: a reply came but could not be read
    +-- ServerFailure                  SERVER_ERROR: the server failed; nothing was applied
    +-- AuthenticationFailed           AUTHENTICATION_FAILED: wrong user or password
    +-- OperationFailure               a business outcome (unknown codes land here too)
        +-- SessionNotFound            SESSION_NOT_FOUND
        +-- SessionExists              SESSION_EXISTS
        +-- ReservationNotFound        RESERVATION_NOT_FOUND
        +-- DuplicateReservation       DUPLICATE_RESERVATION
        +-- CreditLimitReached         CREDIT_LIMIT_REACHED
        +-- UserUnknown                USER_UNKNOWN
        +-- UserExists                 USER_EXISTS
        +-- UnknownPlan                UNKNOWN_PLAN
        +-- UnknownChargeableItem      UNKNOWN_CHARGEABLE_ITEM
        +-- Forbidden                  FORBIDDEN
        +-- OperationIdReused          OPERATION_ID_REUSED
        +-- InvalidRequest             INVALID_REQUEST
        |   +-- InvalidArgument        refused by the client before sending; a ValueError too
        |   +-- InvalidArgumentType    refused by the client before sending; a TypeError too
        +-- LimitExceeded              a server limit (PROTOCOL.md section 5)
            +-- ContainerTooLarge      CONTAINER_TOO_LARGE
            +-- StringTooLong          STRING_TOO_LONG
            +-- TooManyProperties      TOO_MANY_PROPERTIES
            +-- ExternalDataTooLarge   EXTERNAL_DATA_TOO_LARGE
            +-- TooManyNotifications   TOO_MANY_NOTIFICATIONS
            +-- TooManyRequests        TOO_MANY_REQUESTS

A limit the client can check itself (properties per item, string length, external data)
raises the same class the server would answer with, before anything is sent.
"""

from __future__ import annotations

from typing import ClassVar

from protocol.errors import ErrorCode


class ChargingError(Exception):
    """Root of every error the client raises; `code` is the wire error code."""

    default_code: ClassVar[str] = "CHARGING_ERROR"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        self.code: str = code or self.default_code
        self.message: str = message or self.code
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class CommunicationFailure(ChargingError):
    """No answer: connection closed, timed out, unreachable, or message too long."""

    default_code = "COMMUNICATION_FAILURE"


class InvalidReply(CommunicationFailure):
    """The server answered, but its reply could not be read (a value outside the wire
    format, such as a decimal of 10^25 or more). The request may have been applied: it
    is not sent again."""

    default_code = "INVALID_REPLY"


class ServerFailure(ChargingError):
    """The server failed while handling the request; nothing was applied."""

    default_code = ErrorCode.SERVER_ERROR.value


class AuthenticationFailed(ChargingError):
    """The server refused the user or password."""

    default_code = ErrorCode.AUTHENTICATION_FAILED.value


class OperationFailure(ChargingError):
    """A business outcome (or an operator command refused); the root of the per-code
    classes below, and the class of codes this client does not know yet."""

    default_code = "OPERATION_FAILURE"


class SessionNotFound(OperationFailure):
    """No such session (never started, stopped, or expired)."""

    default_code = ErrorCode.SESSION_NOT_FOUND.value


class SessionExists(OperationFailure):
    """A start for a session id that is live already."""

    default_code = ErrorCode.SESSION_EXISTS.value


class ReservationNotFound(OperationFailure):
    """No such reservation in the session."""

    default_code = ErrorCode.RESERVATION_NOT_FOUND.value


class DuplicateReservation(OperationFailure):
    """A reserve for a reservation id the session holds already."""

    default_code = ErrorCode.DUPLICATE_RESERVATION.value


class CreditLimitReached(OperationFailure):
    """Not enough balance (or allowance) for the request."""

    default_code = ErrorCode.CREDIT_LIMIT_REACHED.value


class UserUnknown(OperationFailure):
    """No such subscriber."""

    default_code = ErrorCode.USER_UNKNOWN.value


class UserExists(OperationFailure):
    """A subscriber with this id exists already."""

    default_code = ErrorCode.USER_EXISTS.value


class UnknownPlan(OperationFailure):
    """The catalog has no price plan of this name (create_subscriber, set_plan)."""

    default_code = ErrorCode.UNKNOWN_PLAN.value


class UnknownChargeableItem(OperationFailure):
    """The catalog has no price for this service and item."""

    default_code = ErrorCode.UNKNOWN_CHARGEABLE_ITEM.value


class Forbidden(OperationFailure):
    """The logged-in user's role may not do this."""

    default_code = ErrorCode.FORBIDDEN.value


class OperationIdReused(OperationFailure):
    """An operation id already used for a different request; nothing was applied."""

    default_code = ErrorCode.OPERATION_ID_REUSED.value


class InvalidRequest(OperationFailure):
    """A malformed or out-of-range request."""

    default_code = ErrorCode.INVALID_REQUEST.value


class InvalidArgument(InvalidRequest, ValueError):
    """A value the client refused before sending (also a ValueError, as it used to be)."""


class InvalidArgumentType(InvalidRequest, TypeError):
    """An argument of the wrong type, refused before sending (also a TypeError)."""


class LimitExceeded(OperationFailure):
    """A request over one of the server's limits; `code` names which."""

    default_code = "LIMIT_EXCEEDED"


class ContainerTooLarge(LimitExceeded):
    """Too many sub-requests in one container."""

    default_code = ErrorCode.CONTAINER_TOO_LARGE.value


class StringTooLong(LimitExceeded):
    """An id or another string over its length limit."""

    default_code = ErrorCode.STRING_TOO_LONG.value


class TooManyProperties(LimitExceeded):
    """A chargeable item with more properties than allowed."""

    default_code = ErrorCode.TOO_MANY_PROPERTIES.value


class ExternalDataTooLarge(LimitExceeded):
    """Session external data over its size limit."""

    default_code = ErrorCode.EXTERNAL_DATA_TOO_LARGE.value


class TooManyNotifications(LimitExceeded):
    """Too many renewal notifications pending."""

    default_code = ErrorCode.TOO_MANY_NOTIFICATIONS.value


class TooManyRequests(LimitExceeded):
    """Too many requests of this connection in hand (the client retries these itself)."""

    default_code = ErrorCode.TOO_MANY_REQUESTS.value


_BY_CODE: dict[str, type[ChargingError]] = {
    cls.default_code: cls for cls in (
        SessionNotFound, SessionExists, ReservationNotFound, DuplicateReservation,
        CreditLimitReached, UserUnknown, UserExists, UnknownPlan, UnknownChargeableItem,
        Forbidden,
        OperationIdReused, InvalidRequest, ServerFailure, AuthenticationFailed,
        ContainerTooLarge, StringTooLong, TooManyProperties, ExternalDataTooLarge,
        TooManyNotifications, TooManyRequests)
}
_BY_CODE.update({code.value: CommunicationFailure for code in (
    ErrorCode.FRAME_TOO_LARGE, ErrorCode.PROTOCOL_ERROR, ErrorCode.HANDSHAKE_REQUIRED,
    ErrorCode.HANDSHAKE_TIMEOUT, ErrorCode.IDLE_TIMEOUT, ErrorCode.TOO_MANY_CONNECTIONS,
    ErrorCode.UNSUPPORTED_VERSION, ErrorCode.SHUTTING_DOWN)})


def error_from_code(code: str, message: str = "") -> ChargingError:
    """The exception for a wire error code (unknown codes: OperationFailure)."""
    return _BY_CODE.get(code, OperationFailure)(message, code)


def refused(exc: ValueError | TypeError) -> InvalidRequest:
    """The client's own refusal of an argument that failed a ValueError/TypeError check:
    InvalidArgument or InvalidArgumentType, with the same text."""
    if isinstance(exc, InvalidRequest):
        return exc
    text = str(exc)
    return InvalidArgumentType(text) if isinstance(exc, TypeError) else InvalidArgument(text)
