"""One asyncio.Protocol per client socket: bytes -> frames -> dispatcher -> bytes.

All requests decoded from one read are answered with one write. The connection stops
reading while its transport's write buffer is above the high-water mark, so a client that
does not read its replies slows only itself; requests of that read not answered yet wait
in a backlog until the buffer drains, so one read never buffers more than about the
high-water mark plus one reply.

With --data-dir a reply leaves only once the log records it depends on are on disk: it is
held with the log's latest sequence number and released when that is synced. Held
replies count as in-flight work: past `max_in_flight` of them (or the write buffer's
high-water mark in bytes) the connection stops reading until they are released.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from protocol import codec
from protocol import messages as m
from protocol.errors import ErrorCode, InvalidMessage, ProtocolError
from protocol.frames import Frame, FrameDecoder, encode_frame
from protocol.liveness import Due, Liveness

if TYPE_CHECKING:
    from .server import ChargingServer

log = logging.getLogger("cc_server")
T = m.MsgType
REPLY = m.REPLY
_EMPTY = codec.pack({})
ALL_ROLES = frozenset({"charging", "admin"})


class ServerConnection(asyncio.Protocol):
    """The server side of one client connection."""

    def __init__(self, server: ChargingServer) -> None:
        self.server = server
        self.config = server.config
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(self.config.max_frame)
        self.ready = False
        self.closed = False
        self._transport_paused = False
        self._reading_paused = False
        self.roles: frozenset[str] = frozenset()
        self.name = "?"
        self.client_name = ""
        self.liveness = Liveness(self.config.heartbeat, self.loop.time())
        self.last_request = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._ping_id = 0
        self._backlog: deque[Frame] = deque()   # read while the write buffer was full
        self._held: deque[tuple[int, bytes]] = deque()   # (log sequence, reply bytes)
        self._held_size = 0

    @property
    def paused(self) -> bool:
        """True while this connection must not produce more replies."""
        return self._transport_paused or self._held_size >= self.config.write_buffer_high \
            or len(self._held) >= self.config.max_in_flight

    # ------------------------------------------------------------------ life cycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = self.transport.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(self.server.connections) >= self.config.max_connections:
            self.server.counts["refused_connections"] += 1
            self.fail(ErrorCode.TOO_MANY_CONNECTIONS,
                      f"the server accepts at most {self.config.max_connections} connections")
            return
        self.server.connections.add(self)
        self.transport.set_write_buffer_limits(high=self.config.write_buffer_high)
        self._timer = self.loop.call_later(self.config.handshake_timeout, self._housekeeping)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.server.connections.discard(self)
        self.server.waiting.discard(self)
        self.server.renewal.connection_lost(self)
        self.server.connection_closed(self)

    def pause_writing(self) -> None:
        self._transport_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._transport_paused = False
        if self.transport is not None and not self.closed and not self.paused:
            self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        """Answer the backlog, then read again (unless the buffer filled up once more)."""
        if self.closed or self.paused or self.transport is None:
            return
        if self._backlog:
            frames = list(self._backlog)
            self._backlog.clear()
            self._answer(frames)
        if not self.closed and not self.paused and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    # ------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.liveness.received(self.loop.time())
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self.fail(exc.code, exc.message)
            return
        if self._backlog or self.paused:   # older requests wait for the buffer to drain
            self._backlog.extend(frames)
            return
        self._answer(frames)

    def _answer(self, frames: Iterable[Frame]) -> None:
        out: list[bytes] = []
        size = 0
        high = self.config.write_buffer_high
        pending = iter(frames)
        for frame in pending:
            msg_type = frame.type
            if msg_type & REPLY:           # PONG, or nonsense: nothing else do we ask for
                if msg_type != T.PONG:
                    self.fail(ErrorCode.PROTOCOL_ERROR, f"unexpected reply type {msg_type:#04x}",
                              flush=out)
                    return
                continue
            if not self.ready:
                if not self._hello(frame, out):
                    return
                continue
            if msg_type == T.PING:
                out.append(encode_frame(T.PONG, frame.request_id, _EMPTY))
                continue
            if msg_type == T.GOODBYE:
                self.close(flush=out)
                return
            if msg_type == T.HELLO:
                self.fail(ErrorCode.PROTOCOL_ERROR, "HELLO after the handshake", flush=out)
                return
            self.last_request = self.liveness.last_received
            reply = self.server.dispatcher.handle(self, frame)
            if reply is not None:
                out.append(encode_frame(reply[0], frame.request_id, reply[1]))
                size += len(out[-1])
                if size >= high:           # a reader this slow: stop answering it for now
                    self.reply(b"".join(out))
                    out.clear()
                    size = 0
                    if self.paused:
                        self._backlog.extend(pending)
                        return
        if out:
            self.reply(b"".join(out))
        if self.paused:
            self._pause_reading()

    def reply(self, data: bytes) -> None:
        """Send replies now, or hold them until the log records they depend on are synced."""
        wal = self.server.wal
        if wal is None or (wal.synced >= wal.appended and not self._held):
            self.write(data)
            return
        self._held.append((wal.appended, data))
        self._held_size += len(data)
        self.server.waiting.add(self)

    def release(self, synced: int) -> None:
        """The log is on disk up to `synced`: send the replies that waited for it."""
        held = self._held
        out = []
        while held and held[0][0] <= synced:
            data = held.popleft()[1]
            self._held_size -= len(data)
            out.append(data)
        if out:
            self.write(b"".join(out))
        if not held:
            self.server.waiting.discard(self)
        if (self._reading_paused or self._backlog) and not self.paused:
            self._resume()

    def _hello(self, frame: Frame, out: list[bytes]) -> bool:
        if frame.type != T.HELLO:
            self.fail(ErrorCode.HANDSHAKE_REQUIRED, "the first frame must be HELLO")
            return False
        try:
            hello = codec.decode(frame)
        except InvalidMessage as exc:
            self.fail(exc.code, exc.message)
            return False
        assert isinstance(hello, m.Hello)
        common = set(hello.versions) & set(m.SUPPORTED_VERSIONS)
        if not common:
            self.fail(ErrorCode.UNSUPPORTED_VERSION,
                      f"server speaks versions {list(m.SUPPORTED_VERSIONS)}")
            return False
        roles = self.server.authenticate(hello.user, hello.password, self)
        if roles is None:
            self.fail(ErrorCode.AUTHENTICATION_FAILED, "unknown user or wrong password")
            return False
        self.roles = roles
        self.client_name = hello.client_name or ""
        self.ready = True
        self.start_housekeeping()
        welcome = m.HelloOk(max(common), self.server.version, self.config.heartbeat,
                            self.config.max_frame, self.config.max_in_flight, tuple(sorted(roles)))
        out.append(codec.encode(welcome, frame.request_id))
        return True

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        """Send bytes (dropped once closed)."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)
            self.liveness.sent(self.loop.time())

    def push(self, msg: m.Message) -> bool:
        """Send a server-initiated message; False if the connection cannot take it now."""
        if self.closed or self.paused or not self.ready:
            return False
        self.write(codec.encode(msg, 0))
        return True

    def fail(self, code: ErrorCode, message: str, flush: list[bytes] | None = None) -> None:
        """Send the replies in `flush`, then a connection-level ERROR, and close."""
        log.info("event=connection_error peer=%s code=%s message=%r", self.name, code, message)
        self.server.counts[f"connection_error.{code}"] += 1
        if flush:   # replies still waiting for the log are dropped: retries get them back
            self.reply(b"".join(flush))
        self.write(codec.encode(m.Error(code, message), 0))
        self.close()

    def goodbye(self, reason: str) -> None:
        """Tell the client this server is going away (it may still send replies after)."""
        self.write(codec.encode(m.Goodbye(reason), 0))

    def close(self, flush: list[bytes] | None = None) -> None:
        """Flush and close."""
        if flush:
            self.write(b"".join(flush))
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    # ------------------------------------------------------------------ timers

    def _housekeeping(self) -> None:
        if self.closed:
            return
        now = self.loop.time()
        if not self.ready:
            self.fail(ErrorCode.HANDSHAKE_TIMEOUT,
                      f"no handshake within {self.config.handshake_timeout} s")
            return
        due = self.liveness.due(now)
        if due is Due.DEAD:
            log.info("event=peer_dead peer=%s silent_for=%.1f", self.name,
                     now - self.liveness.last_received)
            self.server.counts["dead_peers"] += 1
            assert self.transport is not None
            self.transport.abort()
            return
        idle = self.config.idle_timeout
        if idle and now - self.last_request >= idle:
            self.fail(ErrorCode.IDLE_TIMEOUT, f"no request for {idle} s")
            return
        if due is Due.PING:
            self._ping_id = self._ping_id % 0xFFFFFFFF + 1
            self.write(encode_frame(T.PING, self._ping_id, _EMPTY))
        delay = self.liveness.next_check(now)
        if idle:
            delay = min(delay, max(0.0, self.last_request + idle - now))
        self._timer = self.loop.call_later(delay + 0.01, self._housekeeping)

    def start_housekeeping(self) -> None:
        """(Re)arm the heartbeat timer once the handshake is done."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.liveness.next_check(self.loop.time()) + 0.01,
                                           self._housekeeping)
