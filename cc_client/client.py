"""The async client: connect(), failover and reconnect, retries, flow control.

Every request is retried on a new connection, with the same bytes (hence the same
operation id), when its connection is lost before the reply, and sent again after a short
pause when the server refused it unapplied for having too many requests of this
connection in hand (TOO_MANY_REQUESTS); `request_timeout` bounds the whole call,
reconnects included. Flow control follows SAP CC's client: at most
`queue_size_to_notify` requests are in flight on the wire, and at most
`max_queue_size_to_wait` more wait their turn; further callers wait to be queued.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import ssl as ssl_module
from collections.abc import Generator
from types import TracebackType
from typing import Any

from protocol import codec
from protocol import messages as m
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DEFAULT_MAX_FRAME, HEADER_SIZE

from .connection import ClientConnection, ConnectionLost, Reply
from .errors import (
    AuthenticationFailed,
    ChargingError,
    CommunicationFailure,
    error_from_code,
)
from .flow import Deadlines, Gate, RequestTimedOut
from .listeners import Listeners, RenewalHandler
from .operations import SessionStartOperation, SessionStopOperation, SessionUpdateOperation
from .operator import OperatorAPI
from .results import SessionResult

log = logging.getLogger("cc_client")
T = m.MsgType
DEFAULT_ADDRESS = "127.0.0.1:9500"
DEFAULT_PORT = 9500
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0


def parse_address(address: str) -> tuple[str, int]:
    """'host:port', '[v6]:port' or 'host' (port 9500) -> (host, port)."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad address {address!r}: the port must be a number") from None
    if not host or not 0 < number < 65536:
        raise ValueError(f"bad address {address!r}; expected host:port")
    return host, number


