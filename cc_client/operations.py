"""Start, update and stop containers; each kind has only the prepare_* methods it allows.

An operation gets its operation id when it is created; executing it again (or the client
retrying it after a lost connection) reuses that id, so the server applies it once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

from protocol import messages as m
from protocol.messages import ChargeableItem, Resolution, ResultType

from .errors import ExternalDataTooLarge, InvalidArgument, InvalidArgumentType
from .results import SessionResult

if TYPE_CHECKING:
    from .parts import ContainerHost

E = TypeVar("E", Resolution, ResultType)

Ttl = int | float | Decimal
_NUMBER = (int, float, Decimal)   # Ttl as isinstance takes it (a union object per call costs)


def _ttl(ttl: Ttl) -> int | float:
    if isinstance(ttl, bool) or not isinstance(ttl, _NUMBER):
        raise InvalidArgumentType(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    return float(ttl) if isinstance(ttl, Decimal) else ttl


def _item(item: ChargeableItem | None, what: str) -> ChargeableItem | None:
    if item is not None and not isinstance(item, ChargeableItem):
        raise InvalidArgumentType(f"{what} must be a ChargeableItem or None")
    return item


def _enum(kind: type[E], value: E | str) -> E:
    if isinstance(value, kind):   # a member already: no Enum call (a lookup by value)
        return value
    try:
        return kind(value)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


class _Container:
    kind: m.ContainerKind

    def __init__(self, client: ContainerHost, user_id: str, service_id: str,
                 session_id: str) -> None:
        if not (isinstance(user_id, str) and user_id and isinstance(service_id, str)
                and service_id and isinstance(session_id, str) and session_id):
            for name, value in (("user_id", user_id), ("service_id", service_id),
                                ("session_id", session_id)):
                if not isinstance(value, str) or not value:
                    raise InvalidArgument(f"{name} must be a non-empty str")
        self._client = client
        self.user_id = user_id
        self.service_id = service_id
        self.session_id = session_id
        self.operation_id = client.new_operation_id()
        self._subs: list[m.SubRequest] = []
        self._listener_id: int | None = None
        self._external: bytes | None = None
        self._result_type: ResultType | None = None
        self._cleanup_result_type: ResultType | None = None
        self._filter: bool | None = None
        self._message: m.Execute | None = None

    def _add(self, sub: m.SubRequest) -> None:
        if self._message is not None:
            raise RuntimeError("this operation was executed already; create a new one")
        if not isinstance(sub.reservation_id, str) or not sub.reservation_id:
            raise InvalidArgument("reservation_id must be a non-empty str")
        self._subs.append(sub)

    def set_result_type(self, result_type: ResultType) -> None:
        """How much of the transactions the results carry (default ALL_TRANSACTIONS)."""
        self._result_type = _enum(ResultType, result_type)

    def set_cleanup_result_type(self, result_type: ResultType) -> None:
        """Result type of the clean-ups a stop performs."""
        self._cleanup_result_type = _enum(ResultType, result_type)

    def set_filter_transaction(self, enabled: bool) -> None:
        """Leave transactions of zero amount out of the results (never out of the journal)."""
        self._filter = bool(enabled)

    def to_message(self) -> m.Execute:
        """The wire message (frozen after the first call)."""
        if self._message is None:
            self._message = m.Execute(
                self.operation_id, self.kind, self.user_id, self.service_id, self.session_id,
                tuple(self._subs), self._listener_id, self._external, self._result_type,
                self._cleanup_result_type, self._filter)
        return self._message

    async def execute(self) -> SessionResult:
        """Send the container in one round trip. Whole-container failures raise;
        sub-request failures are in each `ReservationResult.error`."""
        return await self._client.execute_container(self.to_message())


class _Reserve(_Container):
    def prepare_reserve(self, reservation_id: str, item: ChargeableItem, ttl: Ttl,
                        default_resolution: Resolution = Resolution.CANCELED,
                        property_to_inverse: str | None = None) -> None:
        """Reserve `item` for `ttl` seconds as a new charging session."""
        self._add(m.SubRequest(m.Action.RESERVE, reservation_id, _item(item, "item"), None,
                               _ttl(ttl), _enum(Resolution, default_resolution),
                               property_to_inverse))


class _Confirm(_Container):
    def prepare_confirm(self, reservation_id: str, item: ChargeableItem | None = None) -> None:
        """Confirm the consumed item (None or partial: overlaid on the reserved item)."""
        self._add(m.SubRequest(m.Action.CONFIRM, reservation_id, _item(item, "item")))


class _Cancel(_Container):
    def prepare_cancel(self, reservation_id: str) -> None:
        """Release the reservation."""
        self._add(m.SubRequest(m.Action.CANCEL, reservation_id))


class _ConfirmAndReserve(_Container):
    def prepare_confirm_and_reserve(self, reservation_id: str,
                                    confirm_item: ChargeableItem | None = None,
                                    reserve_item: ChargeableItem | None = None, ttl: Ttl = -1,
                                    default_resolution: Resolution | None = None,
                                    property_to_inverse: str | None = None) -> None:
        """Confirm what was used and reserve again; ttl < 0 keeps the previous TTL."""
        self._add(m.SubRequest(
            m.Action.CONFIRM_AND_RESERVE, reservation_id, _item(confirm_item, "confirm_item"),
            _item(reserve_item, "reserve_item"), _ttl(ttl),
            None if default_resolution is None else _enum(Resolution, default_resolution),
            property_to_inverse))


class _ExternalData(_Container):
    def set_external_data(self, data: bytes) -> None:
        """Opaque bytes (at most 4 KiB) echoed in renewal notifications."""
        if not isinstance(data, bytes | bytearray):
            raise InvalidArgumentType("external data must be bytes")
        if len(data) > m.MAX_EXTERNAL_DATA:
            raise ExternalDataTooLarge(f"external data is limited to {m.MAX_EXTERNAL_DATA} bytes "
                             f"(got {len(data)})")
        self._external = bytes(data)


class _Listener(_Container):
    def set_reservation_renewal_listener_id(self, listener_id: int) -> None:
        """Renewal notifications of this session go to listener `listener_id` (1..127)."""
        if isinstance(listener_id, bool) or not isinstance(listener_id, int) or \
                not 1 <= listener_id <= m.MAX_LISTENER_ID:
            raise InvalidArgument(f"listener id must be an int in 1..{m.MAX_LISTENER_ID}")
        self._listener_id = listener_id


class SessionStartOperation(_Reserve, _ExternalData, _Listener):
    """Start container: prepare_reserve only."""

    kind = m.ContainerKind.START


class SessionUpdateOperation(_Reserve, _Confirm, _Cancel, _ConfirmAndReserve, _ExternalData):
    """Update container: reserve, confirm, cancel, confirm_and_reserve."""

    kind = m.ContainerKind.UPDATE


class SessionStopOperation(_Confirm, _Cancel):
    """Stop container: confirm and cancel; every other reservation is cleaned up."""

    kind = m.ContainerKind.STOP
