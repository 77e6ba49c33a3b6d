"""The server's configurable request limits, checked before a request reaches the engine.

The wire format has hard caps of its own (`protocol.messages.MAX_*`; the decoder refuses
anything past them, with the same codes as below). A server may be configured tighter,
never looser; these checks apply the tighter values to decoded requests:

    limit                         code
    sub-requests per container    CONTAINER_TOO_LARGE
    external data, bytes          EXTERNAL_DATA_TOO_LARGE
    id strings / other strings    STRING_TOO_LONG
    properties per item           TOO_MANY_PROPERTIES

Refusals happen before the engine and the write-ahead log, so replaying the log after a
restart with other limits gives the same state.

`ConnectionGate` applies the connection limits (`max_connections`,
`max_connections_per_address`, `max_handshakes`) at accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from protocol import messages as m
from protocol.errors import ErrorCode

from .config import FORMAT_CAPS, ServerConfig
from .engine import Refused

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits (defaults: the format's own caps, 64 sub-requests)."""

    max_subrequests: int = 64
    max_id_length: int = m.MAX_ID_LENGTH
    max_string_length: int = m.MAX_STRING_LENGTH
    max_properties: int = m.MAX_PROPERTIES
    max_external_data: int = m.MAX_EXTERNAL_DATA

    def __post_init__(self) -> None:
        for name, cap in FORMAT_CAPS.items():
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= cap:
                raise ValueError(f"{name} must be an integer in 1..{cap} (the wire format's "
                                 f"own cap), not {value!r}")

    @classmethod
    def from_config(cls, config: ServerConfig) -> Limits:
        """The limits a server configuration sets."""
        return cls(config.max_subrequests, config.max_id_length, config.max_string_length,
                   config.max_properties, config.max_external_data)

    @property
    def tighter_than_format(self) -> bool:
        """Whether strings or items need checking beyond what the decoder did."""
        return (self.max_id_length < m.MAX_ID_LENGTH
                or self.max_string_length < m.MAX_STRING_LENGTH
                or self.max_properties < m.MAX_PROPERTIES)

    # ------------------------------------------------------------------ checks

    def check_execute(self, msg: m.Execute) -> None:
        """Refuse a container past a limit (`Refused` with the limit's code)."""
        if len(msg.subs) > self.max_subrequests:
            raise Refused(ErrorCode.CONTAINER_TOO_LARGE, f"at most {self.max_subrequests} "
                          f"sub-requests per container (got {len(msg.subs)})")
        if msg.external_data is not None and len(msg.external_data) > self.max_external_data:
            raise Refused(ErrorCode.EXTERNAL_DATA_TOO_LARGE,
                          f"external data is limited to {self.max_external_data} bytes "
                          f"(got {len(msg.external_data)})")
        if not self.tighter_than_format:
            return
        self._ids(("user", msg.user_id), ("service", msg.service_id),
                  ("session", msg.session_id))
        for sub in msg.subs:
            self._ids(("rid", sub.reservation_id), ("inverse", sub.property_to_inverse))
            for item in (sub.item, sub.next_item):
                if item is not None:
                    self._item(item)

    def check_admin(self, args: Mapping[str, Any]) -> None:
        """Refuse operator arguments past a limit (ids, counter maps)."""
        if not self.tighter_than_format:
            return
        for name, value in args.items():
            if isinstance(value, str):
                self._ids((name, value))
            elif isinstance(value, dict):
                if len(value) > self.max_properties:
                    raise Refused(ErrorCode.TOO_MANY_PROPERTIES,
                                  f"{name}: at most {self.max_properties} entries")
                self._ids(*((f"{name} key", key) for key in value))

    def check_hello(self, hello: m.Hello) -> None:
        """Refuse handshake strings past a limit."""
        self._ids(("user", hello.user))
        for what, text in (("client", hello.client_name), ("password", hello.password)):
            if text is not None and len(text) > self.max_string_length:
                raise Refused(ErrorCode.STRING_TOO_LONG,
                              f"{what} is longer than {self.max_string_length} characters")

    def _ids(self, *pairs: tuple[str, str | None]) -> None:
        for what, value in pairs:
            if value is not None and len(value) > self.max_id_length:
                raise Refused(ErrorCode.STRING_TOO_LONG,
                              f"{what} is longer than {self.max_id_length} characters")

    def _item(self, item: m.ChargeableItem) -> None:
        props = item.properties
        if len(props) > self.max_properties:
            raise Refused(ErrorCode.TOO_MANY_PROPERTIES, f"an item has at most "
                          f"{self.max_properties} properties (got {len(props)})")
        self._ids(("item name", item.name), *(("property name", k) for k in props))
        self._texts((k, v) for k, v in props.items() if isinstance(v, str))

    def _texts(self, pairs: Iterable[tuple[str, str]]) -> None:
        for name, text in pairs:
            if len(text) > self.max_string_length:
                raise Refused(ErrorCode.STRING_TOO_LONG, f"property {name[:40]!r} is longer "
                              f"than {self.max_string_length} characters")


