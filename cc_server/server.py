"""The charging server: wires engine, dispatcher, renewal and connections to a loop.

`ChargingServer` is what `cc-server` runs and what `cc_server.testing` starts in-process.
Time comes from `clock` (epoch seconds), so tests can move it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable

from .config import ServerConfig
from .connection import ALL_ROLES, ServerConnection
from .dedup import OutcomeCache
from .dispatch import Dispatcher
from .engine import Catalog, Engine
from .renewal import RenewalService

log = logging.getLogger("cc_server")
VERSION = "0.1.0"
EXPIRY_BATCH = 5_000   # clean-ups per tick before yielding to the loop


class ChargingServer:
    """One listening charging server."""

    def __init__(self, config: ServerConfig | None = None, *,
                 clock: Callable[[], float] = time.time, engine: Engine | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config or ServerConfig()
        self.clock = clock
        self.version = f"cc-server {VERSION}"
        catalog = Catalog.load(self.config.catalog) if self.config.catalog else Catalog.builtin()
        self.engine = engine or Engine(catalog, self.config.journal_retain)
        if engine is None:
            seed_subscribers(self.engine, catalog)
        self.renewal = RenewalService(self.config.renewal_send_timeout,
                                      self.config.renewal_resend_interval,
                                      self.config.renewal_resend_attempts)
        self.dedup = OutcomeCache(self.config.dedup_window, self.config.dedup_max_entries)
        self.dispatcher = Dispatcher(self.engine, clock, self.renewal, self.dedup,
                                     self.config.max_subrequests)
        self.ssl_context = ssl_context
        self.connections: set[ServerConnection] = set()
        self.counts: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._closed = asyncio.Event()
        self._all_gone = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await self.loop.create_server(
            lambda: ServerConnection(self), self.config.host, self.config.port,
            ssl=self.ssl_context, reuse_address=True, backlog=1024)
        self._tick_handle = self.loop.call_later(self.config.tick, self._tick)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 resolved)."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def shutdown(self, drain: float = 5.0) -> None:
        """Stop accepting, say goodbye, let in-flight work finish, close everything."""
        if self._server is not None:
            self._server.close()
        self._all_gone.clear()       # set by any earlier moment with no connection
        for conn in list(self.connections):
            conn.goodbye("server shutting down")
            conn.close()             # the transport flushes what is buffered, then closes
        if self.connections:
            try:
                await asyncio.wait_for(self._all_gone.wait(), drain)
            except TimeoutError:     # a peer that does not read: drop it
                for conn in list(self.connections):
                    if conn.transport is not None:
                        conn.transport.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once `shutdown` has finished."""
        await self._closed.wait()

    # ------------------------------------------------------------------ hooks

    def authenticate(self, user: str | None, password: str | None,
                     conn: ServerConnection) -> frozenset[str] | None:
        """Roles of a connecting user, or None to refuse (no users file: every role)."""
        return ALL_ROLES

    def connection_closed(self, conn: ServerConnection) -> None:
        """A connection went away."""
        if not self.connections:
            self._all_gone.set()

    # ------------------------------------------------------------------ timers

    def _tick(self) -> None:
        now = self.clock()
        busy = False
        try:
            busy = self.engine.expire(now, EXPIRY_BATCH) >= EXPIRY_BATCH
            self.dispatcher.flush_renewals(now)
            self.renewal.tick(now)
            self.dedup.expire(now)
        except Exception:
            log.exception("event=tick_failed")
        self._tick_handle = self.loop.call_later(0 if busy else self.config.tick, self._tick)


def seed_subscribers(engine: Engine, catalog: Catalog) -> None:
    """Create the catalog file's subscribers that do not exist yet."""
    for seed in catalog.subscribers:
        if seed.user_id not in engine.accounts:
            engine.create_subscriber(seed.user_id, seed.balance, seed.currency, seed.counters)
