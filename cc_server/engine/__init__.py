"""The charging engine: subscribers, sessions, reservations, rating, journal. No IO.

Every public method takes the current time (`now`, epoch seconds) from its caller, runs
to completion without yielding, and either returns what happened or raises `Refused`
having changed nothing. The server calls it from one thread, so containers for one
subscriber can never interleave.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Mapping
from decimal import (
    Context,
    Decimal,
    getcontext,
    localcontext,
    setcontext,
)
from typing import Any, Final

from protocol import messages as m
from protocol.errors import ErrorCode
from protocol.money import EXACT, in_wire_range, with_places

from . import sessions as rules
from .accounts import Account, out_of_range
from .caches import EngineCaches, SubscriberIds
from .catalog import Catalog, CatalogError, PricePlan
from .errors import Refused
from .expiry import NOT_QUEUED, ExpiryQueue
from .journal import DEFAULT_RETAIN, Journal
from .sessions import ChargingSession, Op, Session, Tally

__all__ = ["Catalog", "CatalogError", "ChargingSession", "Engine", "PricePlan", "Refused",
           "Session", "engine_context"]

UTC: Final = dt.UTC
# Wide enough that no amount of the wire's range is ever rounded; rounding would be a bug.
MONEY: Final[Context] = EXACT
# Final: compiled, each is a C static rather than a lookup on every use (protocol/buildinfo.py)
_getcontext: Final = getcontext
_setcontext: Final = setcontext
_new_tuple: Final = tuple.__new__
_EXECUTE_RESULT: Final = m.ExecuteResult
REQUEST: Final = m.TxReason.REQUEST
STOP: Final = m.TxReason.STOP
EXPIRY: Final = m.TxReason.EXPIRY
ADMIN: Final = m.TxReason.ADMIN
START_KIND: Final = m.ContainerKind.START
UPDATE_KIND: Final = m.ContainerKind.UPDATE
STOP_KIND: Final = m.ContainerKind.STOP


def engine_context() -> contextvars.Context:
    """A copy of the current context with the engine's decimal context: code run in it
    (a server's connections and timers) applies containers without swapping the decimal
    context in and out each time."""
    context = contextvars.copy_context()
    context.run(setcontext, MONEY)
    return context


def _before(account: Account) -> tuple[Decimal, tuple[ChargingSession, ...]] | None:
    """What `_credit_changed` compares against: None when nothing is starved or reduced."""
    if not account.hungry:
        return None
    return account.available, tuple(account.hungry)


class Engine:
    """All charging state of one server."""

    def __init__(self, catalog: Catalog | None = None,
                 journal_retain: int = DEFAULT_RETAIN) -> None:
        self.catalog = catalog or Catalog.builtin()
        self.accounts: dict[str, Account] = {}
        self.sessions: dict[str, Session] = {}
        self.journal = Journal(journal_retain)
        self.expiry = ExpiryQueue()
        #: charging sessions whose subscriber gained credit while they were starved or
        #: reduced, with the reason; the renewal layer drains it (`take_renewals`).
        self.renewals: dict[ChargingSession, m.RenewalReason] = {}
        #: sub-request outcomes: (action, error code or None) -> count (a defaultdict, not
        #: a Counter: one `+= 1` a sub-request, and Counter's costs 3 times more)
        self.counts: defaultdict[tuple[str, str | None], int] = defaultdict(int)
        self.tally = Tally()
        #: shared items, TTLs, ids and the latest datetime: bounded, this engine's only
        self.caches = EngineCaches()
        #: user ids in order, built by the first subscriber listing
        self.subscriber_ids: SubscriberIds | None = None
        #: when allowance refills were last decided (refills.py); None: not yet
        self.refill_mark: float | None = None

    # ------------------------------------------------------------------ containers

    def execute(self, req: m.Execute, now: float,
                sub_errors: Mapping[int, str] | None = None) -> m.ExecuteResult:
        """Apply one container; `Refused` for a whole-container failure.

        `sub_errors` (sub-request index -> error code) fails those sub-requests with the
        code, unapplied: a test-control fault rule (logged, so replay agrees)."""
        account = self.accounts.get(req.user_id)
        if account is None:
            raise Refused(ErrorCode.USER_UNKNOWN, f"no subscriber {req.user_id!r}")
        kind = req.kind
        if kind is START_KIND:
            session = self._new_session(req, account, now)
        elif kind is not UPDATE_KIND and kind is not STOP_KIND:   # not a member: a bug
            raise ValueError(f"unknown container kind {kind!r}")
        else:
            found = self.sessions.get(req.session_id)
            if found is None or found.user_id != req.user_id or \
                    found.service_id != req.service_id:
                raise Refused(ErrorCode.SESSION_NOT_FOUND,
                              f"no session {req.session_id!r} for this user and service")
            session = found
        before = _before(account)
        op = Op(self, account, session, now, REQUEST,
                req.result_type or session.result_type,
                session.filter_transaction if req.filter_transaction is None
                else req.filter_transaction)
        # Not localcontext(): it copies the context every time. A server runs its engine
        # in `engine_context()`, so the swap (a context variable set each way) is skipped.
        saved = _getcontext()
        if saved is not MONEY:
            _setcontext(MONEY)
        try:
            if req.external_data is not None:
                session.external_data = req.external_data
            if sub_errors:
                outcomes = [self._sub(op, sub) if i not in sub_errors else
                            self._injected(sub, ErrorCode(sub_errors[i]))
                            for i, sub in enumerate(req.subs)]
            else:
                outcomes = [self._sub(op, sub) for sub in req.subs]
            if req.kind is START_KIND:
                if session.has_charging_sessions():
                    self.sessions[session.session_id] = session
                    account.sessions[session.session_id] = None
            elif req.kind is STOP_KIND:
                named = {sub.reservation_id for sub in req.subs}
                op.reason = STOP
                op.result_type = req.cleanup_result_type or session.cleanup_result_type
                for cs in session.charging_sessions():
                    if cs.open:
                        outcome = rules.clean_up(op, cs)
                        if cs.reservation_id not in named:
                            outcomes.append(outcome)
                self._remove(session)
        finally:
            if saved is not MONEY:
                _setcontext(saved)
        self._credit_changed(account, before)
        return _new_tuple(_EXECUTE_RESULT, (session.session_id, tuple(outcomes)))

    def _new_session(self, req: m.Execute, account: Account, now: float) -> Session:
        if req.session_id in self.sessions:
            raise Refused(ErrorCode.SESSION_EXISTS, f"session {req.session_id!r} exists")
        if not req.subs:
            raise Refused(ErrorCode.INVALID_REQUEST, "a start container needs a prepare_reserve")
        # The same few user, service and reservation ids arrive in every request: a million
        # live sessions share one copy of each (~150 bytes a session): the account's user
        # id, and the engine's copies of the others (caches.py).
        return Session(req.session_id, account.user_id, self.caches.value(req.service_id), now,
                       req.listener_id,
                       req.external_data, req.result_type or m.ResultType.ALL_TRANSACTIONS,
                       req.cleanup_result_type or m.ResultType.ALL_TRANSACTIONS,
                       bool(req.filter_transaction))

    def _sub(self, op: Op, sub: m.SubRequest) -> m.Outcome:
        try:
            outcome = rules.apply(op, sub)
        except Refused as exc:
            outcome = rules.failed(sub.reservation_id, exc)
        # No DecimalException here: unreachable with the bounds on quantities and prices,
        # and raised half way through a sub-request it is an internal error (the server
        # stops, dispatch.py), never a refusal over a half-applied change.
        self.counts[sub.action, outcome.error] += 1
        return outcome

    def _injected(self, sub: m.SubRequest, code: ErrorCode) -> m.Outcome:
        """A sub-request a fault rule fails, unapplied (counted like any outcome)."""
        self.counts[sub.action, code] += 1
        return m.Outcome(sub.reservation_id, code, "injected by a fault rule")

    def _remove(self, session: Session) -> None:
        session.alive = False
        for cs in session.charging_sessions():
            self.expiry.remove(cs)
        session.clear_charging_sessions()   # no reference cycle left: freed by refcount
        self.sessions.pop(session.session_id, None)
        account = self.accounts.get(session.user_id)
        if account is not None:
            account.sessions.pop(session.session_id, None)

    def _credit_changed(self, account: Account,
                        before: tuple[Decimal, tuple[ChargingSession, ...]] | None) -> None:
        """Queue renewals for charging sessions that were starved or reduced before an
        operation that raised the available credit (starving one never notifies it)."""
        if before is None:
            return
        available, hungry = before
        if account.available > available:
            for cs in hungry:
                if cs in account.hungry:
                    self.renewals.setdefault(cs, m.RenewalReason.CREDIT_AVAILABLE)

    # ------------------------------------------------------------------ time

    def next_expiry(self) -> float | None:
        """The earliest reservation deadline (possibly one no longer current), or None."""
        return self.expiry.next_deadline()

    def expire(self, now: float, limit: int = 10_000) -> int:
        """Clean up reservations whose TTL ran out by `now`; returns how many were due."""
        return len(self.expire_due(now, limit))

    def expire_due(self, now: float, limit: int = 10_000) -> list[ChargingSession]:
        """Clean up up to `limit` charging sessions due by `now`, earliest (deadline,
        sequence) first; returns them in the order they were cleaned up (what the log
        records, for `expire_these` to repeat)."""
        due: list[ChargingSession] = []
        for item in self.expiry.pop_due(now, limit):
            assert isinstance(item, ChargingSession)
            due.append(item)
        self._clean_up_due(due, now)
        return due

    def expire_these(self, now: float, keys: list[tuple[str, str]]) -> None:
        """Replay: clean up exactly these (session id, reservation id), in this order, as
        a timer run did at `now`, whatever the queue would choose. `KeyError` for one that
        is not there (a log that does not belong to this state)."""
        due: list[ChargingSession] = []
        for session_id, reservation_id in keys:
            session = self.sessions.get(session_id)
            cs = session.charging_session(reservation_id) if session is not None else None
            if cs is None or cs.heap_index == NOT_QUEUED:
                raise KeyError(f"logged expiry of {session_id!r}/{reservation_id!r}: no such "
                               "queued reservation")
            due.append(cs)
        for cs in due:
            self.expiry.remove(cs)
        self._clean_up_due(due, now)

    def _clean_up_due(self, due: list[ChargingSession], now: float) -> None:
        with localcontext(MONEY):
            for item in due:
                session = item.session
                account = self.accounts[session.user_id]
                before = _before(account)
                if item.open:
                    op = Op(self, account, session, now,
                            EXPIRY, session.cleanup_result_type, session.filter_transaction)
                    rules.clean_up(op, item)
                if session.settled(now):
                    self._remove(session)
                self._credit_changed(account, before)

    # ------------------------------------------------------------------ operator

    def _account(self, user_id: str) -> Account:
        account = self.accounts.get(user_id)
        if account is None:
            raise Refused(ErrorCode.USER_UNKNOWN, f"no subscriber {user_id!r}")
        return account

    def create_subscriber(self, user_id: str, balance: Decimal, currency: str = "EUR",
                          counters: Mapping[str, Decimal] | None = None,
                          plan: str | None = None) -> m.Subscriber:
        """A new subscriber; `Refused(USER_EXISTS)` if the id is taken, UNKNOWN_PLAN for a
        plan the catalog lacks. Counters not given start at the plan's allowances."""
        from . import refills
        if user_id in self.accounts:
            raise Refused(ErrorCode.USER_EXISTS, f"subscriber {user_id!r} already exists")
        if balance < 0:
            raise Refused(ErrorCode.INVALID_REQUEST, "an opening balance must be >= 0 "
                          "(a debt is made with an adjustment after creation)")
        for name, value in (counters or {}).items():
            if value < 0:
                raise Refused(ErrorCode.INVALID_REQUEST, f"counter {name!r} must be >= 0")
            if not in_wire_range(value):
                raise out_of_range(f"counter {name!r}", value)
        if plan is not None:
            refills.check_plan(self, plan)
        account = Account(user_id, balance, currency,
                          refills.opening_counters(self, plan, dict(counters or {})), plan)
        account.check_balance(account.balance)     # with its currency's places
        self.accounts[user_id] = account
        return account.snapshot()

    def get_subscriber(self, user_id: str) -> m.Subscriber:
        """Balance, reserved, available and counters of one subscriber."""
        return self._account(user_id).snapshot()

    def top_up(self, user_id: str, amount: Decimal, now: float) -> m.Subscriber:
        """Credit the balance (journaled); may trigger renewal notifications."""
        account = self._account(user_id)
        if amount <= 0:
            raise Refused(ErrorCode.INVALID_REQUEST, "a top-up amount must be > 0")
        amount = with_places(amount, account.currency)
        balance = EXACT.add(account.balance, amount)
        account.check_balance(balance)
        before = _before(account)
        account.balance = balance
        self.journal.record(dt.datetime.fromtimestamp(now, UTC), user_id, None, None,
                            m.TxKind.TOP_UP, ADMIN, amount, account.currency)
        self._credit_changed(account, before)
        return account.snapshot()

    def find_sessions(self, user_id: str | None = None, session_id: str | None = None,
                      limit: int = 1000, after: str | None = None) -> list[m.SessionInfo]:
        """Live sessions by user and/or id, ordered by session id (code points), those
        after the session id `after` (exclusive); at most `limit`. O(n log limit) over
        the user's sessions (or all of them without a user)."""
        if session_id is not None:
            found = self.sessions.get(session_id)
            ids = [session_id] if found and user_id in (None, found.user_id) \
                and (after is None or session_id > after) else []
        else:
            if user_id is not None:
                account = self.accounts.get(user_id)
                pool: dict[str, Any] = account.sessions if account else {}
            else:
                pool = self.sessions
            ids = heapq.nsmallest(limit, pool if after is None else
                                  (sid for sid in pool if sid > after))
        return [self._info(self.sessions[sid]) for sid in ids]

    @staticmethod
    def _info(s: Session) -> m.SessionInfo:
        return m.SessionInfo(
            s.session_id, s.user_id, s.service_id, dt.datetime.fromtimestamp(s.created_at, UTC),
            s.listener_id, s.external_data, tuple(
                m.ReservationInfo(
                    cs.reservation_id,
                    "starved" if cs.starved else "open" if cs.open else "ended", cs.item,
                    cs.held, dt.datetime.fromtimestamp(cs.expires_at, UTC), cs.resolution,
                    {cs.counter: cs.units} if cs.counter and cs.units else {}, cs.inverse)
                for cs in s.charging_sessions()))

    def cancel_session(self, session_id: str, now: float) -> list[m.Transaction]:
        """Release every reservation of a session, whatever its default, and remove it."""
        session = self.sessions.get(session_id)
        if session is None:
            raise Refused(ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r}")
        account = self.accounts[session.user_id]
        before = _before(account)
        first = self.journal.next_id
        op = Op(self, account, session, now, ADMIN,
                m.ResultType.ALL_TRANSACTIONS, False)
        with localcontext(MONEY):
            for cs in session.charging_sessions():
                if cs.open:
                    rules.clean_up(op, cs, m.Resolution.CANCELED)
        self._remove(session)
        self._credit_changed(account, before)
        return self.journal.query(session_id=session_id, after=first - 1)

    def transactions(self, user_id: str | None = None, session_id: str | None = None,
                     after: int | None = None, limit: int | None = None) -> list[m.Transaction]:
        """Journal entries, oldest first."""
        return self.journal.query(user_id, session_id, after, limit)

    def request_renewal(self, session_id: str, reservation_id: str) -> ChargingSession:
        """Operator-triggered renewal notification for one open charging session."""
        session = self.sessions.get(session_id)
        if session is None:
            raise Refused(ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r}")
        cs = session.charging_session(reservation_id)
        if cs is None or not cs.open:
            raise Refused(ErrorCode.RESERVATION_NOT_FOUND,
                          f"no open reservation {reservation_id!r} in session {session_id!r}")
        self.renewals[cs] = m.RenewalReason.OPERATOR
        return cs

    def take_renewals(self) -> dict[ChargingSession, m.RenewalReason]:
        """Charging sessions due a renewal notification since the last call."""
        due, self.renewals = self.renewals, {}
        return due

    def stats(self) -> dict[str, Any]:
        """Sizes of the engine's state."""
        return {"subscribers": len(self.accounts), "sessions": len(self.sessions),
                "reservations": self.tally.open_reservations, "journal_entries": len(self.journal),
                "journal_next_id": self.journal.next_id, "expiry_queue": len(self.expiry)}
