"""The responder's peer state machine (RFC 6733 §5.6, RFC 3539 watchdog), with no sockets
and a clock the test passes."""

from __future__ import annotations

import pytest

import cc_diameter as d
from cc_diameter import codes as c
from cc_diameter import fields
from cc_diameter.codec import Avp, Message
from cc_diameter.peer import (
    CLOSED,
    CLOSING,
    OPEN,
    WAIT_CER,
    AnswerReceived,
    Closed,
    Opened,
    Request,
)

LOCAL = d.LocalPeer("ocs.test", "test", "127.0.0.1", origin_state_id=5)


def machine(**config: object) -> d.PeerMachine:
    return d.PeerMachine(LOCAL, d.PeerConfig(**config), now=0.0, seed=0x1234)  # type: ignore[arg-type]


def cer(host: str = "gw.test", apps: tuple[int, ...] = (4,)) -> bytes:
    cap = d.Capabilities(host, "test", ["10.0.0.1"], 10415, "gw",
                         auth_application_ids=list(apps))
    return d.encode(cap.request(1, 1))


def answers(m: d.PeerMachine) -> list[Message]:
    data = m.data_to_send()
    dec = d.MessageDecoder()
    return [d.decode(raw) for raw in dec.feed(data)]


def opened(**config: object) -> d.PeerMachine:
    m = machine(**config)
    events = m.receive_data(cer(), 1.0)
    assert len(events) == 1 and isinstance(events[0], Opened)
    [cea] = answers(m)
    assert fields.result_code(cea) == c.DIAMETER_SUCCESS
    return m


def test_capabilities_exchange() -> None:
    m = machine()
    assert m.state == WAIT_CER
    raw = cer()
    assert m.receive_data(raw[:7], 0.5) == []
    [event] = m.receive_data(raw[7:], 1.0)
    assert isinstance(event, Opened) and event.peer.origin_host == "gw.test"
    assert m.state == OPEN and m.peer_host == "gw.test"
    [cea] = answers(m)
    assert cea.code == c.CMD_CAPABILITIES_EXCHANGE and not cea.is_request
    assert (cea.hop_by_hop, cea.end_to_end) == (1, 1)
    cap = d.Capabilities.from_message(cea)
    assert (cap.result_code, cap.origin_host, cap.auth_application_ids) == (2001, "ocs.test", [4])
    assert cap.origin_state_id == 5


@pytest.mark.parametrize(("raw", "code"), [
    (cer("stranger"), c.DIAMETER_UNKNOWN_PEER),
    (cer(apps=(16777238,)), c.DIAMETER_NO_COMMON_APPLICATION),
])
def test_refused_cer(raw: bytes, code: int) -> None:
    m = machine(allowed_peers=frozenset({"gw.test"}))
    [event] = m.receive_data(raw, 1.0)
    assert isinstance(event, Closed) and m.state == CLOSED
    [cea] = answers(m)
    assert fields.result_code(cea) == code


def test_relay_application_is_common() -> None:
    m = machine()
    [event] = m.receive_data(cer(apps=(c.APP_RELAY,)), 1.0)
    assert isinstance(event, Opened)


def test_cer_missing_an_avp_is_refused_with_5005() -> None:
    msg = d.decode(cer())
    msg.avps = [a for a in msg.avps if a.code != c.HOST_IP_ADDRESS]
    m = machine()
    [event] = m.receive_data(d.encode(msg), 1.0)
    assert isinstance(event, Closed)
    assert fields.result_code(answers(m)[0]) == c.DIAMETER_MISSING_AVP


def test_anything_but_a_cer_first_closes() -> None:
    m = machine()
    dwr = d.PeerMessage("gw.test", "test").request(c.CMD_DEVICE_WATCHDOG, 1, 1)
    [event] = m.receive_data(d.encode(dwr), 1.0)
    assert isinstance(event, Closed) and "CER" in event.reason
    assert m.data_to_send() == b""


def test_no_cer_in_time_closes() -> None:
    m = machine(cer_timeout=5.0)
    assert m.tick(4.9) == []
    assert m.next_deadline(0.0) == 5.0
    [event] = m.tick(5.0)
    assert isinstance(event, Closed)


def test_the_peers_watchdog_is_answered() -> None:
    m = opened()
    dwr = d.PeerMessage("gw.test", "test").request(c.CMD_DEVICE_WATCHDOG, 77, 78)
    assert m.receive_data(d.encode(dwr), 2.0) == []
    [dwa] = answers(m)
    assert (dwa.code, dwa.hop_by_hop, dwa.is_request) == (c.CMD_DEVICE_WATCHDOG, 77, False)
    assert d.PeerMessage.from_message(dwa).result_code == 2001


def test_our_watchdog_suspect_then_down() -> None:
    m = opened(watchdog=10.0)
    assert m.next_deadline(1.0) == 11.0
    assert m.tick(10.9) == [] and m.data_to_send() == b""
    assert m.tick(11.0) == []
    [dwr] = answers(m)
    assert dwr.is_request and dwr.code == c.CMD_DEVICE_WATCHDOG and dwr.app_id == 0
    assert m.tick(21.0) == [] and m.watchdog_state == 1    # SUSPECT
    assert m.data_to_send() == b""                         # one DWR at a time
    [event] = m.tick(31.0)
    assert isinstance(event, Closed) and event.dead and m.state == CLOSED


