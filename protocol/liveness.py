"""Heartbeat bookkeeping for one connection, sans IO: the caller passes the clock.

Each side sends a PING when it has sent nothing for one interval, and declares the peer
dead when it has received nothing (not even a PING or PONG) for `misses` intervals.
"""

from __future__ import annotations

from enum import Enum


class Due(Enum):
    NOTHING = "nothing"
    PING = "ping"
    DEAD = "dead"


class Liveness:
    """When to ping, and when the peer counts as dead."""

    __slots__ = ("interval", "last_received", "last_sent", "misses")

    def __init__(self, interval: float, now: float, misses: int = 3) -> None:
        if interval <= 0 or misses < 1:
            raise ValueError("interval must be > 0 and misses >= 1")
        self.interval = interval
        self.misses = misses
        self.last_received = now
        self.last_sent = now

    def received(self, now: float) -> None:
        """Any bytes arrived."""
        self.last_received = now

    def sent(self, now: float) -> None:
        """Any frame was written."""
        self.last_sent = now

    def due(self, now: float) -> Due:
        """What the connection should do at `now`."""
        if now - self.last_received >= self.interval * self.misses:
            return Due.DEAD
        if now - self.last_sent >= self.interval:
            return Due.PING
        return Due.NOTHING

    def next_check(self, now: float) -> float:
        """Seconds until `due` may answer something else than NOTHING."""
        ping_at = self.last_sent + self.interval
        dead_at = self.last_received + self.interval * self.misses
        return max(0.0, min(ping_at, dead_at) - now)
