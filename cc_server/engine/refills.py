"""Per-subscriber price plans and recurring allowance refills. No IO.

A refill is decided by the server's timers (`due`) and applied by `apply`, which the
write-ahead log records with the period starts it applied, so replay gives the same
refills whatever the timing of the ticks. Only the latest start of each kind ("day",
"week", "month") passed since the previous decision is applied: setting a counter to its
`units` twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext

from protocol import messages as m
from protocol.errors import ErrorCode
from protocol.money import zero

from . import MONEY, Engine
from .accounts import ZERO, Account
from .errors import Refused
from .plans import EVERY, next_period_start, period_start

UTC = dt.UTC
REFILL = m.TxReason.REFILL


def check_plan(engine: Engine, plan: str) -> None:
    """Refuse a plan name the catalog does not have (`UNKNOWN_PLAN`)."""
    if plan not in engine.catalog.named:
        raise Refused(ErrorCode.UNKNOWN_PLAN, f"no price plan {plan!r} in the catalog "
                      f"(plans: {', '.join(sorted(engine.catalog.named))})")


def opening_counters(engine: Engine, plan: str | None,
                     counters: dict[str, Decimal]) -> dict[str, Decimal]:
    """A new subscriber's counters: those given, and its plan's allowances at their
    `units` for the counters not given."""
    for allowance in engine.catalog.allowances(plan):
        counters.setdefault(allowance.counter, allowance.units)
    return counters


def set_plan(engine: Engine, user_id: str, plan: str, start: float | None,
             now: float) -> m.Subscriber:
    """Change a subscriber's plan now, or from `start` (epoch seconds) when that is
    later. Reservations held keep their amounts; whatever is rated from the change on
    (their confirmation included) is rated by the new plan."""
    account = engine._account(user_id)
    check_plan(engine, plan)
    if start is None or start <= now:
        account.plan, account.plan_next = plan, None
    else:
        account.plan_next = (plan, start)
    return account.snapshot()


def kinds(engine: Engine) -> tuple[str, ...]:
    """The periods ("day", "week", "month") some allowance of the catalog refills on."""
    used = {a.every for plan in engine.catalog.named.values() for a in plan.allowances}
    return tuple(every for every in EVERY if every in used)


def due(engine: Engine, now: float) -> list[tuple[str, float]] | None:
    """The period starts passed since the last decision, latest of each kind: what
    `apply` is to do at `now`. None: nothing to decide, as with a catalog without
    allowances ([]: only the first decision, which marks `now` as the time refills count
    from)."""
    every_kind = kinds(engine)
    if not every_kind:
        return None
    mark = engine.refill_mark
    if mark is None:
        return []
    if now <= mark:
        return None
    zone = engine.catalog.zone
    found: list[tuple[str, float]] = []
    local_mark = dt.datetime.fromtimestamp(mark, zone)
    for every in every_kind:
        if next_period_start(every, local_mark).timestamp() <= now:
            start = period_start(every, dt.datetime.fromtimestamp(now, zone))
            found.append((every, start.timestamp()))
    return found or None


def apply(engine: Engine, now: float, starts: list[tuple[str, float]]) -> int:
    """Refill every subscriber's allowances of the kinds in `starts` (in order, each at
    its period start); `now` becomes the time later refills count from. Returns the
    number of counters set."""
    engine.refill_mark = now
    done = 0
    with localcontext(MONEY):
        for every, start in starts:
            for account in engine.accounts.values():
                for allowance in engine.catalog.allowances(account.plan_at(start)):
                    if allowance.every == every:
                        _refill(engine, account, allowance.counter, allowance.units,
                                every, start)
                        done += 1
    return done


def _refill(engine: Engine, account: Account, counter: str, units: Decimal, every: str,
            start: float) -> None:
    """Set one counter to `units` (never below what reservations hold of it), journaled
    with reason `refill` at the period start."""
    units = max(units, account.counters_reserved.get(counter, ZERO))
    delta = units - account.counters.get(counter, ZERO)
    account.counters[counter] = units
    if delta:
        kind = m.TxKind.TOP_UP if delta > 0 else m.TxKind.CONFIRM
        engine.journal.record(dt.datetime.fromtimestamp(start, UTC), account.user_id, None,
                              None, kind, REFILL, zero(account.currency), account.currency, counter,
                              delta.copy_abs(), f"refill every {every}")
