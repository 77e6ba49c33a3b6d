"""Start, update and stop containers; each kind has only the prepare_* methods it allows.

An operation gets its operation id when it is created; executing it again (or the client
retrying it after a lost connection) reuses that id, so the server applies it once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from protocol import messages as m
from protocol.messages import ChargeableItem, Resolution, ResultType

from . import containers as c
from .errors import ExternalDataTooLarge, InvalidArgument, InvalidArgumentType
from .results import SessionResult

if TYPE_CHECKING:
    from .parts import ContainerHost

Ttl = int | float | Decimal


class _Container:
    kind: m.ContainerKind
    # What a container leaves at its default, unless a set_* method says otherwise: class
    # attributes, so that building a container stores only what every container has.
    _listener_id: int | None = None
    _external: bytes | None = None
    _result_type: ResultType | None = None
    _cleanup_result_type: ResultType | None = None
    _filter: bool | None = None
    _message: m.Execute | None = None

    def __init__(self, client: ContainerHost, user_id: str, service_id: str,
                 session_id: str) -> None:
        c.check_ids(user_id, service_id, session_id)
        self._client = client
        self.user_id = user_id
        self.service_id = service_id
        self.session_id = session_id
        self.operation_id = client.new_operation_id()
        self._subs: list[m.SubRequest] = []

    def set_result_type(self, result_type: ResultType) -> None:
        """How much of the transactions the results carry (default ALL_TRANSACTIONS)."""
        self._result_type = c.enum(ResultType, result_type)

    def set_cleanup_result_type(self, result_type: ResultType) -> None:
        """Result type of the clean-ups a stop performs."""
        self._cleanup_result_type = c.enum(ResultType, result_type)

    def set_filter_transaction(self, enabled: bool) -> None:
        """Leave transactions of zero amount out of the results (never out of the journal)."""
        self._filter = bool(enabled)

    def to_message(self) -> m.Execute:
        """The wire message (frozen after the first call)."""
        if self._message is None:
            self._message = c.execute_message(
                self.operation_id, self.kind, self.user_id, self.service_id, self.session_id,
                self._subs, self._listener_id, self._external, self._result_type,
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
        c.add(self._subs, self._message, c.reserve(
            reservation_id, item, ttl, default_resolution, property_to_inverse))


class _Confirm(_Container):
    def prepare_confirm(self, reservation_id: str, item: ChargeableItem | None = None) -> None:
        """Confirm the consumed item (None or partial: overlaid on the reserved item)."""
        c.add(self._subs, self._message, c.confirm(reservation_id, item))


class _Cancel(_Container):
    def prepare_cancel(self, reservation_id: str) -> None:
        """Release the reservation."""
        c.add(self._subs, self._message, c.cancel(reservation_id))


class _ConfirmAndReserve(_Container):
    def prepare_confirm_and_reserve(self, reservation_id: str,
                                    confirm_item: ChargeableItem | None = None,
                                    reserve_item: ChargeableItem | None = None, ttl: Ttl = -1,
                                    default_resolution: Resolution | None = None,
                                    property_to_inverse: str | None = None) -> None:
        """Confirm what was used and reserve again; ttl < 0 keeps the previous TTL."""
        c.add(self._subs, self._message, c.confirm_and_reserve(
            reservation_id, confirm_item, reserve_item, ttl, default_resolution,
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
