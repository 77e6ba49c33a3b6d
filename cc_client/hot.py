"""The common case of a request, compiled in the compiled build.

`Client` stays interpreted (its public methods check their arguments themselves) and keeps
connecting, queueing and retrying; what every request does when all goes well is here:
send on the open connection while the window has room, wait for the reply under the
shared deadline timer, and decode an EXECUTE_RESULT.

The two meet at one interface, `Lane`: the state the hot path reads (the open connection,
the gates, the deadline timer, the retry policy) and the slow-path callbacks it falls back
to. `Client` builds one and keeps its connection and its closed flag there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

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


class Lane:
    """What the hot path uses of a client, and all it uses: `Client` keeps one (`conn`
    and `closed` live here, read by `Client` too). A native class in the compiled build,
    so each attribute read below is a C field read, not a lookup on the interpreted client.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, request_timeout: float, retry: Retry,
                 admission: Gate, in_flight: Gate, deadlines: Deadlines,
                 call_slowly: Callable[[int, bytes, float, Retryable | None], Awaitable[Reply]],
                 lost: Callable[[ConnectionLost], Exception],
                 timed_out: Callable[[], CommunicationFailure],
                 error_of: Callable[[int, bytes], ChargingError]) -> None:
        self.loop = loop
        self.request_timeout = request_timeout
        self.retry = retry
        self.admission = admission      # requests queued or in flight (bounded)
        self.in_flight = in_flight      # requests sent, not answered (the window)
        self.deadlines = deadlines
        self.conn: ClientConnection | None = None
        self.closed = False
        #: the slow path: queue for the window, (re)connect and retry, within the deadline
        self.call_slowly = call_slowly
        #: what a connection lost under a request means (a Retryable, or the final error)
        self.lost = lost
        #: the error of a request that got no reply in time
        self.timed_out = timed_out
        #: the exception for an ERROR reply
        self.error_of = error_of


async def execute_container(lane: Lane, msg: m.Execute) -> SessionResult:
    """Send a container; its SessionResult, or the whole-container failure raised."""
    msg_type, body = codec.encode_body(msg)
    reply_type, reply = await call(lane, msg_type, body)
    if reply_type == _EXECUTE_RESULT:   # checked in full; results built when read
        try:
            return SessionResult.from_outcomes(*codec.execute_result_outcomes(reply))
        except ProtocolError as exc:
            raise InvalidReply(f"the server's EXECUTE_RESULT could not be read: {exc}") \
                from None
    raise lane.error_of(reply_type, reply)


async def call(lane: Lane, msg_type: int, body: bytes) -> Reply:
    """Send one request and return its raw reply, retrying across reconnects."""
    if lane.closed:
        raise CommunicationFailure("the client is closed")
    conn = lane.conn
    limit = conn.max_frame if conn is not None else DEFAULT_MAX_FRAME
    if len(body) > limit:
        raise CommunicationFailure(f"message too long: {len(body) + HEADER_SIZE} bytes "
                                   f"(the limit is {limit + HEADER_SIZE})")
    deadline = lane.loop.time() + lane.request_timeout
    failed: Retryable | None = None
    if conn is not None and not conn.closed and not conn.draining:
        admission = lane.admission
        if admission.try_enter():
            try:
                in_flight = lane.in_flight
                if in_flight.try_enter():    # the common case: send at once
                    try:
                        return await _send_once(lane, conn, msg_type, body, deadline)
                    except Retryable as exc:
                        failed = exc
                    finally:
                        in_flight.leave()
            finally:
                admission.leave()
    return await lane.call_slowly(msg_type, body, deadline, failed)


async def _send_once(lane: Lane, conn: ClientConnection, msg_type: int, body: bytes,
                     deadline: float) -> Reply:
    """One attempt on `conn`, its reply watched by `Deadlines` (cheaper than the slow
    path's timeout); `Retryable` when the policy says to send it again."""
    fut = conn.request(msg_type, body)
    lane.deadlines.watch(deadline, fut)
    try:
        reply = await fut
    except ConnectionLost as exc:
        raise lane.lost(exc) from None
    except RequestTimedOut:
        conn.forget(fut)
        raise lane.timed_out() from None
    except asyncio.CancelledError:
        conn.forget(fut)
        raise
    return final(lane.retry, conn, reply)


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
