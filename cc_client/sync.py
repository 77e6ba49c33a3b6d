"""Blocking facade: the async client on a private event-loop thread.

    with cc_client.sync.connect("127.0.0.1:9500") as client:
        op = client.create_session_start_operation(user_id="alice", service_id="DATA",
                                                   session_id="s-1")
        op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 100}), ttl=30)
        result = op.execute()          # blocks

Same operations, same core; only `execute()` and the admin calls block. Synchronous renewal
handlers run on a worker thread, so they may call `execute()` themselves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from .client import Client
from .client import connect as async_connect
from .listeners import RenewalHandler
from .results import SessionResult

R = TypeVar("R")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class _LoopThread:
    def __init__(self) -> None:
        self.loop = _new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cc-client-loop",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a blocking call from the client's own loop thread would "
                               "deadlock; use the async client there")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class SyncOperation:
    """A container whose execute() blocks; other methods are the async container's."""

    def __init__(self, runner: _LoopThread, operation: Any) -> None:
        self._runner = runner
        self._operation = operation

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operation, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._operation)) | {"execute"})

    def execute(self) -> SessionResult:
        """Send the container and wait for its result."""
        result: SessionResult = self._runner.run(self._operation.execute())
        return result


class SyncAdmin:
    """`client.admin` with blocking methods."""

    def __init__(self, runner: _LoopThread, admin: Any) -> None:
        self._runner = runner
        self._admin = admin

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._admin, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(method(*args, **kwargs))
        call.__doc__ = method.__doc__
        return call


class SyncClient:
    """A blocking charging client (see module docstring)."""

    def __init__(self, *addresses: str, **options: Any) -> None:
        self._runner = _LoopThread()
        try:
            self._client: Client = self._runner.run(self._open(addresses, options))
        except BaseException:
            self._runner.stop()
            raise
        self.admin = SyncAdmin(self._runner, self._client.admin)

    @staticmethod
    async def _open(addresses: tuple[str, ...], options: dict[str, Any]) -> Client:
        client = await async_connect(*addresses, **options)
        client.listeners.sync_in_thread = True
        return client

    def create_session_start_operation(self, user_id: str, service_id: str,
                                       session_id: str) -> SyncOperation:
        """A start container."""
        return SyncOperation(self._runner, self._client.create_session_start_operation(
            user_id, service_id, session_id))

    def create_session_update_operation(self, user_id: str, service_id: str,
                                        session_id: str) -> SyncOperation:
        """An update container."""
        return SyncOperation(self._runner, self._client.create_session_update_operation(
            user_id, service_id, session_id))

    def create_session_stop_operation(self, user_id: str, service_id: str,
                                      session_id: str) -> SyncOperation:
        """A stop container."""
        return SyncOperation(self._runner, self._client.create_session_stop_operation(
            user_id, service_id, session_id))

    def register_reservation_renewal_listener(self, listener_id: int,
                                              handler: RenewalHandler) -> None:
        """Register a renewal handler (sync handlers run on a worker thread)."""
        self._runner.run(self._client.register_reservation_renewal_listener(listener_id,
                                                                            handler))

    def unregister_reservation_renewal_listener(self, listener_id: int) -> None:
        """Unregister a renewal handler."""
        self._runner.run(self._client.unregister_reservation_renewal_listener(listener_id))

    def close(self) -> None:
        """Close the connection and stop the loop thread."""
        if self._runner.thread.is_alive():
            self._runner.run(self._client.close())
            self._runner.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def connect(*addresses: str, **options: Any) -> SyncClient:
    """Blocking `connect`: same arguments as `cc_client.connect`."""
    return SyncClient(*addresses, **options)
