"""The pauses of cc-server's garbage-collection policy with millions of live objects.

Builds `--sessions` small session-like objects held in a dict (each: a slotted object,
its id string, a list and a tuple: two objects the collector tracks), freezes them, and
times what stops the event loop: the old periodic full collection (every 600 s,
unconditionally), counting the frozen objects (what `stats()` did on every call), the
policy's freeze with its young collection, and the policy's adaptive full collection
with the interval it chooses after each one. A second of churn (sessions replaced, some
and transient cycles left) runs before every policy freeze; sessions that were in a
cycle die frozen, for the full collection to find. Run by hand, ~1-2 minutes and
~0.9 GB for 2,000,000 sessions: python benchmark/gc_pause.py [--sessions N]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

from cc_server.gcpolicy import GcPolicy


class Session:
    """Stands in for a live session."""

    __slots__ = ("cycle", "held", "id", "items")

    def __init__(self, n: int) -> None:
        self.id = f"session-{n:012d}"
        self.held = (n, n + 1)
        self.items = [n]
        self.cycle: Session | None = None


def timed(what: str, action: object) -> float:
    started = time.perf_counter()
    result = action() if callable(action) else None
    spent = time.perf_counter() - started
    print(f"{what:<58} {spent * 1e3:9.1f} ms   {result if result is not None else ''}")
    return spent


def session(n: int) -> Session:
    """A new session; every 1,000th is in a reference cycle (it dies frozen later)."""
    s = Session(n)
    if n % 1000 == 0:
        s.cycle = s
    return s


def churn(sessions: dict[str, Session], first: int, count: int) -> None:
    """Replace the `count` oldest sessions; every 100th replacement leaves a short-lived
    cycle behind (as an exception and its frames do)."""
    for n in range(first, first + count):
        del sessions[f"session-{n - len(sessions):012d}"]
        s = session(n)
        sessions[s.id] = s
        if n % 100 == 0:
            transient = Session(-n)
            transient.cycle = transient


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=2_000_000)
    p.add_argument("--churn", type=int, default=5_000, help="sessions replaced per second")
    a = p.parse_args()
    gc.disable()
    started = time.perf_counter()
    sessions: dict[str, Session] = {}
    for n in range(a.sessions):
        s = session(n)
        sessions[s.id] = s
    print(f"built {a.sessions:,} sessions in {time.perf_counter() - started:.1f} s")
    gc.enable()

    skew = [0.0]
    policy = GcPolicy(1.0, 600.0, now=lambda: time.monotonic() + skew[0])
    timed("policy start (collect all, freeze)", policy.start)
    print(f"  objects frozen {policy.frozen:,}; first full collection due in "
          f"{policy.stats()['next_full_in']:.0f} s")

    def old_full() -> int:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        return gc.get_freeze_count()

    for _ in range(2):
        timed("old full collection (every 600 s, plus the count it logged)", old_full)
    timed("gc.get_freeze_count() (old stats(), per call)", gc.get_freeze_count)

    first = a.sessions
    freezes: list[float] = []
    for _ in range(10):
        churn(sessions, first, a.churn)
        first += a.churn
        skew[0] += 1.0
        freezes.append(timed("policy freeze after a second of churn", policy.tick))
    print(f"  young collections found {policy.young_collected:,} unreachable objects")

    for _ in range(3):
        skew[0] += policy.stats()["next_full_in"] + 1.0
        timed("policy full collection when due", policy.tick)
        stats = policy.stats()
        print(f"  collected {stats['last_full_collected']:,}, next in "
              f"{stats['full_interval']:,.0f} s: paused "
              f"{stats['last_full_seconds'] / stats['full_interval'] * 100:.3f} % of the time "
              f"(old: {stats['last_full_seconds'] / 600 * 100:.3f} %)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
