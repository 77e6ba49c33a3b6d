"""The responder side of one Diameter peer connection (RFC 6733 §5.6, watchdog RFC 3539),
as a sans-IO state machine: fed bytes and the time, gives back events and bytes to send.

States and what moves them::

    WAIT_CER --CER accepted / CEA 2001--> OPEN
    WAIT_CER --CER refused / CEA 3010, 5010, 5005...--> CLOSED
    WAIT_CER --anything else, or no CER within cer_timeout--> CLOSED
    OPEN     --DWR / DWA--> OPEN            (the peer's watchdog)
    OPEN     --DPR / DPA--> CLOSED          (the peer leaves; flush, then close)
    OPEN     --disconnect() / DPR--> CLOSING --DPA or watchdog interval--> CLOSED
    OPEN     --Tw silent: DWR; Tw more without an answer: SUSPECT; Tw more: CLOSED (dead)

Requests of the application (`commands`, by default CCR) come out as `Request`; answers to
our own requests (`send_request`, e.g. RAR) as `AnswerReceived`, matched by hop-by-hop id
(an answer nobody waits for is dropped, RFC 6733 §6.2). Requests of other applications get
3007, unknown commands 3001, a request with the E bit 3008, an undecodable one 5014/5015.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from . import codes as c
from .base import Capabilities, PeerMessage
from .codec import Avp, Message, decode_avps, decode_header, encode
from .errors import AvpError, DiameterError, FramingError
from .fields import error_answer
from .stream import DEFAULT_MAX_MESSAGE, MessageDecoder

WAIT_CER: Final = 0
OPEN: Final = 1
CLOSING: Final = 2
CLOSED: Final = 3

# watchdog states (RFC 3539)
OKAY: Final = 0
SUSPECT: Final = 1


@dataclass
class LocalPeer:
    """Who we are in CEAs and answers."""

    origin_host: str
    origin_realm: str
    host_ip_address: str = "127.0.0.1"
    vendor_id: int = 0
    product_name: str = "cc-server"
    origin_state_id: int = 1
    auth_application_ids: tuple[int, ...] = (c.APP_CREDIT_CONTROL,)


@dataclass
class PeerConfig:
    """The rules of the connection: peers allowed (Origin-Host; empty: any), watchdog
    interval Tw, time allowed for the CER, the message size limit, the 5001 switch, and
    the (application, command) pairs the application serves."""

    allowed_peers: frozenset[str] = frozenset()
    watchdog: float = 30.0
    cer_timeout: float = 10.0
    max_message: int = DEFAULT_MAX_MESSAGE
    strict_mandatory: bool = True
    commands: frozenset[tuple[int, int]] = field(
        default_factory=lambda: frozenset({(c.APP_CREDIT_CONTROL, c.CMD_CREDIT_CONTROL)}))


@dataclass(frozen=True)
class Opened:
    """The capabilities exchange succeeded; `peer` is what the CER said."""

    peer: Capabilities


@dataclass(frozen=True)
class Request:
    """A request for the application; answer it with `PeerMachine.answer`."""

    message: Message


@dataclass(frozen=True)
class AnswerReceived:
    """The answer to one of our requests (the hop-by-hop id `send_request` gave)."""

    message: Message


@dataclass(frozen=True)
class Closed:
    """The connection is over: flush `data_to_send()`, then close. `by_peer`: the peer
    sent DPR (or its CER was refused); `dead`: the watchdog gave up on it."""

    reason: str
    by_peer: bool = False
    dead: bool = False


Event = Opened | Request | AnswerReceived | Closed


class PeerMachine:
    """One accepted connection, from the CER to the end."""

    def __init__(self, local: LocalPeer, config: PeerConfig, now: float, seed: int = 0) -> None:
        self.local = local
        self.config = config
        self.state = WAIT_CER
        self.watchdog_state = OKAY
        self.peer: Capabilities | None = None
        self.decoder = MessageDecoder(config.max_message)
        self._out: list[bytes] = []
        self._deadline = now + config.cer_timeout
        self._dwr_pending = 0              # hop-by-hop id of our DWR in flight, 0: none
        self._dpr_pending = 0
        self._waiting: set[int] = set()    # hop-by-hop ids of our requests in flight
        #: watchdog counts: the peer's DWRs answered, our DWRs sent, their DWAs received
        self.dwr_received = 0
        self.dwr_sent = 0
        self.dwa_received = 0
        self._hbh = seed & 0xFFFFFFFF
        # RFC 6733 §3: end-to-end ids start with the low 12 bits of a time in the high bits
        self._e2e = ((seed & 0xFFF) << 20) & 0xFFFFFFFF

    @property
    def open(self) -> bool:
        """True between a successful CER and the end."""
        return self.state == OPEN

    @property
    def closed(self) -> bool:
        """True once a `Closed` event was given."""
        return self.state == CLOSED

    @property
    def peer_host(self) -> str:
        """The peer's Origin-Host ("" before the CER)."""
        return self.peer.origin_host if self.peer is not None else ""

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed received bytes; return the events they complete, in order."""
        if self.state == CLOSED:
            return []
        try:
            raws = self.decoder.feed(data)
        except FramingError as exc:
            return [self._close(str(exc))]
        events: list[Event] = []
        for raw in raws:
            if self.state == CLOSED:
                break
            event = self._one(raw, now)
            if event is not None:
                events.append(event)
            if self.state == OPEN:   # any message: the peer is OKAY, the timer restarts
                self.watchdog_state = OKAY
                self._deadline = now + self.config.watchdog
        return events

    def _one(self, raw: bytes, now: float) -> Event | None:
        head = decode_header(raw)
        try:
            head.avps = decode_avps(raw, 20, len(raw))
        except AvpError as exc:
            if head.is_request and self.state == OPEN:
                self._queue(error_answer(head, exc.result_code, self.local.origin_host,
                                         self.local.origin_realm, exc.message, exc.failed))
                return None
            return self._close(f"undecodable message: {exc.message}")
        msg = head
        if self.state == WAIT_CER:
            return self._cer(msg)
        if msg.is_request:
            return self._request(msg, now)
        return self._answer(msg)

    def _cer(self, msg: Message) -> Event:
        if msg.code != c.CMD_CAPABILITIES_EXCHANGE or not msg.is_request:
            return self._close(f"the first message must be a CER (got command {msg.code})")
        local = self.local
        try:
            cap = Capabilities.from_message(msg, self.config.strict_mandatory)
        except AvpError as exc:
            self._queue(self._cea(msg, exc.result_code, exc.message))
            return self._close(f"CER refused: {exc.message}", by_peer=True)
        allowed = self.config.allowed_peers
        if allowed and cap.origin_host not in allowed:
            self._queue(self._cea(msg, c.DIAMETER_UNKNOWN_PEER,
                                  f"peer {cap.origin_host} is not allowed"))
            return self._close(f"CER from unknown peer {cap.origin_host}", by_peer=True)
        apps = cap.applications()
        if c.APP_RELAY not in apps and not apps & set(local.auth_application_ids):
            self._queue(self._cea(msg, c.DIAMETER_NO_COMMON_APPLICATION,
                                  "no common application (credit control is 4)"))
            return self._close("CER without a common application", by_peer=True)
        self._queue(self._cea(msg, c.DIAMETER_SUCCESS, ""))
        self.peer = cap
        self.state = OPEN
        return Opened(cap)

    def _cea(self, cer: Message, result: int, text: str) -> Message:
        local = self.local
        cap = Capabilities(local.origin_host, local.origin_realm, [local.host_ip_address],
                           local.vendor_id, local.product_name, local.origin_state_id,
                           auth_application_ids=list(local.auth_application_ids),
                           result_code=result, error_message=text or None)
        return cap.answer(cer)

    def _request(self, msg: Message, now: float) -> Event | None:
        local = self.local
        code = msg.code
        if msg.flags & c.FLAG_ERROR:
            self._queue(error_answer(msg, c.DIAMETER_INVALID_HDR_BITS, local.origin_host,
                                     local.origin_realm, "a request with the E bit"))
            return None
        if msg.app_id == c.APP_BASE and code in (c.CMD_DEVICE_WATCHDOG, c.CMD_DISCONNECT_PEER,
                                                 c.CMD_CAPABILITIES_EXCHANGE):
            return self._base_request(msg)
        if (msg.app_id, code) in self.config.commands:
            if self.state != OPEN:
                self._queue(error_answer(msg, c.DIAMETER_UNABLE_TO_COMPLY, local.origin_host,
                                         local.origin_realm, "disconnecting"))
                return None
            return Request(msg)
        known_app = msg.app_id == c.APP_BASE or any(app == msg.app_id
                                                    for app, _ in self.config.commands)
        result = c.DIAMETER_COMMAND_UNSUPPORTED if known_app else \
            c.DIAMETER_APPLICATION_UNSUPPORTED
        self._queue(error_answer(msg, result, local.origin_host, local.origin_realm,
                                 f"command {code} of application {msg.app_id} is not served"))
        return None

    def _base_request(self, msg: Message) -> Event | None:
        local = self.local
        code = msg.code
        if code == c.CMD_CAPABILITIES_EXCHANGE:    # R-Open + R-Rcv-CER: R-Send-CEA
            self._queue(self._cea(msg, c.DIAMETER_SUCCESS, ""))
            return None
        try:
            view = PeerMessage.from_message(msg, self.config.strict_mandatory)
        except AvpError as exc:
            self._queue(error_answer(msg, exc.result_code, local.origin_host,
                                     local.origin_realm, exc.message, exc.failed))
            return None
        reply = PeerMessage(local.origin_host, local.origin_realm, local.origin_state_id,
                            result_code=c.DIAMETER_SUCCESS)
        self._queue(reply.answer(msg))
        if code == c.CMD_DEVICE_WATCHDOG:
            self.dwr_received += 1
            return None
        return self._close(f"peer disconnected (cause {view.disconnect_cause})", by_peer=True)

    def _answer(self, msg: Message) -> Event | None:
        hbh = msg.hop_by_hop
        if hbh and hbh == self._dwr_pending and msg.code == c.CMD_DEVICE_WATCHDOG:
            self._dwr_pending = 0
            self.watchdog_state = OKAY
            self.dwa_received += 1
            return None
        if hbh and hbh == self._dpr_pending and msg.code == c.CMD_DISCONNECT_PEER:
            return self._close("disconnected")
        if hbh in self._waiting:
            self._waiting.discard(hbh)
            return AnswerReceived(msg)
        return None

    # ------------------------------------------------------------------ sending

    def _ids(self) -> tuple[int, int]:
        self._hbh = (self._hbh + 1) & 0xFFFFFFFF or 1
        self._e2e = (self._e2e + 1) & 0xFFFFFFFF
        return self._hbh, self._e2e

    def send_request(self, msg: Message) -> bytes:
        """The bytes of a request of ours (e.g. a RAR): its ids are set here; its answer
        comes back as `AnswerReceived`. Only while open."""
        if self.state != OPEN:
            raise DiameterError("no requests: the peer connection is not open")
        msg.hop_by_hop, msg.end_to_end = self._ids()
        self._waiting.add(msg.hop_by_hop)
        return encode(msg)

    def forget(self, hop_by_hop: int) -> None:
        """Stop waiting for the answer to one of our requests (it timed out)."""
        self._waiting.discard(hop_by_hop)

    def answer(self, msg: Message) -> bytes:
        """The bytes of an answer to a `Request`."""
        return encode(msg)

    def disconnect(self, cause: int, now: float) -> bytes:
        """Our DPR (we are going away); the connection closes at the DPA or after one
        watchdog interval."""
        if self.state != OPEN:
            return b""
        local = self.local
        hbh, e2e = self._ids()
        self._dpr_pending = hbh
        self.state = CLOSING
        self._deadline = now + self.config.watchdog
        dpr = PeerMessage(local.origin_host, local.origin_realm, disconnect_cause=cause)
        return encode(dpr.request(c.CMD_DISCONNECT_PEER, hbh, e2e))

    def _queue(self, msg: Message) -> None:
        self._out.append(encode(msg))

    def data_to_send(self) -> bytes:
        """The bytes the machine produced by itself (CEA, DWA, DPA, DWR, error answers)."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _close(self, reason: str, by_peer: bool = False, dead: bool = False) -> Closed:
        self.state = CLOSED
        return Closed(reason, by_peer, dead)

    def close(self) -> None:
        """The transport closed."""
        self.state = CLOSED

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Event]:
        """What the time asks for: the CER deadline, our DWR, SUSPECT, the end."""
        state = self.state
        if state == CLOSED:
            return []
        if now < self._deadline:
            return []
        if state == WAIT_CER:
            return [self._close(f"no CER within {self.config.cer_timeout:g} s")]
        if state == CLOSING:
            return [self._close("no DPA to our DPR")]
        tw = self.config.watchdog
        if not self._dwr_pending:
            hbh, e2e = self._ids()
            self._dwr_pending = hbh
            local = self.local
            dwr = PeerMessage(local.origin_host, local.origin_realm, local.origin_state_id)
            self._out.append(encode(dwr.request(c.CMD_DEVICE_WATCHDOG, hbh, e2e)))
            self.dwr_sent += 1
            self._deadline = now + tw
            return []
        if self.watchdog_state == OKAY:
            self.watchdog_state = SUSPECT
            self._deadline = now + tw
            return []
        return [self._close(f"no answer to our DWR for {2 * tw:g} s", dead=True)]

    def next_deadline(self, now: float) -> float:
        """The latest time `tick` should next be called."""
        if self.state == CLOSED:
            return now + self.config.watchdog
        return self._deadline


__all__ = ["CLOSED", "CLOSING", "OPEN", "WAIT_CER", "AnswerReceived", "Avp", "Closed",
           "Event", "LocalPeer", "Opened", "PeerConfig", "PeerMachine", "Request"]
