"""The server's garbage-collection policy: an adaptive full collection, bounded as a
share of time, and no garbage cycle frozen (a fake clock and a fake collector; no sleeps)."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Callable, Iterator

import pytest

from cc_server import gcpolicy
from cc_server.gcpolicy import GcPolicy
from cc_server.metrics import METRICS

DEFAULT_THRESHOLD = gc.get_threshold()


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeFull:
    """A full collection that takes `pause` seconds of the clock and finds `found`
    unreachable objects among `frozen` + `found`."""

    def __init__(self, clock: Clock, pause: float = 0.01, found: int = 0,
                 frozen: int = 1_000_000) -> None:
        self.clock, self.pause, self.found, self.frozen = clock, pause, found, frozen
        self.runs = 0

    def __call__(self) -> tuple[int, int]:
        self.runs += 1
        self.clock.t += self.pause
        return self.found, self.frozen


def policy(clock: Clock, full: FakeFull, **kwargs: object) -> GcPolicy:
    kwargs.setdefault("size", lambda: 1000)
    return GcPolicy(1.0, 600.0, now=clock, freeze=lambda: 0, full=full,
                    **kwargs)  # type: ignore[arg-type]


def start(p: GcPolicy) -> None:
    """p.start(), then Python's default collection thresholds again."""
    try:
        p.start()
    finally:
        gc.set_threshold(*DEFAULT_THRESHOLD)


def run_until_full(clock: Clock, p: GcPolicy, full: FakeFull, limit: float = 10**6) -> float:
    """Tick once a second until the next full collection; the seconds that took (to
    the second: the ticks' granularity)."""
    runs, started = full.runs, clock.t
    while full.runs == runs:
        clock.t += 1.0
        p.tick()
        assert clock.t - started < limit, "no full collection"
    return clock.t - full.pause - started


def test_the_interval_doubles_while_full_collections_find_nothing_up_to_the_cap() -> None:
    clock = Clock()
    full = FakeFull(clock)
    p = policy(clock, full, max_interval=5000.0)
    assert run_until_full(clock, p, full) == pytest.approx(600, abs=1)
    intervals = [p.stats()["full_interval"]]
    for _ in range(4):
        run_until_full(clock, p, full)
        intervals.append(p.stats()["full_interval"])
    assert intervals == [1200, 2400, 4800, 5000, 5000]
    assert run_until_full(clock, p, full) == pytest.approx(5000, abs=1)


def test_the_pause_budget_spaces_long_full_collections() -> None:
    clock = Clock()
    full = FakeFull(clock, pause=1.2, found=500_000)     # finds a lot: no back-off
    p = policy(clock, full)
    run_until_full(clock, p, full)
    assert p.stats()["full_interval"] == 1200            # 1.2 s is 0.1 % of 1,200 s
    assert p.stats()["next_full_in"] == 1200
    assert run_until_full(clock, p, full) == pytest.approx(1200, abs=1)
    assert p.stats()["last_full_seconds"] == 1.2


def test_the_interval_returns_to_the_base_once_cycles_are_found() -> None:
    clock = Clock()
    full = FakeFull(clock)
    p = policy(clock, full)
    for _ in range(3):
        run_until_full(clock, p, full)
    assert p.stats()["full_interval"] == 4800
    full.found = 10_000                                  # 1 % of the objects scanned
    run_until_full(clock, p, full)
    assert p.stats()["full_interval"] == 600
    assert p.stats()["last_full_collected"] == 10_000
    assert run_until_full(clock, p, full) == pytest.approx(600, abs=1)


def test_the_pause_of_start_up_spaces_the_first_full_collection() -> None:
    clock = Clock()
    full = FakeFull(clock, pause=3.0)                    # a large state recovered from disk
    p = policy(clock, full)
    start(p)
    assert p.stats()["full_interval"] == 3000
    assert run_until_full(clock, p, full) == pytest.approx(3000, abs=1)


