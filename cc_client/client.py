"""The async client: connect(), failover and reconnect, retries, flow control.

Every request is sent again, with the same bytes (hence the same operation id), when its
connection is lost before the reply or the server refused it unapplied with a retryable
code; `retry.Retry` decides where and after how long, and `request_timeout` bounds the
whole call, reconnects and retries included. Flow control follows SAP CC's client: at most
`queue_size_to_notify` requests are in flight on the wire, and at most
`max_queue_size_to_wait` more wait their turn; further callers wait to be queued.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import socket
import ssl as ssl_module
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any

from protocol import codec
from protocol import messages as m
from protocol.errors import ErrorCode, ProtocolError, RetryWhere

from . import hot
from .connection import ClientConnection, ConnectionLost, HandshakeRefused, Reply
from .errors import (
    AuthenticationFailed,
    ChargingError,
    CommunicationFailure,
    InvalidReply,
    error_from_code,
)
from .flow import Deadlines, Gate
from .listeners import Listeners, RenewalHandler
from .operations import SessionStartOperation, SessionStopOperation, SessionUpdateOperation
from .operator import OperatorAPI
from .results import SessionResult
from .retry import Retry, Retryable, RetryTimeout

log = logging.getLogger("cc_client")
T = m.MsgType
LOGIN_DELAYED = "delayed by the server after failed attempts, or the server is stalled"
DEFAULT_ADDRESS = "127.0.0.1:9500"
DEFAULT_PORT = 9500
CONNECT_TIMEOUT = 5.0   # most seconds for TCP (and TLS) to one address, before the next


def parse_address(address: str) -> tuple[str, int]:
    """'host:port', '[v6]:port' or 'host' (port 9500) -> (host, port); a ValueError that
    says what is wrong in one line (a scheme, a port that is no number or out of range)."""
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if sep:
        raise ValueError(f"bad address {address!r}: no scheme ({scheme}://) here, write "
                         f"HOST:PORT (e.g. {rest.strip('/') or DEFAULT_ADDRESS}); TLS is "
                         "its own option")
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
    if not 0 < number < 65536:
        raise ValueError(f"bad address {address!r}: port {number} is out of range "
                         "(1 to 65535)")
    if not host:
        raise ValueError(f"bad address {address!r}: no host; expected HOST:PORT "
                         f"(e.g. {DEFAULT_ADDRESS})")
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
        self.retry = Retry(self.loop.time)
        #: the hot path's view of this client (it holds `_conn` and `_closed`)
        self._lane = hot.Lane(self.loop, request_timeout, self.retry, self._admission,
                              self._in_flight, self._deadlines, self._call_slowly, self._lost,
                              self._timed_out, self.error_of)
        self._dialing: asyncio.Task[ClientConnection] | None = None
        self._nonce = os.urandom(8)
        self._op_counter = itertools.count(1)
        self.listeners = Listeners(self)
        self.admin = OperatorAPI(self)
        self.reconnects = 0
        self._last_error = ""   # why the latest connection attempt or connection failed

    @property
    def _conn(self) -> ClientConnection | None:
        """The open connection, if any (kept in the hot path's `Lane`)."""
        return self._lane.conn

    @_conn.setter
    def _conn(self, conn: ClientConnection | None) -> None:
        self._lane.conn = conn

    @property
    def _closed(self) -> bool:
        return self._lane.closed

    @_closed.setter
    def _closed(self, closed: bool) -> None:
        self._lane.closed = closed

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

    def execute_container(self, msg: m.Execute) -> Coroutine[Any, Any, SessionResult]:
        """Send a container; its SessionResult, or the whole-container failure raised.
        (The compiled `hot.execute_container` does it: a coroutine less per container.)"""
        return hot.execute_container(self._lane, msg)

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
            return InvalidReply(f"undecodable reply: {exc}")
        if isinstance(msg, m.Error):
            return error_from_code(msg.code, msg.message)
        return CommunicationFailure(f"unexpected reply {type(msg).__name__}")

    def call(self, msg_type: int, body: bytes) -> Coroutine[Any, Any, Reply]:
        """Send one request and return its raw reply, retrying across reconnects."""
        return hot.call(self._lane, msg_type, body)

    def _lost(self, exc: ConnectionLost) -> Exception:
        """What a connection lost under a request means: retry it elsewhere, unless the
        client was closed."""
        if self._closed:
            return CommunicationFailure("the client was closed")
        self._last_error = str(exc)
        return Retryable(RetryWhere.NEW_CONNECTION, str(exc))

    def _timed_out(self, reason: str = "") -> CommunicationFailure:
        reason = reason or self._last_error
        return CommunicationFailure(f"no reply within {self.request_timeout} s"
                                    + (f" ({reason})" if reason else ""))

    async def _call_slowly(self, msg_type: int, body: bytes, deadline: float,
                           failed: Retryable | None) -> Reply:
        """Queue for the window, (re)connect and retry, all within `deadline`."""
        # the latest refusal, for the timeout's message: also when the deadline comes
        # while a retry is in flight, not only while waiting to send it again
        last_reason = failed.reason if failed is not None else ""

        async def attempt() -> Reply:
            nonlocal last_reason
            try:
                return await self._attempt(msg_type, body)
            except Retryable as exc:
                last_reason = exc.reason
                raise

        try:
            async with asyncio.timeout_at(deadline):
                await self._admission.enter()
                try:
                    await self._in_flight.enter()
                    try:
                        return await self.retry.call(attempt, deadline, failed)
                    finally:
                        self._in_flight.leave()
                finally:
                    self._admission.leave()
        except RetryTimeout as exc:
            raise self._timed_out(exc.reason) from None
        except TimeoutError:
            raise self._timed_out(last_reason) from None

    async def _attempt(self, msg_type: int, body: bytes) -> Reply:
        """One attempt of the slow path, on the current connection or a new one."""
        conn = self._conn
        if conn is None or conn.closed or conn.draining:
            conn = await self._connection()
        try:
            fut = conn.request(msg_type, body)
        except ConnectionLost as exc:
            raise self._lost(exc) from None
        try:
            reply = await fut
        except ConnectionLost as exc:
            raise self._lost(exc) from None
        except asyncio.CancelledError:
            conn.forget(fut)
            raise
        return hot.final(self.retry, conn, reply)

    def _refused(self, exc: HandshakeRefused) -> Exception:
        """A refused login: `Retryable` on a new connection if the policy says so, else
        the final error (with a hint when credentials were missing)."""
        retry = self.retry.classify(exc.code, f"{exc.code}: {exc.message}")
        if retry is not None:
            return retry
        if exc.code != ErrorCode.AUTHENTICATION_FAILED:
            return CommunicationFailure(exc.message, exc.code)
        if self.user is None and "requires a user" not in exc.message:   # an older server
            return AuthenticationFailed(f"{exc.message} (this server requires a user and "
                                        "password)")
        return AuthenticationFailed(exc.message)

    # ------------------------------------------------------------------ connections

    async def open(self) -> None:
        """The first connection: one round over the addresses; CommunicationFailure when
        none answers. (Later reconnects keep trying until a call's request_timeout.)"""
        self._dialing = self.loop.create_task(self._dial(rounds=1))
        self._dialing.add_done_callback(_quiet)   # a caller that gave up leaves it behind
        await self._connection()

    async def _connection(self) -> ClientConnection:
        if self._closed:
            raise CommunicationFailure("the client is closed")
        if self._dialing is None or self._dialing.done():
            self._dialing = self.loop.create_task(self._dial())
            self._dialing.add_done_callback(_quiet)
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
                except ChargingError as exc:   # refused for good: wrong password, version
                    self._last_error = f"{host}:{port}: {exc.message}"
                    raise
                except (OSError, TimeoutError, ConnectionLost, ProtocolError, Retryable) as exc:
                    self._last_error = f"{host}:{port}: {_reason(exc)}"
                    log.debug("event=connect_failed address=%s:%d error=%r", host, port, exc)
            if rounds is not None and attempt + 1 >= rounds:
                where = ", ".join(f"{h}:{p}" for h, p in self.addresses)
                raise CommunicationFailure(f"no address answers ({self._last_error})"
                                           if len(self.addresses) == 1 else
                                           f"no address answers ({where}; {self._last_error})")
            await self.retry.pause(attempt + 1)
        raise AssertionError("unreachable")

    async def _open(self, host: str, port: int) -> ClientConnection:
        """Connect and log in to one address. TCP and TLS get at most CONNECT_TIMEOUT, so
        that a dead address does not hold up the next one; the login gets the whole
        request_timeout, since a server delays logins after failed attempts."""
        timeout = min(self.request_timeout, CONNECT_TIMEOUT)
        try:
            async with asyncio.timeout(timeout):
                _, conn = await self.loop.create_connection(
                    lambda: ClientConnection(self.loop, self._on_push, self._on_lost),
                    host, port, ssl=self.ssl)
        except TimeoutError:
            raise TimeoutError(f"no connection within {timeout} s") from None
        # what a caller's timeout reports while the login waits
        self._last_error = f"{host}:{port}: login not answered ({LOGIN_DELAYED})"
        try:
            async with asyncio.timeout(self.request_timeout):
                await conn.handshake(m.Hello(m.SUPPORTED_VERSIONS, self.client_name,
                                             self.user, self.password))
        except HandshakeRefused as exc:
            conn.abort(str(exc))
            raise self._refused(exc) from None
        except ConnectionLost as exc:   # closed without a word: TLS is the usual reason
            hint = ("the server requires a client certificate, or did not accept this one"
                    if self.ssl is not None else "the server may require TLS")
            raise ConnectionLost(f"{exc} during the login: {hint}") from None
        except BaseException as exc:
            conn.abort(str(exc) or type(exc).__name__)
            if isinstance(exc, TimeoutError):
                raise TimeoutError(f"login not answered within {self.request_timeout} s "
                                   f"({LOGIN_DELAYED})") from None
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


#: the hint of a refused connection (nothing listens at the address)
NOT_LISTENING = ("nothing listens there (connection refused): is cc-server running at "
                 "this address? (start one: cc-server, or make run)")


def _reason(exc: BaseException) -> str:
    """An exception's text, or its type's name when it has none; a refused connection
    and an unknown host name in plain words."""
    if isinstance(exc, ConnectionRefusedError) or (   # "Multiple exceptions" of several IPs
            isinstance(exc, OSError) and exc.errno is None
            and f"[Errno {errno.ECONNREFUSED}]" in str(exc)):
        return NOT_LISTENING
    if isinstance(exc, socket.gaierror):
        return f"unknown host name ({exc.strerror or exc})"
    return str(exc) or type(exc).__name__


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

