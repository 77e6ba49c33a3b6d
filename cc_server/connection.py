"""One asyncio.Protocol per client socket, a thin driver of the sans-IO `protocol.connection`.

The state machine owns the connection's rules: the handshake (HELLO first, 64 KiB before
HELLO_OK), which frame is a request, request id 0, PING/PONG and the heartbeat, the
handshake, idle and dead-peer deadlines, GOODBYE and the ERROR with request id 0. This
transport feeds it the bytes read and the loop's time, and acts on its events with the
server's policy: it checks the HELLO (versions, limits, and credentials through
`server.auth`, off the event loop with a users file: requests read meanwhile wait in the
backlog), dispatches requests, pushes notifications, logs and counts what ends a
connection, and paces reads and replies (flow.py: back-pressure, the in-flight limit,
replies held for the write-ahead log).

Frames come in at one place (`data_received`: the machine, then `_answer`), bytes leave at
one place (`write`). At most `BATCH` requests are answered per turn of the event loop,
then the connection yields to the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from protocol import codec
from protocol import messages as m
from protocol.connection import (
    SERVER,
    Answer,
    Closed,
    Connection,
    Event,
    Goodbye,
    HelloReceived,
)
from protocol.errors import LIMIT_CODES, BadBody, ErrorCode, InvalidMessage
from protocol.frames import Frame

from .auth import PENDING, Roles
from .engine import Refused
from .flow import FlowControl
from .limits import peer_address
from .tls import TlsHandshake

if TYPE_CHECKING:
    from .server import ChargingServer

log = logging.getLogger("cc_server")
ALL_ROLES = frozenset({"charging", "admin"})
BATCH = 256                   # requests answered before yielding to other connections
#: Seconds past the machine's deadline at which the timer fires (a timer may fire early).
_TIMER_SLACK = 0.01


#: AUTHENTICATION_FAILED's text for a HELLO without credentials to a server that needs them
NO_CREDENTIALS = ("this server requires a user and password (the HELLO fields user and "
                  "password)")


class ServerConnection(FlowControl):
    """The server side of one client connection."""

    def __init__(self, server: ChargingServer) -> None:
        super().__init__()
        self.server = server
        self.config = config = server.config
        self.loop = server.loop
        now = self.loop.time()
        # one deadline from accept for TLS and HELLO together
        self.machine = Connection(SERVER, now, heartbeat=config.heartbeat,
                                  handshake_deadline=now + config.handshake_timeout,
                                  idle_timeout=config.idle_timeout, max_frame=config.max_frame)
        self.transport = None
        self.closed = False
        self._version = 0
        self.roles: frozenset[str] = frozenset()
        self.name = "?"
        self.user: str | None = None    # the user of the HELLO (fault rules, record)
        self.peer_ip = "?"
        self.client_name = ""
        self._timer: asyncio.TimerHandle | None = None
        self._tls: TlsHandshake | None = None   # TLS handshake in progress
        self._gone = False                      # connection_lost done

    # ------------------------------------------------------------------ life cycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = raw.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.peer_ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        self.server.counts["accepted"] += 1
        if self.server.debug_log:
            log.debug("event=connection_opened peer=%s", self.name)
        refusal = self.server.gate.admit(self, peer_address(peer))
        context = self.server.ssl_context
        if refusal is not None:
            self._refuse(raw, refusal, tls=context is not None)
            return
        self._arm()
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
        self.machine.close()
        raw.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._gone:
            return
        self._gone = True
        self.closed = True
        self.machine.close()
        if self._timer is not None:
            self._timer.cancel()
        self.server.gate.release(self)
        self.server.waiting.discard(self)
        self.server.renewal.connection_lost(self)
        self.server.connection_closed(self)
        if self.server.debug_log:
            log.debug("event=connection_closed peer=%s user=%s", self.name, self.user)

    # ------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.transport is None:     # the TLS handshake is not over
            if self._tls is not None:
                self._tls.take(data)
            return
        events = self.machine.receive_data(data, self.loop.time())
        if not events:
            return
        if self.server.record is not None:
            self._record_in(events)
        if self._backlog or self.paused:   # older requests wait for the buffer to drain
            self._defer(events)
            return
        self._answer(events)

    def _answer(self, events: Iterable[Event], fresh: bool = True) -> None:
        """Handle the machine's events in order; at most BATCH requests now, the rest
        wait their turn (`fresh`: just read, so subject to the in-flight limit)."""
        out: list[bytes] = []
        size = 0
        high = self.config.write_buffer_high
        budget = BATCH
        dispatcher = self.server.dispatcher
        machine = self.machine
        wal = self.server.wal
        debug = self.server.debug_log
        pending = iter(events)
        for event in pending:
            if type(event) is Frame:
                try:
                    reply = dispatcher.handle(self, event)
                except BadBody as exc:
                    self.fail(exc.code, exc.message, flush=out)
                    return
                if debug:
                    dispatcher.log_request(self, event, reply)
                if reply is None:
                    if dispatcher.fault is not None and not self._carry_out_fault(event, out):
                        return
                elif wal is not None and wal.disk_full and dispatcher.read_only:
                    # the disk is full: reads are answered, changes wait for the log
                    # (replies may leave in any order)
                    self.write(machine.reply(reply[0], event.request_id, reply[1]))
                else:
                    data = machine.reply(reply[0], event.request_id, reply[1])
                    out.append(data)
                    size += len(data)
                    if size >= high:       # a reader this slow: stop answering it for now
                        self.reply(b"".join(out))
                        out.clear()
                        size = 0
                        if self.paused:
                            self._wait(pending, fresh)
                            return
                budget -= 1
                if budget == 0:            # let the other connections have a turn
                    if out:
                        self.reply(b"".join(out))
                    self._wait(pending, fresh)
                    self._schedule_resume()
                    return
            elif type(event) is Answer:    # a PONG, in turn with the replies
                if out or self._held:
                    out.append(event.data)
                else:                      # nothing before it: it waits for no log record
                    self.write(event.data)
            elif type(event) is HelloReceived:
                if not self._hello(event.frame, out):
                    return
                if self._authenticating:   # the verdict comes later: the rest waits
                    if out:
                        self.write(b"".join(out))
                    self._wait(pending, fresh)
                    return
            elif type(event) is Goodbye:   # answer what came before it, then close
                if out:
                    self.reply(b"".join(out))
                self.close_after_replies()
                return
            else:
                self._end(cast(Closed, event), flush=out)
                return
        if out:
            self.reply(b"".join(out))
        if self.paused:
            self._pause_reading()

    # ------------------------------------------------------------------ handshake

    def _hello(self, frame: Frame, out: list[bytes]) -> bool:
        """Check a HELLO; False when the connection failed. Sets `_authenticating` when
        the verdict on its credentials comes later (see `authenticated`)."""
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
        verdict = self.server.auth.begin(self, hello.user, hello.password)
        if verdict is PENDING:
            self._authenticating = True
            return True
        return self._welcome(verdict, out)

    def _welcome(self, roles: Roles | None, out: list[bytes]) -> bool:
        if roles is None:
            self.fail(ErrorCode.AUTHENTICATION_FAILED, NO_CREDENTIALS if self.user is None
                      else "unknown user or wrong password", flush=out)
            return False
        self.roles = roles
        self.server.gate.handshake_done(self)
        welcome = m.HelloOk(self._version, self.server.version, self.config.heartbeat,
                            self.config.max_frame, self.config.max_in_flight, tuple(sorted(roles)))
        out.append(self.machine.accept(welcome, self.loop.time()))
        # a login depends on no log record: it leaves now, even while the disk is full
        self.write(b"".join(out))
        out.clear()
        self._arm()                    # from the handshake deadline to the heartbeat's
        return True

    def authenticated(self, roles: Roles | None, reason: str = "") -> None:
        """The verdict on the HELLO's credentials, when it came after the HELLO was read."""
        if self.closed or not self._authenticating:
            return
        self._authenticating = False
        out: list[bytes] = []
        if self._welcome(roles, out):     # HELLO_OK written
            self._resume()

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        """Send bytes (dropped once closed): every byte this connection sends leaves here."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)
            self.machine.sent(self.loop.time())
            if self.server.record is not None:
                self._record_out(data)

    def push(self, msg: m.Message) -> bool:
        """Send a server-initiated message; False if the connection cannot take it now."""
        if self.closed or self.paused or not self.machine.open:
            return False
        self.write(self.machine.send_oneway(*codec.encode_body(msg)))
        return True

    def goodbye(self, reason: str) -> None:
        """Tell the client this server is going away (it may still send replies after)."""
        self.write(self.machine.send_goodbye(reason))

    def fail(self, code: ErrorCode, message: str, flush: list[bytes] | None = None) -> None:
        """Send the replies in `flush`, then a connection-level ERROR, and close."""
        if self.closed:
            return
        self._end(self.machine.fail(code, message), flush)

    def _end(self, event: Closed, flush: list[bytes] | None = None) -> None:
        """The machine ended the connection: our ERROR (flush, send it, close), the
        client's ERROR, or a silent client (dropped at once)."""
        if event.dead:
            self.server.events.info("peer_dead", "peer=%s silent_for=%.1f", self.name,
                                    self.loop.time() - self.machine.liveness.last_received)
            self.server.counts["dead_peers"] += 1
            if self.transport is not None:
                self.transport.abort()
            return
        if event.by_peer:
            self.server.events.info("peer_error", "peer=%s code=%s message=%r", self.name,
                                    event.code, event.message)
            self.server.counts["peer_errors"] += 1
            self.close(flush)
            return
        code = ErrorCode(event.code)
        self.server.events.info("connection_error", "peer=%s code=%s message=%r", self.name,
                                code, event.message)
        self.server.counts[f"connection_error.{code}"] += 1
        if code in LIMIT_CODES:
            self.server.limit_hit(code, self.name, log_it=False)
        if flush:   # replies still waiting for the log are dropped: retries get them back
            self.reply(b"".join(flush))
        error = self.machine.data_to_send()
        if error:
            self.write(error)
        self.close()

    def close(self, flush: list[bytes] | None = None) -> None:
        """Flush and close."""
        if flush:
            self.write(b"".join(flush))
        if self.transport is not None and not self.closed:
            self.transport.close()
        elif self._tls is not None:
            self._tls.abort()
        self.closed = True
        self.machine.close()

    # ------------------------------------------------------------------ time

    def _arm(self) -> None:
        """(Re)arm the timer at the machine's next deadline."""
        if self._timer is not None:
            self._timer.cancel()
        now = self.loop.time()
        self._timer = self.loop.call_at(self.machine.next_deadline(now) + _TIMER_SLACK,
                                        self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        for event in self.machine.tick(self.loop.time()):
            self._end(cast(Closed, event))
            return
        ping = self.machine.data_to_send()
        if ping:
            self.write(ping)
        self._arm()

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
                                 self.machine.reply(reply[0], frame.request_id, reply[1]))
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

    def _record_in(self, events: list[Event]) -> None:
        """The request record: the frames read (requests, HELLO, ACKs)."""
        record = self.server.record
        assert record is not None
        now = self.server.clock()
        for event in events:
            frame = event.frame if type(event) is HelloReceived else event
            if type(frame) is Frame:
                record.add_frame(now, self.name, self.user, "in", frame)

    def _record_out(self, data: bytes) -> None:
        """The request record: frames written."""
        record = self.server.record
        assert record is not None
        record.add_frames(self.server.clock(), self.name, self.user, "out", data)
