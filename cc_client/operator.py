"""The operator API, `client.admin` (role `admin` when the server has a users file)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from protocol import codec
from protocol import messages as m
from protocol.messages import SessionInfo, Subscriber, Transaction

from .errors import InvalidArgument, InvalidArgumentType
from .faults import FaultsAPI

if TYPE_CHECKING:
    from .parts import AdminHost

T = m.MsgType
SUBSCRIBER_PAGE = 1000   # subscribers per list_subscribers request


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
        args = {k: v for k, v in args.items() if v is not None}
        op = self._client.new_operation_id() if command in codec.MUTATING_ADMIN else None
        msg_type, body = await self._client.call(
            *codec.encode_body(m.AdminRequest(command, args, op)))
        if msg_type != T.ADMIN_RESULT:
            raise self._client.error_of(msg_type, body)
        result = codec.decode_body(msg_type, body)
        assert isinstance(result, m.AdminResult)
        return codec.admin_value_from_wire(command, result.value)

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
        found: list[Subscriber] = []
        while limit is None or len(found) < limit:
            want = SUBSCRIBER_PAGE if limit is None else min(SUBSCRIBER_PAGE,
                                                             limit - len(found))
            page: list[Subscriber] = await self._run(
                "list_subscribers", prefix=prefix, currency=currency, after=after, limit=want)
            found += page
            if len(page) < want:
                break
            after = page[-1].user_id
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
                            limit: int | None = None) -> list[SessionInfo]:
        """Live sessions, by user and/or session id (at most `limit`, default 1000)."""
        found: list[SessionInfo] = await self._run("find_sessions", user=user_id,
                                                   session=session_id, limit=limit)
        return found

    async def cancel_session(self, session_id: str) -> list[Transaction]:
        """Release every reservation of a session and remove it; the releases journaled."""
        txs: list[Transaction] = await self._run("cancel_session", session=session_id)
        return txs

    async def transactions(self, user_id: str | None = None, session_id: str | None = None,
                           after: int | None = None, limit: int | None = None
                           ) -> list[Transaction]:
        """Journal entries, oldest first, fetched page by page; `after` is a transaction id."""
        entries: list[Transaction] = []
        while limit is None or len(entries) < limit:
            page: list[Transaction] = await self._run(
                "transactions", user=user_id, session=session_id, after=after,
                limit=None if limit is None else limit - len(entries))
            entries += page
            if not page:
                break
            after = page[-1].transaction_id
        return entries

    async def request_renewal(self, session_id: str, reservation_id: str) -> None:
        """Have the server send a renewal notification for this charging session."""
        await self._run("request_renewal", session=session_id, rid=reservation_id)

    async def stats(self) -> dict[str, Any]:
        """Server statistics."""
        stats: dict[str, Any] = await self._run("stats")
        return stats

    # ------------------------------------------------------------------ test controls

    async def record(self, user_id: str | None = None, session_id: str | None = None,
                     kind: str | None = None, type: str | None = None,
                     direction: str | None = None, since: dt.datetime | None = None,
                     until: dt.datetime | None = None, limit: int | None = None
                     ) -> list[dict[str, Any]]:
        """Frames of the server's request record (`cc-server --record N`), oldest first,
        filtered: subscriber, session, container kind, message type ("EXECUTE"),
        direction ("in" or "out"), time range. Each is a map: seq, time, conn,
        conn_user, direction, type, request_id, body (decoded) or raw."""
        entries: list[dict[str, Any]] = []
        after = 0
        while limit is None or len(entries) < limit:
            page: list[dict[str, Any]] = await self._run(
                "record_get", user=user_id, session=session_id, kind=kind, type=type,
                direction=direction, since=since, until=until, after=after or None,
                limit=None if limit is None else limit - len(entries))
            entries += page
            if not page:
                break
            after = page[-1]["seq"]
        return entries

    async def record_clear(self) -> int:
        """Empty the request record; how many frames it held."""
        return int(await self._run("record_clear"))

    async def clock_get(self) -> dict[str, Any]:
        """The server's time and whether its clock is manual: {"time", "manual"}."""
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
