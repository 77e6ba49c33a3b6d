"""One asyncio.Protocol per socket: requests keyed by request id, replies in any order.

The connection only moves frames: replies resolve the caller's future with the raw
(type, body) and the caller decodes in its own task; pushes (renewal notifications,
GOODBYE) are handed to callbacks with `call_soon`, never run on the read path. Frames
written in one loop iteration leave in one `transport.write`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from protocol import codec
from protocol import messages as m
from protocol.errors import ProtocolError
from protocol.frames import DEFAULT_MAX_FRAME, MAX_REQUEST_ID, FrameDecoder, encode_frame
from protocol.liveness import Due, Liveness

T = m.MsgType
REPLY = m.REPLY
_EMPTY = codec.pack({})
Reply = tuple[int, bytes]


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
        self.decoder = FrameDecoder(DEFAULT_MAX_FRAME)
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.closed = False
        self.draining = False            # the server said GOODBYE: no new requests here
        self.welcome: m.HelloOk | None = None
        self.max_frame = DEFAULT_MAX_FRAME
        self.lost_reason = "connection closed"
        self._next_id = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._liveness: Liveness | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.made = loop.create_future()

    # ------------------------------------------------------------------ life cycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if not self.made.done():
            self.made.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
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
        msg_type, body = await self.request(T.HELLO, codec.encode_body(hello)[1])
        reply = codec.decode_body(msg_type, body)
        if isinstance(reply, m.Error):
            raise HandshakeRefused(reply.message, reply.code)  # type: ignore[arg-type]
        if not isinstance(reply, m.HelloOk):
            raise ProtocolError(f"expected HELLO_OK, got {type(reply).__name__}")
        self.welcome = reply
        self.max_frame = reply.max_frame
        self._liveness = Liveness(reply.heartbeat, self.loop.time())
        self._arm(reply.heartbeat)
        return reply

    def close(self) -> None:
        """Say goodbye and close (pending requests fail with ConnectionLost)."""
        if self.transport is not None and not self.closed:
            self._send(encode_frame(T.GOODBYE, 0, codec.pack({"reason": "client closing"})))
            self._flush()
            self.transport.close()
        self.closed = True

    def abort(self, reason: str) -> None:
        """Drop the connection now."""
        self.lost_reason = reason
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    # ------------------------------------------------------------------ requests

    def request(self, msg_type: int, body: bytes) -> asyncio.Future[Reply]:
        """Send a request; the future resolves with the raw reply (type, body)."""
        if self.closed:
            raise ConnectionLost(self.lost_reason)
        rid = self._next_id = self._next_id % MAX_REQUEST_ID + 1
        while rid in self.pending:   # only after 4 billion requests with one still pending
            rid = self._next_id = self._next_id % MAX_REQUEST_ID + 1
        fut: asyncio.Future[Reply] = self.loop.create_future()
        self.pending[rid] = fut
        self._send(encode_frame(msg_type, rid, body))
        return fut

    def forget(self, fut: asyncio.Future[Reply]) -> None:
        """Stop waiting for a request's reply (its caller gave up)."""
        for rid, pending in self.pending.items():
            if pending is fut:
                del self.pending[rid]
                return

    def send_oneway(self, msg_type: int, body: bytes) -> None:
        """Send a frame that expects no reply."""
        if not self.closed:
            self._send(encode_frame(msg_type, 0, body))

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
            if self._liveness is not None:
                self._liveness.sent(self.loop.time())
        self._out.clear()

    # ------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if self._liveness is not None:
            self._liveness.received(self.loop.time())
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self.abort(f"server sent a bad frame: {exc}")
            return
        pending = self.pending
        for frame in frames:
            msg_type = frame.type
            if (msg_type & REPLY and msg_type != T.ERROR) or (msg_type == T.ERROR and
                                                            frame.request_id):
                fut = pending.pop(frame.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result((msg_type, frame.body))
            elif msg_type == T.PING:
                if not frame.request_id:   # request id 0 is only for frames without a reply
                    self.abort("server sent a PING with request id 0")
                    return
                self._send(encode_frame(T.PONG, frame.request_id, _EMPTY))
            else:
                self._push(msg_type, frame.body)

    def _push(self, msg_type: int, body: bytes) -> None:
        try:
            msg = codec.decode_body(msg_type, body)
        except ProtocolError as exc:
            self.abort(f"server sent an invalid message: {exc}")
            return
        if isinstance(msg, m.Goodbye):
            self.draining = True
        elif isinstance(msg, m.Error):   # connection-level: the server closes next
            self.lost_reason = f"server closed the connection: {msg.code}: {msg.message}"
            if self.welcome is None:     # it answers the handshake
                for fut in self.pending.values():
                    if not fut.done():
                        fut.set_result((T.ERROR, body))
                self.pending.clear()
        self.loop.call_soon(self._on_push, self, msg)

    # ------------------------------------------------------------------ heartbeat

    def _arm(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._heartbeat)

    def _heartbeat(self) -> None:
        live = self._liveness
        if self.closed or live is None:
            return
        now = self.loop.time()
        due = live.due(now)
        if due is Due.DEAD:
            self.abort(f"no data from the server for {now - live.last_received:.1f} s")
            return
        if due is Due.PING:   # a PING gets a reply (PONG): it needs a non-zero request id
            self._next_id = self._next_id % 0xFFFFFFFF + 1
            self._send(encode_frame(T.PING, self._next_id, _EMPTY))
            live.sent(now)
        self._arm(live.next_check(now) + 0.01)