def peer_address(peer: object) -> str | None:
    """The address a connection counts against for `max_connections_per_address`: the
    IP of a `peername` tuple, port dropped, an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    as the IPv4 one; None (not limited per address) for a Unix socket or an unknown peer."""
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str) or not peer[0]:
        return None
    host: str = peer[0]
    if host[:7].lower() == "::ffff:" and "." in host:
        return host[7:]
    return host


class ConnectionGate(Generic[C]):
    """Admission of accepted sockets, decided at accept, before any TLS or HELLO.

    Every connection counts against `max_connections` from accept (a TLS handshake in
    progress included), and against `max_connections_per_address` for its peer's IP
    address (0: no such limit), so that one peer cannot take every slot; at most
    `max_handshakes` of them may be between accept and HELLO_OK at once: half-open
    handshakes cost memory (TLS: tens of KiB each) and, with a users file, a password
    check each.
    """

    def __init__(self, max_connections: int, max_handshakes: int,
                 max_per_address: int = 0) -> None:
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.max_per_address = max_per_address
        self.open: set[C] = set()
        self.handshaking: set[C] = set()
        #: open connections by peer address (an address leaves when its count drops to 0)
        self.per_address: dict[str, int] = {}
        self._address_of: dict[C, str] = {}    # the admitted connections counted there
        #: connections refused for `max_connections_per_address`
        self.refused_per_address = 0

    def admit(self, conn: C, address: str | None = None) -> str | None:
        """None when `conn` (from `address`, see `peer_address`) may go on (it then counts
        as open and handshaking), else why it is refused (ERROR TOO_MANY_CONNECTIONS)."""
        if len(self.open) >= self.max_connections:
            return f"the server accepts at most {self.max_connections} connections"
        limit = self.max_per_address
        key = address if limit > 0 else None     # None: not limited per address
        if key is not None and self.per_address.get(key, 0) >= limit:
            self.refused_per_address += 1
            return (f"the server accepts at most {limit} connections from one address "
                    f"(the per-address limit) and {key} has {limit} open")
        if len(self.handshaking) >= self.max_handshakes:
            return (f"the server takes at most {self.max_handshakes} handshakes at once; "
                    "try again shortly")
        self.open.add(conn)
        self.handshaking.add(conn)
        if key is not None:
            self.per_address[key] = self.per_address.get(key, 0) + 1
            self._address_of[conn] = key
        return None

    def handshake_done(self, conn: C) -> None:
        """`conn` got its HELLO_OK: it no longer counts against `max_handshakes`."""
        self.handshaking.discard(conn)

    def release(self, conn: C) -> None:
        """`conn` is gone (idempotent)."""
        self.open.discard(conn)
        self.handshaking.discard(conn)
        address = self._address_of.pop(conn, None)
        if address is not None:
            left = self.per_address[address] - 1
            if left:
                self.per_address[address] = left
            else:
                del self.per_address[address]
