"""The Diameter codec against an independent encoder (python-diameter), and round trips.

python-diameter builds each message; our codec decodes it, reads the values through the
typed views, and re-encodes it byte for byte. The other way, python-diameter decodes
what our views build and finds the same values (and its plain, uninterpreted decode
re-encodes our bytes unchanged).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cc_diameter as d
from cc_diameter import codes as c
from cc_diameter.codec import Avp, Message, decode_avps, encode_avp

pd = pytest.importorskip("diameter.message")      # python-diameter
from diameter.message import Message as PdMessage  # noqa: E402
from diameter.message.avp import Avp as PdAvp  # noqa: E402
from diameter.message.avp.grouped import (  # noqa: E402
    FinalUnitIndication,
    GrantedServiceUnit,
    MultipleServicesCreditControl,
    ProxyInfo,
    RequestedServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
    VendorSpecificApplicationId,
)
from diameter.message.commands import (  # noqa: E402
    CapabilitiesExchangeAnswer,
    CapabilitiesExchangeRequest,
    CreditControlAnswer,
    CreditControlRequest,
    DeviceWatchdogAnswer,
    DeviceWatchdogRequest,
    DisconnectPeerAnswer,
    DisconnectPeerRequest,
    ReAuthAnswer,
    ReAuthRequest,
)


def _ids(msg: PdMessage, app: int = 0) -> bytes:
    msg.header.hop_by_hop_identifier = 0x11223344
    msg.header.end_to_end_identifier = 0x55667788
    msg.header.application_id = app
    return bytes(msg.as_bytes())


def _same_bytes(raw: bytes) -> Message:
    msg = d.decode(raw)
    assert d.encode(msg) == raw
    return msg


def _pd_ccr(kind: int, number: int) -> CreditControlRequest:
    ccr = CreditControlRequest()
    ccr.session_id = "pgw.example;1234;5678"
    ccr.origin_host = b"pgw.example"
    ccr.origin_realm = b"example"
    ccr.destination_realm = b"ocs.example"
    ccr.auth_application_id = 4
    ccr.service_context_id = "32251@3gpp.org"
    ccr.cc_request_type = kind
    ccr.cc_request_number = number
    ccr.subscription_id = [SubscriptionId(subscription_id_type=0, subscription_id_data="4670"),
                           SubscriptionId(subscription_id_type=1, subscription_id_data="2400")]
    ccr.multiple_services_indicator = 1
    ccr.proxy_info = [ProxyInfo(proxy_host=b"dra.example", proxy_state=b"\x01\x02")]
    return ccr


def test_ccr_initial_from_python_diameter() -> None:
    ccr = _pd_ccr(1, 0)
    ccr.multiple_services_credit_control = [
        MultipleServicesCreditControl(rating_group=10, service_identifier=[1, 2],
                                      requested_service_unit=RequestedServiceUnit(
                                          cc_total_octets=5_000_000_000)),
        MultipleServicesCreditControl(rating_group=20,
                                      requested_service_unit=RequestedServiceUnit()),
    ]
    msg = _same_bytes(_ids(ccr, 4))
    assert msg.is_request and msg.code == c.CMD_CREDIT_CONTROL and msg.app_id == 4
    assert (msg.hop_by_hop, msg.end_to_end) == (0x11223344, 0x55667788)
    v = d.Ccr.from_message(msg)
    assert v.session_id == "pgw.example;1234;5678"
    assert (v.origin_host, v.origin_realm, v.destination_realm) == (
        "pgw.example", "example", "ocs.example")
    assert (v.request_type, v.request_number) == (c.INITIAL_REQUEST, 0)
    assert v.subscription_ids == [(0, "4670"), (1, "2400")]
    assert v.subscriber((c.END_USER_IMSI,)) == "2400"
    assert v.multiple_services_indicator == 1
    assert [m.rating_group for m in v.mscc] == [10, 20]
    assert v.mscc[0].service_identifiers == [1, 2]
    assert v.mscc[0].requested == d.Units(total_octets=5_000_000_000)
    assert v.mscc[1].requested == d.Units()              # empty RSU: the default quota


def test_ccr_update_with_used_units_and_3gpp_avps() -> None:
    ccr = _pd_ccr(2, 1)
    ccr.multiple_services_credit_control = [MultipleServicesCreditControl(
        rating_group=10,
        requested_service_unit=RequestedServiceUnit(cc_time=60),
        used_service_unit=[UsedServiceUnit(cc_time=42, cc_input_octets=100,
                                           cc_output_octets=200, cc_total_octets=300,
                                           cc_service_specific_units=7,
                                           reporting_reason=2)],
        time_quota_threshold=5, volume_quota_threshold=1000, quota_holding_time=30,
        reporting_reason=[3])]
    ccr.termination_cause = 1
    v = d.Ccr.from_message(_same_bytes(_ids(ccr, 4)))
    m = v.mscc[0]
    assert m.requested == d.Units(time=60)
    assert m.used == [d.Units(time=42, total_octets=300, input_octets=100, output_octets=200,
                              service_specific_units=7, reporting_reason=2)]
    assert (m.time_quota_threshold, m.volume_quota_threshold, m.quota_holding_time,
            m.reporting_reason) == (5, 1000, 30, 3)
    assert v.termination_cause == 1


def test_service_information_passes_through_uninterpreted() -> None:
    ccr = _pd_ccr(1, 0)
    inner = PdAvp.new(c.SUBSCRIPTION_ID_DATA, value="x")
    si = PdAvp.new(c.SERVICE_INFORMATION, c.VENDOR_3GPP, value=[inner])
    ccr.append_avp(si)
    raw = _ids(ccr, 4)
    v = d.Ccr.from_message(_same_bytes(raw))
    assert v.service_information is not None
    assert encode_avp(v.service_information) == bytes(si.as_bytes())
    again = d.encode(v.to_message(0x11223344, 0x55667788))
    assert d.Ccr.from_message(d.decode(again)).service_information == v.service_information


def test_cca_from_python_diameter() -> None:
    cca = CreditControlAnswer()
    cca.session_id = "pgw.example;1234;5678"
    cca.result_code = 2001
    cca.origin_host = b"ocs.example"
    cca.origin_realm = b"example"
    cca.auth_application_id = 4
    cca.cc_request_type = 1
    cca.cc_request_number = 0
    cca.multiple_services_credit_control = [
        MultipleServicesCreditControl(rating_group=10, result_code=2001, validity_time=30,
                                      granted_service_unit=GrantedServiceUnit(
                                          cc_total_octets=1000)),
        MultipleServicesCreditControl(rating_group=20, result_code=4012,
                                      final_unit_indication=FinalUnitIndication(
                                          final_unit_action=0))]
    v = d.Cca.from_message(_same_bytes(_ids(cca, 4)))
    assert (v.result_code, v.request_type, v.request_number) == (2001, 1, 0)
    assert v.mscc[0].granted == d.Units(total_octets=1000)
    assert (v.mscc[0].validity_time, v.mscc[0].result_code) == (30, 2001)
    assert (v.mscc[1].result_code, v.mscc[1].final_unit_action) == (4012, c.FUA_TERMINATE)


def test_peer_messages_from_python_diameter() -> None:
    cer = CapabilitiesExchangeRequest()
    cer.origin_host = b"pgw.example"
    cer.origin_realm = b"example"
    cer.host_ip_address = ["10.0.0.1"]
    cer.vendor_id = 10415
    cer.product_name = "gw"
    cer.origin_state_id = 9
    cer.auth_application_id = [4]
    cer.vendor_specific_application_id = [VendorSpecificApplicationId(
        vendor_id=10415, auth_application_id=4)]
    cap = d.Capabilities.from_message(_same_bytes(_ids(cer)))
    assert (cap.origin_host, cap.host_ip_addresses, cap.vendor_id) == (
        "pgw.example", ["10.0.0.1"], 10415)
    assert cap.applications() == {4} and cap.origin_state_id == 9

    cea = CapabilitiesExchangeAnswer()
    cea.result_code = 2001
    cea.origin_host = b"ocs"
    cea.origin_realm = b"example"
    cea.host_ip_address = ["127.0.0.1"]
    cea.vendor_id = 0
    cea.product_name = "x"
    cea.auth_application_id = [4]
    assert d.Capabilities.from_message(_same_bytes(_ids(cea))).result_code == 2001

    for cls, extra in ((DeviceWatchdogRequest, {}), (DeviceWatchdogAnswer, {"result_code": 2001}),
                       (DisconnectPeerRequest, {"disconnect_cause": 2}),
                       (DisconnectPeerAnswer, {"result_code": 2001})):
        pm = cls()
        pm.origin_host = b"pgw.example"
        pm.origin_realm = b"example"
        for name, value in extra.items():
            setattr(pm, name, value)
        view = d.PeerMessage.from_message(_same_bytes(_ids(pm)))
        assert view.origin_host == "pgw.example"
        assert view.disconnect_cause == extra.get("disconnect_cause")
        assert view.result_code == extra.get("result_code")


def test_rar_and_raa_from_python_diameter() -> None:
    rar = ReAuthRequest()
    rar.session_id = "s;1"
    rar.origin_host = b"ocs"
    rar.origin_realm = b"example"
    rar.destination_realm = b"example"
    rar.destination_host = b"pgw"
    rar.auth_application_id = 4
    rar.re_auth_request_type = 0
    v = d.Rar.from_message(_same_bytes(_ids(rar, 4)))
    assert (v.session_id, v.destination_host, v.re_auth_request_type) == ("s;1", "pgw", 0)
    raa = ReAuthAnswer()
    raa.session_id = "s;1"
    raa.result_code = 2002
    raa.origin_host = b"pgw"
    raa.origin_realm = b"example"
    assert d.Raa.from_message(_same_bytes(_ids(raa, 4))).result_code == 2002


# ------------------------------------------------------------------ ours -> python-diameter

def test_our_ccr_read_by_python_diameter() -> None:
    ccr = d.Ccr("gw;1", "gw", "realm", "ocs", "32251@3gpp.org", 2, 3,
                subscription_ids=[(1, "alice")],
                mscc=[d.Mscc(rating_group=10, requested=d.Units(total_octets=10),
                             used=[d.Units(total_octets=7, reporting_reason=2)],
                             quota_holding_time=5)])
    raw = d.encode(ccr.to_message(1, 2, retransmit=True))
    theirs = PdMessage.from_bytes(raw)
    assert isinstance(theirs, CreditControlRequest)
    assert theirs.header.is_retransmit and theirs.header.application_id == 4
    assert (theirs.session_id, theirs.cc_request_type, theirs.cc_request_number) == ("gw;1", 2, 3)
    assert theirs.subscription_id[0].subscription_id_data == "alice"
    m = theirs.multiple_services_credit_control[0]
    assert (m.rating_group, m.requested_service_unit.cc_total_octets) == (10, 10)
    assert m.used_service_unit[0].cc_total_octets == 7
    assert m.used_service_unit[0].reporting_reason == 2
    assert m.quota_holding_time == 5
    assert bytes(PdMessage.from_bytes(raw, plain_msg=True).as_bytes()) == raw


def test_our_cca_and_rar_read_by_python_diameter() -> None:
    ccr = d.decode(d.encode(d.Ccr("gw;1", "gw", "r", "ocs", "ctx", 1, 0).to_message(5, 6)))
    cca = d.Cca("gw;1", 2001, "ocs", "r", 1, 0, mscc=[
        d.Mscc(rating_group=10, granted=d.Units(time=60), validity_time=30, result_code=2001,
               final_unit_action=c.FUA_TERMINATE)])
    raw = d.encode(cca.answer(ccr))
    theirs = PdMessage.from_bytes(raw)
    assert isinstance(theirs, CreditControlAnswer)
    assert (theirs.header.hop_by_hop_identifier, theirs.header.end_to_end_identifier) == (5, 6)
    m = theirs.multiple_services_credit_control[0]
    assert (m.granted_service_unit.cc_time, m.validity_time, m.result_code) == (60, 30, 2001)
    assert m.final_unit_indication.final_unit_action == 0
    assert bytes(PdMessage.from_bytes(raw, plain_msg=True).as_bytes()) == raw
    rar = d.encode(d.Rar("gw;1", "ocs", "r", "r", "gw").to_message(8, 9))
    theirs_rar = PdMessage.from_bytes(rar)
    assert isinstance(theirs_rar, ReAuthRequest)
    assert (theirs_rar.session_id, theirs_rar.re_auth_request_type) == ("gw;1", 0)


# ------------------------------------------------------------------ the codec's rules

def test_vendor_avp_and_padding() -> None:
    avp = Avp.of_u32(c.QUOTA_HOLDING_TIME, 7, c.VENDOR_3GPP)
    raw = encode_avp(avp)
    assert raw == bytes.fromhex("00000367" "c0" "000010" "000028af" "00000007")
    odd = encode_avp(Avp.of_str(c.SESSION_ID, "abcde"))
    assert odd == bytes.fromhex("00000107" "40" "00000d") + b"abcde\0\0\0"
    assert decode_avps(odd, 0, len(odd)) == [Avp.of_str(c.SESSION_ID, "abcde")]


def test_last_padding_may_be_missing() -> None:
    odd = encode_avp(Avp.of_str(c.SESSION_ID, "abcde"))[:-3]
    assert decode_avps(odd, 0, len(odd))[0].utf8() == "abcde"


@pytest.mark.parametrize("raw", [
    bytes.fromhex("00000107" "40" "000007"),            # length below the header
    bytes.fromhex("00000107" "40" "000020") + b"abcd",  # length past the end
    bytes.fromhex("00000107" "c0" "00000c"),            # V bit, vendor cut off
    b"\0\0\0",                                          # stray bytes
])
def test_bad_avp_lengths_are_5014(raw: bytes) -> None:
    with pytest.raises(d.AvpError) as info:
        decode_avps(raw, 0, len(raw))
    assert info.value.result_code == c.DIAMETER_INVALID_AVP_LENGTH


def test_typed_reads_check_lengths_and_values() -> None:
    with pytest.raises(d.AvpError) as info:
        Avp(c.RATING_GROUP, b"\0\0\0").u32()
    assert info.value.result_code == c.DIAMETER_INVALID_AVP_LENGTH
    with pytest.raises(d.AvpError) as info:
        Avp(c.SESSION_ID, b"\xff").utf8()
    assert info.value.result_code == c.DIAMETER_INVALID_AVP_VALUE
    assert Avp(c.HOST_IP_ADDRESS, b"\0\x02" + bytes(range(16))).address() == \
        "0001:0203:0405:0607:0809:0a0b:0c0d:0e0f"


def _ccr_message(extra: list[Avp], mscc_extra: list[Avp] | None = None) -> Message:
    msg = d.Ccr("s", "gw", "r", "ocs", "ctx", 1, 0,
                mscc=[d.Mscc(rating_group=1)]).to_message(1, 1)
    if mscc_extra is not None:
        mscc = msg.find(c.MULTIPLE_SERVICES_CREDIT_CONTROL)
        assert mscc is not None
        mscc.data += b"".join(encode_avp(a) for a in mscc_extra)
    msg.avps += extra
    return d.decode(d.encode(msg))


def test_unknown_avps_ignored_without_m_bit_refused_with_it() -> None:
    plain = Avp(9999, b"x", flags=0)
    assert d.Ccr.from_message(_ccr_message([plain])).session_id == "s"
    vendor = Avp(1, b"x", flags=0, vendor=12345)
    assert d.Ccr.from_message(_ccr_message([vendor], [plain])).mscc[0].rating_group == 1
    must = Avp(9999, b"x")
    for msg in (_ccr_message([must]), _ccr_message([], [must])):
        with pytest.raises(d.AvpError) as info:
            d.Ccr.from_message(msg)
        assert info.value.result_code == c.DIAMETER_AVP_UNSUPPORTED
        assert info.value.failed == must
        assert d.Ccr.from_message(msg, strict=False).session_id == "s"   # the switch


def test_missing_and_invalid_avps() -> None:
    msg = _ccr_message([])
    msg.avps = [a for a in msg.avps if a.code != c.CC_REQUEST_NUMBER]
    with pytest.raises(d.AvpError) as info:
        d.Ccr.from_message(msg)
    assert info.value.result_code == c.DIAMETER_MISSING_AVP
    assert info.value.failed is not None and info.value.failed.code == c.CC_REQUEST_NUMBER
    msg = _ccr_message([])
    for avp in msg.avps:
        if avp.code == c.CC_REQUEST_TYPE:
            avp.data = b"\0\0\0\x09"
    with pytest.raises(d.AvpError) as info:
        d.Ccr.from_message(msg)
    assert info.value.result_code == c.DIAMETER_INVALID_AVP_VALUE


def test_answers_echo_proxy_info_and_clear_request_bits() -> None:
    ccr = _pd_ccr(1, 0)
    req = d.decode(_ids(ccr, 4))
    req.flags |= c.FLAG_RETRANSMIT
    cca = d.Cca("pgw.example;1234;5678", 5030, "ocs", "r", 1, 0).answer(req)
    assert cca.flags == c.FLAG_PROXIABLE
    assert cca.avps[0].code == c.SESSION_ID
    assert cca.find_all(c.PROXY_INFO) == req.find_all(c.PROXY_INFO)
    err = d.fields.error_answer(req, c.DIAMETER_COMMAND_UNSUPPORTED, "ocs", "r", "no")
    assert err.flags & c.FLAG_ERROR and d.fields.result_code(err) == 3001


# ------------------------------------------------------------------ round trips

_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_opt32 = st.none() | _u32
_opt64 = st.none() | _u64
_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
_ident = st.text("abcdefghijklmnopqrstuvwxyz.-0123456789", min_size=1, max_size=30)
_units = st.builds(d.Units, time=_opt32, total_octets=_opt64, input_octets=_opt64,
                   output_octets=_opt64, service_specific_units=_opt64,
                   reporting_reason=st.none() | st.integers(0, 10))
_mscc = st.builds(d.Mscc, rating_group=_opt32, service_identifiers=st.lists(_u32, max_size=3),
                  requested=st.none() | _units, used=st.lists(_units, max_size=2),
                  granted=st.none() | _units, validity_time=_opt32, result_code=_opt32,
                  final_unit_action=st.none() | st.sampled_from([0, 1, 2]),
                  reporting_reason=st.none() | st.integers(0, 10),
                  time_quota_threshold=_opt32, volume_quota_threshold=_opt32,
                  quota_holding_time=_opt32)


@settings(max_examples=60, deadline=None)
@given(sid=_text, host=_ident, realm=_ident, kind=st.sampled_from([1, 2, 3, 4]),
       number=_u32, subs=st.lists(st.tuples(st.sampled_from([0, 1, 2, 3, 4]), _text),
                                  max_size=3),
       mscc=st.lists(_mscc, max_size=3), retransmit=st.booleans())
def test_ccr_round_trip(sid: str, host: str, realm: str, kind: int, number: int,
                        subs: list[tuple[int, str]], mscc: list[d.Mscc],
                        retransmit: bool) -> None:
    ccr = d.Ccr(sid, host, realm, realm, "32251@3gpp.org", kind, number,
                subscription_ids=subs, mscc=mscc)
    msg = ccr.to_message(7, 8, retransmit)
    raw = d.encode(msg)
    assert len(raw) % 4 == 0
    again = d.decode(raw)
    assert again == msg and again.is_retransmit == retransmit
    assert d.Ccr.from_message(again) == ccr
    assert bytes(PdMessage.from_bytes(raw, plain_msg=True).as_bytes()) == raw


def _trees(codes: st.SearchStrategy[int], vendors: list[int]) -> st.SearchStrategy[list[Avp]]:
    leaf = st.builds(lambda code, flags, vendor, data: Avp(code, data, flags, vendor),
                     codes, st.sampled_from([0, 0x40, 0x20, 0x60]), st.sampled_from(vendors),
                     st.binary(max_size=20))
    tree = st.recursive(leaf, lambda inner: st.builds(Avp.of_group, codes,
                                                      st.lists(inner, max_size=3)),
                        max_leaves=10)
    return st.lists(tree, min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(avps=_trees(_u32, [0, 0, 10415]), flags=st.sampled_from([0, 0x80, 0xC0, 0x20, 0x90]),
       code=st.integers(0, 2**24 - 1))
def test_any_avp_tree_round_trips(avps: list[Avp], flags: int, code: int) -> None:
    msg = Message(code, flags, 4, 1, 2, avps)
    assert d.decode(d.encode(msg)) == msg


# python-diameter checks the values of the AVPs in its own dictionary even in a plain
# decode: codes far above any it knows, and a vendor id nobody has, keep them opaque
@settings(max_examples=40, deadline=None)
@given(avps=_trees(st.integers(3_000_000_000, 2**32 - 1), [0, 99999]))
def test_python_diameter_reads_any_avp_tree_of_ours(avps: list[Avp]) -> None:
    raw = d.encode(Message(999, 0x80, 4, 1, 2, avps))
    assert bytes(PdMessage.from_bytes(raw, plain_msg=True).as_bytes()) == raw
