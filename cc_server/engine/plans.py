"""Rates by time of day and day of week, graduated tiers, recurring allowances. No IO.

An item of a price plan is either flat (one price per step: `catalog.rate`, the fast path)
or dated: `rates` (periods; the first one matching the rating date sets the price per
step, else the item's price) or `tiers` (graduated: each unit is priced by the tier it
falls in, counted from the item's usage counter, each part in whole steps). An item has
rates or tiers, never both.

One rating uses one date and is never split by time: a reservation is rated at the date
of the container that makes or extends it, a confirmation at the date of the reservation
it confirms (when the usage it reports began). A quantity crossing a tier boundary is
split, each part in whole steps of its own tier's price.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

ZERO: Final = Decimal(0)
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY: Final = ("day", "week", "month")
DAY_MINUTES: Final = 1440


@dataclass(frozen=True, slots=True)
class Period:
    """A rate period: on `days` (0 = Monday) from minute `start` to minute `end` of the
    local day; `start >= end` wraps past midnight into the next day."""

    days: frozenset[int]
    start: int
    end: int
    prices: dict[str, Decimal]
    label: str
    #: what the journal's rating note says of it: "period N (label)", made once
    note: str = ""

    def matches(self, weekday: int, minute: int) -> bool:
        """Whether local `weekday` and `minute` (of the day) fall in this period."""
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        if weekday in self.days and minute >= self.start:
            return True
        return (weekday - 1) % 7 in self.days and minute < self.end


@dataclass(frozen=True, slots=True)
class Tier:
    """A graduated tier: units up to `up_to` (counted from zero usage; None: no limit)."""

    up_to: Decimal | None
    prices: dict[str, Decimal]
    label: str


@dataclass(frozen=True, slots=True)
class Allowance:
    """A counter set to `units` at the start of every `every` ("day", "week", "month")
    in the catalog's zone."""

    counter: str
    units: Decimal
    every: str


def period_price(periods: tuple[Period, ...], default: Decimal | None, currency: str,
                 local: dt.datetime) -> tuple[Decimal | None, str]:
    """(price per step, what set it) at the local date: the first matching period, else
    the item's own price (`default`)."""
    weekday = local.weekday()
    minute = local.hour * 60 + local.minute
    for period in periods:
        if period.matches(weekday, minute):
            return period.prices.get(currency), period.note
    return default, "no period: item price"


def _steps(quantity: Decimal, step: Decimal) -> Decimal:
    steps, rest = divmod(quantity, step)
    return steps + 1 if rest else steps


def tier_parts(tiers: tuple[Tier, ...], start: Decimal, quantity: Decimal
               ) -> list[tuple[int, Decimal]]:
    """The quantity from position `start` split by tier: [(tier index, units), ...]."""
    parts: list[tuple[int, Decimal]] = []
    position, left = start, quantity
    for index, tier in enumerate(tiers):
        if left <= 0:
            break
        up_to = tier.up_to
        if up_to is not None and position >= up_to:
            continue
        part = left if up_to is None else min(left, up_to - position)
        parts.append((index, part))
        position += part
        left -= part
    return parts


def tiered_amount(tiers: tuple[Tier, ...], step: Decimal, currency: str, start: Decimal,
                  quantity: Decimal) -> tuple[Decimal, str]:
    """(amount, which tier priced which part) of `quantity` from usage `start`."""
    amount = ZERO
    notes: list[str] = []
    for index, part in tier_parts(tiers, start, quantity):
        tier = tiers[index]
        price = tier.prices[currency]
        steps = _steps(part, step)
        amount += steps * price
        notes.append(f"tier {index + 1} ({tier.label}): {part} in {steps} x {price}")
    return amount, "; ".join(notes) if notes else "tiers: nothing to rate"


def tiered_affordable(tiers: tuple[Tier, ...], step: Decimal, currency: str, start: Decimal,
                      wanted: Decimal, credit: Decimal) -> Decimal:
    """The largest quantity <= `wanted` (from usage `start`) whose tiered amount fits
    `credit`, in whole steps of each tier."""
    got = ZERO
    position = start
    for tier in tiers:
        if got >= wanted or credit < 0:
            break
        up_to = tier.up_to
        if up_to is not None and position >= up_to:
            continue
        room = wanted - got if up_to is None else min(wanted - got, up_to - position)
        price = tier.prices[currency]
        cost = _steps(room, step) * price
        if cost <= credit:
            got += room
            position += room
            credit -= cost
            continue
        if price:
            got += min(room, (credit // price) * step)
        break
    return got


def period_start(every: str, local: dt.datetime) -> dt.datetime:
    """The start (local midnight) of the `every` period that holds `local`."""
    day = dt.datetime(local.year, local.month, local.day, tzinfo=local.tzinfo)
    if every == "day":
        return day
    if every == "week":
        return day - dt.timedelta(days=local.weekday())
    return day.replace(day=1)


def next_period_start(every: str, local: dt.datetime) -> dt.datetime:
    """The start of the `every` period after the one that holds `local`."""
    start = period_start(every, local)
    if every == "day":
        following = start.date() + dt.timedelta(days=1)
    elif every == "week":
        following = start.date() + dt.timedelta(days=7)
    elif start.month == 12:
        following = dt.date(start.year + 1, 1, 1)
    else:
        following = dt.date(start.year, start.month + 1, 1)
    return dt.datetime(following.year, following.month, following.day, tzinfo=local.tzinfo)
