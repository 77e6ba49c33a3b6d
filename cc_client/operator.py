"""The operator API, `client.admin` (role `admin` when the server has a users file)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from protocol import codec
from protocol import messages as m
from protocol.errors import ProtocolError
from protocol.messages import SessionInfo, Subscriber, Transaction

from .errors import InvalidArgument, InvalidArgumentType, InvalidReply
from .faults import FaultsAPI

if TYPE_CHECKING:
    from .parts import AdminHost

T = m.MsgType
SUBSCRIBER_PAGE = 1000   # subscribers per list_subscribers request
# items per request of the other listings: the server's most per reply (PROTOCOL.md)
SESSION_PAGE, TX_PAGE, RECORD_PAGE = 5000, 2000, 1000
DEFAULT_SESSIONS = 1000  # find_sessions without a limit


def to_decimal(value: Decimal | int | str, what: str) -> Decimal:
    """An exact amount from a Decimal, int or decimal string (floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidArgumentType(f"{what} must be a Decimal, int or decimal string, not "
                        f"{type(value).__name__}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise InvalidArgument(f"{what}: {value!r} is not a decimal number") from None
    try:
        return codec.check_decimal(result)
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None


class OperatorAPI:
    """Subscribers, sessions, the journal and statistics."""

    def __init__(self, client: AdminHost) -> None:
        self._client = client
        self._faults = FaultsAPI(self)

    @property
    def faults(self) -> FaultsAPI:
        """The server's fault rules (test controls): add, list, remove, clear."""
        return self._faults

    async def _run(self, command: str, **args: Any) -> Any:
        value, _ = await self._run_page(command, **args)
        return value

    async def _run_page(self, command: str, **args: Any) -> tuple[Any, Any]:
        """(typed value, `next` cursor or None) of one command. Only ChargingError
        escapes: an argument the wire cannot carry is InvalidArgument, a reply that cannot
        be read InvalidReply."""
        args = {k: v for k, v in args.items() if v is not None}
        op = self._client.new_operation_id() if command in codec.MUTATING_ADMIN else None
        try:
            request = codec.encode_body(m.AdminRequest(command, args, op))
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. an int past 64 bits
            raise InvalidArgument(f"{command}: an argument cannot be sent: {exc}") from None
        msg_type, body = await self._client.call(*request)
        if msg_type != T.ADMIN_RESULT:
            raise self._client.error_of(msg_type, body)
        try:
            result = codec.decode_body(msg_type, body)
            assert isinstance(result, m.AdminResult)
            return codec.admin_value_from_wire(command, result.value), result.next
        except ProtocolError as exc:
            raise InvalidReply(f"the server's reply to {command} could not be read: "
                               f"{exc}") from None

    async def create_subscriber(self, user_id: str, balance: Decimal | int | str,
                                currency: str = "EUR",
                                counters: Mapping[str, Decimal | int | str] | None = None,
                                plan: str | None = None) -> Subscriber:
        """Create a subscriber (UserExists if the id is taken), rated by price plan `plan`
        (None: the catalog's default plan; UnknownPlan if the catalog lacks it)."""
        counted = {name: to_decimal(v, f"counter {name!r}") for name, v in (counters or {}).items()}
        sub: Subscriber = await self._run(
            "create_subscriber", user=user_id, balance=to_decimal(balance, "balance"),
            currency=currency, counters=counted or None, plan=plan)
        return sub

    async def set_plan(self, user_id: str, plan: str,
                       start: dt.datetime | None = None) -> Subscriber:
        """Rate the subscriber by price plan `plan` from now, or from `start` (an aware
        datetime) when that is later; UnknownPlan if the catalog lacks it. Reservations
        held keep their amounts. Returns the subscriber afterwards."""
        if start is not None and (not isinstance(start, dt.datetime) or start.tzinfo is None):
            raise InvalidArgument("start must be an aware datetime (with a time zone)")
        sub: Subscriber = await self._run("set_plan", user=user_id, plan=plan,
                                          **{"from": start})
        return sub

    async def get_subscriber(self, user_id: str) -> Subscriber:
        """Balance, reserved, available and counters (UserUnknown if absent)."""
        sub: Subscriber = await self._run("get_subscriber", user=user_id)
        return sub

    async def top_up(self, user_id: str, amount: Decimal | int | str) -> Subscriber:
        """Credit the balance; returns the subscriber afterwards."""
        sub: Subscriber = await self._run("top_up", user=user_id,
                                          amount=to_decimal(amount, "amount"))
        return sub

    async def list_subscribers(self, prefix: str | None = None, currency: str | None = None,
                               after: str | None = None, limit: int | None = None
                               ) -> list[Subscriber]:
        """Subscribers ordered by user id, fetched page by page: those whose id starts
        with `prefix`, in `currency`, after the user id `after` (exclusive); at most
        `limit` (None: all)."""
        found: list[Subscriber] = await self._pages(
            "list_subscribers", limit, SUBSCRIBER_PAGE, lambda s: s.user_id, after,
            prefix=prefix, currency=currency)
        return found

    async def _pages(self, command: str, limit: int | None, page_size: int,
                     cursor: Callable[[Any], Any], after: Any, **args: Any) -> list[Any]:
        """A listing's items, page by page, at most `limit` (None: all). A page the server
        cut short to fit its frame limit carries `next`, the `after` of the following
        page; a page without it that is shorter than asked is the last."""
        found: list[Any] = []
        while limit is None or len(found) < limit:
            want = page_size if limit is None else min(page_size, limit - len(found))
            page, more = await self._run_page(command, after=after, limit=want, **args)
            found += page
            if not page:
                break
            if more is not None:
                if more == after:          # a cursor that does not move: stop, never loop
                    raise InvalidReply(f"{command}: the server's next cursor did not move")
                after = more
            elif len(page) < want:
                break
            else:
                after = cursor(page[-1])
        return found

    async def delete_subscriber(self, user_id: str, force: bool = False) -> list[Transaction]:
        """Remove a subscriber. While it has live sessions this is refused
        (SessionExists) unless `force`, which first cancels each of them; returns the
        releases that made (journaled, reason admin)."""
        txs: list[Transaction] = await self._run("delete_subscriber", user=user_id,
                                                 force=force or None)
        return txs

    async def adjust(self, user_id: str, amount: Decimal | int | str,
                     reason: str) -> Subscriber:
        """Credit (amount > 0) or debit (amount < 0) the balance, with a mandatory reason;
        journaled as a top_up or confirm with reason admin and the text in its rid field.
        A debit may take the balance below zero. Returns the subscriber afterwards."""
        sub: Subscriber = await self._run("adjust", user=user_id,
                                          amount=to_decimal(amount, "amount"), reason=reason)
        return sub

    async def set_counter(self, user_id: str, counter: str, units: Decimal | int | str,
                          reason: str | None = None) -> Subscriber:
        """Set an allowance counter to `units` (>= what reservations hold of it);
        journaled. Returns the subscriber afterwards."""
        sub: Subscriber = await self._run("set_counter", user=user_id, counter=counter,
                                          units=to_decimal(units, "units"), reason=reason)
        return sub

    async def reset_counter(self, user_id: str, counter: str,
                            reason: str | None = None) -> Subscriber:
        """Take an allowance counter to zero and remove it (refused while reservations
        hold units of it); journaled. Returns the subscriber afterwards."""
        sub: Subscriber = await self._run("reset_counter", user=user_id, counter=counter,
                                          reason=reason)
        return sub

    async def find_sessions(self, user_id: str | None = None, session_id: str | None = None,
                            limit: int | None = None, after: str | None = None
                            ) -> list[SessionInfo]:
        """Live sessions, by user and/or session id, ordered by session id, those after
        the session id `after` (exclusive); at most `limit` (default 1000), fetched page
        by page."""
        found: list[SessionInfo] = await self._pages(
            "find_sessions", DEFAULT_SESSIONS if limit is None else limit, SESSION_PAGE,
            lambda s: s.session_id, after, user=user_id, session=session_id)
        return found

    async def cancel_session(self, session_id: str) -> list[Transaction]:
        """Release every reservation of a session and remove it; the releases journaled."""
        txs: list[Transaction] = await self._run("cancel_session", session=session_id)
        return txs

    async def transactions(self, user_id: str | None = None, session_id: str | None = None,
                           after: int | None = None, limit: int | None = None
                           ) -> list[Transaction]:
        """Journal entries, oldest first, fetched page by page; `after` is a transaction id."""
        entries: list[Transaction] = await self._pages(
            "transactions", limit, TX_PAGE, lambda t: t.transaction_id, after,
            user=user_id, session=session_id)
        return entries

    async def request_renewal(self, session_id: str, reservation_id: str) -> None:
        """Have the server send a renewal notification for this charging session."""
        await self._run("request_renewal", session=session_id, rid=reservation_id)

    async def stats(self) -> dict[str, Any]:
        """Server statistics."""
        stats: dict[str, Any] = await self._run("stats")
        return stats

    async def catalog(self, service_id: str | None = None) -> list[dict[str, Any]]:
        """The server's price plans (of one service with `service_id`), ordered by service
        and item: maps with "service", "item", "quantity" (the item's quantity property),
        "step", "prices" (currency -> price per step) and "allowance" (counter or None)."""
        plans: list[dict[str, Any]] = await self._run("catalog", service=service_id)
        return plans

    # ------------------------------------------------------------------ test controls

    async def record(self, user: str | None = None, session: str | None = None,
                     kind: str | None = None, type: str | None = None,
                     direction: str | None = None, since: dt.datetime | None = None,
                     until: dt.datetime | None = None, limit: int | None = None, *,
                     user_id: str | None = None, session_id: str | None = None
                     ) -> list[dict[str, Any]]:
        """Frames of the server's request record (`cc-server --record N`), oldest first,
        filtered: subscriber, session, container kind, message type ("EXECUTE"),
        direction ("in" or "out"), time range. `user`, `session` and `kind` select
        exchanges: the requests that name them and the replies to those requests, errors
        included. The argument names are those of `server.record.verify(...)` and of
        fault rules; `user_id` and `session_id` are accepted too. Each entry is a map:
        seq, time, conn, conn_user, direction, type, request_id, body (decoded) or raw."""
        user = user if user is not None else user_id
        session = session if session is not None else session_id
        entries: list[dict[str, Any]] = await self._pages(
            "record_get", limit, RECORD_PAGE, lambda e: e["seq"], None, user=user,
            session=session, kind=kind, type=type, direction=direction, since=since,
            until=until)
        return entries

    async def record_clear(self) -> int:
        """Empty the request record; how many frames it held."""
        return int(await self._run("record_clear"))

    async def clock_get(self) -> dict[str, Any]:
        """The server's time and clock: {"time", "manual", "mode" ("wall", "manual" or
        "scaled"), "speed" (times real time; 0.0 when manual)}."""
        value: dict[str, Any] = await self._run("clock_get")
        return value

    async def clock_advance(self, seconds: float) -> dt.datetime:
        """Move a manual server clock forward (`cc-server --clock manual`); expiry and
        renewal timers run at once. Returns the server's new time."""
        value: dict[str, Any] = await self._run("clock_advance", seconds=float(seconds))
        when: dt.datetime = value["time"]
        return when

    async def clock_set(self, when: dt.datetime | str) -> dt.datetime:
        """Move a manual server clock to a time (an aware datetime or ISO-8601 text with a
        zone); never backwards. Returns the server's new time."""
        value: dict[str, Any] = await self._run("clock_set", time=when)
        moved: dt.datetime = value["time"]
        return moved
