"""The client's one retry policy: what is tried again, where, after how long, until when.

Modelled on redis-py's `Retry` with a `Backoff`. `protocol.errors.RETRYABLE` is the only
list of retried error codes and says where each is retried: on the same connection
(TOO_MANY_REQUESTS: refused unapplied, send it again after a pause) or on a new one
(SHUTTING_DOWN and a refused handshake: this connection is going away). A lost
connection is retried on a new one too: a request is always sent again with the same
bytes, so its operation id makes the server apply it at most once.

Every retry waits `Backoff.compute(failures)`, and nothing is retried past the call's
deadline: when the pause would end after it, the call fails at once with the reason of
the last failure. The policy knows nothing of connections; the caller's attempt raises
`Retryable` and acts on `Retryable.where` (a new connection, or the same one).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from protocol.errors import RETRYABLE, RetryWhere

R = TypeVar("R")
FIRST_DELAY = 0.01    # seconds before the first retry; doubles with each further failure
MAX_DELAY = 1.0       # the longest pause between two attempts


class Backoff(Protocol):
    """How long to pause after the n-th consecutive failure (n >= 1)."""

    def compute(self, failures: int) -> float:
        """Seconds to wait before the next attempt."""
        ...


@dataclass(frozen=True)
class ExponentialBackoff:
    """`first` seconds, doubled per further failure up to `cap`, each pause shortened by a
    random share of up to `jitter` so that many clients do not retry in step."""

    first: float = FIRST_DELAY
    cap: float = MAX_DELAY
    jitter: float = 0.5
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def compute(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures (0 for none)."""
        if failures <= 0:
            return 0.0
        delay: float = min(self.cap, self.first * 2 ** min(failures - 1, 30))
        share: float = self.rand()
        return delay * (1.0 - self.jitter * share)


class Retryable(Exception):
    """An attempt failed in a way that may succeed if tried again at `where`."""

    def __init__(self, where: RetryWhere, reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


class RetryTimeout(TimeoutError):
    """The deadline came before a retry could be made; `reason` is the last failure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retry:
    """Runs attempts until one succeeds, a final failure, or the deadline.

    `clock` and `sleep` are the event loop's (tests pass fakes); `table` maps each
    retried error code to where it is retried.
    """

    def __init__(self, clock: Callable[[], float], backoff: Backoff | None = None,
                 table: Mapping[str, RetryWhere] = RETRYABLE,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.clock = clock
        self.backoff: Backoff = backoff if backoff is not None else ExponentialBackoff()
        self.table = table
        self.sleep = sleep
        self.retries = 0          # attempts made again, over this policy's life

    def where(self, code: str | None) -> RetryWhere | None:
        """Where a request refused with `code` is sent again; None: the code is final."""
        return self.table.get(code) if code is not None else None

    def classify(self, code: str | None, reason: str) -> Retryable | None:
        """The `Retryable` for an error code, or None when the code is final."""
        where = self.where(code)
        return Retryable(where, reason) if where is not None else None

    async def pause(self, failures: int, deadline: float | None = None,
                    reason: str = "") -> None:
        """Wait before the attempt after `failures` consecutive failures; `RetryTimeout`
        at once if that wait would end at or past `deadline`."""
        delay = self.backoff.compute(failures)
        if deadline is not None and self.clock() + delay >= deadline:
            raise RetryTimeout(reason)
        if delay > 0:
            await self.sleep(delay)

    async def call(self, attempt: Callable[[], Awaitable[R]], deadline: float,
                   failed: Retryable | None = None) -> R:
        """`await attempt()` until it returns; each `Retryable` it raises is followed by a
        pause and another attempt. `failed`: an attempt already made failed so."""
        failures = 0
        while True:
            if failed is not None:
                failures += 1
                await self.pause(failures, deadline, failed.reason)
                self.retries += 1
            try:
                return await attempt()
            except Retryable as exc:
                failed = exc
