"""Typed views of the base protocol's peer messages: CER/CEA, DWR/DWA, DPR/DPA.

Each view has `from_message` (checks what it reads: 5005 for a required AVP missing, 5001
for an unknown AVP with the M bit when `strict`) and `to_message` (the AVPs in the order
of the RFC's grammar). Views of requests take the header ids in `to_message`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import codes as c
from .codec import Avp, Message
from .fields import answer_to, enum, identity, missing, origin, unknown


@dataclass
class VendorApp:
    """A Vendor-Specific-Application-Id: the vendor and the auth or acct application."""

    vendor_id: int
    auth_application_id: int | None = None
    acct_application_id: int | None = None

    def to_avp(self) -> Avp:
        """The grouped AVP."""
        avps = [Avp.of_u32(c.VENDOR_ID, self.vendor_id)]
        if self.auth_application_id is not None:
            avps.append(Avp.of_u32(c.AUTH_APPLICATION_ID, self.auth_application_id))
        if self.acct_application_id is not None:
            avps.append(Avp.of_u32(c.ACCT_APPLICATION_ID, self.acct_application_id))
        return Avp.of_group(c.VENDOR_SPECIFIC_APPLICATION_ID, avps)

    @staticmethod
    def from_avp(avp: Avp) -> VendorApp:
        """Read the grouped AVP."""
        app = VendorApp(0)
        for child in avp.children():
            if child.vendor:
                continue
            if child.code == c.VENDOR_ID:
                app.vendor_id = child.u32()
            elif child.code == c.AUTH_APPLICATION_ID:
                app.auth_application_id = child.u32()
            elif child.code == c.ACCT_APPLICATION_ID:
                app.acct_application_id = child.u32()
        return app


@dataclass
class Capabilities:
    """The body of a CER or a CEA (a CEA adds the Result-Code and an Error-Message)."""

    origin_host: str
    origin_realm: str
    host_ip_addresses: list[str]
    vendor_id: int
    product_name: str
    origin_state_id: int | None = None
    supported_vendor_ids: list[int] = field(default_factory=list)
    auth_application_ids: list[int] = field(default_factory=list)
    acct_application_ids: list[int] = field(default_factory=list)
    vendor_specific_apps: list[VendorApp] = field(default_factory=list)
    firmware_revision: int | None = None
    result_code: int | None = None
    error_message: str | None = None

    def applications(self) -> set[int]:
        """Every application id advertised, plain or vendor-specific."""
        apps = set(self.auth_application_ids) | set(self.acct_application_ids)
        for vsa in self.vendor_specific_apps:
            for app in (vsa.auth_application_id, vsa.acct_application_id):
                if app is not None:
                    apps.add(app)
        return apps

    @staticmethod
    def from_message(msg: Message, strict: bool = True) -> Capabilities:
        """Read a CER or a CEA."""
        cap = Capabilities("", "", [], -1, "")
        for avp in msg.avps:
            code = avp.code
            if avp.vendor:
                unknown(avp, strict)
            elif code == c.ORIGIN_HOST:
                cap.origin_host = identity(avp)
            elif code == c.ORIGIN_REALM:
                cap.origin_realm = identity(avp)
            elif code == c.HOST_IP_ADDRESS:
                cap.host_ip_addresses.append(avp.address())
            elif code == c.VENDOR_ID:
                cap.vendor_id = avp.u32()
            elif code == c.PRODUCT_NAME:
                cap.product_name = avp.utf8()
            elif code == c.ORIGIN_STATE_ID:
                cap.origin_state_id = avp.u32()
            elif code == c.SUPPORTED_VENDOR_ID:
                cap.supported_vendor_ids.append(avp.u32())
            elif code == c.AUTH_APPLICATION_ID:
                cap.auth_application_ids.append(avp.u32())
            elif code == c.ACCT_APPLICATION_ID:
                cap.acct_application_ids.append(avp.u32())
            elif code == c.VENDOR_SPECIFIC_APPLICATION_ID:
                cap.vendor_specific_apps.append(VendorApp.from_avp(avp))
            elif code == c.FIRMWARE_REVISION:
                cap.firmware_revision = avp.u32()
            elif code == c.RESULT_CODE:
                cap.result_code = avp.u32()
            elif code == c.ERROR_MESSAGE:
                cap.error_message = avp.utf8()
            else:
                unknown(avp, strict)
        if not cap.origin_host:
            raise missing("Origin-Host", c.ORIGIN_HOST)
        if not cap.origin_realm:
            raise missing("Origin-Realm", c.ORIGIN_REALM)
        if not cap.host_ip_addresses:
            raise missing("Host-IP-Address", c.HOST_IP_ADDRESS)
        if cap.vendor_id < 0:
            raise missing("Vendor-Id", c.VENDOR_ID)
        return cap

    def avps(self) -> list[Avp]:
        """The AVPs in the order of the CER/CEA grammar."""
        out: list[Avp] = []
        if self.result_code is not None:
            out.append(Avp.of_u32(c.RESULT_CODE, self.result_code))
        out += origin(self.origin_host, self.origin_realm)
        out += [Avp.of_ipv4(c.HOST_IP_ADDRESS, a) for a in self.host_ip_addresses]
        out.append(Avp.of_u32(c.VENDOR_ID, self.vendor_id))
        out.append(Avp.of_str(c.PRODUCT_NAME, self.product_name, flags=0))
        if self.origin_state_id is not None:
            out.append(Avp.of_u32(c.ORIGIN_STATE_ID, self.origin_state_id))
        if self.error_message:
            out.append(Avp.of_str(c.ERROR_MESSAGE, self.error_message, flags=0))
        out += [Avp.of_u32(c.SUPPORTED_VENDOR_ID, v) for v in self.supported_vendor_ids]
        out += [Avp.of_u32(c.AUTH_APPLICATION_ID, a) for a in self.auth_application_ids]
        out += [Avp.of_u32(c.ACCT_APPLICATION_ID, a) for a in self.acct_application_ids]
        out += [v.to_avp() for v in self.vendor_specific_apps]
        if self.firmware_revision is not None:
            out.append(Avp.of_u32(c.FIRMWARE_REVISION, self.firmware_revision, flags=0))
        return out

    def request(self, hop_by_hop: int, end_to_end: int) -> Message:
        """As a CER."""
        return Message(c.CMD_CAPABILITIES_EXCHANGE, c.FLAG_REQUEST, 0, hop_by_hop,
                       end_to_end, self.avps())

    def answer(self, cer: Message) -> Message:
        """As the CEA to `cer` (set `result_code` first)."""
        return answer_to(cer, self.avps(), error=self.result_code is not None
                         and 3000 <= self.result_code < 4000)


@dataclass
class PeerMessage:
    """DWR/DWA and DPR/DPA: Origin-Host/Realm and the few AVPs they carry."""

    origin_host: str
    origin_realm: str
    origin_state_id: int | None = None
    disconnect_cause: int | None = None       # DPR
    result_code: int | None = None            # DWA, DPA
    error_message: str | None = None

    @staticmethod
    def from_message(msg: Message, strict: bool = True) -> PeerMessage:
        """Read a DWR, DWA, DPR or DPA."""
        view = PeerMessage("", "")
        for avp in msg.avps:
            code = avp.code
            if avp.vendor:
                unknown(avp, strict)
            elif code == c.ORIGIN_HOST:
                view.origin_host = identity(avp)
            elif code == c.ORIGIN_REALM:
                view.origin_realm = identity(avp)
            elif code == c.ORIGIN_STATE_ID:
                view.origin_state_id = avp.u32()
            elif code == c.DISCONNECT_CAUSE:
                view.disconnect_cause = enum(avp)
            elif code == c.RESULT_CODE:
                view.result_code = avp.u32()
            elif code == c.ERROR_MESSAGE:
                view.error_message = avp.utf8()
            else:
                unknown(avp, strict)
        if not view.origin_host:
            raise missing("Origin-Host", c.ORIGIN_HOST)
        if not view.origin_realm:
            raise missing("Origin-Realm", c.ORIGIN_REALM)
        if msg.code == c.CMD_DISCONNECT_PEER and msg.is_request \
                and view.disconnect_cause is None:
            raise missing("Disconnect-Cause", c.DISCONNECT_CAUSE)
        return view

    def avps(self) -> list[Avp]:
        """The AVPs in grammar order."""
        out: list[Avp] = []
        if self.result_code is not None:
            out.append(Avp.of_u32(c.RESULT_CODE, self.result_code))
        out += origin(self.origin_host, self.origin_realm)
        if self.disconnect_cause is not None:
            out.append(Avp.of_i32(c.DISCONNECT_CAUSE, self.disconnect_cause))
        if self.error_message:
            out.append(Avp.of_str(c.ERROR_MESSAGE, self.error_message, flags=0))
        if self.origin_state_id is not None:
            out.append(Avp.of_u32(c.ORIGIN_STATE_ID, self.origin_state_id))
        return out

    def request(self, code: int, hop_by_hop: int, end_to_end: int) -> Message:
        """As a DWR (code 280) or DPR (282)."""
        return Message(code, c.FLAG_REQUEST, 0, hop_by_hop, end_to_end, self.avps())

    def answer(self, request: Message) -> Message:
        """As the DWA or DPA to `request` (set `result_code` first)."""
        return answer_to(request, self.avps())
