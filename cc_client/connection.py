"""One asyncio.Protocol per socket, a thin driver of the sans-IO `protocol.connection`.

The state machine owns the connection's rules (handshake, request ids, which frame is a
reply or a push, PING/PONG and the heartbeat, GOODBYE, ERROR with request id 0); this
transport feeds it bytes and the loop's time and acts on its events. Replies resolve the
caller's future with the raw (type, body) and the caller decodes in its own task; pushes
(renewal notifications, GOODBYE) are handed to callbacks with `call_soon`, never run on
the read path. Frames written in one loop iteration leave in one `transport.write`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from protocol import codec
from protocol import messages as m
from protocol.connection import CLIENT, Closed, Connection, Goodbye, Push
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import DEFAULT_MAX_FRAME, Frame

Reply = tuple[int, bytes]
#: Seconds past the machine's deadline at which the timer fires (a timer may fire early).
_TIMER_SLACK = 0.01


class ConnectionLost(Exception):
    """The connection closed before the reply came (the request may be retried)."""


class HandshakeRefused(ProtocolError):
    """The server answered HELLO with an ERROR; `code` is the server's."""


class ClientConnection(asyncio.Protocol):
    """The client side of one connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_push: Callable[[ClientConnection, m.Message], None],
                 on_lost: Callable[[ClientConnection], None]) -> None:
        self.loop = loop
        self._on_push = on_push
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.machine = Connection(CLIENT, loop.time())
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.closed = False
        self.draining = False            # GOODBYE, or a reply said so: no new requests here
        self.welcome: m.HelloOk | None = None
        self.max_frame = DEFAULT_MAX_FRAME
        self.lost_reason = "connection closed"
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.made = loop.create_future()

    # ------------------------------------------------------------------ life cycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if not self.made.done():
            self.made.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.machine.close()
        if exc is not None:
            self.lost_reason = f"connection lost: {exc}"
        if self._timer is not None:
            self._timer.cancel()
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(self.lost_reason))
        self._on_lost(self)

    async def handshake(self, hello: m.Hello) -> m.HelloOk:
        """Send HELLO and wait for HELLO_OK (raises the ERROR's code as ProtocolError)."""
        if self.closed:
            raise ConnectionLost(self.lost_reason)
        fut: asyncio.Future[Reply] = self.loop.create_future()
        frame = self.machine.send_hello(hello)
        self.pending[self.machine.hello_id] = fut
        self._send(frame)
        msg_type, body = await fut
        reply = codec.decode_body(msg_type, body)
        if isinstance(reply, m.Error):
            raise HandshakeRefused(reply.message, reply.code)  # type: ignore[arg-type]
        if not isinstance(reply, m.HelloOk):
            raise ProtocolError(f"expected HELLO_OK, got {type(reply).__name__}")
        self.welcome = reply
        self.max_frame = reply.max_frame
        now = self.loop.time()
        self.machine.welcomed(reply, now)
        self._arm(now)
        return reply

    def close(self) -> None:
        """Say goodbye and close (pending requests fail with ConnectionLost)."""
        if self.transport is not None and not self.closed:
            self._send(self.machine.send_goodbye("client closing"))
            self._flush()
            self.transport.close()
        self.closed = True
        self.machine.close()

    def abort(self, reason: str) -> None:
        """Drop the connection now."""
        self.lost_reason = reason
        if self.transport is not None:
            self.transport.abort()
        self.closed = True
        self.machine.close()

    # ------------------------------------------------------------------ requests

    def request(self, msg_type: int, body: bytes) -> asyncio.Future[Reply]:
        """Send a request; the future resolves with the raw reply (type, body)."""
        if self.closed:
            raise ConnectionLost(self.lost_reason)
        pending = self.pending
        try:
            rid, frame = self.machine.send_request(msg_type, body, pending)
        except ProtocolError as exc:    # the server said GOODBYE: ask another connection
            raise ConnectionLost(exc.message) from None
        fut: asyncio.Future[Reply] = self.loop.create_future()
        pending[rid] = fut
        self._send(frame)
        return fut

    def forget(self, fut: asyncio.Future[Reply]) -> None:
        """Stop waiting for a request's reply (its caller gave up)."""
        for rid, pending in self.pending.items():
            if pending is fut:
                del self.pending[rid]
                self.machine.forget(rid)    # its reply, if it comes, is dropped
                return

    def send_oneway(self, msg_type: int, body: bytes) -> None:
        """Send a frame that expects no reply (request id 0)."""
        if not self.closed:
            self._send(self.machine.send_oneway(msg_type, body))

    def _send(self, frame: bytes) -> None:
        self._out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.closed:
            data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
            self.transport.write(data)
            self.machine.sent(self.loop.time())
        self._out.clear()

    # ------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        machine = self.machine
        events = machine.receive_data(data, self.loop.time())
        pending = self.pending
        for event in events:
            if isinstance(event, Frame):    # a reply to a request of ours (the machine checked)
                fut = pending.pop(event.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result((event.type, event.body))
            else:
                self._event(event)
        out = machine.data_to_send()    # PONGs; an ERROR went out with its Closed event
        if out:
            self._send(out)

    def _event(self, event: object) -> None:
        if isinstance(event, Push):
            try:
                msg = codec.decode(event.frame)
            except ProtocolError as exc:
                self.abort(f"server sent an invalid message: {exc}")
                return
            self.loop.call_soon(self._on_push, self, msg)
        elif isinstance(event, Goodbye):
            self.draining = True
            self.loop.call_soon(self._on_push, self, m.Goodbye(event.reason))
        elif isinstance(event, Closed):
            self._closed(event)

    def _closed(self, event: Closed) -> None:
        """The machine ended the connection: the server's ERROR, or ours (a bad frame)."""
        if event.by_peer:
            reason = f"server closed the connection: {event.code}: {event.message}"
            if self.welcome is None:    # the ERROR answers our HELLO
                refused = HandshakeRefused(event.message, cast(ErrorCode, event.code))
                pending, self.pending = self.pending, {}
                for fut in pending.values():
                    if not fut.done():
                        fut.set_exception(refused)
        else:
            reason = f"server sent a bad frame: {event.message}"
        out = self.machine.data_to_send()    # our ERROR, if the fault was the server's
        if out:
            self._send(out)
        self._flush()
        self.lost_reason = reason
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ heartbeat

    def _arm(self, now: float) -> None:
        self._timer = self.loop.call_at(self.machine.next_deadline(now) + _TIMER_SLACK,
                                        self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self.loop.time()
        for event in self.machine.tick(now):
            if isinstance(event, Closed):
                if event.dead:
                    silent = now - self.machine.liveness.last_received
                    self.abort(f"no data from the server for {silent:.1f} s")
                else:
                    self._closed(event)
                return
        out = self.machine.data_to_send()   # a PING
        if out:
            self._send(out)
        self._arm(now)
