"""Flow control and request deadlines, cheap enough for every request.

`Gate` is a counting gate with FIFO waiters: asyncio.Semaphore without its per-call
overhead, and with a synchronous `try_enter` for the common case of a free slot.
`Deadlines` fails reply futures whose time ran out. Every request of a client gets the
same timeout, so deadlines arrive in order and one timer over a deque serves them all
(an asyncio.timeout per request costs a timer, a task lookup and a context manager).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class RequestTimedOut(Exception):
    """A reply future's deadline passed (set by `Deadlines`)."""


class Gate:
    """At most `size` holders; the others wait in arrival order."""

    __slots__ = ("free", "loop", "waiters")

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.free = size
        self.loop = loop
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody is waiting for it."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def enter(self) -> None:
        """Take a slot, waiting for one in order."""
        if self.try_enter():
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self.waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.leave()          # the slot was handed over just as we gave up
            raise

    def leave(self) -> None:
        """Give the slot to the next waiter, or back."""
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class Deadlines:
    """Fails registered futures with `RequestTimedOut` once their deadline passes.

    Register in deadline order (the same timeout for every request guarantees it).
    """

    __slots__ = ("_handle", "_queue", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queue: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, deadline: float, fut: asyncio.Future[Any]) -> None:
        """Fail `fut` at `deadline` unless it is done by then."""
        queue = self._queue
        while queue and queue[0][1].done():   # answered: forget them (and their replies)
            queue.popleft()
        queue.append((deadline, fut))
        if self._handle is None:
            self._handle = self.loop.call_at(deadline, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        queue = self._queue
        while queue and (queue[0][0] <= now or queue[0][1].done()):
            _, fut = queue.popleft()
            if not fut.done():
                fut.set_exception(RequestTimedOut())
        self._handle = self.loop.call_at(queue[0][0], self._sweep) if queue else None

    def close(self) -> None:
        """Stop the timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
