"""Run a charging server inside your own tests (in the spirit of moto or LocalStack).

For example::

    from cc_server.testing import ManualClock, running_server

    async def test_my_gateway():
        clock = ManualClock()
        async with running_server(clock=clock) as server:     # 127.0.0.1, free port
            async with cc_client.connect(server.url) as client:
                ...
                clock.advance(31)          # TTLs run out without sleeping
                await server.settle()      # let the expiry timer see the new time

`ServerThread` does the same for synchronous tests (the server runs on its own thread).
Both give the test controls: `server.faults.add(...)` (a context manager that removes
the rule), `server.record` (with `verify`) and `server.advance(seconds)` (a manual
clock). An internal error while the server applies a change does not end the test
process (as `cc-server` would): the server closes and the failure is raised when the
block ends. This is the one module that may import both cc_server and cc_client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from types import TracebackType
from typing import Any

from protocol.frames import Frame

from .clock import ManualClock
from .config import ServerConfig
from .dispatch import Peer
from .faults import Faults
from .record import Record
from .server import ChargingServer

__all__ = ["ManualClock", "ServerFailed", "ServerThread", "TestServer", "running_server",
           "sync_client"]
log = logging.getLogger("cc_server")


def sync_client(url: str, **options: Any) -> Any:
    """A blocking `cc_client.sync` client connected to `url` (the plugin's `cc_client`)."""
    import cc_client.sync  # imported late: the server package runs without the client

    return cc_client.sync.connect(url, **options)


class ServerFailed(RuntimeError):
    """The in-process server stopped on an internal error while applying a change."""


class TestServer:
    """A running in-process server: `.url`, `.server` (engine etc.), `.settle()`."""

    __test__ = False   # not a pytest test class

    def __init__(self, server: ChargingServer) -> None:
        self.server = server
        host, port = server.address
        self.host, self.port = host, port
        self.url = f"{host}:{port}"
        #: the internal error that stopped the server (raised when the block ends)
        self.failure: BaseException | None = None
        server.dispatcher.on_fatal = self._fatal

    @property
    def engine(self) -> Any:
        """The server's charging engine."""
        return self.server.engine

    @property
    def faults(self) -> Faults:
        """The fault rules: `with server.faults.add(action="drop-reply", times=1): ...`."""
        return self.server.controls.faults

    @property
    def record(self) -> Record:
        """The request record (`record=N` setting): `find(...)`, `verify(...)`."""
        record = self.server.record
        if record is None:
            raise RuntimeError("the request record is off: start the server with record=N")
        return record

    @property
    def clock(self) -> Any:
        """The server's clock (a callable returning epoch seconds)."""
        return self.server.clock

    def advance(self, seconds: float) -> float:
        """Move the manual clock forward; expiry and renewal timers run at once.
        Returns the new time."""
        clock = self.server.controls.manual_clock
        if clock is None:
            raise RuntimeError("the server's clock is not manual: pass clock=ManualClock() "
                               "or clock='manual'")
        return clock.advance(seconds)

    def _fatal(self, peer: Peer | None, frame: Frame | None) -> None:
        """The fail-stop in process (the dispatcher logged it and answers SERVER_ERROR
        from now on): close the server, keep the test process."""
        self.failure = sys.exc_info()[1] or RuntimeError("internal error while applying")
        self.server.halt()       # no timer, no log record, no final snapshot from now on
        for conn in list(self.server.connections):
            conn.close()
        self.server.loop.create_task(self.server.shutdown(drain=0.1))

    def check(self) -> None:
        """Raise `ServerFailed` if the server stopped on an internal error."""
        if self.failure is not None:
            raise ServerFailed("the in-process cc-server stopped on an internal error "
                               f"while applying a change: {self.failure!r}") from self.failure

    async def settle(self, ticks: int = 2) -> None:
        """Wait for the housekeeping timer to run `ticks` times (expiry, renewal)."""
        await asyncio.sleep(self.server.config.tick * ticks + 0.01)


@contextlib.asynccontextmanager
async def running_server(config: ServerConfig | None = None, *,
                         clock: Any = None, **settings: Any) -> AsyncIterator[TestServer]:
    """Start a server on 127.0.0.1 and a free port for the duration of the block.

    `settings` override `ServerConfig` fields (e.g. `heartbeat=0.2`); `clock` is any
    callable returning epoch seconds, such as a `ManualClock`.
    """
    if isinstance(clock, str):       # clock="manual" is the setting, not a callable
        settings["clock"], clock = clock, None
    cfg = replace(config or ServerConfig(), host="127.0.0.1", port=0, **settings)
    server = ChargingServer(cfg, clock=clock)
    await server.start()
    test_server = TestServer(server)
    try:
        yield test_server
    finally:
        if test_server.failure is None:
            await server.shutdown(drain=1.0)
        else:
            await server.wait_closed()
    test_server.check()


class ServerThread:
    """`running_server` on a background thread, for synchronous code.

        with ServerThread(clock=clock) as server:
            with cc_client.sync.connect(server.url) as client: ...
            clock.advance(31)
            server.settle()
    """

    def __init__(self, config: ServerConfig | None = None, *, clock: Any = None,
                 **settings: Any) -> None:
        self._args = (config, clock, settings)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.test_server: TestServer | None = None
        self._thread = threading.Thread(target=self._run, name="cc-test-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        config, clock, settings = self._args
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_server(config, clock=clock, **settings) as server:
                self.test_server = server
                self._ready.set()
                stop = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait([stop, asyncio.ensure_future(server.server.wait_closed())],
                                   return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    @property
    def url(self) -> str:
        """host:port of the server."""
        assert self.test_server is not None
        return self.test_server.url

    def _server(self) -> TestServer:
        if self.test_server is None or self._loop is None or not self._thread.is_alive():
            raise RuntimeError("the server is not running (use `with ServerThread() as ...`)")
        return self.test_server

    @property
    def faults(self) -> Faults:
        """The fault rules (`with server.faults.add(...)`)."""
        return self._server().faults

    @property
    def record(self) -> Record:
        """The request record (`server.record.verify(...)`)."""
        return self._server().record

    @property
    def clock(self) -> Any:
        """The server's clock."""
        return self._server().clock

    def advance(self, seconds: float, timeout: float = 10.0) -> float:
        """Move the manual clock on the server's loop; returns once the timers it made
        due have run, with the new time."""
        server, loop = self._server(), self._loop
        assert loop is not None

        async def move() -> float:
            return server.advance(seconds)

        return asyncio.run_coroutine_threadsafe(move(), loop).result(timeout)

    def settle(self, ticks: int = 2, timeout: float = 10.0) -> None:
        """Block until the housekeeping timer has run `ticks` times (expiry, renewal
        resends): after moving a `ManualClock`, the work now due has been done."""
        server, loop = self.test_server, self._loop
        if server is None or loop is None or not self._thread.is_alive():
            raise RuntimeError("the server is not running (use `with ServerThread() as ...`)")
        asyncio.run_coroutine_threadsafe(server.settle(ticks), loop).result(timeout)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if self._error is not None and exc is None:
            raise self._error
