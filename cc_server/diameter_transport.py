"""The Diameter listener: one asyncio.Protocol per peer, a thin driver of the sans-IO
`cc_diameter.peer.PeerMachine` (capabilities exchange, watchdog, disconnect), with CCRs
served by `gy.GyFrontEnd`.

Bytes come in at `data_received` (the machine, then the front-end), leave at `_send`.
A CCA that depends on a write-ahead-log record waits until the record is on disk, as the
msgpack connection's replies do (flow.py). The watchdog runs on the loop's monotonic
time, never on the charging clock (a manual clock does not stop a peer's heartbeat).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from cc_diameter import codes as c
from cc_diameter.peer import (
    AnswerReceived,
    Closed,
    Event,
    LocalPeer,
    Opened,
    PeerConfig,
    PeerMachine,
    Request,
)

from .gy import GyFrontEnd, GyPeer, GySettings, parse_listen

if TYPE_CHECKING:
    from .server import ChargingServer

log = logging.getLogger("cc_server")
_TIMER_SLACK = 0.01


class DiameterConnection(asyncio.Protocol):
    """One Diameter peer connection."""

    def __init__(self, listener: DiameterListener) -> None:
        self.listener = listener
        self.loop = listener.loop
        self.machine = PeerMachine(listener.local, listener.peer_config, self.loop.time(),
                                   seed=random.getrandbits(32))
        self.transport: asyncio.Transport | None = None
        self.peer = GyPeer("diameter:?")
        self._timer: asyncio.TimerHandle | None = None
        self._held: deque[tuple[int, bytes]] = deque()
        self._closing = False

    # ------------------------------------------------------------------ life cycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        address = transport.get_extra_info("peername")
        self.peer = GyPeer(f"diameter:{address[0]}:{address[1]}" if address else "diameter:?")
        self.listener.connections.add(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.machine.close()
        if self._timer is not None:
            self._timer.cancel()
        self.listener.connections.discard(self)
        self.listener.server.waiting.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        events = self.machine.receive_data(data, self.loop.time())
        self._act(events)
        self._arm()

    def _act(self, events: list[Event]) -> None:
        out: list[bytes] = []
        closed: Closed | None = None
        front = self.listener.front
        for event in events:
            if type(event) is Request:
                out.append(self.machine.answer(front.handle_ccr(self.peer, event.message)))
            elif type(event) is Opened:
                host = event.peer.origin_host
                self.peer = GyPeer(f"diameter:{host}")
                log.info("event=diameter_peer_open peer=%s realm=%s product=%r", host,
                         event.peer.origin_realm, event.peer.product_name)
            elif type(event) is AnswerReceived:
                pass     # no request of ours is answered yet (RAR: a later phase)
            elif type(event) is Closed:
                closed = event
        own = self.machine.data_to_send()
        if own:
            self._write(own)           # CEA, DWA, DPA, DWR, error answers: no log record
        if out:
            self._reply(b"".join(out))
        if closed is not None:
            log.info("event=diameter_peer_closed peer=%s reason=%r", self.peer.name,
                     closed.reason)
            self._close_after_replies()

    # ------------------------------------------------------------------ output

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _reply(self, data: bytes) -> None:
        """Send CCAs now, or once the log records they depend on are synced."""
        wal = self.listener.server.wal
        if wal is None or (wal.synced >= wal.appended and not self._held):
            self._write(data)
            return
        self._held.append((wal.appended, data))
        self.listener.server.waiting.add(self)  # type: ignore[arg-type]

    def release(self, synced: int) -> None:
        """The log is on disk up to `synced` (server.py calls it)."""
        held = self._held
        out = []
        while held and held[0][0] <= synced:
            out.append(held.popleft()[1])
        if out:
            self._write(b"".join(out))
        if not held:
            self.listener.server.waiting.discard(self)
            if self._closing:
                self._close_now()

    def _close_after_replies(self) -> None:
        if not self._held:
            self._close_now()
            return
        self._closing = True

    def _close_now(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def disconnect(self) -> None:
        """Server shutdown: our DPR (REBOOTING), then close."""
        dpr = self.machine.disconnect(c.REBOOTING, self.loop.time())
        if dpr:
            self._write(dpr)
        self._close_after_replies()

    # ------------------------------------------------------------------ time

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.machine.closed or self.transport is None:
            return
        now = self.loop.time()
        delay = max(0.0, self.machine.next_deadline(now) - now) + _TIMER_SLACK
        self._timer = self.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._act(self.machine.tick(self.loop.time()))
        self._arm()


class DiameterListener:
    """The Diameter Gy listener of one server (`--diameter HOST:PORT`)."""

    def __init__(self, server: ChargingServer, listen: str, settings: GySettings,
                 front: GyFrontEnd) -> None:
        self.server = server
        self.host, self.port = parse_listen(listen)
        self.settings = settings
        self.front = front
        self.local = LocalPeer(settings.origin_host, settings.origin_realm,
                               settings.host_ip_address, product_name="cc-server",
                               origin_state_id=int(time.time()) & 0xFFFFFFFF or 1)
        self.peer_config = PeerConfig(allowed_peers=frozenset(settings.peers),
                                      watchdog=settings.watchdog,
                                      max_message=settings.max_message,
                                      strict_mandatory=settings.reject_unknown_mandatory)
        self.connections: set[DiameterConnection] = set()
        self._server: asyncio.Server | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's loop."""
        return self.server.loop

    async def start(self) -> None:
        """Bind and accept."""
        self._server = await self.loop.create_server(
            lambda: DiameterConnection(self), self.host, self.port, reuse_address=True)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 resolved)."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        """Stop accepting; DPR to every peer; close."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.disconnect()
        if self._server is not None:
            await self._server.wait_closed()

    def stats(self) -> dict[str, object]:
        """The `diameter` section of stats()."""
        return {"peers": len(self.connections), **self.front.counts}
