"""Header and AVP codec (RFC 6733 §3, §4).

Message header, 20 bytes::

    version(1)=1  length(3)  flags(1) R P E T  command code(3)
    application id(4)  hop-by-hop id(4)  end-to-end id(4)

AVP: code(4) flags(1) V M P length(3) [vendor id(4) when V] data, zero-padded to 4 bytes
(the length excludes the padding; the message length includes every padding).

A decoded `Avp` keeps its data as bytes; a grouped AVP's children are decoded when asked
(`children()`), so re-encoding what was decoded gives the same bytes, and an AVP nobody
reads costs one slice. Typed values are read with `u32()`, `utf8()`, ... which check the
length (5014) and encoding (5004), and built with the `Avp.*` constructors.
"""

from __future__ import annotations

import struct
from typing import Final

from . import codes as c
from .errors import AvpError, FramingError

HEADER_SIZE: Final = 20
_HEADER: Final = struct.Struct("!I I I I I")
_AVP: Final = struct.Struct("!I I")
_AVP_V: Final = struct.Struct("!I I I")
_U32: Final = struct.Struct("!I")
_U64: Final = struct.Struct("!Q")
_I32: Final = struct.Struct("!i")
_I64: Final = struct.Struct("!q")
_pack_u32: Final = _U32.pack
_pack_avp: Final = _AVP.pack
_pack_avp_v: Final = _AVP_V.pack
_unpack_avp: Final = _AVP.unpack_from
_unpack_u32: Final = _U32.unpack_from
_PAD: Final = (b"", b"\0\0\0", b"\0\0", b"\0")

#: seconds from 1900-01-01 (Diameter Time) to 1970-01-01 (Unix time)
NTP_OFFSET: Final = 2208988800


