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

Hostile peers: before a valid HELLO a frame may have at most `HELLO_MAX_FRAME` bytes; the
HELLO's credentials are checked by the server's `Authenticator` (off the event loop when
a users file is in use), and frames that arrive meanwhile wait in the backlog. At most
`BATCH` requests are answered per turn of the event loop, then the connection yields to
the others; requests beyond `max_in_flight` waiting in the backlog (or held for the log)
are refused one by one with TOO_MANY_REQUESTS.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from protocol import codec
from protocol import messages as m
from protocol.errors import (
    LIMIT_CODES,
    MAX_ERROR_TEXT,
    BadBody,
    ErrorCode,
    InvalidMessage,
    ProtocolError,
)
from protocol.frames import MAX_REQUEST_ID, Frame, FrameDecoder, encode_frame
from protocol.liveness import Due, Liveness

from .auth import PENDING, Roles
from .engine import Refused
from .tls import TlsHandshake

if TYPE_CHECKING:
    from .server import ChargingServer

log = logging.getLogger("cc_server")
T = m.MsgType
REPLY = m.REPLY
_EMPTY = codec.pack({})
ALL_ROLES = frozenset({"charging", "admin"})
HELLO_MAX_FRAME = 64 * 1024   # bytes of a frame before the handshake (HELLO needs < 40 KiB)
BATCH = 256                   # requests answered before yielding to other connections
#: message types that get a reply: request id 0 ("no reply expected") is refused on them
ANSWERED = frozenset({T.HELLO, T.PING, T.EXECUTE, T.ADMIN, T.LISTEN, T.UNLISTEN})


def zero_id_refusal(frame: Frame) -> str | None:
    """Why a frame may not carry request id 0, or None when it may."""
    if frame.request_id or frame.type not in ANSWERED:
        return None
    return (f"{T(frame.type).name} with request id 0: a message that gets a reply needs a "
            "non-zero request id (0 is only for GOODBYE, ERROR, NOTIFY and ACK)")


