"""Operator commands on subscribers: list, delete, adjust, allowance counters. No IO.

Like the rest of the engine, each function takes the time from its caller and either
applies completely or raises `Refused` having changed nothing.

Every movement of money or counter units is journaled (reason `admin`, no session) with
the kinds the journal already has, so conservation stays recomputable from it alone:

    balance     == initial + sum(top_up amounts) - sum(confirm amounts)
    counters[c] == initial[c] + sum(top_up units of c) - sum(confirm units of c)

An adjustment credit is a `top_up`, a debit a `confirm`; a counter change is a `top_up`
(more units) or `confirm` (fewer) of amount 0. The operator's reason is kept in the entry's
reservation id field (nil for a counter change without one).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right, insort
from decimal import Decimal, localcontext
from itertools import islice

from protocol import messages as m
from protocol.errors import ErrorCode
from protocol.money import EXACT, in_wire_range, with_places, zero

from . import MONEY, Engine, _before
from .accounts import ZERO, Account, out_of_range
from .caches import SubscriberIds
from .errors import Refused

UTC = dt.UTC
ADMIN = m.TxReason.ADMIN
SHOWN_SESSIONS = 3   # session ids named in the refusal of a delete


FEW = 16    # new ids inserted one by one; more: appended, then one (near-linear) sort


def _sorted_ids(engine: Engine) -> list[str]:
    """User ids in order, kept in step with `engine.accounts` without scanning it: a new
    subscriber is appended to that dict (its newest entries are the ids not indexed yet)
    and a subscriber leaves it only through `delete_subscriber`, which updates the index.
    The index belongs to the engine (`Engine.subscriber_ids`), built at the first listing."""
    accounts = engine.accounts
    index = engine.subscriber_ids
    if index is None or index.size > len(accounts):
        index = engine.subscriber_ids = SubscriberIds(sorted(accounts), len(accounts))
    elif index.size < len(accounts):
        new = list(islice(reversed(accounts), len(accounts) - index.size))
        if len(new) <= FEW:
            for uid in new:
                insort(index.ids, uid)
        else:
            index.ids += new
            index.ids.sort()          # a sorted run and a tail: timsort merges them
        index.size = len(accounts)
    return index.ids


def _unindex(engine: Engine, user_id: str) -> None:
    """`user_id` has just left `engine.accounts`."""
    index = engine.subscriber_ids
    if index is None:
        return
    at = bisect_left(index.ids, user_id)
    if index.size == len(engine.accounts) + 1 and at < len(index.ids) \
            and index.ids[at] == user_id:
        del index.ids[at]
        index.size -= 1
    else:
        engine.subscriber_ids = None   # out of step: rebuilt by the next listing


def list_subscribers(engine: Engine, prefix: str | None = None, currency: str | None = None,
                     after: str | None = None, limit: int = 1000) -> list[m.Subscriber]:
    """Subscribers ordered by user id (code points), those after `after` (exclusive) whose
    id starts with `prefix` and whose currency is `currency`; at most `limit`.

    O(log n + what it looks at): ids with a prefix are contiguous in the order, so only
    a currency filter can make it look past the page it returns."""
    accounts = engine.accounts
    ids = _sorted_ids(engine)
    at = bisect_right(ids, after) if after is not None else 0
    if prefix is not None:
        at = max(at, bisect_left(ids, prefix))
    found: list[m.Subscriber] = []
    while at < len(ids) and len(found) < limit:
        uid = ids[at]
        at += 1
        if prefix is not None and not uid.startswith(prefix):
            break
        account = accounts[uid]
        if currency is None or account.currency == currency:
            found.append(account.snapshot())
    return found


def delete_subscriber(engine: Engine, user_id: str, force: bool, now: float
                      ) -> list[m.Transaction]:
    """Remove a subscriber; returns the releases of the sessions `force` cancelled.

    Refused with SESSION_EXISTS while the subscriber has live sessions, unless `force`:
    then each is first cancelled as `cancel_session` does (every open reservation
    released, whatever its default resolution, journaled with reason admin).
    """
    account = engine._account(user_id)
    live = sorted(account.sessions)     # sorted: the same journal ids when replayed
    if live and not force:
        shown = ", ".join(repr(s) for s in live[:SHOWN_SESSIONS])
        more = f" and {len(live) - SHOWN_SESSIONS} more" if len(live) > SHOWN_SESSIONS else ""
        raise Refused(ErrorCode.SESSION_EXISTS,
                      f"subscriber {user_id!r} has {len(live)} live session(s) ({shown}{more});"
                      " cancel them first, or delete with force")
    released: list[m.Transaction] = []
    account.hungry.clear()              # nothing of theirs is to be renewed any more
    for session_id in live:
        released += engine.cancel_session(session_id, now)
    for cs in [cs for cs in engine.renewals if cs.session.user_id == user_id]:
        del engine.renewals[cs]
    del engine.accounts[user_id]
    _unindex(engine, user_id)
    return released


def adjust(engine: Engine, user_id: str, amount: Decimal, reason: str,
           now: float) -> m.Subscriber:
    """Credit (amount > 0) or debit (amount < 0) the balance, journaled with `reason`.

    A debit may take the balance below zero (that is how a debt is made); a credit may
    trigger credit_available renewal notifications, as a top-up does.
    """
    account = engine._account(user_id)
    if not amount:
        raise Refused(ErrorCode.INVALID_REQUEST, "an adjustment amount must not be 0")
    if not reason.strip():
        raise Refused(ErrorCode.INVALID_REQUEST, "an adjustment needs a reason")
    balance = EXACT.add(account.balance, amount)
    account.check_balance(balance)
    before = _before(account)
    account.balance = balance
    kind = m.TxKind.TOP_UP if amount > 0 else m.TxKind.CONFIRM
    engine.journal.record(dt.datetime.fromtimestamp(now, UTC), user_id, None, reason, kind,
                          ADMIN, with_places(amount.copy_abs(), account.currency),
                          account.currency)
    engine._credit_changed(account, before)
    return account.snapshot()


def set_counter(engine: Engine, user_id: str, counter: str, units: Decimal,
                reason: str | None, now: float) -> m.Subscriber:
    """Set an allowance counter to `units` (>= what reservations hold of it), journaled."""
    account = engine._account(user_id)
    if units < 0:
        raise Refused(ErrorCode.INVALID_REQUEST, f"counter {counter!r} must be >= 0")
    if not in_wire_range(units):
        raise out_of_range(f"counter {counter!r}", units)
    _check_held(account, counter, units)
    _move_counter(engine, account, counter, units, reason, now)
    account.counters[counter] = units
    return account.snapshot()


def reset_counter(engine: Engine, user_id: str, counter: str, reason: str | None,
                  now: float) -> m.Subscriber:
    """Take an allowance counter to zero and remove it from the subscriber, journaled."""
    account = engine._account(user_id)
    if counter not in account.counters:
        raise Refused(ErrorCode.INVALID_REQUEST,
                      f"subscriber {user_id!r} has no counter {counter!r}")
    _check_held(account, counter, ZERO)
    _move_counter(engine, account, counter, ZERO, reason, now)
    del account.counters[counter]
    return account.snapshot()


def _check_held(account: Account, counter: str, units: Decimal) -> None:
    held = account.counters_reserved.get(counter, ZERO)
    if units < held:
        raise Refused(ErrorCode.INVALID_REQUEST,
                      f"reservations hold {held} units of counter {counter!r}: set it to "
                      "at least that, or cancel them first")


def _move_counter(engine: Engine, account: Account, counter: str, units: Decimal,
                  reason: str | None, now: float) -> None:
    """Journal the change of a counter to `units` (nothing when it does not change)."""
    with localcontext(MONEY):
        delta = units - account.counters.get(counter, ZERO)
    if delta:
        kind = m.TxKind.TOP_UP if delta > 0 else m.TxKind.CONFIRM
        engine.journal.record(dt.datetime.fromtimestamp(now, UTC), account.user_id, None,
                              reason, kind, ADMIN, zero(account.currency), account.currency,
                              counter, delta.copy_abs())
