"""Async client of the charging server (a blocking facade lives in `cc_client.sync`).

For example::

    import cc_client
    from cc_client import ChargeableItem, Resolution

    async with cc_client.connect("127.0.0.1:9500") as client:
        op = client.create_session_start_operation(user_id="alice", service_id="DATA",
                                                   session_id="s-1")
        op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 100}), ttl=30)
        result = await op.execute()
"""

from protocol.messages import (
    RatingResult,
    ReservationInfo,
    Resolution,
    ResultType,
    SessionInfo,
    Subscriber,
    Transaction,
)

# the blocking facade: `cc_client.sync.connect(...)` works after `import cc_client`
from . import sync
from .client import Client, Connector, connect, parse_address
from .errors import (
    AuthenticationFailed,
    ChargingError,
    CommunicationFailure,
    ContainerTooLarge,
    CreditLimitReached,
    DuplicateReservation,
    ExternalDataTooLarge,
    Forbidden,
    InvalidArgument,
    InvalidArgumentType,
    InvalidReply,
    InvalidRequest,
    LimitExceeded,
    OperationFailure,
    OperationIdReused,
    ReservationNotFound,
    ServerFailure,
    SessionExists,
    SessionNotFound,
    StringTooLong,
    TooManyNotifications,
    TooManyProperties,
    TooManyRequests,
    UnknownChargeableItem,
    UnknownPlan,
    UserExists,
    UserUnknown,
)
from .items import ChargeableItem
from .listeners import RenewalNotification
from .operations import SessionStartOperation, SessionStopOperation, SessionUpdateOperation
from .results import ReservationResult, SessionResult

__version__ = "0.1.0"
__all__ = [
    "AuthenticationFailed", "ChargeableItem", "ChargingError", "Client",
    "CommunicationFailure", "Connector", "ContainerTooLarge", "CreditLimitReached",
    "DuplicateReservation", "ExternalDataTooLarge", "Forbidden", "InvalidArgument",
    "InvalidArgumentType", "InvalidReply", "InvalidRequest", "LimitExceeded", "OperationFailure",
    "OperationIdReused", "RatingResult", "RenewalNotification", "ReservationInfo",
    "ReservationNotFound", "ReservationResult", "Resolution", "ResultType", "ServerFailure",
    "SessionExists", "SessionInfo", "SessionNotFound", "SessionResult",
    "SessionStartOperation", "SessionStopOperation", "SessionUpdateOperation",
    "StringTooLong", "Subscriber", "TooManyNotifications", "TooManyProperties",
    "TooManyRequests", "Transaction", "UnknownChargeableItem", "UnknownPlan", "UserExists",
    "UserUnknown", "connect", "parse_address", "sync",
]