def test_a_full_collection_is_postponed_while_its_predicted_pause_exceeds_the_budget(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    full = FakeFull(clock, pause=0.1)
    heap = [1000]
    p = policy(clock, full, size=lambda: heap[0])
    start(p)
    assert p.stats()["full_interval"] == 600
    heap[0] = 20_000                           # 20 times the heap: a pause of ~2 s
    full.pause = 2.0
    with caplog.at_level(logging.INFO, logger="cc_server"):
        assert run_until_full(clock, p, full) == pytest.approx(2000, abs=1)
    assert "event=gc_full_postponed predicted_seconds=2.000 next_in=1400" in caplog.text
    assert p.stats()["full_interval"] == 2000


def test_a_due_full_collection_waits_for_a_quiet_moment_at_most_one_interval() -> None:
    clock = Clock()
    full = FakeFull(clock)
    served = [0]
    p = policy(clock, full, activity=lambda: served[0])

    def busy_tick() -> None:
        clock.t += 0.5
        served[0] += 1
        p.tick()

    while clock.t < 1000 + 900:                          # due at 600 s: busy, so deferred
        busy_tick()
    assert full.runs == 0
    for _ in range(3):                                   # one quiet second, then it runs
        clock.t += 0.5
        p.tick()
    assert full.runs == 1
    while full.runs == 1:                                # never quiet: waits one interval
        busy_tick()
    assert clock.t - full.pause - 1000 == pytest.approx(901.5 + 1200 + 1200, abs=0.5)


def test_no_full_collection_when_full_every_is_zero_and_nothing_when_freeze_is() -> None:
    clock = Clock()
    full = FakeFull(clock)
    frozen: list[str] = []

    def freezer(name: str) -> Callable[[], int]:
        def freeze() -> int:
            frozen.append(name)
            return 0
        return freeze

    never = GcPolicy(1.0, 0.0, now=clock, freeze=freezer("never"), full=full)
    off = GcPolicy(0.0, 600.0, now=clock, freeze=freezer("off"), full=full)
    for _ in range(2000):
        clock.t += 1.0
        never.tick()
        off.tick()
    assert full.runs == 0 and set(frozen) == {"never"}
    assert never.stats()["full_interval"] == 0 and never.stats()["next_full_in"] == -1


def test_the_full_collection_is_logged_with_the_next_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    full = FakeFull(clock, pause=0.25, found=3)
    p = policy(clock, full)
    with caplog.at_level(logging.INFO, logger="cc_server"):
        run_until_full(clock, p, full)
    assert ("event=gc_full seconds=0.250 collected=3 frozen=1000000 waited=0 next_in=1200"
            in caplog.text)


def test_stats_do_not_walk_the_frozen_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting millions of frozen objects takes a tenth of a second: not per scrape."""
    clock = Clock()
    full = FakeFull(clock, frozen=42)
    p = policy(clock, full)
    run_until_full(clock, p, full)

    def walk() -> int:
        raise AssertionError("gc.get_freeze_count() walks every frozen object")

    monkeypatch.setattr(gc, "get_freeze_count", walk)
    assert p.stats()["frozen"] == 42


@pytest.fixture
def collector_off() -> Iterator[None]:
    """No automatic collection may find the cycle first; unfreeze what the test froze."""
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.enable()


class Node:
    """An object in a reference cycle."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("collector_off")
def test_a_dead_young_cycle_is_collected_before_the_freeze_not_frozen() -> None:
    clock = Clock()
    p = GcPolicy(1.0, 0.0, now=clock)
    node = Node()
    ref = weakref.ref(node)
    del node                                      # unreachable, but not freed by refcounts
    assert ref() is not None
    clock.t += 1.0
    p.tick()
    assert ref() is None
    assert p.stats()["young_collected"] >= 1
    live = Node()
    frozen_before = gc.get_freeze_count()
    clock.t += 1.0
    p.tick()
    assert gc.get_freeze_count() > frozen_before  # survivors are frozen as before
    assert live.me is live


def test_the_real_full_collection_finds_a_cycle_that_died_frozen() -> None:
    gc.disable()
    try:
        node = Node()
        gc.freeze()
        ref = weakref.ref(node)
        del node
        found, frozen = gcpolicy.collect_full()
        assert ref() is None and found >= 1 and frozen > 0
    finally:
        gc.unfreeze()
        gc.enable()


def test_every_statistic_is_a_documented_metric() -> None:
    clock = Clock()
    p = policy(clock, FakeFull(clock))
    assert {f"gc.{name}" for name in p.stats()} <= set(METRICS)
