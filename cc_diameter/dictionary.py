"""The AVPs this package knows: code, vendor, name, data type, and whether we set the M bit.

An AVP not in this table is "unknown": ignored without the M bit, refused with 5001
(DIAMETER_AVP_UNSUPPORTED) with it, where the caller asks for that (`views`, `strict`).
Service-Information (873/10415) is known so that it passes through uninterpreted.
"""

from __future__ import annotations

from typing import Final

from . import codes as c

# data types (RFC 6733 §4.2, §4.3)
OCTETS: Final = 1
UTF8: Final = 2
IDENTITY: Final = 3      # DiameterIdentity: ASCII, stored as str
U32: Final = 4
U64: Final = 5
I32: Final = 6
I64: Final = 7
ENUM: Final = 8          # an Integer32
GROUPED: Final = 9
ADDRESS: Final = 10      # 2-byte family + address
TIME: Final = 11         # seconds since 1900-01-01, Unsigned32

TYPE_NAMES: Final[dict[int, str]] = {
    OCTETS: "OctetString", UTF8: "UTF8String", IDENTITY: "DiameterIdentity",
    U32: "Unsigned32", U64: "Unsigned64", I32: "Integer32", I64: "Integer64",
    ENUM: "Enumerated", GROUPED: "Grouped", ADDRESS: "Address", TIME: "Time",
}


class AvpDef:
    """One dictionary entry."""

    __slots__ = ("code", "mandatory", "name", "type", "vendor")

    def __init__(self, code: int, vendor: int, name: str, type: int, mandatory: bool) -> None:
        self.code = code
        self.vendor = vendor
        self.name = name
        self.type = type
        self.mandatory = mandatory

    def __repr__(self) -> str:
        return f"AvpDef({self.name}, {self.code}/{self.vendor}, {TYPE_NAMES[self.type]})"


