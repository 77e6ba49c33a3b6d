"""Typed views of the Re-Auth messages of credit control (RFC 8506 §5.5): RAR and RAA.

The server sends a RAR (Auth-Application-Id 4) when a session should ask for credit again;
the gateway's RAA acknowledges it, and a CCR-U follows.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import codes as c
from .codec import Avp, Message
from .fields import answer_to, enum, identity, missing, origin, session_first, unknown


@dataclass
class Rar:
    """A Re-Auth-Request (credit control: Auth-Application-Id 4)."""

    session_id: str
    origin_host: str
    origin_realm: str
    destination_realm: str
    destination_host: str
    re_auth_request_type: int = c.AUTHORIZE_ONLY
    auth_application_id: int = c.APP_CREDIT_CONTROL
    origin_state_id: int | None = None

    def to_message(self, hop_by_hop: int, end_to_end: int) -> Message:
        """As a request message."""
        avps = origin(self.origin_host, self.origin_realm)
        avps.append(Avp.of_str(c.DESTINATION_REALM, self.destination_realm))
        avps.append(Avp.of_str(c.DESTINATION_HOST, self.destination_host))
        avps.append(Avp.of_u32(c.AUTH_APPLICATION_ID, self.auth_application_id))
        avps.append(Avp.of_i32(c.RE_AUTH_REQUEST_TYPE, self.re_auth_request_type))
        if self.origin_state_id is not None:
            avps.append(Avp.of_u32(c.ORIGIN_STATE_ID, self.origin_state_id))
        return Message(c.CMD_RE_AUTH, c.FLAG_REQUEST | c.FLAG_PROXIABLE, c.APP_CREDIT_CONTROL,
                       hop_by_hop, end_to_end, session_first(self.session_id, avps))

    @staticmethod
    def from_message(msg: Message, strict: bool = True) -> Rar:
        """Read a RAR."""
        v = Rar("", "", "", "", "", -1)
        for avp in msg.avps:
            code = avp.code
            if avp.vendor:
                unknown(avp, strict)
            elif code == c.SESSION_ID:
                v.session_id = avp.utf8()
            elif code == c.ORIGIN_HOST:
                v.origin_host = identity(avp)
            elif code == c.ORIGIN_REALM:
                v.origin_realm = identity(avp)
            elif code == c.DESTINATION_REALM:
                v.destination_realm = identity(avp)
            elif code == c.DESTINATION_HOST:
                v.destination_host = identity(avp)
            elif code == c.AUTH_APPLICATION_ID:
                v.auth_application_id = avp.u32()
            elif code == c.RE_AUTH_REQUEST_TYPE:
                v.re_auth_request_type = enum(avp)
            elif code == c.ORIGIN_STATE_ID:
                v.origin_state_id = avp.u32()
            elif code not in (c.PROXY_INFO, c.ROUTE_RECORD):
                unknown(avp, strict)
        if not v.session_id:
            raise missing("Session-Id", c.SESSION_ID)
        if v.re_auth_request_type < 0:
            raise missing("Re-Auth-Request-Type", c.RE_AUTH_REQUEST_TYPE)
        return v


@dataclass
class Raa:
    """A Re-Auth-Answer."""

    session_id: str
    result_code: int
    origin_host: str
    origin_realm: str
    origin_state_id: int | None = None
    error_message: str | None = None

    def answer(self, rar: Message) -> Message:
        """As the answer to `rar`."""
        avps = [Avp.of_u32(c.RESULT_CODE, self.result_code)]
        avps += origin(self.origin_host, self.origin_realm)
        if self.error_message:
            avps.append(Avp.of_str(c.ERROR_MESSAGE, self.error_message, flags=0))
        if self.origin_state_id is not None:
            avps.append(Avp.of_u32(c.ORIGIN_STATE_ID, self.origin_state_id))
        return answer_to(rar, session_first(self.session_id, avps))

    @staticmethod
    def from_message(msg: Message, strict: bool = False) -> Raa:
        """Read a RAA (5005 without Result-Code: an Experimental-Result counts too)."""
        v = Raa("", 0, "", "")
        for avp in msg.avps:
            code = avp.code
            if avp.vendor:
                unknown(avp, strict)
            elif code == c.SESSION_ID:
                v.session_id = avp.utf8()
            elif code == c.RESULT_CODE:
                v.result_code = avp.u32()
            elif code == c.EXPERIMENTAL_RESULT:
                for child in avp.children():
                    if child.code == c.EXPERIMENTAL_RESULT_CODE and not child.vendor:
                        v.result_code = child.u32()
            elif code == c.ORIGIN_HOST:
                v.origin_host = identity(avp)
            elif code == c.ORIGIN_REALM:
                v.origin_realm = identity(avp)
            elif code == c.ORIGIN_STATE_ID:
                v.origin_state_id = avp.u32()
            elif code == c.ERROR_MESSAGE:
                v.error_message = avp.utf8()
            elif code != c.PROXY_INFO:
                unknown(avp, strict)
        if not v.result_code:
            raise missing("Result-Code", c.RESULT_CODE)
        return v
