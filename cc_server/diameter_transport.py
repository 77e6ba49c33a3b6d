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
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, cast

from cc_diameter import codes as c
from cc_diameter.codec import Message
from cc_diameter.errors import AvpError
from cc_diameter.fields import error_answer, result_code
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
from cc_diameter.reauth import Rar
from cc_diameter.stream import MessageDecoder
from protocol import messages as m

from . import diameter_record
from .faults import BASE_ACTIONS, DiameterTraffic, Faults, Rule
from .faults import Request as FaultRequest
from .gy import GyFrontEnd, GyPeer
from .gy_config import GySettings, parse_listen

if TYPE_CHECKING:
    from .server import ChargingServer

log = logging.getLogger("cc_server")
_TIMER_SLACK = 0.01
_BASE_ANSWERS = {c.CMD_CAPABILITIES_EXCHANGE: "CER", c.CMD_DEVICE_WATCHDOG: "DWR",
                 c.CMD_DISCONNECT_PEER: "DPR"}
MAX_RARS_IN_FLIGHT = 10_000    # per peer: RARs waiting for their RAA (oldest forgotten)


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
        #: hop-by-hop id of a RAR in flight -> the notification it carries
        self.rars: OrderedDict[int, int] = OrderedDict()
        #: the request record's own cut of the byte stream (None: out of step, stopped)
        self._recording: MessageDecoder | None = MessageDecoder(
            listener.peer_config.max_message)

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
        host = self.machine.peer_host
        if host and self.listener.by_host.get(host) is self:
            del self.listener.by_host[host]
        self.listener.server.waiting.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.listener.server.record is not None:
            self._record_in(data)
        events = self.machine.receive_data(data, self.loop.time())
        self._act(events)
        self._arm()

    def _act(self, events: list[Event]) -> None:
        out: list[bytes] = []
        closed: Closed | None = None
        front = self.listener.front
        for event in events:
            if type(event) is Request:
                answer = self._serve(front, event.message)
                if answer is not None:
                    out.append(self.machine.answer(answer))
                    continue
                fault = front.take_fault()
                if fault is not None and self._carry_out_fault(fault[0], fault[1]):
                    closed = Closed(f"closed by fault rule {fault[0].id}")
                    break
            elif type(event) is Opened:
                host = event.peer.origin_host
                self.peer = GyPeer(f"diameter:{host}", user=host)
                self.listener.by_host[host] = self
                log.info("event=diameter_peer_open peer=%s realm=%s product=%r", host,
                         event.peer.origin_realm, event.peer.product_name)
            elif type(event) is AnswerReceived:
                self.listener.rar_router.answered(self, event.message)
            elif type(event) is Closed:
                closed = event
        own = self.machine.data_to_send()
        controls = self.listener.server.dispatcher.controls
        if own and controls is not None and controls.faults.active:
            own, close = self._base_faults(controls.faults, own)
            if close and closed is None:
                closed = Closed("closed by a fault rule on the base protocol")
        if own:
            self._write(own)           # CEA, DWA, DPA, DWR, error answers: no log record
        if out:
            self._reply(b"".join(out))
        if closed is not None:
            log.info("event=diameter_peer_closed peer=%s reason=%r", self.peer.name,
                     closed.reason)
            self._close_after_replies()

    def _serve(self, front: GyFrontEnd, request: Message) -> Message | None:
        """The front-end's answer; 5012 for a bug of ours (a failure while a change was
        being applied has already stopped the server: dispatch.py's fail-stop)."""
        try:
            return front.handle_ccr(self.peer, request)
        except Exception:
            log.exception("event=internal_error peer=%s type=diameter_ccr", self.peer.name)
            local = self.listener.local
            return error_answer(request, c.DIAMETER_UNABLE_TO_COMPLY, local.origin_host,
                                local.origin_realm, "internal error")

    def _base_faults(self, faults: Faults, own: bytes) -> tuple[bytes, bool]:
        """The machine's own answers (CEA, DWA, DPA) as the fault rules that name their
        request (`diameter_command` CER, DWR, DPR) say: (what still leaves now, close)."""
        kept: list[bytes] = []
        close = False
        for data in diameter_record.split(own):
            name = _BASE_ANSWERS.get(int.from_bytes(data[5:8], "big"))
            fired = [] if name is None or data[4] & c.FLAG_REQUEST else faults.fire(
                FaultRequest("DIAMETER", conn_user=self.peer.user, command=name,
                             origin_host=self.machine.peer_host), BASE_ACTIONS)
            if not fired:
                kept.append(data)
                continue
            rule = fired[0]
            if rule.action == "delay":
                self.loop.call_later(rule.delay(), self._write, data)
            close = close or rule.action in ("close-before", "close-after")
        return b"".join(kept), close

    def _carry_out_fault(self, rule: Rule, cca: Message | None) -> bool:
        """What a fired fault rule asks instead of the answer; True: close the connection
        (close-before, close-after; what was answered before still leaves)."""
        action = rule.action
        if action == "delay" and cca is not None:
            data = self.machine.answer(cca)
            self.loop.call_later(rule.delay(), self._reply, data)
            return False
        return action in ("close-before", "close-after")   # drop-reply, drop-request: no word

    # ------------------------------------------------------------------ output

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            if self.listener.server.record is not None:
                self._record(diameter_record.split(data), "out")

    # ------------------------------------------------------------------ request record

    def _record_in(self, data: bytes) -> None:
        decoder = self._recording
        if decoder is None:
            return
        try:
            messages = decoder.feed(data)
        except Exception:        # out of step: the machine closes the connection too
            self._recording = None
            record = self.listener.server.record
            assert record is not None
            record.add_raw(self.listener.server.clock(), self.peer.name, self.peer.user,
                           "in", data)
            return
        self._record(messages, "in")

    def _record(self, messages: list[bytes], direction: str) -> None:
        record = self.listener.server.record
        assert record is not None
        now = self.listener.server.clock()
        for data in messages:
            kind, hop_by_hop, body, raw = diameter_record.entry(data)
            record.add_entry(now, self.peer.name, self.peer.user, direction, kind,
                             hop_by_hop, body, raw)

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

    def send_rar(self, rar: Message, notification_id: int) -> bool:
        """Send a RAR carrying a renewal notification; False when the peer is not open."""
        if not self.machine.open or self.transport is None or self.transport.is_closing():
            return False
        data = self.machine.send_request(rar)
        self.rars[rar.hop_by_hop] = notification_id
        if len(self.rars) > MAX_RARS_IN_FLIGHT:
            self.machine.forget(self.rars.popitem(last=False)[0])
        self._write(data)
        return True

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