class ServerConnection(asyncio.Protocol):
    """The server side of one client connection."""

    def __init__(self, server: ChargingServer) -> None:
        self.server = server
        self.config = server.config
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(min(self.config.max_frame, HELLO_MAX_FRAME))
        self.ready = False
        self.closed = False
        self._transport_paused = False
        self._reading_paused = False
        self._authenticating = False    # HELLO received, verdict not yet
        self._resume_scheduled = False
        self._hello_id = 0
        self._version = 0
        self.roles: frozenset[str] = frozenset()
        self.name = "?"
        self.user: str | None = None    # the user of the HELLO (fault rules, record)
        self.peer_ip = "?"
        self.client_name = ""
        self.liveness = Liveness(self.config.heartbeat, self.loop.time())
        self.last_request = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._tls: TlsHandshake | None = None   # TLS handshake in progress
        self._gone = False                      # connection_lost done
        self._ping_id = 0
        self._backlog: deque[Frame] = deque()   # read while the write buffer was full
        self._held: deque[tuple[int, bytes]] = deque()   # (log sequence, reply bytes)
        self._held_size = 0

    @property
    def paused(self) -> bool:
        """True while this connection must not produce more replies."""
        return self._transport_paused or self._authenticating \
            or self._held_size >= self.config.write_buffer_high \
            or len(self._held) >= self.config.max_in_flight

    # ------------------------------------------------------------------ life cycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = raw.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.peer_ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        self.server.counts["accepted"] += 1
        refusal = self.server.gate.admit(self)
        context = self.server.ssl_context
        if refusal is not None:
            self._refuse(raw, refusal, tls=context is not None)
            return
        # one deadline from accept for TLS and HELLO together
        self._timer = self.loop.call_later(self.config.handshake_timeout, self._housekeeping)
        if context is None:
            self._attach(raw)
        else:
            self._tls = TlsHandshake(self.loop, raw, self, context,
                                     self.config.handshake_timeout, self._tls_done)

    def _attach(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=self.config.write_buffer_high)

    def _tls_done(self, transport: asyncio.Transport | None, early: bytes) -> None:
        self._tls = None
        if transport is None:          # failed, timed out or aborted: the socket is closed
            self.server.counts["tls_failed"] += 1
            self.connection_lost(None)
        elif self.closed:
            transport.abort()
        else:
            self._attach(transport)
            if early:
                self.data_received(early)

    def _refuse(self, raw: asyncio.Transport, reason: str, tls: bool) -> None:
        """Over a connection limit at accept: ERROR TOO_MANY_CONNECTIONS over plain TCP;
        a TLS socket is closed at once (a frame would need the TLS handshake first)."""
        self.server.counts["refused_connections"] += 1
        if not tls:
            self.transport = raw
            self.fail(ErrorCode.TOO_MANY_CONNECTIONS, reason)
            return
        self.server.limit_hit(ErrorCode.TOO_MANY_CONNECTIONS, self.name)
        self.closed = True
        raw.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._gone:
            return
        self._gone = True
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.server.gate.release(self)
        self.server.waiting.discard(self)
        self.server.renewal.connection_lost(self)
        self.server.connection_closed(self)

    def pause_writing(self) -> None:
        self._transport_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._transport_paused = False
        if self.transport is not None and not self.closed and not self.paused:
            self._schedule_resume()

    def _schedule_resume(self) -> None:
        if not self._resume_scheduled:
            self._resume_scheduled = True
            self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        """Answer the backlog, then read again (unless the buffer filled up once more)."""
        self._resume_scheduled = False
        if self.closed or self.paused or self.transport is None:
            return
        if self._backlog:
            frames = list(self._backlog)
            self._backlog.clear()
            self._answer(frames, fresh=False)
        if not self.closed and not self.paused and not self._backlog and self._reading_paused:
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
        if self.transport is None:     # the TLS handshake is not over
            if self._tls is not None:
                self._tls.take(data)
            return
        self.liveness.received(self.loop.time())
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            if self.server.record is not None:
                self._record_in(data, None)
            self.fail(exc.code, exc.message)
            return
        if not frames:
            return
        if self.server.record is not None:
            self._record_in(data, frames)
        if self._backlog or self.paused:   # older requests wait for the buffer to drain
            self._defer(frames)
            return
        self._answer(frames)

    def _defer(self, frames: Iterable[Frame]) -> None:
        """Queue newly read frames that cannot be answered now; past `max_in_flight`
        unanswered requests, refuse them (TOO_MANY_REQUESTS) instead."""
        backlog = self._backlog
        waiting = sum(1 for f in backlog if f.type != T.PING)   # PINGs are not requests
        room = self.config.max_in_flight - waiting - len(self._held)
        refused: list[bytes] = []
        dropped = 0
        error = b""
        for frame in frames:
            if frame.type == T.PING:      # answered in turn, but not counted as a request
                backlog.append(frame)     # (bounded: reading stops below)
            elif room > 0:
                backlog.append(frame)
                room -= 1
            elif frame.request_id and not frame.type & REPLY:
                error = error or codec.encode_body(m.Error(
                    ErrorCode.TOO_MANY_REQUESTS, f"more than {self.config.max_in_flight} "
                    "unanswered requests on this connection"))[1]
                refused.append(encode_frame(T.ERROR, frame.request_id, error))
            else:
                dropped += 1
        if refused or dropped:
            self.server.limit_hit(ErrorCode.TOO_MANY_REQUESTS, self.name,
                                  len(refused) + dropped)
            if refused:
                self.write(b"".join(refused))
        self._pause_reading()

    def _answer(self, frames: Iterable[Frame], fresh: bool = True) -> None:
        """Answer frames in order; at most BATCH requests now, the rest wait their turn
        (`fresh`: just read, so subject to the in-flight limit)."""
        out: list[bytes] = []
        size = 0
        high = self.config.write_buffer_high
        budget = BATCH
        pending = iter(frames)
        for frame in pending:
            msg_type = frame.type
            if msg_type & REPLY:           # PONG, or nonsense: nothing else do we ask for
                if msg_type != T.PONG:
                    self.fail(ErrorCode.PROTOCOL_ERROR, f"unexpected reply type {msg_type:#04x}",
                              flush=out)
                    return
                continue
            refusal = zero_id_refusal(frame)
            if refusal is not None and (self.ready or msg_type == T.HELLO):
                self.fail(ErrorCode.PROTOCOL_ERROR, refusal, flush=out)
                return
            if not self.ready:
                if not self._hello(frame, out):
                    return
                if self._authenticating:   # the verdict comes later: the rest waits
                    if out:
                        self.write(b"".join(out))
                    self._wait(pending, fresh)
                    return
                continue
            if msg_type == T.PING:
                pong = encode_frame(T.PONG, frame.request_id, _EMPTY) \
                    if frame.body == _EMPTY else self._ping_reply(frame, out)
                if pong is None:
                    return
                out.append(pong)
                continue
            if msg_type == T.GOODBYE:
                self.close(flush=out)
                return
            if msg_type == T.HELLO:
                self.fail(ErrorCode.PROTOCOL_ERROR, "HELLO after the handshake", flush=out)
                return
            self.last_request = self.liveness.last_received
            try:
                reply = self.server.dispatcher.handle(self, frame)
            except BadBody as exc:
                self.fail(exc.code, exc.message, flush=out)
                return
            if reply is None:
                if self.server.dispatcher.fault is not None and not self._carry_out_fault(
                        frame, out):
                    return
            else:
                out.append(encode_frame(reply[0], frame.request_id, reply[1]))
                size += len(out[-1])
                if size >= high:           # a reader this slow: stop answering it for now
                    self.reply(b"".join(out))
                    out.clear()
                    size = 0
                    if self.paused:
                        self._wait(pending, fresh)
                        return
            budget -= 1
            if budget == 0:                # let the other connections have a turn
                if out:
                    self.reply(b"".join(out))
                self._wait(pending, fresh)
                self._schedule_resume()
                return
        if out:
            self.reply(b"".join(out))
        if self.paused:
            self._pause_reading()

    def _ping_reply(self, frame: Frame, out: list[bytes]) -> bytes | None:
        """The reply to a PING whose body is not the plain empty map: PONG, or ERROR
        INVALID_REQUEST for a bad field; None when the connection failed (not a map)."""
        try:
            codec.decode(frame)
        except BadBody as exc:
            self.fail(exc.code, exc.message, flush=out)
            return None
        except InvalidMessage as exc:
            return encode_frame(T.ERROR, frame.request_id, codec.encode_body(
                m.Error(exc.code, exc.message[:MAX_ERROR_TEXT]))[1])
        return encode_frame(T.PONG, frame.request_id, _EMPTY)

    def _wait(self, rest: Iterable[Frame], fresh: bool) -> None:
        """Put frames not answered yet back in the backlog and stop reading."""
        if fresh:
            self._defer(rest)
        else:
            self._backlog.extendleft(reversed(list(rest)))
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
        """Check a HELLO; False when the connection failed. Sets `_authenticating` when
        the verdict on its credentials comes later (see `authenticated`)."""
        if frame.type != T.HELLO:
            self.fail(ErrorCode.HANDSHAKE_REQUIRED, "the first frame must be HELLO")
            return False
        try:
            hello = codec.decode(frame)
            assert isinstance(hello, m.Hello)
            self.server.limits.check_hello(hello)
        except (InvalidMessage, Refused) as exc:
            self.fail(exc.code, exc.message)
            return False
        common = set(hello.versions) & set(m.SUPPORTED_VERSIONS)
        if not common:
            self.fail(ErrorCode.UNSUPPORTED_VERSION,
                      f"server speaks versions {list(m.SUPPORTED_VERSIONS)}")
            return False
        self.client_name = hello.client_name or ""
        self.user = hello.user
        self._version = max(common)
        self._hello_id = frame.request_id
        self.decoder.max_body = self.config.max_frame
        verdict = self.server.auth.begin(self, hello.user, hello.password)
        if verdict is PENDING:
            self._authenticating = True
            return True
        return self._welcome(verdict, out)

    def _welcome(self, roles: Roles | None, out: list[bytes]) -> bool:
        if roles is None:
            self.fail(ErrorCode.AUTHENTICATION_FAILED, "unknown user or wrong password",
                      flush=out)
            return False
        self.roles = roles
        self.ready = True
        self.server.gate.handshake_done(self)
        self.last_request = self.loop.time()     # idle time counts from HELLO_OK
        self.start_housekeeping()
        welcome = m.HelloOk(self._version, self.server.version, self.config.heartbeat,
                            self.config.max_frame, self.config.max_in_flight, tuple(sorted(roles)))
        out.append(codec.encode(welcome, self._hello_id))
        return True

    def authenticated(self, roles: Roles | None, reason: str = "") -> None:
        """The verdict on the HELLO's credentials, when it came after the HELLO was read."""
        if self.closed or not self._authenticating:
            return
        self._authenticating = False
        out: list[bytes] = []
        if self._welcome(roles, out):
            self.write(b"".join(out))
            self._resume()

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        """Send bytes (dropped once closed)."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)
            self.liveness.sent(self.loop.time())
            if self.server.record is not None:
                self._record_out(data)

    def push(self, msg: m.Message) -> bool:
        """Send a server-initiated message; False if the connection cannot take it now."""
        if self.closed or self.paused or not self.ready:
            return False
        self.write(codec.encode(msg, 0))
        return True

    def fail(self, code: ErrorCode, message: str, flush: list[bytes] | None = None) -> None:
        """Send the replies in `flush`, then a connection-level ERROR, and close."""
        if self.closed:
            return
        message = message[:MAX_ERROR_TEXT]
        self.server.events.info("connection_error", "peer=%s code=%s message=%r", self.name,
                                code, message)
        self.server.counts[f"connection_error.{code}"] += 1
        if code in LIMIT_CODES:
            self.server.limit_hit(code, self.name, log_it=False)
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
        elif self._tls is not None:
            self._tls.abort()
        self.closed = True

    # ------------------------------------------------------------------ timers

    def _housekeeping(self) -> None:
        if self.closed:
            return
        now = self.loop.time()
        if not self.ready:
            self.fail(ErrorCode.HANDSHAKE_TIMEOUT, "TLS and HELLO not done within "
                      f"{self.config.handshake_timeout} s of connecting")
            return
        due = self.liveness.due(now)
        if due is Due.DEAD:
            self.server.events.info("peer_dead", "peer=%s silent_for=%.1f", self.name,
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
            self._ping_id = self._ping_id % MAX_REQUEST_ID + 1
            self.write(encode_frame(T.PING, self._ping_id, _EMPTY))
        self._timer = self.loop.call_later(self._next_check(now) + 0.01, self._housekeeping)

    def _next_check(self, now: float) -> float:
        """Seconds until the heartbeat or the idle timeout may need something done."""
        delay = self.liveness.next_check(now)
        idle = self.config.idle_timeout
        if idle:
            delay = min(delay, max(0.0, self.last_request + idle - now))
        return delay

    def start_housekeeping(self) -> None:
        """(Re)arm the heartbeat and idle timer once the handshake is done."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self._next_check(self.loop.time()) + 0.01,
                                           self._housekeeping)

    # ------------------------------------------------------------------ test controls

    def _carry_out_fault(self, frame: Frame, out: list[bytes]) -> bool:
        """Carry out what a fired fault rule asks of this connection for the request just
        handled (controls.py): no reply, a late reply, or closing. False: the connection
        closed, read nothing more."""
        fault = self.server.dispatcher.take_fault()
        if fault is None:
            return True
        rule, reply = fault
        if rule.action in ("close-before", "close-after"):
            if out:   # the replies of earlier requests of this read still go out
                self.reply(b"".join(out))
                out.clear()
            self.close()
            return False
        if rule.action == "delay" and reply is not None:
            self.loop.call_later(rule.delay(), self._late_reply,
                                 encode_frame(reply[0], frame.request_id, reply[1]))
        return True            # drop-reply, drop-request: nothing is sent

    def _late_reply(self, data: bytes) -> None:
        if not self.closed:
            self.reply(data)

    def hold_reading(self, seconds: float) -> None:
        """A `pause` fault: read nothing from this connection for `seconds`."""
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
            self.loop.call_later(seconds, self._end_hold)

    def _end_hold(self) -> None:
        if self.transport is not None and not self.closed and not self._reading_paused:
            self.transport.resume_reading()

    def _record_in(self, data: bytes, frames: list[Frame] | None) -> None:
        """The request record: frames read (None: bytes that were no valid frame)."""
        record = self.server.record
        assert record is not None
        now = self.server.clock()
        if frames is None:
            record.add_raw(now, self.name, self.user, "in", data)
            return
        for frame in frames:
            record.add(now, self.name, self.user, "in", frame.type, frame.request_id,
                       frame.body)

    def _record_out(self, data: bytes) -> None:
        """The request record: frames written."""
        record = self.server.record
        assert record is not None
        record.add_frames(self.server.clock(), self.name, self.user, "out", data)
