"""Helpers shared by the typed views: reading checked values, the 5001/5004/5005 rules,
and the parts every answer has (Session-Id first, Origin-Host/Realm, Proxy-Info echoed).
"""

from __future__ import annotations

from typing import Final

from . import codes as c
from .codec import Avp, Message
from .dictionary import DICTIONARY, ENUM_VALUES
from .errors import AvpError

M: Final = c.AVP_MANDATORY


def unknown(avp: Avp, strict: bool) -> None:
    """An AVP the view does not read: refused with 5001 when it is not in the dictionary,
    carries the M bit and `strict` is on; ignored otherwise."""
    if strict and avp.flags & M and (avp.code, avp.vendor) not in DICTIONARY:
        raise AvpError(c.DIAMETER_AVP_UNSUPPORTED,
                       f"AVP {avp.code} (vendor {avp.vendor}) is not supported", avp)


def check_group(avp: Avp, strict: bool) -> None:
    """`unknown` for the children of a grouped AVP the view passes through whole."""
    if strict:
        for child in avp.children():
            unknown(child, True)


def missing(name: str, code: int, vendor: int = 0) -> AvpError:
    """5005 for a required AVP that is not there (Failed-AVP: that AVP, zero-filled)."""
    return AvpError(c.DIAMETER_MISSING_AVP, f"{name} is missing",
                    Avp(code, b"\0\0\0\0", M, vendor))


def enum(avp: Avp) -> int:
    """An Enumerated value, refused with 5004 when it is not one we know."""
    value = avp.i32()
    allowed = ENUM_VALUES.get((avp.code, avp.vendor))
    if allowed is not None and value not in allowed:
        raise AvpError(c.DIAMETER_INVALID_AVP_VALUE,
                       f"AVP {avp.code}: {value} is not a valid value", avp)
    return value


def identity(avp: Avp) -> str:
    """A DiameterIdentity (ASCII)."""
    text = avp.utf8()
    if not text.isascii() or not text:
        raise AvpError(c.DIAMETER_INVALID_AVP_VALUE,
                       f"AVP {avp.code}: a DiameterIdentity is non-empty ASCII", avp)
    return text


def session_first(session_id: str | None, rest: list[Avp]) -> list[Avp]:
    """The AVPs of a session's message: Session-Id first (RFC 6733 §8.8)."""
    if session_id is None:
        return rest
    return [Avp.of_str(c.SESSION_ID, session_id), *rest]


def origin(host: str, realm: str) -> list[Avp]:
    """Origin-Host and Origin-Realm."""
    return [Avp.of_str(c.ORIGIN_HOST, host), Avp.of_str(c.ORIGIN_REALM, realm)]


def answer_to(request: Message, avps: list[Avp], error: bool = False) -> Message:
    """The answer to `request`: same command, application and ids, R and T bits cleared
    (P kept), E set for a protocol error; the request's Proxy-Info AVPs echoed in order."""
    flags = request.flags & c.FLAG_PROXIABLE
    if error:
        flags |= c.FLAG_ERROR
    proxies = request.find_all(c.PROXY_INFO)
    return Message(request.code, flags, request.app_id, request.hop_by_hop,
                   request.end_to_end, avps + proxies if proxies else avps)


def error_answer(request: Message, result_code: int, host: str, realm: str,
                 text: str = "", failed: Avp | None = None) -> Message:
    """An answer carrying only an error: Session-Id (when the request had one), Result-Code,
    Origin-Host/Realm, Error-Message, Failed-AVP. The E bit is set for 3xxx codes."""
    sid = request.find(c.SESSION_ID)
    avps: list[Avp] = [sid] if sid is not None else []
    avps.append(Avp.of_u32(c.RESULT_CODE, result_code))
    avps += origin(host, realm)
    if text:
        avps.append(Avp.of_str(c.ERROR_MESSAGE, text[:200], flags=0))
    if failed is not None:
        avps.append(Avp.of_group(c.FAILED_AVP, [failed]))
    return answer_to(request, avps, error=3000 <= result_code < 4000)


def result_code(msg: Message) -> int | None:
    """The Result-Code of an answer, or the code inside Experimental-Result, or None."""
    avp = msg.find(c.RESULT_CODE)
    if avp is not None:
        return avp.u32()
    exp = msg.find(c.EXPERIMENTAL_RESULT)
    if exp is not None:
        for child in exp.children():
            if child.code == c.EXPERIMENTAL_RESULT_CODE and child.vendor == 0:
                return child.u32()
    return None
