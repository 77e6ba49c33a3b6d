"""Run a charging server inside your own tests (in the spirit of moto or LocalStack).

    from cc_server.testing import ManualClock, running_server

    async def test_my_gateway():
        clock = ManualClock()
        async with running_server(clock=clock) as server:     # 127.0.0.1, free port
            async with cc_client.connect(server.url) as client:
                ...
                clock.advance(31)          # TTLs run out without sleeping
                await server.settle()      # let the expiry timer see the new time

`ServerThread` does the same for synchronous tests (the server runs on its own thread).
This is the one module that may import both cc_server and cc_client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from types import TracebackType
from typing import Any

from .config import ServerConfig
from .server import ChargingServer


class ManualClock:
    """A wall clock that moves only when told to (epoch seconds)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


class TestServer:
    """A running in-process server: `.url`, `.server` (engine etc.), `.settle()`."""

    __test__ = False   # not a pytest test class

    def __init__(self, server: ChargingServer) -> None:
        self.server = server
        host, port = server.address
        self.host, self.port = host, port
        self.url = f"{host}:{port}"

    @property
    def engine(self) -> Any:
        """The server's charging engine."""
        return self.server.engine

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
    cfg = replace(config or ServerConfig(), host="127.0.0.1", port=0, **settings)
    server = ChargingServer(cfg, clock=clock)
    await server.start()
    try:
        yield TestServer(server)
    finally:
        await server.shutdown(drain=1.0)


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
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    @property
    def url(self) -> str:
        """host:port of the server."""
        assert self.test_server is not None
        return self.test_server.url

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
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
