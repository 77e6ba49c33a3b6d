"""Exactly-once: the outcome of every operation id, kept for a window.

A repeated operation id (a client retrying after a lost reply) gets the stored reply bytes
back and changes nothing. Each entry also keeps a digest of the request body it answers,
so a repeat with another body (an operation id reused by mistake) can be told apart and
refused (OPERATION_ID_REUSED) instead of silently getting the first reply. Keys include
the user id so a guessed id never returns another subscriber's outcome. Entries leave
once `window` seconds have passed (at the first `expire` call after it, rounded up to
0.1 s), and only then: an outcome is never forgotten inside its window. `max_entries` is
a memory bound (the README gives the arithmetic): once that many are held, `full` is
true and the dispatcher refuses new operations (TOO_MANY_REQUESTS, retryable) until
entries age out, rather than drop an outcome a retry may still ask for.

Memory matters here (one entry per container, a million and more of them): an entry is a
dict slot holding the reply as one bytes object (request digest + message type byte +
body), keyed by one bytes object (operation id length, operation id, user id: no tuple),
and that key in a per-0.1-second bucket of a deque; no per-entry deadline, tuple or
linked-list node.
So does latency: a dict of two million keys with steady insertions and deletions is
rebuilt every few hundred thousand insertions, a 100-300 ms stall of the event loop. The
entries are spread over SHARDS dicts by hash, so each rebuild is a few milliseconds.
"""

from __future__ import annotations

import math
from collections import deque
from hashlib import blake2b
from typing import Final

Reply = tuple[int, bytes]   # (message type, body)
Key = tuple[str, bytes]     # (user id or "", operation id)
SHARDS: Final = 64           # dicts the entries are spread over (a power of two)
_MASK: Final = SHARDS - 1    # shard = hash of the stored key (bytes cache their hash)
GRAINS: Final = 10           # per second: deadlines are rounded up to 1/GRAINS s
DIGEST_SIZE: Final = 8       # bytes of a request body's digest (a mistake detector, not a MAC)
ANY_BODY: Final = bytes(DIGEST_SIZE)  # the digest of an entry that matches any body (old snapshots)
_BYTE: Final = tuple(bytes((n,)) for n in range(256))   # a length or message type byte
# blake2b's constructor parses keyword arguments; copying a ready one costs a third less
_BLAKE: Final = blake2b(digest_size=DIGEST_SIZE)


def _packed(key: Key) -> bytes:
    """The stored form of a key: one bytes object, unambiguous (the operation id is
    length-prefixed; the codec bounds it to 64 bytes)."""
    op = key[1]
    return _BYTE[len(op)] + op + key[0].encode()


def _unpacked(packed: bytes) -> Key:
    size = packed[0]
    return packed[1 + size:].decode(), packed[1:1 + size]


def digest(body: bytes) -> bytes:
    """The digest of a request body, as entries keep it."""
    hasher = _BLAKE.copy()
    hasher.update(body)
    return hasher.digest()


class OutcomeCache:
    """operation id -> stored reply, expiring in arrival order."""

    def __init__(self, window: float = 600.0, max_entries: int = 2_000_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._shards: list[dict[bytes, bytes]] = [{} for _ in range(SHARDS)]
        self._count = 0
        self._buckets: deque[tuple[float, deque[bytes]]] = deque()   # (deadline, keys)
        self.hits = 0
        #: new operations refused because `max_entries` outcomes were held
        self.refused = 0
        # the key `get` packed last: the `put` that follows a miss reuses its bytes
        self._last: tuple[Key, bytes] = (("", b""), _packed(("", b"")))

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        """True when `max_entries` outcomes are held: a new operation has no slot."""
        return self._count >= self.max_entries

    def get(self, key: Key, body_digest: bytes = ANY_BODY) -> Reply | bool:
        """The stored reply of `key` if still held and stored for a body of that digest;
        True if it was stored for another body; False if nothing is stored."""
        packed = _packed(key)
        self._last = (key, packed)
        stored = self._shards[hash(packed) & _MASK].get(packed)
        if stored is None:
            return False
        if body_digest != stored[:DIGEST_SIZE] and ANY_BODY not in (
                body_digest, stored[:DIGEST_SIZE]):
            return True
        self.hits += 1
        return stored[DIGEST_SIZE], stored[DIGEST_SIZE + 1:]

    def put(self, key: Key, reply: Reply, now: float, body_digest: bytes = ANY_BODY) -> None:
        """Remember `reply` as the outcome of `key` (for a request body of that digest)
        for `window` seconds."""
        self._add(key, now + self.window, reply, body_digest)

    def restore(self, key: Key, deadline: float, reply: Reply,
                body_digest: bytes = ANY_BODY) -> None:
        """Put back an entry read from a snapshot (call in the original order)."""
        self._add(key, deadline, reply, body_digest)

    def _add(self, key: Key, deadline: float, reply: Reply, body_digest: bytes) -> None:
        assert len(body_digest) == DIGEST_SIZE
        last = self._last
        packed = last[1] if last[0] == key else _packed(key)
        stored = body_digest + _BYTE[reply[0]] + reply[1]
        if self._shards[hash(packed) & _MASK].setdefault(packed, stored) is not stored:
            return                    # not expected (a repeat is answered, not stored)
        self._count += 1
        buckets = self._buckets
        if buckets and buckets[-1][0] >= deadline:
            buckets[-1][1].append(packed)
        else:
            buckets.append((math.ceil(deadline * GRAINS) / GRAINS, deque((packed,))))

    def _drop(self, packed: bytes) -> None:
        del self._shards[hash(packed) & _MASK][packed]
        self._count -= 1

    def expire(self, now: float) -> int:
        """Drop entries past their window (oldest first); returns how many."""
        buckets = self._buckets
        dropped = 0
        while buckets and buckets[0][0] <= now:
            for key in buckets.popleft()[1]:
                self._drop(key)
                dropped += 1
        return dropped

    def items(self) -> list[tuple[Key, float, Reply, bytes]]:
        """Every live entry, oldest first, with its (rounded) deadline and request digest
        (for snapshots)."""
        shards = self._shards
        out = []
        for deadline, keys in self._buckets:
            for packed in keys:
                stored = shards[hash(packed) & _MASK][packed]
                out.append((_unpacked(packed), deadline,
                            (stored[DIGEST_SIZE], stored[DIGEST_SIZE + 1:]),
                            stored[:DIGEST_SIZE]))
        return out
