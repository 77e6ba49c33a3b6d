"""The engine's performance caches: one `EngineCaches` per `Engine`, nothing module-level.

Every table here has one bound and one eviction rule: at most `bound` entries, and when
a new entry would pass the bound the table is cleared (cheap, and the few values a
workload repeats refill it at once). What is shared is immutable (strings, ints,
validated items nobody mutates), so a value handed out before a clear stays correct.
Two engines in one process (two servers in one test process) never share a table.
"""

from __future__ import annotations

import datetime as dt

from protocol import messages as m

UTC = dt.UTC
ITEMS_BOUND = 4096     # reservation items: a gateway asks for the same few quotas
TTLS_BOUND = 1024      # TTL values: a million reservations, a few TTLs
IDS_BOUND = 65_536     # service and reservation ids: a few distinct values, repeated


class EngineCaches:
    """Shared items, TTLs and ids, and the datetime of the latest `now` (see the module)."""

    __slots__ = ("_ids", "_items", "_stamp", "_ttls")

    def __init__(self) -> None:
        self._items: dict[tuple[str | None, str, int], m.ChargeableItem] = {}
        self._ttls: dict[int, int] = {}
        self._ids: dict[str, str] = {}
        # (epoch seconds, its aware datetime), replaced as ONE tuple: never a torn pair
        self._stamp: tuple[float, dt.datetime] = (0.0, dt.datetime.fromtimestamp(0, UTC))

    def datetime(self, now: float) -> dt.datetime:
        """`now` as an aware UTC datetime; the containers of one millisecond share one.
        Bound: one entry, replaced by the next different `now`."""
        stamp = self._stamp
        if stamp[0] != now:
            stamp = self._stamp = (now, dt.datetime.fromtimestamp(now, UTC))
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

    def ttl(self, ttl: float) -> float:
        """One int object per TTL value in use (floats are returned as they are)."""
        if type(ttl) is not int:
            return ttl
        table = self._ttls
        kept = table.get(ttl)
        if kept is None:
            if len(table) >= TTLS_BOUND:
                table.clear()
            kept = table[ttl] = ttl
        return kept

    def id(self, text: str) -> str:
        """One copy of an id that many sessions repeat (a service or reservation id).
        Unlike `sys.intern`, the copies are this engine's and bounded."""
        table = self._ids
        kept = table.get(text)
        if kept is None:
            if len(table) >= IDS_BOUND:
                table.clear()
            kept = table[text] = text
        return kept

    def sizes(self) -> dict[str, int]:
        """Entries in each table (for tests and statistics)."""
        return {"items": len(self._items), "ttls": len(self._ttls), "ids": len(self._ids)}
