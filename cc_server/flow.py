"""Flow control of one server connection: when it reads, and when its replies may leave.

All requests decoded from one read are answered with one write. The connection stops
reading while its transport's write buffer is above the high-water mark, so a client that
does not read its replies slows only itself; events of that read not handled yet wait in
a backlog until the buffer drains, so one read never buffers more than about the
high-water mark plus one reply.

With --data-dir a reply leaves only once the log records it depends on are on disk: it is
held with the log's latest sequence number and released when that is synced. Held
replies count as in-flight work: past `max_in_flight` of them (or the write buffer's
high-water mark in bytes) the connection stops reading until they are released.

Requests read while the connection cannot answer (the write buffer is full, replies are
held, the HELLO's verdict is pending) wait in the backlog; past `max_in_flight` waiting
or held requests, further ones are refused one by one with TOO_MANY_REQUESTS. What the
state machine answered by itself (PONGs) waits in turn but is not counted as a request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from protocol import codec
from protocol import messages as m
from protocol.connection import Closed, Connection, Event
from protocol.errors import ErrorCode
from protocol.frames import Frame

if TYPE_CHECKING:
    from .config import ServerConfig
    from .server import ChargingServer


class FlowControl(asyncio.Protocol):
    """The reading and writing pace of a server connection (`ServerConnection`'s base)."""

    server: ChargingServer
    config: ServerConfig
    loop: asyncio.AbstractEventLoop
    machine: Connection
    transport: asyncio.Transport | None
    closed: bool
    name: str

    def __init__(self) -> None:
        self._transport_paused = False
        self._reading_paused = False
        self._resume_scheduled = False
        self._authenticating = False    # the HELLO's verdict comes later (server.auth)
        self._closing = False           # the client said GOODBYE: close once replies left
        self._backlog: deque[Event] = deque()   # read while the connection could not answer
        self._held: deque[tuple[int, bytes]] = deque()   # (log sequence, reply bytes)
        self._held_size = 0

    # what the connection provides
    def _answer(self, events: Iterable[Event], fresh: bool = True) -> None:
        raise NotImplementedError

    def _end(self, event: Closed, flush: list[bytes] | None = None) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self, flush: list[bytes] | None = None) -> None:
        raise NotImplementedError

    @property
    def paused(self) -> bool:
        """True while this connection must not produce more replies."""
        return self._transport_paused or self._authenticating \
            or self._held_size >= self.config.write_buffer_high \
            or len(self._held) >= self.config.max_in_flight

    # ------------------------------------------------------------------ reading pace

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
        if self.closed or self._closing or self.paused or self.transport is None:
            return
        if self._backlog:
            events = list(self._backlog)
            self._backlog.clear()
            self._answer(events, fresh=False)
        if not self.closed and not self.paused and not self._backlog and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def _defer(self, events: Iterable[Event]) -> None:
        """Queue newly read events that cannot be handled now; past `max_in_flight`
        unanswered requests, refuse them (TOO_MANY_REQUESTS) instead. An event that
        ends the connection ends it now: what waits in the backlog is never executed."""
        backlog = self._backlog
        waiting = sum(1 for e in backlog if type(e) is Frame)
        room = self.config.max_in_flight - waiting - len(self._held)
        refused: list[bytes] = []
        dropped = 0
        error: tuple[int, bytes] | None = None
        closed: Closed | None = None
        for event in events:
            if type(event) is not Frame:
                if type(event) is Closed:
                    closed = event
                    break
                backlog.append(event)     # answered in turn, not counted as a request
            elif room > 0:
                backlog.append(event)
                room -= 1
            elif event.request_id:
                error = error or codec.encode_body(m.Error(
                    ErrorCode.TOO_MANY_REQUESTS, f"more than {self.config.max_in_flight} "
                    "unanswered requests on this connection"))
                refused.append(self.machine.reply(error[0], event.request_id, error[1]))
            else:                         # an ACK that wants no reply
                dropped += 1
        if refused or dropped:
            self.server.limit_hit(ErrorCode.TOO_MANY_REQUESTS, self.name,
                                  len(refused) + dropped)
            if refused:
                self.write(b"".join(refused))
        if closed is not None:
            self._end(closed)
            return
        self._pause_reading()

    def _wait(self, rest: Iterable[Event], fresh: bool) -> None:
        """Put events not handled yet back in the backlog and stop reading (`fresh`: just
        read, so subject to the in-flight limit)."""
        if fresh:
            self._defer(rest)
        else:
            self._backlog.extendleft(reversed(list(rest)))
            self._pause_reading()

    # ------------------------------------------------------------------ replies and the log

    def reply(self, data: bytes) -> None:
        """Send replies now, or hold them until the log records they depend on are synced."""
        wal = self.server.wal
        if wal is None or (wal.synced >= wal.appended and not self._held):
            self.write(data)
            return
        self._held.append((wal.appended, data))
        self._held_size += len(data)
        self.server.waiting.add(self)  # type: ignore[arg-type]

    def close_after_replies(self) -> None:
        """Close once the replies held for the log have left (now, if none is held)."""
        if not self._held:
            self.close()
            return
        self._closing = True
        self._pause_reading()

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
            if self._closing:
                self.close()
                return
        if (self._reading_paused or self._backlog) and not self.paused:
            self._resume()
