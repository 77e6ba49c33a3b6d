"""Blocking facade: the async client on a private event-loop thread.

For example::

    with cc_client.sync.connect("127.0.0.1:9500") as client:
        op = client.create_session_start_operation(user_id="alice", service_id="DATA",
                                                   session_id="s-1")
        op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 100}), ttl=30)
        result = op.execute()          # blocks

Same operations, same core; only `execute()` and the admin calls block. Synchronous renewal
handlers run on a worker thread, so they may call `execute()` themselves.

Every method is spelled out and typed (nothing is forwarded blindly), so a type checker
sees this API as precisely as the async one. A new async method needs its wrapper here:
`tests/test_client_api.py` fails until it has one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Coroutine, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any, Generic, ParamSpec, Protocol, Self, TypeVar

from protocol import messages as m
from protocol.messages import (
    ChargeableItem,
    Resolution,
    ResultType,
    SessionInfo,
    Subscriber,
    Transaction,
)

from .client import Client
from .client import connect as async_connect
from .faults import FaultsAPI, RuleId
from .listeners import RenewalHandler
from .operations import (
    SessionStartOperation,
    SessionStopOperation,
    SessionUpdateOperation,
    Ttl,
    _Cancel,
    _Confirm,
    _ConfirmAndReserve,
    _Container,
    _ExternalData,
    _Listener,
    _Reserve,
)
from .operator import OperatorAPI
from .results import SessionResult

R = TypeVar("R")
P = ParamSpec("P")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


#: Seconds a blocking call waits for the loop thread beyond the client's own deadlines:
#: a backstop for a loop thread that is stuck or gone, never reached by a slow server (the
#: async client's `request_timeout` ends each call first).
RUN_MARGIN = 60.0


class _LoopThread:
    """The event loop of a `SyncClient`, on its own daemon thread."""

    def __init__(self, timeout: float = RUN_MARGIN) -> None:
        self.timeout = timeout
        self.loop = _new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cc-client-loop",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run `coro` on the loop thread and wait for its result, at most `timeout`
        seconds (then it is cancelled and TimeoutError raised)."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a blocking call from the client's own loop thread would "
                               "deadlock; use the async client there")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(self.timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"the client's loop thread gave no result within "
                               f"{self.timeout:g} s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


C = TypeVar("C", bound=_Container)
Op_co = TypeVar("Op_co", covariant=True)


class _Holds(Protocol[Op_co]):
    """A facade over an async container of type Op_co (the mixins' self type)."""

    @property
    def _operation(self) -> Op_co: ...


class SyncOperation(Generic[C]):
    """A container whose execute() blocks; the rest is the async container's."""

    def __init__(self, runner: _LoopThread, operation: C) -> None:
        self._runner = runner
        self._operation = operation

    @property
    def operation(self) -> C:
        """The async container behind this facade."""
        return self._operation

    @property
    def user_id(self) -> str:
        """The subscriber charged."""
        return self._operation.user_id

    @property
    def service_id(self) -> str:
        """The service of the session."""
        return self._operation.service_id

    @property
    def session_id(self) -> str:
        """The session this container belongs to."""
        return self._operation.session_id

    @property
    def operation_id(self) -> bytes:
        """The operation id (kept when executed again)."""
        return self._operation.operation_id

    def set_result_type(self, result_type: ResultType) -> None:
        """How much of the transactions the results carry (default ALL_TRANSACTIONS)."""
        self._operation.set_result_type(result_type)

    def set_cleanup_result_type(self, result_type: ResultType) -> None:
        """Result type of the clean-ups a stop performs."""
        self._operation.set_cleanup_result_type(result_type)

    def set_filter_transaction(self, enabled: bool) -> None:
        """Leave transactions of zero amount out of the results (never out of the journal)."""
        self._operation.set_filter_transaction(enabled)

    def to_message(self) -> m.Execute:
        """The wire message (frozen after the first call)."""
        return self._operation.to_message()

    def execute(self) -> SessionResult:
        """Send the container and wait for its result."""
        return self._runner.run(self._operation.execute())


class _SyncReserve:
    def prepare_reserve(self: _Holds[_Reserve], reservation_id: str, item: ChargeableItem,
                        ttl: Ttl, default_resolution: Resolution = Resolution.CANCELED,
                        property_to_inverse: str | None = None) -> None:
        """Reserve `item` for `ttl` seconds as a new charging session."""
        self._operation.prepare_reserve(reservation_id, item, ttl, default_resolution,
                                        property_to_inverse)


class _SyncConfirm:
    def prepare_confirm(self: _Holds[_Confirm], reservation_id: str,
                        item: ChargeableItem | None = None) -> None:
        """Confirm the consumed item (None or partial: overlaid on the reserved item)."""
        self._operation.prepare_confirm(reservation_id, item)


class _SyncCancel:
    def prepare_cancel(self: _Holds[_Cancel], reservation_id: str) -> None:
        """Release the reservation."""
        self._operation.prepare_cancel(reservation_id)


class _SyncConfirmAndReserve:
    def prepare_confirm_and_reserve(self: _Holds[_ConfirmAndReserve], reservation_id: str,
                                    confirm_item: ChargeableItem | None = None,
                                    reserve_item: ChargeableItem | None = None, ttl: Ttl = -1,
                                    default_resolution: Resolution | None = None,
                                    property_to_inverse: str | None = None) -> None:
        """Confirm what was used and reserve again; ttl < 0 keeps the previous TTL."""
        self._operation.prepare_confirm_and_reserve(reservation_id, confirm_item, reserve_item,
                                                    ttl, default_resolution,
                                                    property_to_inverse)


class _SyncExternalData:
    def set_external_data(self: _Holds[_ExternalData], data: bytes) -> None:
        """Opaque bytes (at most 4 KiB) echoed in renewal notifications."""
        self._operation.set_external_data(data)


class _SyncListener:
    def set_reservation_renewal_listener_id(self: _Holds[_Listener], listener_id: int) -> None:
        """Renewal notifications of this session go to listener `listener_id` (1..127)."""
        self._operation.set_reservation_renewal_listener_id(listener_id)


class SyncStartOperation(SyncOperation[SessionStartOperation], _SyncReserve, _SyncExternalData,
                         _SyncListener):
    """Blocking start container: prepare_reserve only."""


class SyncUpdateOperation(SyncOperation[SessionUpdateOperation], _SyncReserve, _SyncConfirm,
                          _SyncCancel, _SyncConfirmAndReserve, _SyncExternalData):
    """Blocking update container: reserve, confirm, cancel, confirm_and_reserve."""


class SyncStopOperation(SyncOperation[SessionStopOperation], _SyncConfirm, _SyncCancel):
    """Blocking stop container: confirm and cancel."""


class SyncFaultRule(RuleId):
    """A rule added with the blocking `client.admin.faults.add`: an int (its id) with
    `fields`, `remove()` and use as a context manager (`with`), like the in-process
    `server.faults.add(...)`."""

    _faults: SyncFaults

    def __new__(cls, faults: SyncFaults, fields: dict[str, Any]) -> Self:
        rule = super().__new__(cls, fields)
        rule._faults = faults
        return rule

    def remove(self) -> bool:
        """Remove the rule; False when it was already gone."""
        return self._faults.remove(self.id)

    def __enter__(self) -> SyncFaultRule:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()


class SyncFaults:
    """`client.admin.faults` with blocking methods (see cc_client.faults)."""

    def __init__(self, runner: _LoopThread, faults: FaultsAPI) -> None:
        self._runner = runner
        self._faults = faults

    def add(self, action: str | None = None, **fields: Any) -> SyncFaultRule:
        """Add a fault rule; returns it (an int, its id, that can remove itself)."""
        added = self._runner.run(self._faults.add(action, **fields))
        return SyncFaultRule(self, added.fields)

    def list(self) -> list[dict[str, Any]]:
        """Every rule, with its `matched` and `fired` counts."""
        return self._runner.run(self._faults.list())

    def remove(self, rule_id: int) -> bool:
        """Remove one rule; False when there was none with that id."""
        return self._runner.run(self._faults.remove(rule_id))

    def clear(self) -> int:
        """Remove every rule; how many there were."""
        return self._runner.run(self._faults.clear())


class SyncAdmin:
    """`client.admin` with blocking methods: one typed wrapper per OperatorAPI method."""

    def __init__(self, runner: _LoopThread, admin: OperatorAPI) -> None:
        self._runner = runner
        self._admin = admin
        self._faults = SyncFaults(runner, admin.faults)

    @property
    def faults(self) -> SyncFaults:
        """The server's fault rules (test controls)."""
        return self._faults

    def record(self, user: str | None = None, session: str | None = None,
               kind: str | None = None, type: str | None = None,
               direction: str | None = None, since: dt.datetime | None = None,
               until: dt.datetime | None = None, limit: int | None = None, *,
               user_id: str | None = None, session_id: str | None = None
               ) -> list[dict[str, Any]]:
        """Frames of the server's request record, filtered (see OperatorAPI.record)."""
        return self._runner.run(self._admin.record(user, session, kind, type, direction,
                                                   since, until, limit, user_id=user_id,
                                                   session_id=session_id))

    def record_clear(self) -> int:
        """Empty the request record; how many frames it held."""
        return self._runner.run(self._admin.record_clear())

    def clock_get(self) -> dict[str, Any]:
        """The server's time and whether its clock is manual."""
        return self._runner.run(self._admin.clock_get())

    def clock_advance(self, seconds: float) -> dt.datetime:
        """Move a manual server clock forward; returns its new time."""
        return self._runner.run(self._admin.clock_advance(seconds))

    def clock_set(self, when: dt.datetime | str) -> dt.datetime:
        """Move a manual server clock to a time; returns its new time."""
        return self._runner.run(self._admin.clock_set(when))

    def create_subscriber(self, user_id: str, balance: Decimal | int | str,
                          currency: str = "EUR",
                          counters: Mapping[str, Decimal | int | str] | None = None,
                          plan: str | None = None) -> Subscriber:
        """Create a subscriber (UserExists if the id is taken), rated by price plan
        `plan` (None: the catalog's default)."""
        return self._runner.run(self._admin.create_subscriber(user_id, balance, currency,
                                                              counters, plan))

    def set_plan(self, user_id: str, plan: str,
                 start: dt.datetime | None = None) -> Subscriber:
        """Rate the subscriber by price plan `plan` from now (or from `start`)."""
        return self._runner.run(self._admin.set_plan(user_id, plan, start))

    def get_subscriber(self, user_id: str) -> Subscriber:
        """Balance, reserved, available and counters (UserUnknown if absent)."""
        return self._runner.run(self._admin.get_subscriber(user_id))

    def top_up(self, user_id: str, amount: Decimal | int | str) -> Subscriber:
        """Credit the balance; returns the subscriber afterwards."""
        return self._runner.run(self._admin.top_up(user_id, amount))

    def list_subscribers(self, prefix: str | None = None, currency: str | None = None,
                         after: str | None = None, limit: int | None = None
                         ) -> list[Subscriber]:
        """Subscribers ordered by user id, filtered by id `prefix` and `currency`."""
        return self._runner.run(self._admin.list_subscribers(prefix, currency, after, limit))

    def delete_subscriber(self, user_id: str, force: bool = False) -> list[Transaction]:
        """Remove a subscriber (`force`: cancel its live sessions first)."""
        return self._runner.run(self._admin.delete_subscriber(user_id, force))

    def adjust(self, user_id: str, amount: Decimal | int | str, reason: str) -> Subscriber:
        """Credit (> 0) or debit (< 0) the balance with a reason; journaled."""
        return self._runner.run(self._admin.adjust(user_id, amount, reason))

    def set_counter(self, user_id: str, counter: str, units: Decimal | int | str,
                    reason: str | None = None) -> Subscriber:
        """Set an allowance counter to `units`; journaled."""
        return self._runner.run(self._admin.set_counter(user_id, counter, units, reason))

    def reset_counter(self, user_id: str, counter: str,
                      reason: str | None = None) -> Subscriber:
        """Take an allowance counter to zero and remove it; journaled."""
        return self._runner.run(self._admin.reset_counter(user_id, counter, reason))

    def find_sessions(self, user_id: str | None = None, session_id: str | None = None,
                      limit: int | None = None, after: str | None = None
                      ) -> list[SessionInfo]:
        """Live sessions, by user and/or session id, ordered by session id, after the
        session id `after` (exclusive); at most `limit` (default 1000)."""
        return self._runner.run(self._admin.find_sessions(user_id, session_id, limit, after))

    def cancel_session(self, session_id: str) -> list[Transaction]:
        """Release every reservation of a session and remove it; the releases journaled."""
        return self._runner.run(self._admin.cancel_session(session_id))

    def transactions(self, user_id: str | None = None, session_id: str | None = None,
                     after: int | None = None, limit: int | None = None
                     ) -> list[Transaction]:
        """Journal entries, oldest first; `after` is a transaction id."""
        return self._runner.run(self._admin.transactions(user_id, session_id, after, limit))

    def request_renewal(self, session_id: str, reservation_id: str) -> None:
        """Have the server send a renewal notification for this charging session."""
        self._runner.run(self._admin.request_renewal(session_id, reservation_id))

    def stats(self) -> dict[str, Any]:
        """Server statistics."""
        return self._runner.run(self._admin.stats())

    def catalog(self, service_id: str | None = None) -> list[dict[str, Any]]:
        """The server's price plans (see OperatorAPI.catalog)."""
        return self._runner.run(self._admin.catalog(service_id))


class SyncClient:
    """A blocking charging client (see module docstring)."""

    def __init__(self, *addresses: str, **options: Any) -> None:
        # a login and a listing's pages each take up to request_timeout (its default: 5 s);
        # a bad value is refused by `connect`, with its own message
        each = options.get("request_timeout", 5.0)
        self._runner = _LoopThread(RUN_MARGIN + 4 * each if isinstance(each, int | float)
                                   else RUN_MARGIN)
        try:
            self._client: Client = self._runner.run(self._open(addresses, options))
        except BaseException:
            self._runner.stop()
            raise
        self.admin = SyncAdmin(self._runner, self._client.admin)

    @staticmethod
    async def _open(addresses: tuple[str, ...], options: dict[str, Any]) -> Client:
        client = await async_connect(*addresses, **options)
        client.listeners.sync_in_thread = True
        return client

    def create_session_start_operation(self, user_id: str, service_id: str,
                                       session_id: str) -> SyncStartOperation:
        """A start container."""
        return SyncStartOperation(self._runner, self._client.create_session_start_operation(
            user_id, service_id, session_id))

    def create_session_update_operation(self, user_id: str, service_id: str,
                                        session_id: str) -> SyncUpdateOperation:
        """An update container."""
        return SyncUpdateOperation(self._runner, self._client.create_session_update_operation(
            user_id, service_id, session_id))

    def create_session_stop_operation(self, user_id: str, service_id: str,
                                      session_id: str) -> SyncStopOperation:
        """A stop container."""
        return SyncStopOperation(self._runner, self._client.create_session_stop_operation(
            user_id, service_id, session_id))

    def register_reservation_renewal_listener(self, listener_id: int,
                                              handler: RenewalHandler) -> None:
        """Register a renewal handler (sync handlers run on a worker thread)."""
        self._runner.run(self._client.register_reservation_renewal_listener(listener_id,
                                                                            handler))

    def unregister_reservation_renewal_listener(self, listener_id: int) -> None:
        """Unregister a renewal handler."""
        self._runner.run(self._client.unregister_reservation_renewal_listener(listener_id))

    def close(self) -> None:
        """Close the connection and stop the loop thread."""
        if self._runner.thread.is_alive():
            self._runner.run(self._client.close())
            self._runner.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _arguments_of(model: Callable[P, object]
                  ) -> Callable[[Callable[..., SyncClient]], Callable[P, SyncClient]]:
    """Give the decorated function `model`'s parameters, for type checkers only."""
    def typed(function: Callable[..., SyncClient]) -> Callable[P, SyncClient]:
        return function
    return typed


@_arguments_of(async_connect)
def connect(*addresses: str, **options: Any) -> SyncClient:
    """Blocking `connect`: same arguments as `cc_client.connect`."""
    return SyncClient(*addresses, **options)