class RarRouter:
    """The renewal service's listener for Diameter sessions (listener id `listener_id` of
    the [diameter] table): a notification becomes a RAR (AUTHORIZE_ONLY) to the peer that
    sent the session's latest CCR; its RAA with 2001 or 2002 acknowledges it. Resends
    are the renewal service's, as for msgpack listeners."""

    def __init__(self, listener: DiameterListener) -> None:
        self.listener = listener
        self.name = "diameter:rar"
        self.roles = frozenset({"charging"})

    def push(self, note: m.Notification) -> bool:
        """Send one attempt of `note` as a RAR; False when its peer is not connected."""
        listener = self.listener
        host = listener.front.holders.get(note.session_id)
        conn = listener.by_host.get(host) if host is not None else None
        if conn is None or conn.machine.peer is None:
            return False
        local = listener.local
        rar = Rar(note.session_id, local.origin_host, local.origin_realm,
                  conn.machine.peer.origin_realm, conn.machine.peer.origin_host,
                  c.AUTHORIZE_ONLY).to_message(0, 0)
        return conn.send_rar(rar, note.notification_id)

    def answered(self, conn: DiameterConnection, answer: Message) -> None:
        """An answer to one of our requests: the RAA of a notification."""
        notification_id = conn.rars.pop(answer.hop_by_hop, None)
        if notification_id is None:
            return
        try:
            code = result_code(answer)
        except AvpError:    # an undecodable Result-Code: not an acknowledgement
            code = None
        if code in (c.DIAMETER_SUCCESS, c.DIAMETER_LIMITED_SUCCESS):
            self.listener.server.dispatcher.acknowledge_local(self, notification_id)


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
        #: Origin-Host -> its open connection (where RARs for its sessions go)
        self.by_host: dict[str, DiameterConnection] = {}
        self.rar_router = RarRouter(self)
        server.renewal.register(self.rar_router, settings.listener_id)
        server.dispatcher.session_origin = self.session_origin
        self._server: asyncio.Server | None = None

    def session_origin(self, info: m.SessionInfo) -> tuple[str, str | None] | None:
        """("diameter", Origin-Host of its peer) for a Gy session (the peer None when not
        known: after a restart, until its next CCR); None for a msgpack session."""
        peer = self.front.holders.get(info.session_id)
        if peer is None and info.listener_id != self.settings.listener_id:
            return None
        return "diameter", peer

    def rar_traffic(self, note: m.Notification) -> DiameterTraffic | None:
        """The RAR a notification becomes (None: it is not one of ours): its Origin-Host
        is the peer it goes to."""
        if note.listener_id != self.settings.listener_id:
            return None
        return DiameterTraffic("RAR", origin_host=self.front.holders.get(note.session_id))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's loop."""
        return self.server.loop

    async def start(self) -> None:
        """Bind and accept."""
        controls = self.server.dispatcher.controls
        if controls is not None:        # the notify fault rules see RARs as RARs
            controls.notify_traffic = self.rar_traffic
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
