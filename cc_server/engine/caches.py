"""The engine's performance caches: one `EngineCaches` per `Engine`, nothing module-level.

Every table here has one bound and one eviction rule: at most `bound` entries, and when
a new entry would pass the bound the table is cleared (cheap, and the few values a
workload repeats refill it at once). What is shared is immutable (strings, ints,
validated items nobody mutates), so a value handed out before a clear stays correct.
Two engines in one process (two servers in one test process) never share a table.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Final, TypeVar, cast

from protocol import messages as m

UTC: Final = dt.UTC
ITEMS_BOUND: Final = 4096      # reservation items: a gateway asks for the same few quotas
VALUES_BOUND: Final = 65_536   # service and reservation ids, TTLs: a few values, repeated
V = TypeVar("V", str, int)


class EngineCaches:
    """Shared items, ids, TTLs and amounts, and the datetime of the latest `now` (see
    the module)."""

    __slots__ = ("_amounts", "_expiry", "_items", "_local", "_quantities", "_stamp",
                 "_values")

    def __init__(self) -> None:
        self._items: dict[tuple[str | None, str, int], m.ChargeableItem] = {}
        self._values: dict[str | int, str | int] = {}
        self._amounts: dict[str, Decimal] = {}
        self._quantities: dict[int, Decimal] = {}
        # (epoch seconds, its aware datetime), replaced as ONE tuple: never a torn pair
        self._stamp: tuple[float, dt.datetime] = (0.0, dt.datetime.fromtimestamp(0, UTC))
        self._expiry = self._stamp     # the same, for the latest reservation deadline
        # (whole epoch second, zone, that second in the zone): a dated item's rating date
        self._local: tuple[int, dt.tzinfo, dt.datetime] = (0, UTC, self._stamp[1])

    def datetime(self, now: float) -> dt.datetime:
        """`now` as an aware UTC datetime; the containers of one millisecond share one.
        Bound: one entry, replaced by the next different `now`."""
        stamp = self._stamp
        if stamp[0] != now:
            stamp = self._stamp = (now, dt.datetime.fromtimestamp(now, UTC))
        return stamp[1]

    def local(self, when: float, zone: dt.tzinfo) -> dt.datetime:
        """`when` in `zone`, to the whole second (rate periods need only the minute): the
        ratings of one second share one. Bound: one entry, replaced by the next second."""
        second = int(when)             # the clock never goes before 1970: a floor
        stamp = self._local
        if stamp[0] != second or stamp[1] is not zone:
            stamp = self._local = (second, zone, dt.datetime.fromtimestamp(second, zone))
        return stamp[2]

    def expiry(self, when: float) -> dt.datetime:
        """A reservation deadline as an aware UTC datetime: the reservations of one
        millisecond with one TTL share one. Bound: one entry, replaced by the next."""
        stamp = self._expiry
        if stamp[0] != when:
            stamp = self._expiry = (when, dt.datetime.fromtimestamp(when, UTC))
        return stamp[1]

    def item(self, item: m.ChargeableItem) -> m.ChargeableItem:
        """The item as a reservation keeps it. Reservations mostly hold the same item (the
        quota a gateway asks for), so one-property items with an int quantity are shared,
        not kept a million times over (240 bytes each). Nothing mutates a stored item."""
        name, props = item
        if len(props) != 1:
            return item
        ((key, value),) = props.items()
        if type(value) is not int:       # 1 == 1.0 == True: share only exact ints
            return item
        table = self._items
        kept = table.get((name, key, value))
        if kept is None:
            if len(table) >= ITEMS_BOUND:
                table.clear()
            kept = table[name, key, value] = item
        return kept

    def amount(self, amount: Decimal) -> Decimal:
        """One copy of an amount that many reservations hold (a million live sessions
        holding the same quota hold the same price, 104 bytes each). Kept by its text:
        equal Decimals can differ in exponent (1.0 and 1.00 print differently), and the
        first hash of a fractional Decimal costs ~6 times its `str` (a modular power)."""
        table = self._amounts
        text = str(amount)
        kept = table.get(text)
        if kept is not None:
            return kept
        if len(table) >= VALUES_BOUND:
            table.clear()
        table[text] = amount
        return amount

    def quantity(self, value: int) -> Decimal:
        """An int quantity as a Decimal: the same few quotas come in every request, and
        `Decimal(int)` parses its arguments each time (~5 times this lookup)."""
        table = self._quantities
        known = table.get(value)
        if known is None:
            if len(table) >= VALUES_BOUND:
                table.clear()
            known = table[value] = Decimal(value)
        return known

    def ttl(self, ttl: float) -> float:
        """One int object per TTL value in use (a float is returned as it is)."""
        return self.value(ttl) if type(ttl) is int else ttl

    def value(self, value: V) -> V:
        """One copy of a value that many reservations repeat: a service or reservation
        id, a TTL. Unlike `sys.intern`, the copies are this engine's and bounded."""
        table = self._values
        kept = table.get(value)
        if kept is None:
            if len(table) >= VALUES_BOUND:
                table.clear()
            kept = table[value] = value
        return cast(V, kept)

    def sizes(self) -> dict[str, int]:
        """Entries in each table (for tests and statistics)."""
        return {"items": len(self._items), "values": len(self._values),
                "amounts": len(self._amounts), "quantities": len(self._quantities)}


class SubscriberIds:
    """The engine's user ids in order, for paged listings (see `subscribers.py`); `size`
    is how many of `Engine.accounts` it covers."""

    __slots__ = ("ids", "size")

    def __init__(self, ids: list[str], size: int) -> None:
        self.ids = ids
        self.size = size
