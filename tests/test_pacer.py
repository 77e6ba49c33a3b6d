"""cc-bench's open-loop pacer, driven by a fake clock and a fake loop (no sockets, no sleeps)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from cc_bench.pacer import TICK, TIMER_SLACK, Pacer

MS = 1_000_000


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """Timers on a fake nanosecond clock; each fires `late` ns after its time."""

    def __init__(self, late: int = 0) -> None:
        self.now = 10 * MS
        self.late = late
        self.delays: list[float] = []
        self._timers: list[tuple[int, int, Callable[[], None], FakeHandle]] = []
        self._seq = itertools.count()

    def clock(self) -> int:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeHandle:
        self.delays.append(delay)
        handle = FakeHandle()
        when = self.now + round(delay * 1e9) + self.late
        heapq.heappush(self._timers, (when, next(self._seq), callback, handle))
        return handle

    @property
    def pending(self) -> int:
        return sum(1 for t in self._timers if not t[3].cancelled)

    def run_until(self, end: int) -> None:
        """Fire the timers due up to `end` (bounded: a timer per fake microsecond at most)."""
        for _ in range(1_000_000):
            if not self._timers or self._timers[0][0] > end:
                break
            when, _, callback, handle = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not handle.cancelled:
                callback()
        self.now = max(self.now, end)


def paced(rate: float, cap: int = 1_000_000, late: int = 0, limit: int | None = None
          ) -> tuple[Pacer, FakeLoop, list[tuple[int, int]]]:
    """A started pacer; its launches as (timed from, launched at)."""
    loop = FakeLoop(late)
    launches: list[tuple[int, int]] = []

    def launch(intended: int) -> bool:
        if limit is not None and len(launches) >= limit:
            return False
        launches.append((intended, loop.now))
        return True

    pacer = Pacer(rate, cap, launch, loop, clock=loop.clock)  # type: ignore[arg-type]
    pacer.start()
    return pacer, loop, launches


def schedule(pacer: Pacer, i: int) -> int:
    return pacer.t0 + int(i * pacer.period)


@pytest.mark.parametrize("rate", [50.0, 900.0, 6_000.0, 40_000.0])
def test_sends_at_intended_times_never_late_at_most_the_slack_early(rate: float) -> None:
    pacer, loop, launches = paced(rate)
    loop.run_until(pacer.t0 + 1_000 * MS)          # one fake second
    due = int(1e9 / pacer.period) + 1               # intended at or before the end
    assert due <= len(launches) <= due + int(TIMER_SLACK / pacer.period) + 1
    for i, (timed_from, at) in enumerate(launches):
        intended = schedule(pacer, i)
        assert at <= intended                       # never late by itself
        assert intended - at <= TIMER_SLACK          # at most the slack early
        assert timed_from == at                     # early: timed from the real start


@pytest.mark.parametrize("rate", [3_000.0, 6_000.0, 40_000.0])
def test_one_timer_per_tick_not_one_per_send(rate: float) -> None:
    """Above a send per tick, a wake-up starts every send due in it (the old pacer slept
    once per send: a timer, a future and a task step each)."""
    pacer, loop, launches = paced(rate)
    loop.run_until(pacer.t0 + 1_000 * MS)
    assert pacer.wakeups <= 1_000 * MS // TICK + 1
    assert len(launches) >= rate * 0.99
    assert min(loop.delays) >= TICK / 1e9           # never a zero-delay timer (no spinning)


def test_a_slow_rate_wakes_once_per_send_just_before_it() -> None:
    pacer, loop, launches = paced(10.0)
    loop.run_until(pacer.t0 + 1_000 * MS)
    assert len(launches) == 11 and pacer.wakeups == 10
    for i, (_, at) in enumerate(launches[1:], 1):
        assert at == schedule(pacer, i) - TIMER_SLACK


def test_late_timers_count_from_the_intended_time() -> None:
    """A loop whose timers fire 7 ms late (a stall): the sends are late, and each is timed
    from its intended time, so the delay shows in the latency (no coordinated omission)."""
    pacer, loop, launches = paced(2_000.0, late=7 * MS)
    loop.run_until(pacer.t0 + 200 * MS)
    late = [(i, t, at) for i, (t, at) in enumerate(launches) if at > schedule(pacer, i)]
    assert len(late) > len(launches) // 2
    for i, timed_from, at in late:
        assert timed_from == schedule(pacer, i) < at


def test_the_cap_waits_for_a_slot_and_the_wait_counts() -> None:
    pacer, loop, launches = paced(1_000.0, cap=3)
    loop.run_until(pacer.t0 + 20 * MS)
    assert len(launches) == 3 and pacer.in_flight == 3
    assert loop.pending == 0                         # blocked on the cap, not on a timer
    pacer.done()                                     # a session ends 20 ms in
    assert len(launches) == 4
    assert launches[3][0] == schedule(pacer, 3) < loop.now   # timed from its intended time
    loop.run_until(pacer.t0 + 40 * MS)
    assert len(launches) == 4                       # still at the cap
    for _ in range(30):                             # each freed slot starts one due
        pacer.done()
    assert len(launches) == 34 and pacer.in_flight == 3 and loop.pending == 0
    for _ in range(100):                            # the schedule caught up: a timer again
        pacer.done()
    assert len(launches) == 42 and loop.pending == 1


def test_nothing_left_or_stop_ends_the_pacing() -> None:
    ended: list[bool] = []
    pacer, loop, launches = paced(5_000.0, limit=25)
    pacer.on_finished = lambda: ended.append(True)
    loop.run_until(pacer.t0 + 50 * MS)
    assert len(launches) == 25 and pacer.finished and ended == [True]
    assert loop.pending == 0
    pacer.stop()
    assert ended == [True]                          # once
    other, loop2, launches2 = paced(5_000.0)
    other.stop()
    assert loop2.pending == 0 and other.finished
    loop2.run_until(other.t0 + 10 * MS)
    assert len(launches2) == int(TIMER_SLACK / other.period) + 1   # only the first wake's


def test_a_tick_not_below_the_slack() -> None:
    args: dict[str, Any] = {"rate": 1.0, "cap": 1, "launch": lambda t: True,
                            "loop": FakeLoop()}
    with pytest.raises(ValueError):
        Pacer(**args, slack=MS, tick=MS)
    with pytest.raises(ValueError):
        Pacer(**args, tick=0)
