"""The server's clocks: the wall clock, one that tests move by hand, one that runs fast.

Every clock is a callable returning epoch seconds, kept to the millisecond as SAP CC
keeps server time. `cc-server --clock manual` uses `ManualClock` (moved by the admin
commands `clock_advance` / `clock_set`, i.e. `cc-admin clock advance SECONDS`);
`--clock-speed K` uses `ScaledClock`. Neither goes backwards: a manual clock set to an
earlier time is refused, so expiry and the journal's order stay true. Nor does a manual
clock leave [MIN_TIME, MAX_TIME]: every time derived from it (an expiry up to 400 days
on, the exactly-once window's end up to a year on, a journal or record time) then stays
a valid timestamp (Python's datetime, like the wire's times, ends with the year 9999).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Final

MAX_SPEED = 10_000.0
_time_ns: Final = time.time_ns   # a C static compiled (`time.time_ns` is a lookup)
MAX_STEP = 400 * 86_400.0   # the most one advance may move (a TTL's own limit)
MIN_TIME: Final = 0.0                  # 1970-01-01T00:00:00Z
MAX_TIME: Final = 253_339_228_800.0    # 9998-01-01T00:00:00Z: leaves 400 days + a year


def wall_clock_ms() -> float:
    """Epoch seconds, rounded to the millisecond (integer arithmetic: `round(t, 3)` costs
    a decimal conversion; the quotient is the float nearest the millisecond all the same)."""
    return (_time_ns() + 500_000) // 1_000_000 / 1000


class ClockError(ValueError):
    """A clock move that cannot be made (backwards, too far, not a manual clock)."""


class ManualClock:
    """A wall clock that moves only when told to (epoch seconds)."""

    manual = True

    def __init__(self, start: float | None = None) -> None:
        self.now = wall_clock_ms() if start is None else _in_range(round(start, 3))
        #: called with the new time after each move (the server runs its timers)
        self.on_move: Callable[[float], None] | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds`; returns the new time."""
        if not 0 <= seconds <= MAX_STEP:
            raise ClockError(f"advance takes 0 to {MAX_STEP:g} seconds, not {seconds}")
        return self.set(self.now + seconds)

    def set(self, when: float | dt.datetime) -> float:
        """Move time to `when` (epoch seconds or an aware datetime), never backwards."""
        if isinstance(when, dt.datetime):
            if when.tzinfo is None:
                raise ClockError("clock set needs a time with a zone (e.g. ...Z or +00:00)")
            when = when.timestamp()
        when = round(when, 3)
        if when < self.now:
            raise ClockError(f"the clock does not go backwards ({when} < {self.now})")
        self.now = _in_range(when)
        if self.on_move is not None:
            self.on_move(when)
        return when


def _in_range(when: float) -> float:
    """`when` if a manual clock may show it, else ClockError (checked before any move)."""
    if not MIN_TIME <= when <= MAX_TIME:   # NaN too
        raise ClockError(
            f"the clock stays between {_iso(MIN_TIME)} and {_iso(MAX_TIME)}, so that "
            f"every expiry and window end after it is a valid time; {_iso(when)} is not")
    return when


def _iso(when: float) -> str:
    try:
        return dt.datetime.fromtimestamp(when, dt.UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return repr(when)


class ScaledClock:
    """Time that runs `speed` times faster than the wall clock, from the real now."""

    manual = False

    def __init__(self, speed: float, start: float | None = None,
                 source: Callable[[], float] = time.time) -> None:
        if not 0 < speed <= MAX_SPEED:
            raise ClockError(f"clock speed must be above 0 and at most {MAX_SPEED:g}")
        self.speed = speed
        self._source = source
        self._real0 = source()
        self._start = self._real0 if start is None else start

    def __call__(self) -> float:
        return round(self._start + (self._source() - self._real0) * self.speed, 3)


def parse_time(text: str) -> dt.datetime:
    """An ISO-8601 time with a zone (`2026-11-28T10:00:00Z`); ClockError otherwise."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ClockError(f"not an ISO-8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise ClockError(f"the time needs a zone (Z or +HH:MM): {text!r}")
    return when