class Client:
    """A charging client bound to one event loop (see `connect`)."""

    def __init__(self, *addresses: str, user: str | None = None, password: str | None = None,
                 ssl: ssl_module.SSLContext | None = None, request_timeout: float = 5.0,
                 max_queue_size_to_wait: int = 10_000, queue_size_to_notify: int = 1_000,
                 client_name: str | None = None) -> None:
        if request_timeout <= 0:
            raise ValueError("request_timeout must be > 0")
        if queue_size_to_notify < 1 or max_queue_size_to_wait < 0:
            raise ValueError("queue_size_to_notify must be >= 1, max_queue_size_to_wait >= 0")
        self.addresses = [parse_address(a) for a in (addresses or (DEFAULT_ADDRESS,))]
        self.user = user
        self.password = password
        self.ssl = ssl
        self.request_timeout = request_timeout
        self.client_name = client_name
        self.loop = asyncio.get_running_loop()
        self.window = queue_size_to_notify
        self._in_flight = Gate(queue_size_to_notify, self.loop)
        self._admission = Gate(queue_size_to_notify + max_queue_size_to_wait, self.loop)
        self._deadlines = Deadlines(self.loop)
        self._conn: ClientConnection | None = None
        self._dialing: asyncio.Task[ClientConnection] | None = None
        self._closed = False
        self._nonce = os.urandom(8)
        self._op_counter = itertools.count(1)
        self.listeners = Listeners(self)
        self.admin = OperatorAPI(self)
        self.reconnects = 0
        self._last_error = ""   # why the latest connection attempt or connection failed

    # ------------------------------------------------------------------ containers

    def new_operation_id(self) -> bytes:
        """A fresh operation id: 8 random bytes of this client, then a counter."""
        return self._nonce + next(self._op_counter).to_bytes(8, "big")

    def create_session_start_operation(self, user_id: str, service_id: str,
                                       session_id: str) -> SessionStartOperation:
        """A start container (prepare_reserve only)."""
        return SessionStartOperation(self, user_id, service_id, session_id)

    def create_session_update_operation(self, user_id: str, service_id: str,
                                        session_id: str) -> SessionUpdateOperation:
        """An update container."""
        return SessionUpdateOperation(self, user_id, service_id, session_id)

    def create_session_stop_operation(self, user_id: str, service_id: str,
                                      session_id: str) -> SessionStopOperation:
        """A stop container."""
        return SessionStopOperation(self, user_id, service_id, session_id)

    async def execute_container(self, msg: m.Execute) -> SessionResult:
        """Send a container; its SessionResult, or the whole-container failure raised."""
        msg_type, body = await self.call(*codec.encode_body(msg))
        if msg_type == T.EXECUTE_RESULT:
            result = codec.decode_body(msg_type, body)
            assert isinstance(result, m.ExecuteResult)
            return SessionResult.from_message(result)
        raise self.error_of(msg_type, body)

    async def ping(self) -> float:
        """One PING/PONG round trip through the whole stack; returns its seconds."""
        started = self.loop.time()
        msg_type, body = await self.call(T.PING, codec.pack({}))
        if msg_type != T.PONG:
            raise self.error_of(msg_type, body)
        return self.loop.time() - started

    # ------------------------------------------------------------------ renewal

    async def register_reservation_renewal_listener(self, listener_id: int,
                                                    handler: RenewalHandler) -> None:
        """Receive renewal notifications for `listener_id` (kept across reconnects)."""
        await self.listeners.register(listener_id, handler)

    async def unregister_reservation_renewal_listener(self, listener_id: int) -> None:
        """Stop receiving notifications for `listener_id`."""
        await self.listeners.unregister(listener_id)

    # ------------------------------------------------------------------ requests

    @staticmethod
    def error_of(msg_type: int, body: bytes) -> ChargingError:
        """The exception an unexpected or ERROR reply stands for."""
        try:
            msg = codec.decode_body(msg_type, body)
        except ProtocolError as exc:
            return CommunicationFailure(f"undecodable reply: {exc}")
        if isinstance(msg, m.Error):
            return error_from_code(msg.code, msg.message)
        return CommunicationFailure(f"unexpected reply {type(msg).__name__}")

    async def call(self, msg_type: int, body: bytes) -> Reply:
        """Send one request and return its raw reply, retrying across reconnects."""
        if self._closed:
            raise CommunicationFailure("the client is closed")
        conn = self._conn
        limit = conn.max_frame if conn is not None else DEFAULT_MAX_FRAME
        if len(body) > limit:
            raise CommunicationFailure(f"message too long: {len(body) + HEADER_SIZE} bytes "
                                       f"(the limit is {limit + HEADER_SIZE})")
        deadline = self.loop.time() + self.request_timeout
        if conn is not None and not conn.closed and not conn.draining \
                and self._admission.try_enter():
            try:
                if self._in_flight.try_enter():    # the common case: send at once
                    try:
                        reply = await self._send_once(conn, msg_type, body, deadline)
                    finally:
                        self._in_flight.leave()
                    if reply is not None:
                        return reply
            finally:
                self._admission.leave()
        return await self._call_slowly(msg_type, body, deadline)

    async def _send_once(self, conn: ClientConnection, msg_type: int, body: bytes,
                         deadline: float) -> Reply | None:
        """One attempt on `conn`; None when it must be retried (connection lost, or the
        server is shutting down)."""
        fut = conn.request(msg_type, body)
        self._deadlines.watch(deadline, fut)
        try:
            reply = await fut
        except ConnectionLost:
            return None
        except RequestTimedOut:
            conn.forget(fut)
            raise self._timed_out() from None
        except asyncio.CancelledError:
            conn.forget(fut)
            raise
        if reply[0] == T.ERROR:
            code = _error_code(reply[1])
            if code == ErrorCode.SHUTTING_DOWN:
                conn.draining = True
                return None
            if code == ErrorCode.TOO_MANY_REQUESTS:
                return None         # refused unapplied: the slow path sends it again soon
        return reply

    def _timed_out(self) -> CommunicationFailure:
        return CommunicationFailure(f"no reply within {self.request_timeout} s"
                                    + (f" ({self._last_error})" if self._last_error else ""))

    async def _call_slowly(self, msg_type: int, body: bytes, deadline: float) -> Reply:
        """Queue for the window, (re)connect and retry, all within `deadline`."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._admission.enter()
                try:
                    await self._in_flight.enter()
                    try:
                        return await self._send_until_answered(msg_type, body)
                    finally:
                        self._in_flight.leave()
                finally:
                    self._admission.leave()
        except TimeoutError:
            raise self._timed_out() from None

    async def _send_until_answered(self, msg_type: int, body: bytes) -> Reply:
        busy = 0
        while True:
            conn = self._conn
            if conn is None or conn.closed or conn.draining:
                conn = await self._connection()
            try:
                fut = conn.request(msg_type, body)
            except ConnectionLost:
                continue
            try:
                reply = await fut
            except ConnectionLost as exc:
                if self._closed:
                    raise CommunicationFailure("the client was closed") from None
                self._last_error = str(exc)
                continue
            except asyncio.CancelledError:
                conn.forget(fut)
                raise
            code = _error_code(reply[1]) if reply[0] == T.ERROR else None
            if code == ErrorCode.SHUTTING_DOWN:
                conn.draining = True
                continue
            if code == ErrorCode.TOO_MANY_REQUESTS:   # refused unapplied: send it again soon
                busy += 1
                await asyncio.sleep(min(0.5, 0.005 * 2 ** min(busy, 7)) * random.uniform(0.5, 1))
                continue
            return reply

    # ------------------------------------------------------------------ connections

    async def open(self) -> None:
        """The first connection: one round over the addresses; CommunicationFailure when
        none answers. (Later reconnects keep trying until a call's request_timeout.)"""
        self._dialing = self.loop.create_task(self._dial(rounds=1))
        await self._connection()

    async def _connection(self) -> ClientConnection:
        if self._closed:
            raise CommunicationFailure("the client is closed")
        if self._dialing is None or self._dialing.done():
            self._dialing = self.loop.create_task(self._dial())
        try:
            return await asyncio.shield(self._dialing)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed and task is not None and not task.cancelling():
                # close() cancelled the dialing, not our caller: a closed client
                raise CommunicationFailure("the client was closed") from None
            raise

    async def _dial(self, rounds: int | None = None) -> ClientConnection:
        for attempt in itertools.count():
            for host, port in self.addresses:
                if self._closed:
                    raise CommunicationFailure("the client is closed")
                try:
                    return await self._open(host, port)
                except ChargingError:
                    raise                  # refused for good: wrong password, version
                except (OSError, TimeoutError, ConnectionLost, ProtocolError) as exc:
                    self._last_error = f"{host}:{port}: {exc or type(exc).__name__}"
                    log.debug("event=connect_failed address=%s:%d error=%r", host, port, exc)
            if rounds is not None and attempt + 1 >= rounds:
                where = ", ".join(f"{h}:{p}" for h, p in self.addresses)
                raise CommunicationFailure(f"no address answers ({where}; {self._last_error})")
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(attempt, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    async def _open(self, host: str, port: int) -> ClientConnection:
        timeout = min(self.request_timeout, 5.0)
        async with asyncio.timeout(timeout):
            _, conn = await self.loop.create_connection(
                lambda: ClientConnection(self.loop, self._on_push, self._on_lost), host, port,
                ssl=self.ssl)
            try:
                await conn.handshake(m.Hello(m.SUPPORTED_VERSIONS, self.client_name,
                                             self.user, self.password))
            except ProtocolError as exc:
                conn.abort(str(exc))
                if exc.code == ErrorCode.AUTHENTICATION_FAILED:
                    raise AuthenticationFailed(exc.message) from None
                if exc.code == ErrorCode.UNSUPPORTED_VERSION:
                    raise CommunicationFailure(exc.message, exc.code) from None
                raise
        if self._closed:
            conn.close()
            raise CommunicationFailure("the client is closed")
        if self._conn is not None:
            self.reconnects += 1
        self._conn = conn
        self._last_error = ""
        self.listeners.reregister(conn)
        return conn

    def _on_lost(self, conn: ClientConnection) -> None:
        if conn is self._conn and not self._closed and self.listeners.active:
            self.loop.call_soon(self._redial)

    def _redial(self) -> None:
        if not self._closed and (self._dialing is None or self._dialing.done()):
            self._dialing = self.loop.create_task(self._dial())
            self._dialing.add_done_callback(_quiet)

    def _on_push(self, conn: ClientConnection, msg: m.Message) -> None:
        if isinstance(msg, m.Notification):
            self.listeners.dispatch(msg)
        elif isinstance(msg, m.Goodbye) and conn is self._conn and self.listeners.active:
            self._redial()

    # ------------------------------------------------------------------ closing

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    @property
    def connected(self) -> bool:
        """True while a connection is open and usable."""
        conn = self._conn
        return conn is not None and not conn.closed and not conn.draining

    async def close(self) -> None:
        """Close the connection; waiting calls fail with CommunicationFailure."""
        if self._closed:
            return
        self._closed = True
        if self._dialing is not None and not self._dialing.done():
            self._dialing.cancel()
        await self.listeners.close()
        self._deadlines.close()
        if self._conn is not None:
            self._conn.close()
        await asyncio.sleep(0)


def _error_code(body: bytes) -> str | None:
    try:
        code = codec.unpack(body).get("code")
    except (ProtocolError, AttributeError):
        return None
    return code if isinstance(code, str) else None


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Connector:
    """What `connect()` returns: await it, or use it as `async with`."""

    def __init__(self, *addresses: str, **options: Any) -> None:
        self._addresses = addresses
        self._options = options
        self._client: Client | None = None

    async def _start(self) -> Client:
        client = Client(*self._addresses, **self._options)
        try:
            await asyncio.wait_for(client.open(), client.request_timeout)
        except TimeoutError:
            await client.close()
            where = ", ".join(f"{h}:{p}" for h, p in client.addresses)
            raise CommunicationFailure(f"no address answered within {client.request_timeout} s "
                                       f"({where}; {client._last_error or 'no reply'})") from None
        except BaseException:
            await client.close()
            raise
        self._client = client
        return client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._start().__await__()

    async def __aenter__(self) -> Client:
        return await self._start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.close()


def connect(*addresses: str, user: str | None = None, password: str | None = None,
            ssl: ssl_module.SSLContext | None = None, request_timeout: float = 5.0,
            max_queue_size_to_wait: int = 10_000, queue_size_to_notify: int = 1_000,
            client_name: str | None = None) -> Connector:
    """Connect to a charging server: `client = await connect(...)` or
    `async with connect(...) as client`. Several addresses mean failover, in order."""
    return Connector(*addresses, user=user, password=password, ssl=ssl,
                     request_timeout=request_timeout,
                     max_queue_size_to_wait=max_queue_size_to_wait,
                     queue_size_to_notify=queue_size_to_notify, client_name=client_name)

