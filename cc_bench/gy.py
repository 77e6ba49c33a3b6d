"""`--protocol diameter`: a small Gy client (an asyncio.Protocol over cc_diameter) and the
messages the load sends: a CER, then per session CCR-I (an RSU per rating group), CCR-U
(USU + RSU) and CCR-T (USU). A RAR is answered with RAA 2001 and followed by a CCR-U of
its session, as a gateway does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from cc_diameter import codes as c
from cc_diameter.base import Capabilities, PeerMessage
from cc_diameter.cc import Cca, Ccr, Mscc, Units
from cc_diameter.codec import Message, decode, encode
from cc_diameter.errors import DiameterError
from cc_diameter.reauth import Raa, Rar
from cc_diameter.stream import MessageDecoder

ORIGIN_HOST = "cc-bench.bench"
ORIGIN_REALM = "bench"
SERVICE_CONTEXT = "32251@3gpp.org"
RATING_GROUP = 10          # the first rating group; reservation k uses RATING_GROUP + k


def cer(hop_by_hop: int = 1) -> Message:
    """The bench's CER (credit control, application 4)."""
    return Capabilities(ORIGIN_HOST, ORIGIN_REALM, ["127.0.0.1"], 0, "cc-bench",
                        auth_application_ids=[c.APP_CREDIT_CONTROL]).request(hop_by_hop,
                                                                            hop_by_hop)


def ccr(session_id: str, user: str, kind: int, number: int, groups: list[int],
        requested: int | None, used: int | None) -> Ccr:
    """A CCR of `kind` (1 I, 2 U, 3 T): one MSCC per rating group, with an RSU of
    `requested` octets and a USU of `used` octets where given."""
    mscc = [Mscc(rating_group=rg,
                 requested=None if requested is None else Units(total_octets=requested),
                 used=[] if used is None else [Units(total_octets=used)]) for rg in groups]
    return Ccr(session_id, ORIGIN_HOST, ORIGIN_REALM, ORIGIN_REALM, SERVICE_CONTEXT, kind,
               number, subscription_ids=[(c.END_USER_PRIVATE, user)] if kind == 1 else [],
               multiple_services_indicator=1, mscc=mscc,
               termination_cause=1 if kind == 3 else None)


class GyError(Exception):
    """A request left unanswered (connection lost or time limit)."""


class GyClient(asyncio.Protocol):
    """One Diameter connection: `request()` sends a CCR and awaits its CCA; RARs are
    answered with RAA 2001 and `on_rar(session_id)` is called."""

    def __init__(self, on_rar: Callable[[str], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.decoder = MessageDecoder()
        self.waiting: dict[int, asyncio.Future[Message]] = {}
        self.ids = itertools.count(2)
        self.on_rar = on_rar
        self.rars = 0

    @property
    def connected(self) -> bool:
        """Whether the connection is up."""
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(GyError("connection lost"))
        self.waiting.clear()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
            for frame in frames:
                self._one(decode(frame))
        except DiameterError:
            if self.transport is not None:
                self.transport.close()

    def _one(self, msg: Message) -> None:
        if msg.is_request:
            self._request(msg)
            return
        fut = self.waiting.pop(msg.hop_by_hop, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _request(self, msg: Message) -> None:
        if msg.code == c.CMD_RE_AUTH:
            rar = Rar.from_message(msg, strict=False)
            self.rars += 1
            self._write(encode(Raa(rar.session_id, c.DIAMETER_SUCCESS, ORIGIN_HOST,
                                   ORIGIN_REALM).answer(msg)))
            if self.on_rar is not None:
                self.on_rar(rar.session_id)
        elif msg.code == c.CMD_DEVICE_WATCHDOG:
            self._write(encode(PeerMessage(ORIGIN_HOST, ORIGIN_REALM,
                                           result_code=c.DIAMETER_SUCCESS).answer(msg)))

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    async def send(self, msg: Message, limit: float) -> Message:
        """Send a request (its hop-by-hop id is set here); its answer."""
        if self.transport is None:
            raise GyError("not connected")
        msg.hop_by_hop = msg.end_to_end = next(self.ids) & 0xFFFFFFFF
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[msg.hop_by_hop] = fut
        self.transport.write(encode(msg))
        try:
            return await asyncio.wait_for(fut, limit)
        except TimeoutError:
            self.waiting.pop(msg.hop_by_hop, None)
            raise GyError("no answer in time") from None

    async def credit_control(self, request: Ccr, limit: float) -> Cca:
        """Send a CCR; its CCA."""
        return Cca.from_message(await self.send(request.to_message(0, 0), limit))


async def connect(address: str, limit: float,
                  on_rar: Callable[[str], None] | None = None) -> GyClient:
    """Open a connection to `host:port` and exchange capabilities (GyError on failure)."""
    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: GyClient(on_rar), host, int(port))
    cea = await client.send(cer(), limit)
    code = Capabilities.from_message(cea, strict=False).result_code
    if code != c.DIAMETER_SUCCESS:
        if client.transport is not None:
            client.transport.close()
        raise GyError(f"capabilities exchange refused: Result-Code {code}")
    return client
