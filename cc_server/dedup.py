"""Exactly-once: the outcome of every operation id, kept for a window.

A repeated operation id (a client retrying after a lost reply) gets the stored reply bytes
back and changes nothing. Keys include the user id so a guessed id never returns another
subscriber's outcome. Entries leave after `window` seconds, or earliest-first once
`max_entries` are held (a memory bound; the README gives the arithmetic).
"""

from __future__ import annotations

from collections import OrderedDict

Reply = tuple[int, bytes]   # (message type, body)
Key = tuple[str, bytes]     # (user id or "", operation id)


class OutcomeCache:
    """operation id -> stored reply, in arrival order."""

    def __init__(self, window: float = 600.0, max_entries: int = 2_000_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, tuple[float, Reply]] = OrderedDict()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, now: float) -> Reply | None:
        """The stored reply of `key`, if still within the window."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return None
        self.hits += 1
        return entry[1]

    def put(self, key: Key, reply: Reply, now: float) -> None:
        """Remember `reply` as the outcome of `key` until now + window."""
        entries = self._entries
        entries[key] = (now + self.window, reply)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def restore(self, key: Key, deadline: float, reply: Reply) -> None:
        """Put back an entry read from a snapshot (call in the original order)."""
        self._entries[key] = (deadline, reply)

    def expire(self, now: float) -> int:
        """Drop entries past their window (oldest first); returns how many."""
        entries = self._entries
        dropped = 0
        while entries:
            key, (deadline, _) = next(iter(entries.items()))
            if deadline > now:
                break
            del entries[key]
            dropped += 1
        return dropped

    def items(self) -> list[tuple[Key, float, Reply]]:
        """Every live entry (for snapshots)."""
        return [(key, deadline, reply) for key, (deadline, reply) in self._entries.items()]
