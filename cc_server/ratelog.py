"""Log lines that a flood of bad input cannot turn into a flood of log lines.

Every security event (failed login, limit hit, dropped notification) is logged, but at
most `burst` lines per event name per `period` seconds; the lines left out are counted and
reported by the first line of the next period (`suppressed=N`). The statistics
(`admin.stats()`) count every event, whether logged or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """A logger wrapper: `log.info("event_name", "key=%s", value)`."""

    def __init__(self, logger: logging.Logger, burst: int = 20, period: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.period = period
        self.clock = clock
        self._events: dict[str, list[float]] = {}   # event -> [period start, logged, left out]

    def info(self, event: str, fmt: str, *args: object) -> None:
        """An informational event."""
        self._emit(logging.INFO, event, fmt, args)

    def warning(self, event: str, fmt: str, *args: object) -> None:
        """An event an operator should look at."""
        self._emit(logging.WARNING, event, fmt, args)

    def _emit(self, level: int, event: str, fmt: str, args: tuple[object, ...]) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self.clock()
        state = self._events.get(event)
        if state is None or now - state[0] >= self.period:
            left_out = int(state[2]) if state is not None else 0
            state = self._events[event] = [now, 0, 0]
            if left_out:
                self.logger.log(level, "event=%s suppressed=%d (in %g s)", event, left_out,
                                self.period)
        if state[1] < self.burst:
            state[1] += 1
            self.logger.log(level, "event=%s " + fmt, event, *args)
        else:
            state[2] += 1