class Avp:
    """One AVP: code, flags (V M P bits), vendor id (0: none) and raw data."""

    __slots__ = ("code", "data", "flags", "vendor")

    def __init__(self, code: int, data: bytes, flags: int = c.AVP_MANDATORY,
                 vendor: int = 0) -> None:
        self.code = code
        self.data = data
        # the V bit follows the vendor id: no way to build an AVP that contradicts itself
        self.flags = (flags | c.AVP_VENDOR) if vendor else (flags & ~c.AVP_VENDOR)
        self.vendor = vendor

    def __repr__(self) -> str:
        vendor = f"/{self.vendor}" if self.vendor else ""
        return f"Avp({self.code}{vendor}, flags={self.flags:#04x}, {self.data!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Avp) and self.code == other.code
                and self.vendor == other.vendor and self.flags == other.flags
                and self.data == other.data)

    def __hash__(self) -> int:
        return hash((self.code, self.vendor, self.flags, self.data))

    @property
    def mandatory(self) -> bool:
        """The M bit."""
        return bool(self.flags & c.AVP_MANDATORY)

    # ---------------------------------------------------------------- typed reads

    def _fixed(self, size: int) -> None:
        if len(self.data) != size:
            raise AvpError(c.DIAMETER_INVALID_AVP_LENGTH,
                           f"AVP {self.code} has {len(self.data)} bytes of data, not {size}",
                           self)

    def u32(self) -> int:
        """Unsigned32 (also Enumerated read unsigned, Time)."""
        self._fixed(4)
        return int(_U32.unpack(self.data)[0])

    def u64(self) -> int:
        """Unsigned64."""
        self._fixed(8)
        return int(_U64.unpack(self.data)[0])

    def i32(self) -> int:
        """Integer32 and Enumerated."""
        self._fixed(4)
        return int(_I32.unpack(self.data)[0])

    def i64(self) -> int:
        """Integer64."""
        self._fixed(8)
        return int(_I64.unpack(self.data)[0])

    def utf8(self) -> str:
        """UTF8String and DiameterIdentity."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise AvpError(c.DIAMETER_INVALID_AVP_VALUE,
                           f"AVP {self.code} is not valid UTF-8", self) from None

    def address(self) -> str:
        """Address: an IPv4 or IPv6 address as text (other families as hex)."""
        data = self.data
        if len(data) < 2:
            raise AvpError(c.DIAMETER_INVALID_AVP_LENGTH, f"AVP {self.code}: short address",
                           self)
        family = (data[0] << 8) | data[1]
        raw = data[2:]
        if family == 1 and len(raw) == 4:
            return ".".join(str(b) for b in raw)
        if family == 2 and len(raw) == 16:
            return ":".join(raw[i:i + 2].hex() for i in range(0, 16, 2))
        return f"{family}:{raw.hex()}"

    def children(self) -> list[Avp]:
        """Grouped: the AVPs inside."""
        return decode_avps(self.data, 0, len(self.data))

    # ---------------------------------------------------------------- constructors

    @staticmethod
    def of_u32(code: int, value: int, vendor: int = 0, flags: int = c.AVP_MANDATORY) -> Avp:
        """Unsigned32 / Enumerated / Time AVP."""
        return Avp(code, _pack_u32(value), flags, vendor)

    @staticmethod
    def of_u64(code: int, value: int, vendor: int = 0, flags: int = c.AVP_MANDATORY) -> Avp:
        """Unsigned64 AVP."""
        return Avp(code, _U64.pack(value), flags, vendor)

    @staticmethod
    def of_i32(code: int, value: int, vendor: int = 0, flags: int = c.AVP_MANDATORY) -> Avp:
        """Integer32 / Enumerated AVP."""
        return Avp(code, _I32.pack(value), flags, vendor)

    @staticmethod
    def of_str(code: int, value: str, vendor: int = 0, flags: int = c.AVP_MANDATORY) -> Avp:
        """UTF8String / DiameterIdentity AVP."""
        return Avp(code, value.encode("utf-8"), flags, vendor)

    @staticmethod
    def of_ipv4(code: int, value: str, vendor: int = 0, flags: int = c.AVP_MANDATORY) -> Avp:
        """Address AVP of an IPv4 address in dotted form."""
        parts = [int(p) for p in value.split(".")]
        if len(parts) != 4 or any(p < 0 or p > 255 for p in parts):
            raise ValueError(f"not an IPv4 address: {value!r}")
        return Avp(code, b"\0\x01" + bytes(parts), flags, vendor)

    @staticmethod
    def of_group(code: int, avps: list[Avp], vendor: int = 0,
                 flags: int = c.AVP_MANDATORY) -> Avp:
        """Grouped AVP."""
        return Avp(code, encode_avps(avps), flags, vendor)


def encode_avp(avp: Avp) -> bytes:
    """The bytes of one AVP, padding included."""
    data = avp.data
    size = len(data)
    if avp.vendor:
        head = _pack_avp_v(avp.code, ((avp.flags | c.AVP_VENDOR) << 24) | (size + 12),
                           avp.vendor)
    else:
        head = _pack_avp(avp.code, (avp.flags << 24) | (size + 8))
    return head + data + _PAD[size & 3]


def encode_avps(avps: list[Avp]) -> bytes:
    """The bytes of a sequence of AVPs."""
    return b"".join([encode_avp(a) for a in avps])


def decode_avps(data: bytes, pos: int, end: int) -> list[Avp]:
    """The AVPs in data[pos:end]; 5014 (with the AVP at fault) when a length does not fit.

    The last AVP's padding may be missing at the very end (some peers leave it out)."""
    avps: list[Avp] = []
    while pos < end:
        if end - pos < 8:
            raise AvpError(c.DIAMETER_INVALID_AVP_LENGTH,
                           f"{end - pos} stray bytes where an AVP header was expected")
        code, word = _unpack_avp(data, pos)
        flags = word >> 24
        length = word & 0xFFFFFF
        head = 8
        vendor = 0
        if flags & c.AVP_VENDOR:
            head = 12
            if end - pos < 12:
                raise AvpError(c.DIAMETER_INVALID_AVP_LENGTH,
                               f"AVP {code}: vendor id cut off")
            vendor = int(_unpack_u32(data, pos + 8)[0])
        if length < head or pos + length > end:
            raise AvpError(c.DIAMETER_INVALID_AVP_LENGTH,
                           f"AVP {code} claims a length of {length}",
                           Avp(code, b"", flags, vendor))
        avps.append(Avp(code, bytes(data[pos + head:pos + length]), flags, vendor))
        pos += (length + 3) & ~3
    return avps


