"""Garbage collection for a process whose state is millions of long-lived objects.

CPython's collector scans every tracked object in a full collection, and triggers one
each time the long-lived population grows by a quarter: with a million sessions that is a
pause of over a second, again and again. The server's own objects hold no reference
cycles once dead (sessions break theirs when removed), so refcounting frees them. This
policy therefore moves every survivor to the permanent generation every
`freeze_every` seconds (`gc.freeze`, O(1)), so automatic collections only ever scan
objects younger than that, and runs one full collection every `full_every` seconds to
reclaim any cycle that died after being frozen, logging how long it took.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("cc_server")


class GcPolicy:
    """Call `tick()` from a timer; `freeze_every` <= 0 leaves Python's defaults alone."""

    def __init__(self, freeze_every: float = 1.0, full_every: float = 600.0) -> None:
        self.freeze_every = freeze_every
        self.full_every = full_every
        self.enabled = freeze_every > 0
        now = time.monotonic()
        self._next_freeze = now + freeze_every
        self._next_full = now + full_every if full_every > 0 else float("inf")
        self.full_collections = 0
        self.last_full_seconds = 0.0

    def start(self) -> None:
        """Collect what start-up left behind and freeze the rest. Young collections run
        every 10,000 net allocations instead of 700: they cost per survivor, so fewer
        of them cost less in all."""
        if self.enabled:
            gc.collect()
            gc.freeze()
            gc.set_threshold(10_000, 20, 100)

    def tick(self) -> None:
        """Freeze survivors, or run the periodic full collection, when due."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now >= self._next_full:
            self._next_full = now + self.full_every
            started = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            self.last_full_seconds = time.perf_counter() - started
            self.full_collections += 1
            log.info("event=gc_full seconds=%.3f collected=%d frozen=%d",
                     self.last_full_seconds, found, gc.get_freeze_count())
        elif now >= self._next_freeze:
            gc.freeze()
        else:
            return
        self._next_freeze = now + self.freeze_every

    def stats(self) -> dict[str, float | int]:
        """For admin.stats()."""
        return {"frozen": gc.get_freeze_count(), "full_collections": self.full_collections,
                "last_full_seconds": round(self.last_full_seconds, 4)}
