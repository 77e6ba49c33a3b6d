"""Garbage collection for a process whose state is millions of long-lived objects.

CPython's collector scans every tracked object in a full collection, and triggers one
each time the long-lived population grows by a quarter: with a million sessions that is a
pause of over a second, again and again. The server's own objects hold no reference
cycles once dead (sessions break theirs when removed), so refcounting frees them. This
policy therefore moves every survivor to the permanent generation every `freeze_every`
seconds (`gc.freeze`, O(1)), so automatic collections only ever scan objects younger
than that.

Before each freeze it collects the youngest generation (`gc.collect(0)`: the objects
allocated since the last automatic collection, at most ~10,000), so the cycles that died
young (exceptions and their frames, finished futures) are freed instead of being frozen,
where only a full collection finds them. That costs one automatic collection a second,
~3 ms and 0.2 % of the time under full load (nothing when idle). Collecting generation 1
too would also catch the few cycles that died after their first collection but before
the freeze: it rescans every survivor of the second, ~30 ms (a pause each second, ten
times the cost), so those are left to the full collection.

The full collection (unfreeze, collect all, freeze) is the one pause that grows with
the state: about 0.2-0.6 µs per object, 1-3 s for a million sessions (~7 million
objects). It only finds cycles that died after being frozen (a closed connection leaves
a few objects in one, from the asyncio transport), so it is adaptive rather than
periodic:

- its pauses take at most `budget` (0.1 %) of wall time: after a pause of P seconds the
  next one is at least P / budget later (a 1.2 s pause: 20 minutes). When the heap has
  grown since (`sys.getallocatedblocks`, ~2 ms for 9 million blocks), the pause is
  predicted in proportion and the collection postponed accordingly: a server that started
  empty and holds a million sessions ten minutes later does not pause then;
- while it finds little (at most 0.1 % of the objects it scanned) the interval doubles,
  up to `max_interval` (24 h); once it finds more, it returns to `full_every`. Dead
  cycles thus stay around 0.1-0.2 % of the objects between collections, whatever the
  interval;
- a due collection waits for a quiet second (no request served, per `activity`) for at
  most one more interval, so a server with lulls in its traffic pauses in them.

Bounding the pause itself is not possible: CPython cannot collect part of the permanent
generation, and a collector thread would hold the GIL just the same.
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import time
from collections.abc import Callable

log = logging.getLogger("cc_server")

#: share of wall time the full collections may pause the process (0.1 %)
PAUSE_BUDGET = 0.001
#: longest interval between full collections that find nothing (24 h)
MAX_INTERVAL = 86_400.0
#: a full collection that found at most this share of the objects it scanned found little
LITTLE = 0.001
#: seconds without a request that make a quiet moment for a due full collection
QUIET = 1.0


def collect_young_and_freeze() -> int:
    """Collect the youngest generation and freeze the survivors; the number of
    unreachable objects found."""
    found = gc.collect(0)
    gc.freeze()
    return found


def collect_full() -> tuple[int, int]:
    """Unfreeze, collect everything, freeze again: (unreachable objects found, objects
    frozen). Counting the frozen objects walks them too (~5-10 % of the pause)."""
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return found, gc.get_freeze_count()


class GcPolicy:
    """Call `tick()` from a timer; `freeze_every` <= 0 leaves Python's defaults alone and
    `full_every` <= 0 never runs a full collection. `activity` counts requests served
    (any number that changes on every request); `now`, `size` (of the heap, in any unit
    proportional to its objects), `freeze` and `full` are injectable for tests."""

    def __init__(self, freeze_every: float = 1.0, full_every: float = 600.0, *,
                 budget: float = PAUSE_BUDGET, max_interval: float = MAX_INTERVAL,
                 activity: Callable[[], int] | None = None,
                 now: Callable[[], float] = time.monotonic,
                 size: Callable[[], int] = sys.getallocatedblocks,
                 freeze: Callable[[], int] = collect_young_and_freeze,
                 full: Callable[[], tuple[int, int]] = collect_full) -> None:
        self.freeze_every = freeze_every
        self.full_every = full_every if full_every > 0 else math.inf
        self.budget = budget
        self.max_interval = max_interval
        self.enabled = freeze_every > 0
        self._activity = activity
        self._now = now
        self._size = size
        self._freeze = freeze
        self._full = full
        self.interval = self.full_every
        started = now()
        self._next_freeze = started + freeze_every
        # the last whole-heap collection (start-up's or a full one): its end, pause, size
        self._last_end, self._last_pause, self._last_size = started, 0.0, 0
        self._schedule(started + self.interval)
        self._seen = activity() if activity is not None else 0
        self._last_active = started
        self.full_collections = 0
        self.last_full_seconds = 0.0
        self.last_full_collected = 0
        self.young_collected = 0
        self.frozen = 0

    def _schedule(self, due: float) -> None:
        self._due = due
        self._deadline = due + self.interval     # the longest wait for a quiet moment

    def start(self) -> None:
        """Collect what start-up left behind and freeze the rest. Young collections run
        every 10,000 net allocations instead of 700: they cost per survivor, so fewer
        of them cost less in all. A state recovered from disk makes this collection a
        full one, so its pause counts against the budget already."""
        if not self.enabled:
            return
        found, _ = self._collect_all(self._now())
        gc.set_threshold(10_000, 20, 100)
        self.interval = max(self.full_every, self._last_pause / self.budget)
        self._schedule(self._last_end + self.interval)
        log.debug("event=gc_start seconds=%.3f collected=%d frozen=%d next_in=%.0f",
                  self._last_pause, found, self.frozen, self.interval)

    def tick(self) -> None:
        """Freeze survivors, or run the full collection, when due."""
        if not self.enabled:
            return
        now = self._now()
        if self._activity is not None:
            seen = self._activity()
            if seen != self._seen:
                self._seen, self._last_active = seen, now
        if (now >= self._due and (now - self._last_active >= QUIET or now >= self._deadline)
                and not self._postponed(now)):
            now = self._collect_full(now)
        elif now >= self._next_freeze:
            self.young_collected += self._freeze()
        else:
            return
        self._next_freeze = now + self.freeze_every

    def _postponed(self, now: float) -> bool:
        """Postpone a due full collection whose pause, predicted from the last one and the
        heap's growth since, would exceed the budget (a server that started empty and
        now holds millions of sessions)."""
        if self._last_size <= 0:
            return False
        predicted = self._last_pause * self._size() / self._last_size
        later = self._last_end + predicted / self.budget
        if later <= now:
            return False
        self._schedule(later)
        log.info("event=gc_full_postponed predicted_seconds=%.3f next_in=%.0f",
                 predicted, later - now)
        return True

    def _collect_all(self, started: float) -> tuple[int, int]:
        found, self.frozen = self._full()
        self._last_end = self._now()
        self._last_pause = self._last_end - started
        self._last_size = self._size()
        return found, self.frozen

    def _collect_full(self, started: float) -> float:
        waited = started - self._due
        found, frozen = self._collect_all(started)
        self.last_full_seconds = self._last_pause
        self.last_full_collected = found
        self.full_collections += 1
        self.interval = self.next_interval(self._last_pause, found, frozen)
        self._schedule(self._last_end + self.interval)
        log.info("event=gc_full seconds=%.3f collected=%d frozen=%d waited=%.0f next_in=%.0f",
                 self._last_pause, found, frozen, waited, self.interval)
        return self._last_end

    def next_interval(self, pause: float, found: int, frozen: int) -> float:
        """Seconds to the next full collection after one that paused `pause` seconds,
        found `found` unreachable objects and left `frozen`."""
        floor = max(self.full_every, pause / self.budget)
        if found <= LITTLE * (found + frozen):
            return max(floor, min(2 * self.interval, self.max_interval))
        return floor

    def stats(self) -> dict[str, float | int]:
        """For admin.stats(); cheap (counting frozen objects is not: `frozen` is the
        count after the last full collection)."""
        never = math.isinf(self._due)
        return {"frozen": self.frozen, "full_collections": self.full_collections,
                "last_full_seconds": round(self.last_full_seconds, 4),
                "last_full_collected": self.last_full_collected,
                "young_collected": self.young_collected,
                "full_interval": 0 if never else round(self.interval, 1),
                "next_full_in": -1 if never else round(max(0.0, self._due - self._now()), 1)}
