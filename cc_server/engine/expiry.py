"""Reservation deadlines: a binary heap of the charging sessions themselves.

Each charging session (a `Queued`) is in the heap at most once, at the position it keeps
in `heap_index`. Its true key is (deadline, sequence), the sequence being handed out each
time its deadline is set (by a container: never by a timer), so that ties come due in
the order their deadlines were set. That order is a function of the containers alone:
the live run, a replay of the log and a restart from a snapshot (which keeps each
sequence) agree on it, whatever earlier timer runs found. The heap holds an entry at a
key no later than its true key: a later deadline (the common confirm-and-reserve) leaves
the entry where it is, and when it reaches the top it moves down to its true key first.
An earlier deadline moves the entry up at once. A charging session whose session is
removed leaves the heap at once (`remove`), so the heap holds exactly the charging
sessions of live sessions and never needs a rebuild. No tuple, float or int object per
entry: one list slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final


class Queued:
    """What the queue keeps of a charging session (its base class)."""

    __slots__ = ("expires_at", "expiry_seq", "heap_index", "queued_at")

    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.expiry_seq = 0          # when its deadline was (last) set; ties come due in this order
        self.queued_at = expires_at  # the deadline the heap holds it at (<= expires_at)
        self.heap_index = -1         # its place in the queue's heap; -1: not queued


NOT_QUEUED: Final = -1


def _earlier(a: Queued, b: Queued) -> bool:
    return a.queued_at < b.queued_at or (
        a.queued_at == b.queued_at and a.expiry_seq < b.expiry_seq)


class ExpiryQueue:
    """Deadlines of charging sessions, earliest first."""

    def __init__(self) -> None:
        self._heap: list[Queued] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def seq(self) -> int:
        """The latest sequence number handed out."""
        return self._seq

    def push(self, item: Queued) -> None:
        """Make sure `item` comes due at its current `expires_at`, after every deadline
        equal to it that was set before."""
        self._seq += 1
        item.expiry_seq = self._seq
        index = item.heap_index
        if index != NOT_QUEUED and item.queued_at <= item.expires_at:
            self._down(index)   # a later tie-break: it may now belong below an equal deadline
            return
        item.queued_at = item.expires_at
        if index == NOT_QUEUED:
            index = len(self._heap)
            self._heap.append(item)
            item.heap_index = index
        self._up(index)

    def remove(self, item: Queued) -> None:
        """Take `item` out of the queue, if it is in (its session is gone)."""
        index = item.heap_index
        if index == NOT_QUEUED:
            return
        heap = self._heap
        item.heap_index = NOT_QUEUED
        last = heap.pop()
        if index < len(heap):
            heap[index] = last
            last.heap_index = index
            self._down(index)
            self._up(last.heap_index)

    def restore(self, items: Sequence[Queued], seq: int) -> None:
        """Rebuild from recovered items, each keeping its own sequence number."""
        for item in items:
            item.queued_at = item.expires_at
        heap = sorted(items, key=lambda i: (i.queued_at, i.expiry_seq))   # sorted: a heap
        for index, item in enumerate(heap):
            item.heap_index = index
        self._heap = heap
        self._seq = seq

    def next_deadline(self) -> float | None:
        """The earliest deadline in the heap (possibly since moved later), or None."""
        return self._heap[0].queued_at if self._heap else None

    def pop_due(self, now: float, limit: int) -> list[Queued]:
        """Up to `limit` items whose deadline is <= now, in the order of their true keys
        (deadline, sequence); each leaves the queue."""
        heap = self._heap
        due: list[Queued] = []
        while heap and heap[0].queued_at <= now and len(due) < limit:
            item = heap[0]
            if item.queued_at != item.expires_at:   # its deadline moved later: move it there
                item.queued_at = item.expires_at
                self._down(0)
            else:
                self.remove(item)
                due.append(item)
        return due

    def _up(self, index: int) -> None:
        heap = self._heap
        item = heap[index]
        while index > 0:
            parent = (index - 1) >> 1
            above = heap[parent]
            if not _earlier(item, above):
                break
            heap[index] = above
            above.heap_index = index
            index = parent
        heap[index] = item
        item.heap_index = index

    def _down(self, index: int) -> None:
        heap = self._heap
        size = len(heap)
        item = heap[index]
        while True:
            child = 2 * index + 1
            if child >= size:
                break
            right = child + 1
            if right < size and _earlier(heap[right], heap[child]):
                child = right
            below = heap[child]
            if not _earlier(below, item):
                break
            heap[index] = below
            below.heap_index = index
            index = child
        heap[index] = item
        item.heap_index = index
