"""Fault rules on Diameter traffic, end to end: python-diameter's `Node` is the gateway.

Rules match the Diameter command, CC-Request-Type, Rating-Group and Origin-Host; an error
rule answers any Result-Code, top level or per MSCC; RARs are dropped or delayed; the
fields are checked at add time on every front door.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_client.admin import main as admin_main
from cc_server.config import ServerConfig
from cc_server.faults import DiameterTraffic, FaultError, Request, Rule
from cc_server.testing import ServerThread, TestServer, running_server

pytest.importorskip("diameter.node")
from tests.test_gy_server import CATALOG, Gateway, by_rg, mscc, wait_for


@pytest.fixture
async def gy(tmp_path: Path) -> AsyncIterator[tuple[TestServer, Gateway]]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    config = ServerConfig(catalog=str(catalog), diameter="127.0.0.1:0", diameter_table={
        "origin_host": "ocs.test", "origin_realm": "test", "peers": ["gw.test"],
        "validity_time": 120}, renewal_resend_interval=0.2, renewal_send_timeout=0.2)
    async with running_server(config) as server:
        assert server.server.diameter is not None
        gateway = Gateway(server.server.diameter.address[1])
        await gateway.start()
        try:
            yield server, gateway
        finally:
            if gateway.node._started and not gateway.node._stopping:
                await gateway.stop()


async def test_rules_match_request_type_rating_group_and_origin_host(
        gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    elsewhere = server.faults.add(action="busy", origin_host="pgw.other.*")
    # a Result-Code of the rule's choosing, top level: nothing applied
    with server.faults.add(action="error", result_code=5003, request_type="INITIAL",
                           origin_host="gw.*", times=1) as rule:
        cca = await gw.send(gw.ccr("gw.test;7;1", 1, mscc=[mscc(10, requested=10)]))
        assert cca.result_code == 5003 and rule.fired == 1
    assert "gw.test;7;1" not in server.engine.sessions
    # per MSCC: only rating group 20 gets it, rating group 10 is served
    with server.faults.add(action="error", result_code=4010, scope="mscc", rating_group=20):
        cca = await gw.send(gw.ccr("gw.test;7;2", 1, mscc=[mscc(10, requested=10),
                                                           mscc(20, requested=10)]))
    assert cca.result_code == 2001
    assert by_rg(cca)[10].result_code == 2001
    assert by_rg(cca)[10].granted_service_unit.cc_total_octets == 10
    assert by_rg(cca)[20].result_code == 4010 and not by_rg(cca)[20].granted_service_unit
    session = server.engine.sessions["gw.test;7;2"]
    assert {cs.reservation_id for cs in session.charging_sessions()} == {"RG10"}
    # the request actions too: a CCR-T reporting rating group 10 loses its CCA
    with server.faults.add(action="drop-reply", diameter_command="CCR",
                           request_type="TERMINATION", rating_group=10) as dropped:
        update = gw.ccr("gw.test;7;2", 2, mscc=[mscc(10, requested=10, used=5)])
        assert (await gw.send(update)).result_code == 2001     # an UPDATE: not matched
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(gw.app.send_request,
                                    gw.ccr("gw.test;7;2", 3, mscc=[mscc(10, used=5)]), 1)
        assert (dropped.matched, dropped.fired) == (1, 1)
    assert "gw.test;7;2" not in server.engine.sessions          # applied
    # EVENT requests are not served, but a rule can still answer them
    with server.faults.add(action="error", result_code=4011, request_type="EVENT"):
        cca = await gw.send(gw.ccr("gw.test;7;3", 4, mscc=[mscc(10, requested=10)]))
    assert cca.result_code == 4011
    assert elsewhere.matched == 0


def test_diameter_fields_never_match_msgpack_traffic() -> None:
    msgpack = Request("EXECUTE", "alice", "DATA", "s-1", "update", ("reserve",))
    ccr = Request("EXECUTE", "alice", "DATA", "s-1", "update", ("reserve",),
                  **DiameterTraffic("CCR", "UPDATE", (10,), "gw.test").fields())
    for fields in ({"request_type": "UPDATE"}, {"rating_group": 10},
                   {"origin_host": "gw.*"}, {"diameter_command": "CCR"}):
        rule = Rule(action="busy", **fields)
        assert (rule.matches(msgpack), rule.matches(ccr)) == (False, True), fields
    assert not Rule(action="busy", rating_group=20).matches(ccr)
    assert not Rule(action="busy", request_type="INITIAL").matches(ccr)
    assert Rule(action="busy", kind="update").matches(ccr)        # the old fields still do
    # the base protocol's requests: only a rule that names the command
    dwr = Request("DIAMETER", conn_user="gw.test", command="DWR", origin_host="gw.test")
    assert not Rule(action="drop-reply").matches(dwr)
    assert not Rule(action="drop-reply", origin_host="gw.*").matches(dwr)
    assert Rule(action="drop-reply", diameter_command="DWR").matches(dwr)
    assert not Rule(action="drop-reply", diameter_command="CER").matches(dwr)


BAD_RULES: list[tuple[dict[str, Any], str]] = [
    ({"action": "busy", "rating_group": "10"}, "rating_group must be a whole number"),
    ({"action": "busy", "request_type": "MIDDLE"}, "request_type must be one of"),
    ({"action": "busy", "diameter_command": "DWA"}, "diameter_command must be one of"),
    ({"action": "busy", "diameter_command": "DWR"}, "a DWR rule's action is one of"),
    ({"action": "busy", "origin_host": 7}, "origin_host must be a string"),
    ({"action": "error", "result_code": "5003"}, "result_code must be a whole number"),
    ({"action": "error", "result_code": 99}, "result_code must be a Diameter"),
    ({"action": "error", "result_code": 5003, "code": "USER_UNKNOWN"}, "not both"),
    ({"action": "busy", "result_code": 5003}, "result_code goes with action error"),
    ({"action": "error", "code": "USER_UNKNOWN", "scope": "mscc"}, "scope mscc"),
    ({"action": "drop-reply", "diameter_command": "RAR"}, "a RAR rule's action"),
    ({"action": "drop-notify", "request_type": "UPDATE"}, "match CCRs, not RARs"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_RULES)
async def test_bad_diameter_fields_are_refused_at_add_time(
        fields: dict[str, Any], message: str) -> None:
    async with running_server() as server:
        with pytest.raises(FaultError, match=message):
            server.faults.add(**fields)
        async with cc_client.connect(server.url) as client:
            with pytest.raises(cc_client.InvalidRequest, match=message):
                await client.admin.faults.add(**fields)
            rule = await client.admin.faults.add("error", result_code=5003, scope="mscc",
                                                 rating_group=20, origin_host="gw.*")
            assert rule.fields["result_code"] == 5003
            assert rule.fields["rating_group"] == 20
        assert [r.id for r in server.faults] == [rule.id]


def test_cc_admin_fault_add_takes_the_diameter_fields(
        capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread() as server:
        assert admin_main(["--server", server.url, "fault", "add", "--action", "error",
                           "--result-code", "4010", "--scope", "mscc", "--rating-group",
                           "20", "--request-type", "UPDATE", "--origin-host", "gw.*",
                           "--diameter-command", "CCR"]) == 0
        [rule] = list(server.faults)
        assert (rule.result_code, rule.scope, rule.rating_group, rule.request_type,
                rule.origin_host, rule.diameter_command) == (
            4010, "mscc", 20, "UPDATE", "gw.*", "CCR")
        capsys.readouterr()
        assert admin_main(["--server", server.url, "fault", "add", "--action", "error",
                           "--result-code", "12"]) == 2
        assert "--result-code" in capsys.readouterr().err
        assert admin_main(["--server", server.url, "fault", "add", "--action", "busy",
                           "--request-type", "SOON"]) == 1
        assert "request_type" in capsys.readouterr().err
        assert len(list(server.faults)) == 1


async def test_a_rar_is_dropped_then_resent_or_delayed(
        gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    renewal = server.server.renewal
    cca = await gw.send(gw.ccr("gw.test;8;1", 1, mscc=[mscc(10, requested=50_000)]))
    assert by_rg(cca)[10].final_unit_indication.final_unit_action == 0
    other = server.faults.add(action="drop-notify", origin_host="someone.else")
    with server.faults.add(action="drop-notify", diameter_command="RAR",
                           origin_host="gw.test", times=1) as dropped:
        server.server.dispatcher.admin_local("top_up", {"user": "alice", "amount": Decimal(5)})
        await wait_for(lambda: dropped.fired == 1)
        assert gw.rars == [] and renewal.counts["fault_dropped"] == 1
        await wait_for(lambda: bool(gw.rars))          # the next attempt goes out
    await wait_for(lambda: renewal.counts["acknowledged"] == 1)
    cca = await gw.send(gw.ccr("gw.test;8;1", 2, mscc=[mscc(10, requested=50_000,
                                                           used=10_000)]))
    assert by_rg(cca)[10].granted_service_unit.cc_total_octets == 5_000
    # delay: the RAR leaves later, once
    with server.faults.add(action="delay-notify", diameter_command="RAR", seconds=0.3,
                           times=1) as delayed:
        server.server.dispatcher.admin_local("top_up", {"user": "alice", "amount": Decimal(5)})
        await wait_for(lambda: delayed.fired == 1)
        assert renewal.counts["fault_delayed"] == 1
        await wait_for(lambda: len(gw.rars) == 2)
    await wait_for(lambda: renewal.counts["acknowledged"] == 2)
    assert other.matched == 0
