"""Reservation deadlines: a binary heap with lazy deletion.

Each entry is (deadline, sequence, charging session); a charging session has at most one
live entry, the one whose sequence number it holds. A later deadline (the common
confirm-and-reserve) needs no new entry: when the old one comes due, it is pushed again
at the new deadline. Only an earlier deadline makes a new entry, and the old one stale.
Entries whose session is gone are stale too; stale
entries are skipped when popped, and the heap is rebuilt (stale entries dropped) whenever
it has doubled since the last rebuild, so memory stays proportional to live reservations
and each operation costs amortised O(log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Protocol


class Expiring(Protocol):
    """What the queue needs to know of a charging session."""

    expires_at: float
    expiry_seq: int      # sequence number of its live entry (0: none yet)
    queued_at: float     # deadline of that entry

    @property
    def alive(self) -> bool: ...


class ExpiryQueue:
    """Deadlines of charging sessions, earliest first."""

    def __init__(self, live: Callable[[], int] | None = None) -> None:
        #: how many entries are live at most, if the owner knows: a heap that is mostly
        #: live is not rebuilt (a million-entry rebuild stalls the loop for ~0.4 s)
        self._live = live
        self._heap: list[tuple[float, int, Expiring]] = []
        self._seq = 0
        self._compact_at = 1024

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: Expiring) -> None:
        """Make sure `item` comes due at its current `expires_at`."""
        if item.expiry_seq and item.queued_at <= item.expires_at:
            return          # its entry comes first and will be pushed again at the new time
        self._add(item)

    def _add(self, item: Expiring) -> None:
        self._seq += 1
        item.expiry_seq = self._seq
        item.queued_at = item.expires_at
        heapq.heappush(self._heap, (item.expires_at, self._seq, item))
        if len(self._heap) >= self._compact_at:
            if self._live is not None and 2 * self._live() > len(self._heap):
                self._compact_at = 2 * len(self._heap)   # mostly live: nothing to gain
            else:
                self._compact()

    @property
    def seq(self) -> int:
        """The latest sequence number handed out."""
        return self._seq

    def restore(self, items: Sequence[Expiring], seq: int) -> None:
        """Rebuild from recovered items, each keeping its own sequence number."""
        self._heap = [(item.expires_at, item.expiry_seq, item) for item in items]
        for item in items:
            item.queued_at = item.expires_at
        heapq.heapify(self._heap)
        self._seq = seq
        self._compact_at = max(1024, 2 * len(self._heap))

    def next_deadline(self) -> float | None:
        """The earliest deadline in the heap (possibly stale), or None."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int) -> list[Expiring]:
        """Up to `limit` items whose current deadline is <= now, earliest first."""
        heap = self._heap
        due: list[Expiring] = []
        while heap and heap[0][0] <= now and len(due) < limit:
            _, seq, item = heapq.heappop(heap)
            if item.expiry_seq != seq or not item.alive:
                continue
            if item.expires_at > now:
                self._add(item)        # its deadline moved later since it was queued
            else:
                due.append(item)
        return due

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2].expiry_seq == e[1] and e[2].alive]
        heapq.heapify(self._heap)
        self._compact_at = max(1024, 2 * len(self._heap))
