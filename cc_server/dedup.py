"""Exactly-once: the outcome of every operation id, kept for a window.

A repeated operation id (a client retrying after a lost reply) gets the stored reply bytes
back and changes nothing. Keys include the user id so a guessed id never returns another
subscriber's outcome. Entries leave once `window` seconds have passed (at the first
`expire` call after it, rounded up to 0.1 s), or earliest-first once `max_entries` are
held (a memory bound; the README gives the arithmetic).

Memory matters here (one entry per container, a million and more of them): an entry is a
dict slot holding the reply as one bytes object (message type byte + body), and its key in
a per-0.1-second bucket of a deque; no per-entry deadline, tuple or linked-list node.
"""

from __future__ import annotations

import math
from collections import deque
from sys import intern

Reply = tuple[int, bytes]   # (message type, body)
Key = tuple[str, bytes]     # (user id or "", operation id)
GRAINS = 10                 # per second: deadlines are rounded up to 1/GRAINS s


class OutcomeCache:
    """operation id -> stored reply, expiring in arrival order."""

    def __init__(self, window: float = 600.0, max_entries: int = 2_000_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._replies: dict[Key, bytes] = {}
        self._buckets: deque[tuple[float, deque[Key]]] = deque()   # (deadline, keys)
        self.hits = 0

    def __len__(self) -> int:
        return len(self._replies)

    def get(self, key: Key, now: float) -> Reply | None:
        """The stored reply of `key`, if still held."""
        stored = self._replies.get(key)
        if stored is None:
            return None
        self.hits += 1
        return stored[0], stored[1:]

    def put(self, key: Key, reply: Reply, now: float) -> None:
        """Remember `reply` as the outcome of `key` for `window` seconds."""
        self._add(key, now + self.window, reply)

    def restore(self, key: Key, deadline: float, reply: Reply) -> None:
        """Put back an entry read from a snapshot (call in the original order)."""
        self._add(key, deadline, reply)

    def _add(self, key: Key, deadline: float, reply: Reply) -> None:
        replies = self._replies
        if key in replies:            # not expected (a repeat is answered, not stored)
            return
        key = (intern(key[0]), key[1])  # one copy of each user id for all its entries
        replies[key] = bytes((reply[0],)) + reply[1]
        deadline = math.ceil(deadline * GRAINS) / GRAINS
        buckets = self._buckets
        if buckets and buckets[-1][0] >= deadline:
            buckets[-1][1].append(key)
        else:
            buckets.append((deadline, deque((key,))))
        if len(replies) > self.max_entries:
            self._drop_oldest(len(replies) - self.max_entries)

    def _drop_oldest(self, count: int) -> None:
        buckets, replies = self._buckets, self._replies
        while count > 0 and buckets:
            keys = buckets[0][1]
            while count > 0 and keys:
                del replies[keys.popleft()]
                count -= 1
            if not keys:
                buckets.popleft()

    def expire(self, now: float) -> int:
        """Drop entries past their window (oldest first); returns how many."""
        buckets, replies = self._buckets, self._replies
        dropped = 0
        while buckets and buckets[0][0] <= now:
            for key in buckets.popleft()[1]:
                del replies[key]
                dropped += 1
        return dropped

    def items(self) -> list[tuple[Key, float, Reply]]:
        """Every live entry, oldest first, with its (rounded) deadline (for snapshots)."""
        replies = self._replies
        return [(key, deadline, (replies[key][0], replies[key][1:]))
                for deadline, keys in self._buckets for key in keys]
