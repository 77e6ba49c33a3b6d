"""The common case of a request, compiled in the compiled build.

`Client` stays interpreted (its public methods check their arguments themselves) and keeps
connecting, queueing and retrying; what every request does when all goes well is here:
send on the open connection while the window has room, wait for the reply under the
shared deadline timer, and decode an EXECUTE_RESULT.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from protocol import codec
from protocol import messages as m
from protocol.errors import ProtocolError, RetryWhere
from protocol.frames import DEFAULT_MAX_FRAME, HEADER_SIZE

from .connection import ClientConnection, ConnectionLost, Reply
from .errors import ChargingError, CommunicationFailure, InvalidReply
from .flow import Deadlines, Gate, RequestTimedOut
from .results import SessionResult
from .retry import Retry, Retryable

_EXECUTE_RESULT: Final = int(m.MsgType.EXECUTE_RESULT)
_ERROR: Final = int(m.MsgType.ERROR)


class Host(Protocol):
    """What the hot path uses of the client (`Client` has it all)."""

    loop: asyncio.AbstractEventLoop
    request_timeout: float
    retry: Retry
    _conn: ClientConnection | None
    _closed: bool
    _admission: Gate
    _in_flight: Gate
    _deadlines: Deadlines

    async def _call_slowly(self, msg_type: int, body: bytes, deadline: float,
                           failed: Retryable | None) -> Reply: ...

    def _lost(self, exc: ConnectionLost) -> Exception: ...

    def _timed_out(self, reason: str = "") -> CommunicationFailure: ...

    def error_of(self, msg_type: int, body: bytes) -> ChargingError: ...


async def execute_container(client: Host, msg: m.Execute) -> SessionResult:
    """Send a container; its SessionResult, or the whole-container failure raised."""
    msg_type, body = codec.encode_body(msg)
    reply_type, reply = await call(client, msg_type, body)
    if reply_type == _EXECUTE_RESULT:   # checked in full; results built when read
        try:
            return SessionResult.from_wire(*codec.execute_result_outcomes(reply))
        except ProtocolError as exc:
            raise InvalidReply(f"the server's EXECUTE_RESULT could not be read: {exc}") \
                from None
    raise client.error_of(reply_type, reply)


async def call(client: Host, msg_type: int, body: bytes) -> Reply:
    """Send one request and return its raw reply, retrying across reconnects."""
    if client._closed:
        raise CommunicationFailure("the client is closed")
    conn = client._conn
    limit = conn.max_frame if conn is not None else DEFAULT_MAX_FRAME
    if len(body) > limit:
        raise CommunicationFailure(f"message too long: {len(body) + HEADER_SIZE} bytes "
                                   f"(the limit is {limit + HEADER_SIZE})")
    deadline = client.loop.time() + client.request_timeout
    failed: Retryable | None = None
    if conn is not None and not conn.closed and not conn.draining:
        admission = client._admission
        if admission.try_enter():
            try:
                in_flight = client._in_flight
                if in_flight.try_enter():    # the common case: send at once
                    try:
                        return await _send_once(client, conn, msg_type, body, deadline)
                    except Retryable as exc:
                        failed = exc
                    finally:
                        in_flight.leave()
            finally:
                admission.leave()
    return await client._call_slowly(msg_type, body, deadline, failed)


async def _send_once(client: Host, conn: ClientConnection, msg_type: int, body: bytes,
                     deadline: float) -> Reply:
    """One attempt on `conn`, its reply watched by `Deadlines` (cheaper than the slow
    path's timeout); `Retryable` when the policy says to send it again."""
    fut = conn.request(msg_type, body)
    client._deadlines.watch(deadline, fut)
    try:
        reply = await fut
    except ConnectionLost as exc:
        raise client._lost(exc) from None
    except RequestTimedOut:
        conn.forget(fut)
        raise client._timed_out() from None
    except asyncio.CancelledError:
        conn.forget(fut)
        raise
    return final(client.retry, conn, reply)


def final(retry: Retry, conn: ClientConnection, reply: Reply) -> Reply:
    """`reply`, unless it is an ERROR the retry policy retries: then `Retryable`."""
    if reply[0] != _ERROR:
        return reply
    code, message = _error_fields(reply[1])
    again = retry.classify(code, f"{code}: {message}" if message else str(code))
    if again is None:
        return reply
    if again.where is RetryWhere.NEW_CONNECTION:
        conn.draining = True
    raise again


def _error_fields(body: bytes) -> tuple[str | None, str]:
    """(code, message) of an ERROR body; None for a code it does not carry."""
    try:
        fields = codec.unpack(body)
        code, message = fields.get("code"), fields.get("message")
    except (ProtocolError, AttributeError):
        return None, ""
    return (code if isinstance(code, str) else None,
            message if isinstance(message, str) else "")