_G: Final = c.VENDOR_3GPP
_ENTRIES: Final[list[tuple[int, int, str, int, bool]]] = [
    # RFC 6733 base
    (c.USER_NAME, 0, "User-Name", UTF8, True),
    (c.PROXY_STATE, 0, "Proxy-State", OCTETS, True),
    (c.EVENT_TIMESTAMP, 0, "Event-Timestamp", TIME, True),
    (c.HOST_IP_ADDRESS, 0, "Host-IP-Address", ADDRESS, True),
    (c.AUTH_APPLICATION_ID, 0, "Auth-Application-Id", U32, True),
    (c.ACCT_APPLICATION_ID, 0, "Acct-Application-Id", U32, True),
    (c.VENDOR_SPECIFIC_APPLICATION_ID, 0, "Vendor-Specific-Application-Id", GROUPED, True),
    (c.SESSION_ID, 0, "Session-Id", UTF8, True),
    (c.ORIGIN_HOST, 0, "Origin-Host", IDENTITY, True),
    (c.SUPPORTED_VENDOR_ID, 0, "Supported-Vendor-Id", U32, True),
    (c.VENDOR_ID, 0, "Vendor-Id", U32, True),
    (c.FIRMWARE_REVISION, 0, "Firmware-Revision", U32, False),
    (c.RESULT_CODE, 0, "Result-Code", U32, True),
    (c.PRODUCT_NAME, 0, "Product-Name", UTF8, False),
    (c.DISCONNECT_CAUSE, 0, "Disconnect-Cause", ENUM, True),
    (c.AUTH_SESSION_STATE, 0, "Auth-Session-State", ENUM, True),
    (c.ORIGIN_STATE_ID, 0, "Origin-State-Id", U32, True),
    (c.FAILED_AVP, 0, "Failed-AVP", GROUPED, True),
    (c.PROXY_HOST, 0, "Proxy-Host", IDENTITY, True),
    (c.ERROR_MESSAGE, 0, "Error-Message", UTF8, False),
    (c.ROUTE_RECORD, 0, "Route-Record", IDENTITY, True),
    (c.DESTINATION_REALM, 0, "Destination-Realm", IDENTITY, True),
    (c.PROXY_INFO, 0, "Proxy-Info", GROUPED, True),
    (c.RE_AUTH_REQUEST_TYPE, 0, "Re-Auth-Request-Type", ENUM, True),
    (c.DESTINATION_HOST, 0, "Destination-Host", IDENTITY, True),
    (c.ERROR_REPORTING_HOST, 0, "Error-Reporting-Host", IDENTITY, False),
    (c.TERMINATION_CAUSE, 0, "Termination-Cause", ENUM, True),
    (c.ORIGIN_REALM, 0, "Origin-Realm", IDENTITY, True),
    (c.EXPERIMENTAL_RESULT, 0, "Experimental-Result", GROUPED, True),
    (c.EXPERIMENTAL_RESULT_CODE, 0, "Experimental-Result-Code", U32, True),
    (c.INBAND_SECURITY_ID, 0, "Inband-Security-Id", U32, True),
    # RFC 8506 credit control
    (c.CC_INPUT_OCTETS, 0, "CC-Input-Octets", U64, True),
    (c.CC_OUTPUT_OCTETS, 0, "CC-Output-Octets", U64, True),
    (c.CC_REQUEST_NUMBER, 0, "CC-Request-Number", U32, True),
    (c.CC_REQUEST_TYPE, 0, "CC-Request-Type", ENUM, True),
    (c.CC_SERVICE_SPECIFIC_UNITS, 0, "CC-Service-Specific-Units", U64, True),
    (c.CC_SESSION_FAILOVER, 0, "CC-Session-Failover", ENUM, True),
    (c.CC_TIME, 0, "CC-Time", U32, True),
    (c.CC_TOTAL_OCTETS, 0, "CC-Total-Octets", U64, True),
    (c.CREDIT_CONTROL_FAILURE_HANDLING, 0, "Credit-Control-Failure-Handling", ENUM, True),
    (c.FINAL_UNIT_INDICATION, 0, "Final-Unit-Indication", GROUPED, True),
    (c.GRANTED_SERVICE_UNIT, 0, "Granted-Service-Unit", GROUPED, True),
    (c.RATING_GROUP, 0, "Rating-Group", U32, True),
    (c.REQUESTED_ACTION, 0, "Requested-Action", ENUM, True),
    (c.REQUESTED_SERVICE_UNIT, 0, "Requested-Service-Unit", GROUPED, True),
    (c.SERVICE_IDENTIFIER, 0, "Service-Identifier", U32, True),
    (c.SUBSCRIPTION_ID, 0, "Subscription-Id", GROUPED, True),
    (c.SUBSCRIPTION_ID_DATA, 0, "Subscription-Id-Data", UTF8, True),
    (c.USED_SERVICE_UNIT, 0, "Used-Service-Unit", GROUPED, True),
    (c.VALIDITY_TIME, 0, "Validity-Time", U32, True),
    (c.FINAL_UNIT_ACTION, 0, "Final-Unit-Action", ENUM, True),
    (c.SUBSCRIPTION_ID_TYPE, 0, "Subscription-Id-Type", ENUM, True),
    (c.MULTIPLE_SERVICES_INDICATOR, 0, "Multiple-Services-Indicator", ENUM, True),
    (c.MULTIPLE_SERVICES_CREDIT_CONTROL, 0, "Multiple-Services-Credit-Control", GROUPED, True),
    (c.SERVICE_CONTEXT_ID, 0, "Service-Context-Id", UTF8, True),
    # 3GPP TS 32.299
    (c.TIME_QUOTA_THRESHOLD, _G, "Time-Quota-Threshold", U32, True),
    (c.VOLUME_QUOTA_THRESHOLD, _G, "Volume-Quota-Threshold", U32, True),
    (c.QUOTA_HOLDING_TIME, _G, "Quota-Holding-Time", U32, True),
    (c.REPORTING_REASON, _G, "Reporting-Reason", ENUM, True),
    (c.SERVICE_INFORMATION, _G, "Service-Information", GROUPED, True),
]

#: (code, vendor) -> entry
DICTIONARY: Final[dict[tuple[int, int], AvpDef]] = {
    (code, vendor): AvpDef(code, vendor, name, typ, m)
    for code, vendor, name, typ, m in _ENTRIES}
#: name -> entry
BY_NAME: Final[dict[str, AvpDef]] = {d.name: d for d in DICTIONARY.values()}

#: Allowed values of the Enumerated AVPs whose value we act on (others are refused, 5004).
ENUM_VALUES: Final[dict[tuple[int, int], frozenset[int]]] = {
    (c.CC_REQUEST_TYPE, 0): frozenset({1, 2, 3, 4}),
    (c.SUBSCRIPTION_ID_TYPE, 0): frozenset({0, 1, 2, 3, 4}),
    (c.FINAL_UNIT_ACTION, 0): frozenset({0, 1, 2}),
    (c.RE_AUTH_REQUEST_TYPE, 0): frozenset({0, 1}),
    (c.DISCONNECT_CAUSE, 0): frozenset({0, 1, 2}),
    (c.MULTIPLE_SERVICES_INDICATOR, 0): frozenset({0, 1}),
}


def lookup(code: int, vendor: int = 0) -> AvpDef | None:
    """The entry of an AVP, or None when it is unknown."""
    return DICTIONARY.get((code, vendor))


def known(code: int, vendor: int) -> bool:
    """True when the AVP is in the table."""
    return (code, vendor) in DICTIONARY
