"""Diameter Gy end to end: python-diameter's `Node` is the gateway, with no code of ours on
its side, against an in-process cc-server with `--diameter` (loopback, free ports).

CER, CCR-I/U/T with two rating groups, a RAR after a top-up answered by RAA with a CCR-U
after it, a per-MSCC 4012 next to a granted group, an
unknown subscriber (5030), an unknown session (5002), a duplicate CCR-U with the T bit
answered with the same CCA and charged once, DWR both ways, and DPR at the end.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cc_server.config import ServerConfig
from cc_server.testing import TestServer, running_server

pytest.importorskip("diameter.node")
from diameter.message import Message as PdMessage
from diameter.message.avp.grouped import (
    MultipleServicesCreditControl,
    RequestedServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from diameter.message.commands import CreditControlAnswer, CreditControlRequest
from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

CATALOG = textwrap.dedent("""
    currency = "EUR"
    [services.DATA.items.data]
    quantity = "volume"
    price = "0.001"
    [services.DATA.items.video]
    quantity = "volume"
    step = 1000
    price = "0.50"

    [[subscribers]]
    user_id = "alice"
    balance = "10.00"

    [diameter.rating_groups.10]
    service = "DATA"
    item = "data"
    units = "total_octets"
    [diameter.rating_groups.20]
    service = "DATA"
    item = "video"
    units = "total_octets"
""")


async def wait_for(check: Callable[[], bool], seconds: float = 8.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


class Gateway:
    """A python-diameter node that charges through the server's Gy port."""

    def __init__(self, port: int) -> None:
        self.node = Node("gw.test", "test")
        self.node.idle_timeout = 1000
        self.node.wakeup_interval = 0.2     # its select() timeout: stops and timers sooner
        self.peer = self.node.add_peer(f"aaa://ocs.test:{port};transport=tcp", "test",
                                       ["127.0.0.1"], is_persistent=True, is_default=True)
        self.rars: list[PdMessage] = []
        self.app = SimpleThreadingApplication(4, is_auth_application=True,
                                              request_handler=self.on_request)
        self.node.add_application(self.app, [self.peer])
        self.numbers: dict[str, int] = {}

    def on_request(self, app: SimpleThreadingApplication, msg: PdMessage) -> PdMessage:
        """A RAR: acknowledged with RAA 2001 (the gateway then sends a CCR-U)."""
        self.rars.append(msg)
        return app.generate_answer(msg, 2001)

    async def start(self) -> None:
        await asyncio.to_thread(self.node.start)
        await asyncio.to_thread(self.app.wait_for_ready, 5)

    async def stop(self) -> None:
        await asyncio.to_thread(self.node.stop, 10)

    def ccr(self, session: str, kind: int, user: str | None = "alice",
            mscc: list[MultipleServicesCreditControl] | None = None) -> CreditControlRequest:
        number = self.numbers.get(session, -1) + 1 if kind != 1 else 0
        self.numbers[session] = number
        ccr = CreditControlRequest()
        ccr.session_id = session
        ccr.origin_host = b"gw.test"
        ccr.origin_realm = b"test"
        ccr.destination_realm = b"test"
        ccr.auth_application_id = 4
        ccr.service_context_id = "32251@3gpp.org"
        ccr.cc_request_type = kind
        ccr.cc_request_number = number
        if user is not None:
            ccr.subscription_id = [SubscriptionId(subscription_id_type=1,
                                                  subscription_id_data=user)]
        ccr.multiple_services_credit_control = mscc or []
        return ccr

    async def send(self, msg: PdMessage) -> CreditControlAnswer:
        answer = await asyncio.to_thread(self.app.send_request, msg, 5)
        assert isinstance(answer, CreditControlAnswer)
        return answer


def mscc(rg: int, requested: int | None = None, used: int | None = None
         ) -> MultipleServicesCreditControl:
    m = MultipleServicesCreditControl(rating_group=rg)
    if requested is not None:
        m.requested_service_unit = RequestedServiceUnit(cc_total_octets=requested)
    if used is not None:
        m.used_service_unit = [UsedServiceUnit(cc_total_octets=used)]
    return m


def by_rg(cca: CreditControlAnswer) -> dict[int, Any]:
    return {m.rating_group: m for m in cca.multiple_services_credit_control}


