"""Message types, their fields, and the value types both ends share.

Pure data: how each message looks on the wire, and how it is validated, is in `codec/`.
A frame whose type has the `REPLY` bit (0x80) set answers the peer's request with the same
request id; every other frame is a request or a push. Request id 0 means "no reply".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any, Final, NamedTuple, TypeAlias

# re-exported: items.py owns the item, its property checks and the format's hard limits
from .items import MAX_EXTERNAL_DATA as MAX_EXTERNAL_DATA  # noqa: PLC0414
from .items import MAX_ID_LENGTH as MAX_ID_LENGTH  # noqa: PLC0414
from .items import MAX_LISTENER_ID as MAX_LISTENER_ID  # noqa: PLC0414
from .items import MAX_PROPERTIES as MAX_PROPERTIES  # noqa: PLC0414
from .items import MAX_STRING_LENGTH as MAX_STRING_LENGTH  # noqa: PLC0414
from .items import MAX_SUBREQUESTS as MAX_SUBREQUESTS  # noqa: PLC0414
from .items import ChargeableItem as ChargeableItem  # noqa: PLC0414
from .items import PropertyValue as PropertyValue  # noqa: PLC0414
from .items import check_property as check_property  # noqa: PLC0414

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS = (1,)
REPLY: Final = 0x80



class MsgType(IntEnum):
    """The message type byte of the frame header."""

    HELLO = 0x01
    PING = 0x02
    GOODBYE = 0x03
    EXECUTE = 0x10
    ADMIN = 0x20
    LISTEN = 0x30
    UNLISTEN = 0x31
    NOTIFY = 0x40
    ACK = 0x41
    # The replies: the request's type with the REPLY bit. Literals, because mypyc compiles
    # a member computed from other members wrongly.
    HELLO_OK = 0x81
    PONG = 0x82
    EXECUTE_RESULT = 0x90
    ADMIN_RESULT = 0xA0
    LISTEN_OK = 0xB0
    UNLISTEN_OK = 0xB1
    ACK_OK = 0xC1
    ERROR = 0xFF


class ContainerKind(StrEnum):
    START = "start"
    UPDATE = "update"
    STOP = "stop"


class Action(StrEnum):
    RESERVE = "reserve"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    CONFIRM_AND_RESERVE = "confirm_and_reserve"


#: Which sub-request actions each container kind allows (SPEC section 3).
ALLOWED_ACTIONS: Final[Mapping[ContainerKind, frozenset[Action]]] = {
    ContainerKind.START: frozenset({Action.RESERVE}),
    ContainerKind.UPDATE: frozenset(Action),
    ContainerKind.STOP: frozenset({Action.CONFIRM, Action.CANCEL}),
}


class Resolution(StrEnum):
    """What happens to a reservation nobody confirms or cancels."""

    CANCELED = "CANCELED"
    CONFIRMED = "CONFIRMED"


class ResultType(StrEnum):
    """How much of the transactions a rating result carries back."""

    NO_TRANSACTIONS = "NO_TRANSACTIONS"
    MASTER_TRANSACTION = "MASTER_TRANSACTION"
    ALL_TRANSACTIONS = "ALL_TRANSACTIONS"


class TxKind(StrEnum):
    RESERVE = "reserve"
    RELEASE = "release"
    CONFIRM = "confirm"
    TOP_UP = "top_up"


class TxReason(StrEnum):
    REQUEST = "request"
    STOP = "stop"
    EXPIRY = "expiry"
    ADMIN = "admin"
    REFILL = "refill"     # an allowance counter set at the start of its period


class RenewalReason(StrEnum):
    CREDIT_AVAILABLE = "credit_available"
    OPERATOR = "operator"


class Transaction(NamedTuple):
    """One journal entry: a movement of money and/or allowance counter units.

    On the wire, the array of its fields in this order.
    """

    transaction_id: int
    time: dt.datetime
    user_id: str
    session_id: str | None
    reservation_id: str | None
    kind: TxKind
    reason: TxReason
    amount: Decimal
    currency: str
    counters: Mapping[str, Decimal] = {}   # one shared empty map: never mutated
    rating: str | None = None   # which period or tier priced it (dated items), else None


class RatingResult(NamedTuple):
    """The amount one rating step moved, and the transactions it journaled."""

    amount: Decimal
    currency: str
    transactions: tuple[Transaction, ...] = ()


# ------------------------------------------------------------------------ handshake etc.

@dataclass(frozen=True, slots=True)
class Hello:
    versions: tuple[int, ...] = SUPPORTED_VERSIONS
    client_name: str | None = None
    user: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class HelloOk:
    version: int
    server: str
    heartbeat: float           # seconds; silence for 3 intervals means the peer is dead
    max_frame: int
    max_in_flight: int
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class Goodbye:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str = ""


# ------------------------------------------------------------------------ containers

class SubRequest(NamedTuple):
    """One prepare_* call of a container; on the wire the array of its fields."""

    action: Action
    reservation_id: str
    item: ChargeableItem | None = None          # reserve item, or confirmation item
    next_item: ChargeableItem | None = None     # confirm_and_reserve: new reservation item
    ttl: int | float | None = None              # seconds; < 0 at confirm_and_reserve: keep
    default_resolution: Resolution | None = None
    property_to_inverse: str | None = None


class Execute(NamedTuple):
    """A start, update or stop container."""

    operation_id: bytes
    kind: ContainerKind
    user_id: str
    service_id: str
    session_id: str
    subs: tuple[SubRequest, ...]
    listener_id: int | None = None
    external_data: bytes | None = None
    # None: the session's default (set by its start container; ALL_TRANSACTIONS / False)
    result_type: ResultType | None = None
    cleanup_result_type: ResultType | None = None
    filter_transaction: bool | None = None


class Outcome(NamedTuple):
    """What one sub-request (or one clean-up at stop) did; on the wire the array of its
    fields."""

    reservation_id: str
    error: str | None = None
    message: str | None = None
    cancel_result: RatingResult | None = None
    confirm_result: RatingResult | None = None
    reserve_result: RatingResult | None = None
    granted_item: ChargeableItem | None = None
    expires_at: dt.datetime | None = None
    balance_below_zero: bool = False    # a confirm left the balance negative


class ExecuteResult(NamedTuple):
    session_id: str
    outcomes: tuple[Outcome, ...]


# ------------------------------------------------------------------------ operator

@dataclass(frozen=True, slots=True)
class AdminRequest:
    """An operator command (see `codec.ADMIN_COMMANDS` for the commands and their args)."""

    command: str
    args: Mapping[str, Any] = field(default_factory=dict)
    operation_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class AdminResult:
    value: Any = None
    #: a listing cut short to fit the frame limit: the `after` of its next page
    next: Any = None


@dataclass(frozen=True, slots=True)
class Subscriber:
    user_id: str
    currency: str
    balance: Decimal
    reserved: Decimal
    available: Decimal
    counters: Mapping[str, Decimal] = field(default_factory=dict)
    counters_reserved: Mapping[str, Decimal] = field(default_factory=dict)
    plan: str | None = None        # its price plan; None: the catalog's default plan


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    reservation_id: str
    state: str                     # "open", "starved" or "ended"
    item: ChargeableItem | None
    amount: Decimal
    expires_at: dt.datetime
    default_resolution: Resolution
    counters: Mapping[str, Decimal] = field(default_factory=dict)
    property_to_inverse: str | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    user_id: str
    service_id: str
    created_at: dt.datetime
    listener_id: int | None = None
    external_data: bytes | None = None
    reservations: tuple[ReservationInfo, ...] = ()
    protocol: str | None = None          # "diameter" for a Gy session, None: msgpack
    peer: str | None = None              # a Gy session's peer (Origin-Host), when known


# ------------------------------------------------------------------------ renewal

@dataclass(frozen=True, slots=True)
class Listen:
    listener_id: int


@dataclass(frozen=True, slots=True)
class ListenOk:
    pass


@dataclass(frozen=True, slots=True)
class Unlisten:
    listener_id: int


@dataclass(frozen=True, slots=True)
class UnlistenOk:
    pass


@dataclass(frozen=True, slots=True)
class Notification:
    """A "renew reservation" push to a registered listener."""

    notification_id: int
    listener_id: int
    session_id: str
    reservation_id: str
    user_id: str
    service_id: str
    reason: str
    expires_at: dt.datetime
    attempt: int
    external_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    notification_id: int
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class AckOk:
    status: str   # "acknowledged", "already_acknowledged" or "unknown"


Message: TypeAlias = (
    Hello | HelloOk | Ping | Pong | Goodbye | Error | Execute | ExecuteResult | AdminRequest
    | AdminResult | Listen | ListenOk | Unlisten | UnlistenOk | Notification | Ack | AckOk
)