def test_a_dwa_keeps_the_peer_okay() -> None:
    m = opened(watchdog=10.0)
    m.tick(11.0)
    [dwr] = answers(m)
    dwa = d.PeerMessage("gw.test", "test", result_code=2001).answer(dwr)
    assert m.receive_data(d.encode(dwa), 12.0) == []
    assert m.next_deadline(12.0) == 22.0
    m.tick(22.0)
    assert [a.code for a in answers(m)] == [c.CMD_DEVICE_WATCHDOG]   # a new DWR
    assert m.tick(31.9) == [] and m.state == OPEN


def test_traffic_restarts_the_watchdog_timer() -> None:
    m = opened(watchdog=10.0)
    ccr = d.Ccr("s", "gw.test", "test", "test", "ctx", 1, 0).to_message(3, 3)
    [event] = m.receive_data(d.encode(ccr), 9.0)
    assert isinstance(event, Request) and event.message.code == c.CMD_CREDIT_CONTROL
    assert m.tick(11.0) == [] and m.data_to_send() == b""
    assert m.next_deadline(11.0) == 19.0


def test_peer_disconnect() -> None:
    m = opened()
    dpr = d.PeerMessage("gw.test", "test", disconnect_cause=c.DO_NOT_WANT_TO_TALK_TO_YOU)
    [event] = m.receive_data(d.encode(dpr.request(c.CMD_DISCONNECT_PEER, 9, 9)), 2.0)
    assert isinstance(event, Closed) and event.by_peer
    [dpa] = answers(m)
    assert (dpa.code, dpa.hop_by_hop) == (c.CMD_DISCONNECT_PEER, 9)
    assert fields.result_code(dpa) == 2001
    assert m.receive_data(cer(), 3.0) == []


def test_our_disconnect_ends_at_the_dpa_or_the_timer() -> None:
    m = opened(watchdog=10.0)
    raw = m.disconnect(c.REBOOTING, 2.0)
    dpr = d.decode(raw)
    assert dpr.is_request and d.PeerMessage.from_message(dpr).disconnect_cause == 0
    assert m.state == CLOSING
    ccr = d.Ccr("s", "gw.test", "test", "test", "ctx", 1, 0).to_message(3, 3)
    assert m.receive_data(d.encode(ccr), 3.0) == []          # no new work while closing
    assert fields.result_code(answers(m)[0]) == c.DIAMETER_UNABLE_TO_COMPLY
    dpa = d.PeerMessage("gw.test", "test", result_code=2001).answer(dpr)
    [event] = m.receive_data(d.encode(dpa), 4.0)
    assert isinstance(event, Closed) and m.state == CLOSED
    m2 = opened(watchdog=10.0)
    m2.disconnect(c.REBOOTING, 2.0)
    [event] = m2.tick(12.0)
    assert isinstance(event, Closed)


def test_our_request_and_its_answer() -> None:
    m = opened()
    rar = d.Rar("s", "ocs.test", "test", "test", "gw.test").to_message(0, 0)
    raw = m.send_request(rar)
    sent = d.decode(raw)
    assert sent.hop_by_hop != 0 and sent.hop_by_hop == rar.hop_by_hop
    raa = d.Raa("s", 2001, "gw.test", "test").answer(sent)
    [event] = m.receive_data(d.encode(raa), 2.0)
    assert isinstance(event, AnswerReceived) and event.message.hop_by_hop == sent.hop_by_hop
    assert m.receive_data(d.encode(raa), 2.5) == []          # nobody waits any more


def test_requests_we_do_not_serve() -> None:
    m = opened()
    other_app = Message(316, c.FLAG_REQUEST, 16777251, 4, 4,
                        [Avp.of_str(c.SESSION_ID, "x")])
    unknown_cmd = Message(999, c.FLAG_REQUEST, 4, 5, 5, [])
    error_bit = d.Ccr("s", "gw.test", "test", "test", "ctx", 1, 0).to_message(6, 6)
    error_bit.flags |= c.FLAG_ERROR
    data = b"".join(d.encode(x) for x in (other_app, unknown_cmd, error_bit))
    assert m.receive_data(data, 2.0) == []
    got = answers(m)
    assert [(a.hop_by_hop, fields.result_code(a)) for a in got] == [
        (4, c.DIAMETER_APPLICATION_UNSUPPORTED), (5, c.DIAMETER_COMMAND_UNSUPPORTED),
        (6, c.DIAMETER_INVALID_HDR_BITS)]
    assert all(a.flags & c.FLAG_ERROR for a in got)
    assert got[0].avps[0] == Avp.of_str(c.SESSION_ID, "x")


def test_an_undecodable_request_is_answered_and_the_peer_stays() -> None:
    m = opened()
    ccr = d.encode(d.Ccr("s", "gw.test", "test", "test", "ctx", 1, 0).to_message(7, 7))
    broken = ccr[:20] + ccr[20:24] + b"\x40\x00\x00\xff" + ccr[28:]   # first AVP too long
    assert m.receive_data(broken, 2.0) == []
    [ans] = answers(m)
    assert fields.result_code(ans) == c.DIAMETER_INVALID_AVP_LENGTH and m.state == OPEN


def test_a_broken_stream_closes() -> None:
    m = opened()
    [event] = m.receive_data(b"\x02" + bytes(19), 2.0)
    assert isinstance(event, Closed) and m.state == CLOSED
    assert m.receive_data(cer(), 3.0) == []