@pytest.fixture
async def gy(tmp_path: Path) -> AsyncIterator[tuple[TestServer, Gateway]]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    config = ServerConfig(catalog=str(catalog), diameter="127.0.0.1:0", diameter_table={
        "origin_host": "ocs.test", "origin_realm": "test", "peers": ["gw.test"],
        "validity_time": 120})
    async with running_server(config) as server:
        assert server.server.diameter is not None
        _, port = server.server.diameter.address
        assert port != 0
        gateway = Gateway(port)
        await gateway.start()
        try:
            yield server, gateway
        finally:
            if gateway.node._started and not gateway.node._stopping:
                await gateway.stop()


def balance(server: TestServer, user: str) -> Decimal:
    return server.engine.accounts[user].balance  # type: ignore[no-any-return]


async def test_a_gateway_charges_through_ccr_i_u_t(gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    # CCR-I: two rating groups; video asks more than 10 EUR buys (4012 beside a grant)
    cca = await gw.send(gw.ccr("gw.test;1;1", 1, mscc=[mscc(10, requested=1000),
                                                       mscc(20, requested=50_000_000)]))
    assert cca.result_code == 2001
    assert (cca.cc_request_type, cca.cc_request_number) == (1, 0)
    groups = by_rg(cca)
    assert groups[10].result_code == 2001
    assert groups[10].granted_service_unit.cc_total_octets == 1000
    assert groups[10].validity_time == 120
    # inverse rating grants what the credit covers, and says it is the last of it
    assert groups[20].result_code == 2001
    granted = groups[20].granted_service_unit.cc_total_octets
    assert 0 < granted < 50_000_000
    assert groups[20].final_unit_indication.final_unit_action == 0   # TERMINATE
    session = server.engine.sessions["gw.test;1;1"]
    assert {cs.reservation_id for cs in session.charging_sessions()} == {"RG10", "RG20"}

    # CCR-U: usage of 800 on RG 10 with a new request; RG 20 asks again: nothing left
    update = gw.ccr("gw.test;1;1", 2, mscc=[mscc(10, requested=1000, used=800),
                                            mscc(20, requested=1000, used=granted)])
    cca = await gw.send(update)
    groups = by_rg(cca)
    assert cca.result_code == 2001
    assert groups[10].result_code == 2001
    assert groups[20].result_code == 4012
    before = balance(server, "alice")

    # the same CCR-U again with the T bit (the gateway lost the answer): same CCA, once
    update.header.is_retransmit = True
    again = await gw.send(update)
    assert again.header.is_retransmit is False
    assert bytes(again.as_bytes())[20:] == bytes(cca.as_bytes())[20:]
    assert balance(server, "alice") == before
    assert server.server.diameter is not None
    assert server.server.diameter.front.counts["repeated"] == 1

    # CCR-T: RG 10 reports its usage; RG 20 (starved) reports nothing and is cancelled
    cca = await gw.send(gw.ccr("gw.test;1;1", 3, mscc=[mscc(10, used=300)]))
    assert cca.result_code == 2001 and by_rg(cca)[10].result_code == 2001
    assert "gw.test;1;1" not in server.engine.sessions
    charged = Decimal("10.00") - balance(server, "alice")
    # data: 800 + 300 octets at 0.001; video: all it was granted, confirmed at CCR-U
    assert charged == Decimal("1.100") + Decimal("0.50") * (granted // 1000)


async def test_unknown_subscriber_and_unknown_session(gy: tuple[TestServer, Gateway]) -> None:
    _, gw = gy
    cca = await gw.send(gw.ccr("gw.test;2;1", 1, user="nobody", mscc=[mscc(10, 100)]))
    assert cca.result_code == 5030
    assert not cca.multiple_services_credit_control
    cca = await gw.send(gw.ccr("gw.test;2;2", 2, mscc=[mscc(10, 100, used=5)]))
    assert cca.result_code == 5002
    cca = await gw.send(gw.ccr("gw.test;2;3", 1, mscc=[mscc(99, 100)]))
    assert cca.result_code == 2001, cca.error_message
    assert by_rg(cca)[99].result_code == 5031


async def test_watchdog_both_ways_and_disconnect(gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    listener = server.server.diameter
    assert listener is not None
    [conn] = listener.connections
    gw.peer.idle_timeout = 1          # the gateway's DWR, answered by us
    await wait_for(lambda: conn.machine.dwr_received >= 1)
    gw.peer.idle_timeout = 1000
    conn.machine.config.watchdog = 0.3   # our DWR, from the next message on
    cca = await gw.send(gw.ccr("gw.test;3;1", 1, mscc=[mscc(10, 100)]))
    assert cca.result_code == 2001
    await wait_for(lambda: conn.machine.dwa_received >= 1)
    assert conn.machine.dwr_sent >= 1
    await gw.stop()                    # DPR, our DPA, the gateway closes
    await wait_for(lambda: not listener.connections)
    assert conn.machine.closed


async def test_a_top_up_sends_a_rar_and_the_ccr_u_after_it_is_served(
        gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    cca = await gw.send(gw.ccr("gw.test;4;1", 1, mscc=[mscc(10, requested=50_000)]))
    first = by_rg(cca)[10]
    assert first.granted_service_unit.cc_total_octets == 10_000     # all 10.00 EUR buy
    assert first.final_unit_indication.final_unit_action == 0
    assert gw.rars == []
    server.server.dispatcher.admin_local("top_up", {"user": "alice", "amount": Decimal("5")})
    await wait_for(lambda: bool(gw.rars))
    rar = gw.rars[0]
    assert (rar.session_id, rar.re_auth_request_type) == ("gw.test;4;1", 0)
    assert rar.header.application_id == 4 and rar.destination_host == b"gw.test"
    renewal = server.server.renewal
    await wait_for(lambda: renewal.counts["acknowledged"] == 1)
    cca = await gw.send(gw.ccr("gw.test;4;1", 2, mscc=[mscc(10, requested=50_000,
                                                           used=10_000)]))
    assert cca.result_code == 2001
    assert by_rg(cca)[10].granted_service_unit.cc_total_octets == 5_000
    assert len(gw.rars) == 1


async def test_a_dropped_cca_then_the_retransmission_with_the_t_bit_charges_once(
        gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    await gw.send(gw.ccr("gw.test;5;1", 1, mscc=[mscc(10, requested=1000)]))
    update = gw.ccr("gw.test;5;1", 2, mscc=[mscc(10, requested=1000, used=700)])
    with server.faults.add(action="drop-reply", kind="update", conn_user="gw.test",
                           times=1) as rule:
        with pytest.raises(TimeoutError):      # the gateway hears nothing back
            await asyncio.to_thread(gw.app.send_request, update, 1)
        assert rule.fired == 1
    assert balance(server, "alice") == Decimal("9.30")    # 0.70 used (1.00 held apart)
    update.header.is_retransmit = True
    again = await gw.send(update)
    assert again.result_code == 2001 and by_rg(again)[10].result_code == 2001
    assert by_rg(again)[10].granted_service_unit.cc_total_octets == 1000
    assert balance(server, "alice") == Decimal("9.30")    # charged once


async def test_fault_rules_answer_with_result_codes(gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    with server.faults.add(action="error", code="USER_UNKNOWN", session="gw.test;6;*",
                           times=1):
        cca = await gw.send(gw.ccr("gw.test;6;1", 1, mscc=[mscc(10, requested=10)]))
    assert cca.result_code == 5030
    with server.faults.add(action="busy", kind="start", times=1):
        cca = await gw.send(gw.ccr("gw.test;6;2", 1, mscc=[mscc(10, requested=10)]))
    assert cca.result_code == 3004
    with server.faults.add(action="error", code="CREDIT_LIMIT_REACHED", scope="subrequest",
                           sub_action="reserve", times=1):
        cca = await gw.send(gw.ccr("gw.test;6;3", 1, mscc=[mscc(10, requested=10),
                                                           mscc(20, requested=10)]))
    assert cca.result_code == 2001
    assert [by_rg(cca)[rg].result_code for rg in (10, 20)] == [4012, 4012]
    with server.faults.add(action="delay", seconds=0.3, kind="start", times=1):
        cca = await gw.send(gw.ccr("gw.test;6;4", 1, mscc=[mscc(10, requested=10)]))
    assert cca.result_code == 2001
    listener = server.server.diameter
    assert listener is not None
    with server.faults.add(action="close-after", kind="start", times=1), \
            pytest.raises(TimeoutError):               # no answer: the connection closed
        await asyncio.to_thread(gw.app.send_request,
                                gw.ccr("gw.test;6;5", 1, mscc=[mscc(10, 10)]), 1)
    await wait_for(lambda: not any(c.machine.open for c in listener.connections))
    assert "gw.test;6;5" in server.engine.sessions             # applied, then closed
