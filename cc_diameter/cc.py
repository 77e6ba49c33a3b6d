"""Typed views of the credit-control messages (RFC 8506, TS 32.299): CCR/CCA and the
Multiple-Services-Credit-Control inside them (RAR/RAA: reauth.py).

`from_message` checks what it reads (5005 missing, 5004 bad value, 5014 bad length, 5001
unknown with the M bit when `strict`); `to_message` writes the grammar's order.
Service-Information is kept as the raw AVP and written back as it came.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import codes as c
from .codec import Avp, Message
from .errors import AvpError
from .fields import answer_to, check_group, enum, identity, missing, origin, session_first, unknown

G = c.VENDOR_3GPP


# init=False and an __init__ of its own: a compiled dataclass keeps the interpreted
# __init__ the dataclasses module writes; these are built several times per CCR.
@dataclass(init=False)
class Units:
    """A Requested-, Granted- or Used-Service-Unit. An empty RSU (all None) asks for the
    server's default quota. `reporting_reason` is 3GPP's, inside a USU."""

    time: int | None
    total_octets: int | None
    input_octets: int | None
    output_octets: int | None
    service_specific_units: int | None
    reporting_reason: int | None

    def __init__(self, time: int | None = None, total_octets: int | None = None,
                 input_octets: int | None = None, output_octets: int | None = None,
                 service_specific_units: int | None = None,
                 reporting_reason: int | None = None) -> None:
        self.time = time
        self.total_octets = total_octets
        self.input_octets = input_octets
        self.output_octets = output_octets
        self.service_specific_units = service_specific_units
        self.reporting_reason = reporting_reason

    def get(self, name: str) -> int | None:
        """A unit by field name ("time", "total_octets", ...); None when absent."""
        if name == "time":
            return self.time
        if name == "total_octets":
            return self.total_octets
        if name == "input_octets":
            return self.input_octets
        if name == "output_octets":
            return self.output_octets
        if name == "service_specific_units":
            return self.service_specific_units
        raise ValueError(f"no unit field {name!r}")

    @staticmethod
    def from_avp(avp: Avp, strict: bool) -> Units:
        """Read the grouped AVP."""
        u = Units()
        for child in avp.children():
            code = child.code
            if child.vendor:
                if child.vendor == G and code == c.REPORTING_REASON:
                    u.reporting_reason = child.i32()
                else:
                    unknown(child, strict)
            elif code == c.CC_TIME:
                u.time = child.u32()
            elif code == c.CC_TOTAL_OCTETS:
                u.total_octets = child.u64()
            elif code == c.CC_INPUT_OCTETS:
                u.input_octets = child.u64()
            elif code == c.CC_OUTPUT_OCTETS:
                u.output_octets = child.u64()
            elif code == c.CC_SERVICE_SPECIFIC_UNITS:
                u.service_specific_units = child.u64()
            else:
                unknown(child, strict)
        return u

    def to_avp(self, code: int) -> Avp:
        """As the grouped AVP `code` (RSU 437, GSU 431, USU 446)."""
        avps: list[Avp] = []
        if self.time is not None:
            avps.append(Avp.of_u32(c.CC_TIME, self.time))
        if self.total_octets is not None:
            avps.append(Avp.of_u64(c.CC_TOTAL_OCTETS, self.total_octets))
        if self.input_octets is not None:
            avps.append(Avp.of_u64(c.CC_INPUT_OCTETS, self.input_octets))
        if self.output_octets is not None:
            avps.append(Avp.of_u64(c.CC_OUTPUT_OCTETS, self.output_octets))
        if self.service_specific_units is not None:
            avps.append(Avp.of_u64(c.CC_SERVICE_SPECIFIC_UNITS, self.service_specific_units))
        if self.reporting_reason is not None:
            avps.append(Avp.of_i32(c.REPORTING_REASON, self.reporting_reason, G))
        return Avp.of_group(code, avps)


@dataclass(init=False)       # an __init__ of its own: see Units
class Mscc:
    """One Multiple-Services-Credit-Control, in a CCR or a CCA."""

    rating_group: int | None
    service_identifiers: list[int]
    requested: Units | None
    used: list[Units]
    granted: Units | None
    validity_time: int | None
    result_code: int | None
    final_unit_action: int | None
    reporting_reason: int | None
    time_quota_threshold: int | None
    volume_quota_threshold: int | None
    quota_holding_time: int | None

    def __init__(self, rating_group: int | None = None,
                 service_identifiers: list[int] | None = None,
                 requested: Units | None = None, used: list[Units] | None = None,
                 granted: Units | None = None, validity_time: int | None = None,
                 result_code: int | None = None, final_unit_action: int | None = None,
                 reporting_reason: int | None = None,
                 time_quota_threshold: int | None = None,
                 volume_quota_threshold: int | None = None,
                 quota_holding_time: int | None = None) -> None:
        self.rating_group = rating_group
        self.service_identifiers = [] if service_identifiers is None else service_identifiers
        self.requested = requested
        self.used = [] if used is None else used
        self.granted = granted
        self.validity_time = validity_time
        self.result_code = result_code
        self.final_unit_action = final_unit_action
        self.reporting_reason = reporting_reason
        self.time_quota_threshold = time_quota_threshold
        self.volume_quota_threshold = volume_quota_threshold
        self.quota_holding_time = quota_holding_time

    @staticmethod
    def from_avp(avp: Avp, strict: bool) -> Mscc:
        """Read the grouped AVP."""
        m = Mscc()
        for child in avp.children():
            code = child.code
            if child.vendor == G:
                if code == c.REPORTING_REASON:
                    m.reporting_reason = child.i32()
                elif code == c.TIME_QUOTA_THRESHOLD:
                    m.time_quota_threshold = child.u32()
                elif code == c.VOLUME_QUOTA_THRESHOLD:
                    m.volume_quota_threshold = child.u32()
                elif code == c.QUOTA_HOLDING_TIME:
                    m.quota_holding_time = child.u32()
                else:
                    unknown(child, strict)
            elif child.vendor:
                unknown(child, strict)
            elif code == c.RATING_GROUP:
                m.rating_group = child.u32()
            elif code == c.SERVICE_IDENTIFIER:
                m.service_identifiers.append(child.u32())
            elif code == c.REQUESTED_SERVICE_UNIT:
                m.requested = Units.from_avp(child, strict)
            elif code == c.USED_SERVICE_UNIT:
                m.used.append(Units.from_avp(child, strict))
            elif code == c.GRANTED_SERVICE_UNIT:
                m.granted = Units.from_avp(child, strict)
            elif code == c.VALIDITY_TIME:
                m.validity_time = child.u32()
            elif code == c.RESULT_CODE:
                m.result_code = child.u32()
            elif code == c.FINAL_UNIT_INDICATION:
                for part in child.children():
                    if part.code == c.FINAL_UNIT_ACTION and not part.vendor:
                        m.final_unit_action = enum(part)
                    else:
                        unknown(part, strict)
            else:
                unknown(child, strict)
        return m

    def to_avp(self) -> Avp:
        """As the grouped AVP (the order of RFC 8506 §8.16, then the 3GPP AVPs)."""
        avps: list[Avp] = []
        if self.granted is not None:
            avps.append(self.granted.to_avp(c.GRANTED_SERVICE_UNIT))
        if self.requested is not None:
            avps.append(self.requested.to_avp(c.REQUESTED_SERVICE_UNIT))
        avps += [u.to_avp(c.USED_SERVICE_UNIT) for u in self.used]
        avps += [Avp.of_u32(c.SERVICE_IDENTIFIER, s) for s in self.service_identifiers]
        if self.rating_group is not None:
            avps.append(Avp.of_u32(c.RATING_GROUP, self.rating_group))
        if self.validity_time is not None:
            avps.append(Avp.of_u32(c.VALIDITY_TIME, self.validity_time))
        if self.result_code is not None:
            avps.append(Avp.of_u32(c.RESULT_CODE, self.result_code))
        if self.final_unit_action is not None:
            avps.append(Avp.of_group(c.FINAL_UNIT_INDICATION, [
                Avp.of_i32(c.FINAL_UNIT_ACTION, self.final_unit_action)]))
        if self.time_quota_threshold is not None:
            avps.append(Avp.of_u32(c.TIME_QUOTA_THRESHOLD, self.time_quota_threshold, G))
        if self.volume_quota_threshold is not None:
            avps.append(Avp.of_u32(c.VOLUME_QUOTA_THRESHOLD, self.volume_quota_threshold, G))
        if self.quota_holding_time is not None:
            avps.append(Avp.of_u32(c.QUOTA_HOLDING_TIME, self.quota_holding_time, G))
        if self.reporting_reason is not None:
            avps.append(Avp.of_i32(c.REPORTING_REASON, self.reporting_reason, G))
        return Avp.of_group(c.MULTIPLE_SERVICES_CREDIT_CONTROL, avps)


@dataclass
class Ccr:
    """A Credit-Control-Request."""

    session_id: str
    origin_host: str
    origin_realm: str
    destination_realm: str
    service_context_id: str
    request_type: int
    request_number: int
    auth_application_id: int = c.APP_CREDIT_CONTROL
    destination_host: str | None = None
    user_name: str | None = None
    origin_state_id: int | None = None
    event_timestamp: int | None = None       # Diameter Time: seconds since 1900
    subscription_ids: list[tuple[int, str]] = field(default_factory=list)
    termination_cause: int | None = None
    multiple_services_indicator: int | None = None
    mscc: list[Mscc] = field(default_factory=list)
    service_information: Avp | None = None   # passed through, never read
    route_records: list[str] = field(default_factory=list)

    def subscriber(self, kinds: tuple[int, ...] = ()) -> str | None:
        """The first Subscription-Id-Data (of one of `kinds`, when given)."""
        for kind, data in self.subscription_ids:
            if not kinds or kind in kinds:
                return data
        return None

    @staticmethod
    def from_message(msg: Message, strict: bool = True) -> Ccr:
        """Read a CCR (5005 when Session-Id, Origin-*, Destination-Realm, Auth-Application-Id,
        Service-Context-Id, CC-Request-Type or -Number is missing)."""
        v = Ccr("", "", "", "", "", 0, -1, -1)
        for avp in msg.avps:
            code = avp.code
            if avp.vendor:
                if avp.vendor == G and code == c.SERVICE_INFORMATION:
                    check_group(avp, strict)
                    v.service_information = avp
                else:
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
            elif code == c.SERVICE_CONTEXT_ID:
                v.service_context_id = avp.utf8()
            elif code == c.CC_REQUEST_TYPE:
                v.request_type = enum(avp)
            elif code == c.CC_REQUEST_NUMBER:
                v.request_number = avp.u32()
            elif code == c.USER_NAME:
                v.user_name = avp.utf8()
            elif code == c.ORIGIN_STATE_ID:
                v.origin_state_id = avp.u32()
            elif code == c.EVENT_TIMESTAMP:
                v.event_timestamp = avp.u32()
            elif code == c.SUBSCRIPTION_ID:
                v.subscription_ids.append(_subscription(avp, strict))
            elif code == c.TERMINATION_CAUSE:
                v.termination_cause = avp.i32()
            elif code == c.MULTIPLE_SERVICES_INDICATOR:
                v.multiple_services_indicator = enum(avp)
            elif code == c.MULTIPLE_SERVICES_CREDIT_CONTROL:
                v.mscc.append(Mscc.from_avp(avp, strict))
            elif code == c.ROUTE_RECORD:
                v.route_records.append(identity(avp))
            elif code != c.PROXY_INFO:
                unknown(avp, strict)
        for value, name, code in ((v.session_id, "Session-Id", c.SESSION_ID),
                                  (v.origin_host, "Origin-Host", c.ORIGIN_HOST),
                                  (v.origin_realm, "Origin-Realm", c.ORIGIN_REALM),
                                  (v.destination_realm, "Destination-Realm",
                                   c.DESTINATION_REALM),
                                  (v.service_context_id, "Service-Context-Id",
                                   c.SERVICE_CONTEXT_ID)):
            if not value:
                raise missing(name, code)
        if msg.find(c.AUTH_APPLICATION_ID) is None:
            raise missing("Auth-Application-Id", c.AUTH_APPLICATION_ID)
        if v.request_type < 0:
            raise missing("CC-Request-Type", c.CC_REQUEST_TYPE)
        if v.request_number < 0:
            raise missing("CC-Request-Number", c.CC_REQUEST_NUMBER)
        return v

    def to_message(self, hop_by_hop: int, end_to_end: int, retransmit: bool = False) -> Message:
        """As a request message (T bit when `retransmit`)."""
        avps = origin(self.origin_host, self.origin_realm)
        avps.append(Avp.of_str(c.DESTINATION_REALM, self.destination_realm))
        avps.append(Avp.of_u32(c.AUTH_APPLICATION_ID, self.auth_application_id))
        avps.append(Avp.of_str(c.SERVICE_CONTEXT_ID, self.service_context_id))
        avps.append(Avp.of_i32(c.CC_REQUEST_TYPE, self.request_type))
        avps.append(Avp.of_u32(c.CC_REQUEST_NUMBER, self.request_number))
        if self.destination_host is not None:
            avps.append(Avp.of_str(c.DESTINATION_HOST, self.destination_host))
        if self.user_name is not None:
            avps.append(Avp.of_str(c.USER_NAME, self.user_name))
        if self.origin_state_id is not None:
            avps.append(Avp.of_u32(c.ORIGIN_STATE_ID, self.origin_state_id))
        if self.event_timestamp is not None:
            avps.append(Avp.of_u32(c.EVENT_TIMESTAMP, self.event_timestamp))
        for kind, data in self.subscription_ids:
            avps.append(Avp.of_group(c.SUBSCRIPTION_ID, [
                Avp.of_i32(c.SUBSCRIPTION_ID_TYPE, kind),
                Avp.of_str(c.SUBSCRIPTION_ID_DATA, data)]))
        if self.termination_cause is not None:
            avps.append(Avp.of_i32(c.TERMINATION_CAUSE, self.termination_cause))
        if self.multiple_services_indicator is not None:
            avps.append(Avp.of_i32(c.MULTIPLE_SERVICES_INDICATOR,
                                   self.multiple_services_indicator))
        avps += [m.to_avp() for m in self.mscc]
        avps += [Avp.of_str(c.ROUTE_RECORD, r) for r in self.route_records]
        if self.service_information is not None:
            avps.append(self.service_information)
        flags = c.FLAG_REQUEST | c.FLAG_PROXIABLE | (c.FLAG_RETRANSMIT if retransmit else 0)
        return Message(c.CMD_CREDIT_CONTROL, flags, c.APP_CREDIT_CONTROL, hop_by_hop,
                       end_to_end, session_first(self.session_id, avps))


def _subscription(avp: Avp, strict: bool) -> tuple[int, str]:
    kind: int | None = None
    data: str | None = None
    for child in avp.children():
        if child.code == c.SUBSCRIPTION_ID_TYPE and not child.vendor:
            kind = enum(child)
        elif child.code == c.SUBSCRIPTION_ID_DATA and not child.vendor:
            data = child.utf8()
        else:
            unknown(child, strict)
    if kind is None:
        raise missing("Subscription-Id-Type", c.SUBSCRIPTION_ID_TYPE)
    if data is None:
        raise missing("Subscription-Id-Data", c.SUBSCRIPTION_ID_DATA)
    return kind, data


@dataclass
class Cca:
    """A Credit-Control-Answer."""

    session_id: str
    result_code: int
    origin_host: str
    origin_realm: str
    request_type: int
    request_number: int
    auth_application_id: int = c.APP_CREDIT_CONTROL
    mscc: list[Mscc] = field(default_factory=list)
    cc_session_failover: int | None = None
    credit_control_failure_handling: int | None = None
    error_message: str | None = None
    failed_avp: Avp | None = None
    origin_state_id: int | None = None

    def answer(self, ccr: Message) -> Message:
        """As the answer to the request `ccr` (Proxy-Info echoed)."""
        avps = [Avp.of_u32(c.RESULT_CODE, self.result_code)]
        avps += origin(self.origin_host, self.origin_realm)
        avps.append(Avp.of_u32(c.AUTH_APPLICATION_ID, self.auth_application_id))
        avps.append(Avp.of_i32(c.CC_REQUEST_TYPE, self.request_type))
        avps.append(Avp.of_u32(c.CC_REQUEST_NUMBER, self.request_number))
        if self.cc_session_failover is not None:
            avps.append(Avp.of_i32(c.CC_SESSION_FAILOVER, self.cc_session_failover))
        avps += [m.to_avp() for m in self.mscc]
        if self.credit_control_failure_handling is not None:
            avps.append(Avp.of_i32(c.CREDIT_CONTROL_FAILURE_HANDLING,
                                   self.credit_control_failure_handling))
        if self.error_message:
            avps.append(Avp.of_str(c.ERROR_MESSAGE, self.error_message, flags=0))
        if self.failed_avp is not None:
            avps.append(Avp.of_group(c.FAILED_AVP, [self.failed_avp]))
        if self.origin_state_id is not None:
            avps.append(Avp.of_u32(c.ORIGIN_STATE_ID, self.origin_state_id))
        return answer_to(ccr, session_first(self.session_id, avps),
                         error=3000 <= self.result_code < 4000)

    @staticmethod
    def from_message(msg: Message, strict: bool = False) -> Cca:
        """Read a CCA (a client's view; lenient by default)."""
        v = Cca("", 0, "", "", 0, 0)
        for avp in msg.avps:
            code = avp.code
            if avp.vendor:
                unknown(avp, strict)
            elif code == c.SESSION_ID:
                v.session_id = avp.utf8()
            elif code == c.RESULT_CODE:
                v.result_code = avp.u32()
            elif code == c.ORIGIN_HOST:
                v.origin_host = identity(avp)
            elif code == c.ORIGIN_REALM:
                v.origin_realm = identity(avp)
            elif code == c.AUTH_APPLICATION_ID:
                v.auth_application_id = avp.u32()
            elif code == c.CC_REQUEST_TYPE:
                v.request_type = avp.i32()
            elif code == c.CC_REQUEST_NUMBER:
                v.request_number = avp.u32()
            elif code == c.CC_SESSION_FAILOVER:
                v.cc_session_failover = avp.i32()
            elif code == c.MULTIPLE_SERVICES_CREDIT_CONTROL:
                v.mscc.append(Mscc.from_avp(avp, strict))
            elif code == c.CREDIT_CONTROL_FAILURE_HANDLING:
                v.credit_control_failure_handling = avp.i32()
            elif code == c.ERROR_MESSAGE:
                v.error_message = avp.utf8()
            elif code == c.FAILED_AVP:
                kids = avp.children()
                v.failed_avp = kids[0] if kids else None
            elif code == c.ORIGIN_STATE_ID:
                v.origin_state_id = avp.u32()
            elif code != c.PROXY_INFO:
                unknown(avp, strict)
        if not v.result_code:
            raise missing("Result-Code", c.RESULT_CODE)
        return v


def request_type_name(kind: int) -> str:
    """"INITIAL", "UPDATE", "TERMINATION", "EVENT" (or the number)."""
    names = {1: "INITIAL", 2: "UPDATE", 3: "TERMINATION", 4: "EVENT"}
    return names.get(kind, str(kind))


__all__ = ["AvpError", "Cca", "Ccr", "Mscc", "Units", "request_type_name"]
