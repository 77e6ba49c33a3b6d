"""Diameter messages in the request record (`--record N`): decoded into a readable tree.

An entry's `type` is the command's short name (CCR, CCA, RAR, RAA, CER, CEA, DWR, DWA,
DPR, DPA; "DIAMETER-<code>-R" / "-A" for another command), its `request_id` the
hop-by-hop id, its body a map: `protocol` "diameter", `command`, `command_code`, `flags`
(the letters of R P E T), `app`, `hop_by_hop`, `end_to_end`, `avps` (each AVP a map of
`name`, `code`, `vendor` when set, `flags` (V M P letters) and `value`: text, number, a
list of AVPs for a grouped one, bin for octets or an AVP not in the dictionary), and, so
that the record's filters find it, `session` (Session-Id), `user` (the first
Subscription-Id-Data), `kind` (start/update/stop from a CC-Request-Type) and `result`
(an answer's Result-Code). No IO.
"""

from __future__ import annotations

from typing import Any, Final

from cc_diameter import codes as c
from cc_diameter import dictionary as d
from cc_diameter.codec import HEADER_SIZE, Avp, Message, decode

COMMANDS: Final[dict[int, str]] = {
    c.CMD_CREDIT_CONTROL: "CC", c.CMD_RE_AUTH: "RA", c.CMD_CAPABILITIES_EXCHANGE: "CE",
    c.CMD_DEVICE_WATCHDOG: "DW", c.CMD_DISCONNECT_PEER: "DP"}
_KINDS: Final = {1: "start", 2: "update", 3: "stop"}
_MSG_FLAGS: Final = ((c.FLAG_REQUEST, "R"), (c.FLAG_PROXIABLE, "P"), (c.FLAG_ERROR, "E"),
                     (c.FLAG_RETRANSMIT, "T"))
_AVP_FLAGS: Final = ((c.AVP_VENDOR, "V"), (c.AVP_MANDATORY, "M"), (0x20, "P"))
_MAX_DEPTH: Final = 8


def command_name(msg: Message) -> str:
    """CCR, CCA, RAR, ...; DIAMETER-<code>-R or -A for a command we do not know."""
    short = COMMANDS.get(msg.code)
    if short is None:
        return f"DIAMETER-{msg.code}-{'R' if msg.is_request else 'A'}"
    return short + ("R" if msg.is_request else "A")


def _value(avp: Avp, depth: int) -> Any:
    known = d.lookup(avp.code, avp.vendor)
    kind = known.type if known is not None else d.OCTETS
    try:
        if kind == d.GROUPED and depth < _MAX_DEPTH:
            return [avp_tree(child, depth + 1) for child in avp.children()]
        if kind in (d.UTF8, d.IDENTITY):
            return avp.utf8()
        if kind in (d.U32, d.TIME):
            return avp.u32()
        if kind == d.U64:
            return avp.u64()
        if kind in (d.I32, d.ENUM):
            return avp.i32()
        if kind == d.I64:
            return avp.i64()
        if kind == d.ADDRESS:
            return avp.address()
    except Exception:     # a value that does not decode is shown as its bytes
        pass
    return bytes(avp.data)


def avp_tree(avp: Avp, depth: int = 0) -> dict[str, Any]:
    """One AVP as a map (see the module docstring)."""
    known = d.lookup(avp.code, avp.vendor)
    out: dict[str, Any] = {"name": known.name if known is not None else f"AVP-{avp.code}",
                           "code": avp.code}
    if avp.vendor:
        out["vendor"] = avp.vendor
    out["flags"] = "".join(letter for bit, letter in _AVP_FLAGS if avp.flags & bit)
    out["value"] = _value(avp, depth)
    return out


def message_tree(msg: Message) -> dict[str, Any]:
    """One message as a map (see the module docstring)."""
    body: dict[str, Any] = {
        "protocol": "diameter", "command": command_name(msg), "command_code": msg.code,
        "flags": "".join(letter for bit, letter in _MSG_FLAGS if msg.flags & bit),
        "app": msg.app_id, "hop_by_hop": msg.hop_by_hop, "end_to_end": msg.end_to_end,
        "avps": [avp_tree(avp) for avp in msg.avps]}
    for avp in msg.avps:
        if avp.vendor:
            continue
        if avp.code == c.SESSION_ID and "session" not in body:
            body["session"] = _value(avp, 0)
        elif avp.code == c.RESULT_CODE and "result" not in body:
            body["result"] = _value(avp, 0)
        elif avp.code == c.CC_REQUEST_TYPE and "kind" not in body:
            body["kind"] = _KINDS.get(_value(avp, 0))
        elif avp.code == c.SUBSCRIPTION_ID and "user" not in body:
            for child in _children(avp):
                if child.code == c.SUBSCRIPTION_ID_DATA and not child.vendor:
                    body["user"] = _value(child, 0)
    return body


def _children(avp: Avp) -> list[Avp]:
    try:
        return avp.children()
    except Exception:
        return []


def split(data: bytes) -> list[bytes]:
    """The whole messages of bytes written in one go (a cut-off tail is left out)."""
    out = []
    pos = 0
    size = len(data)
    while size - pos >= HEADER_SIZE:
        length = int.from_bytes(data[pos + 1:pos + 4], "big")
        if length < HEADER_SIZE or pos + length > size:
            break
        out.append(data[pos:pos + length])
        pos += length
    return out


def entry(data: bytes) -> tuple[str, int, dict[str, Any] | None, bytes | None]:
    """(type, hop-by-hop id, body, raw) of one message's bytes for the record; a message
    that does not decode is kept as its bytes (type "DIAMETER")."""
    try:
        msg = decode(data)
    except Exception:
        return "DIAMETER", 0, None, bytes(data)
    return command_name(msg), msg.hop_by_hop, message_tree(msg), None