class Message:  # noqa: PLW1641  (mutable: unhashable, like a list)
    """One Diameter message: header fields and its top-level AVPs."""

    __slots__ = ("app_id", "avps", "code", "end_to_end", "flags", "hop_by_hop")

    def __init__(self, code: int, flags: int, app_id: int, hop_by_hop: int, end_to_end: int,
                 avps: list[Avp]) -> None:
        self.code = code
        self.flags = flags
        self.app_id = app_id
        self.hop_by_hop = hop_by_hop
        self.end_to_end = end_to_end
        self.avps = avps

    def __repr__(self) -> str:
        kind = "request" if self.flags & c.FLAG_REQUEST else "answer"
        return (f"Message({self.code} {kind}, flags={self.flags:#04x}, app={self.app_id}, "
                f"hbh={self.hop_by_hop}, e2e={self.end_to_end}, {len(self.avps)} AVPs)")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Message) and self.code == other.code
                and self.flags == other.flags and self.app_id == other.app_id
                and self.hop_by_hop == other.hop_by_hop
                and self.end_to_end == other.end_to_end and self.avps == other.avps)

    @property
    def is_request(self) -> bool:
        """The R bit."""
        return bool(self.flags & c.FLAG_REQUEST)

    @property
    def is_retransmit(self) -> bool:
        """The T bit: a request sent again after a failover or a lost answer."""
        return bool(self.flags & c.FLAG_RETRANSMIT)

    def find(self, code: int, vendor: int = 0) -> Avp | None:
        """The first top-level AVP with that code and vendor."""
        for avp in self.avps:
            if avp.code == code and avp.vendor == vendor:
                return avp
        return None

    def find_all(self, code: int, vendor: int = 0) -> list[Avp]:
        """Every top-level AVP with that code and vendor, in order."""
        return [a for a in self.avps if a.code == code and a.vendor == vendor]


def encode(msg: Message) -> bytes:
    """The bytes of one message."""
    body = encode_avps(msg.avps)
    return _HEADER.pack((1 << 24) | (HEADER_SIZE + len(body)), (msg.flags << 24) | msg.code,
                        msg.app_id, msg.hop_by_hop, msg.end_to_end) + body


def check_header(data: bytes | bytearray | memoryview, pos: int, max_size: int) -> int:
    """The length of the message whose header starts at data[pos] (20 bytes there), after
    checking what a stream reader must: version 1, a length that is a multiple of 4, at
    least a header, and not over `max_size`."""
    word = int(_unpack_u32(data, pos)[0])
    version = word >> 24
    length = word & 0xFFFFFF
    if version != 1:
        raise FramingError(f"Diameter version {version}: only version 1 is spoken")
    if length < HEADER_SIZE or length & 3:
        raise FramingError(f"message length {length} is not a multiple of 4 of at least 20")
    if length > max_size:
        raise FramingError(f"message of {length} bytes exceeds the limit of {max_size}")
    return length


def decode_header(data: bytes) -> Message:
    """The header of one whole message, with no AVPs (for answering one that fails)."""
    _, word, app_id, hbh, e2e = _HEADER.unpack_from(data, 0)
    return Message(word & 0xFFFFFF, word >> 24, app_id, hbh, e2e, [])


def decode(data: bytes) -> Message:
    """One whole message (exactly its bytes: the stream decoder cuts them)."""
    if len(data) < HEADER_SIZE:
        raise FramingError(f"{len(data)} bytes: shorter than a Diameter header")
    length = check_header(data, 0, len(data))
    if length != len(data):
        raise FramingError(f"header says {length} bytes, got {len(data)}")
    msg = decode_header(data)
    msg.avps = decode_avps(data, HEADER_SIZE, length)
    return msg
