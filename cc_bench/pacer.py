"""The open loop's pacer: sends at intended times, one timer per tick, not one per send.

The i-th send is intended at `t0 + i / rate`. Each time the pacer wakes it starts every
send whose intended time is at most `slack` away, then sleeps on one timer until the next
one is `slack` away, but at least one `tick`: at 6,000 sessions per second a wake-up
starts six or more, where waking once per send cost a timer, a future and a task step each.
A send is never late because of the pacer (a wake-up is at most `tick` after the one
before, and `tick` < `slack`), and at most `slack` early: a start is timed from its
intended time when late (a stall counts, as in wrk2) and from its real start when early.

At most `cap` sends are in flight (`done()` frees a slot); at the cap the pacer waits
for a slot, and the wait counts in the latency since the intended time is kept. The
clock (nanoseconds) and the loop are passed in, so tests drive it with fake ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns
from typing import Final

TIMER_SLACK: Final = 1_500_000   # ns: a send starts up to this much before its time
TICK: Final = 1_000_000          # ns: the shortest sleep between two wake-ups


class Pacer:
    """Calls `launch(intended)` at each intended send time; `launch` returns False when
    there is nothing more to send, which ends the pacing (`on_finished`)."""

    def __init__(self, rate: float, cap: int, launch: Callable[[int], bool],
                 loop: asyncio.AbstractEventLoop,
                 clock: Callable[[], int] = perf_counter_ns,
                 slack: int = TIMER_SLACK, tick: int = TICK) -> None:
        if not 0 < tick < slack:
            raise ValueError("the tick must be positive and shorter than the slack")
        self.period = 1e9 / rate
        self.cap = cap
        self.launch = launch
        self.loop = loop
        self.clock = clock
        self.slack = slack
        self.tick = tick
        self.t0 = 0
        self.sent = 0            # sends started
        self.in_flight = 0
        self.wakeups = 0         # timer wake-ups (the pacer's own cost)
        self.finished = False
        self.on_finished: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._blocked = False    # at the cap: `done()` resumes

    def start(self) -> None:
        """Begin: the first send is intended now."""
        self.t0 = self.clock()
        self._send_due()

    def stop(self) -> None:
        """Send nothing more (sends in flight are the caller's)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._finish()

    def done(self) -> None:
        """A send ended: its slot is free."""
        self.in_flight -= 1
        if self._blocked:
            self._blocked = False
            self._send_due()

    def _wake(self) -> None:
        self._timer = None
        self.wakeups += 1
        self._send_due()

    def _send_due(self) -> None:
        if self.finished:
            return
        now = self.clock()
        limit = now + self.slack
        t0 = self.t0
        period = self.period
        while True:
            intended = t0 + int(self.sent * period)
            if intended > limit:
                break
            if self.in_flight >= self.cap:
                self._blocked = True
                return
            # early: timed from now (the real start); late: from the intended time
            if not self.launch(intended if intended < now else now):
                self._finish()
                return
            self.sent += 1
            self.in_flight += 1
        wait = max(intended - limit, self.tick)
        self._timer = self.loop.call_later(wait / 1e9, self._wake)

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            if self.on_finished is not None:
                self.on_finished()
