"""Diameter sessions in the operator's tools: the request record keeps Diameter messages
decoded (both directions), and the session listing names a Gy session's peer.
python-diameter's `Node` is the gateway; the record and listing are read over the wire."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_client.admin import main as admin_main
from cc_server.config import ServerConfig
from cc_server.testing import TestServer, running_server
from tests.mockkit import data

pytest.importorskip("diameter.node")
from tests.test_gy_server import CATALOG, Gateway, mscc, wait_for


@pytest.fixture
async def gy(tmp_path: Path) -> AsyncIterator[tuple[TestServer, Gateway]]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    config = ServerConfig(catalog=str(catalog), diameter="127.0.0.1:0", record=1000,
                          diameter_table={"origin_host": "ocs.test", "origin_realm": "test",
                                          "peers": ["gw.test"]})
    async with running_server(config) as server:
        assert server.server.diameter is not None
        gateway = Gateway(server.server.diameter.address[1])
        await gateway.start()
        try:
            yield server, gateway
        finally:
            if gateway.node._started and not gateway.node._stopping:
                await gateway.stop()


def avp(tree: list[dict[str, Any]], name: str) -> Any:
    return next(a["value"] for a in tree if a["name"] == name)


async def test_the_record_keeps_diameter_messages_decoded(
        gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    ccr = gw.ccr("gw.test;9;1", 1, mscc=[mscc(10, requested=1000)])
    cca = await gw.send(ccr)
    async with cc_client.connect(server.url) as client:
        entries = await client.admin.record(session="gw.test;9;1")
        assert [(e["direction"], e["type"]) for e in entries] == [("in", "CCR"), ("out", "CCA")]
        request, answer = (e["body"] for e in entries)
        assert entries[0]["request_id"] == ccr.header.hop_by_hop_identifier
        assert entries[0]["conn_user"] == "gw.test"
        assert (request["command"], request["command_code"], request["app"]) == ("CCR", 272, 4)
        assert "R" in request["flags"] and "R" not in answer["flags"]
        assert (answer["hop_by_hop"], answer["end_to_end"]) == (
            cca.header.hop_by_hop_identifier, cca.header.end_to_end_identifier)
        assert (request["user"], request["kind"], answer["result"]) == ("alice", "start", 2001)
        assert avp(request["avps"], "Session-Id") == "gw.test;9;1"
        assert avp(request["avps"], "CC-Request-Type") == 1
        group = avp(request["avps"], "Multiple-Services-Credit-Control")
        assert avp(group, "Rating-Group") == 10
        assert avp(avp(group, "Requested-Service-Unit"), "CC-Total-Octets") == 1000
        granted = avp(avp(answer["avps"], "Multiple-Services-Credit-Control"),
                      "Granted-Service-Unit")
        assert avp(granted, "CC-Total-Octets") == 1000
        # the peer's own exchange is there too, and the user filter pairs CCR and CCA
        every = await client.admin.record()
        assert {"CER", "CEA"} <= {e["type"] for e in every}
        assert [e["type"] for e in await client.admin.record(user="alice")] == ["CCR", "CCA"]
    out = await asyncio.to_thread(_admin, ["--server", server.url, "record", "--session",
                                           "gw.test;9;1"])
    assert "CCR" in out and "CCA" in out and "result=2001" in out


def _admin(argv: list[str]) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert admin_main(argv) == 0
    return buffer.getvalue()


async def test_sessions_list_shows_a_gy_sessions_peer(gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    await gw.send(gw.ccr("gw.test;10;1", 1, mscc=[mscc(10, requested=1000)]))
    async with cc_client.connect(server.url) as client:
        op = client.create_session_start_operation(user_id="alice", service_id="DATA",
                                                   session_id="msgpack-1")
        op.prepare_reserve("rg-1", data(5), ttl=60)
        await op.execute()
        gy_session, plain = await client.admin.find_sessions(user_id="alice")
    assert (gy_session.session_id, gy_session.protocol, gy_session.peer) == (
        "gw.test;10;1", "diameter", "gw.test")
    assert (plain.session_id, plain.protocol, plain.peer) == ("msgpack-1", None, None)
    listed = await asyncio.to_thread(_admin, ["--server", server.url, "sessions", "list"])
    assert "PEER" in listed and "diameter:gw.test" in listed
    lines = (await asyncio.to_thread(_admin, ["--server", server.url, "sessions", "list",
                                              "--json"])).splitlines()
    first, second = (json.loads(line) for line in lines)
    assert (first["protocol"], first["peer"]) == ("diameter", "gw.test")
    assert "protocol" not in second and "peer" not in second     # as msgpack ones always were
    shown = await asyncio.to_thread(_admin, ["--server", server.url, "sessions", "show",
                                             "gw.test;10;1"])
    assert "gw.test" in shown and "diameter" in shown


async def test_a_fault_rule_delays_or_drops_a_dwa(gy: tuple[TestServer, Gateway]) -> None:
    server, gw = gy
    record = server.record
    assert record is not None
    listener = server.server.diameter
    assert listener is not None
    [conn] = listener.connections
    with server.faults.add(action="delay", diameter_command="DWR", seconds=0.2,
                           times=1) as delayed:
        gw.peer.idle_timeout = 1                # the gateway's DWR: its DWA leaves late
        await wait_for(lambda: delayed.fired == 1)
        gw.peer.idle_timeout = 1000
        late = record.find(type="DWR")[-1]
        await wait_for(lambda: any(e.request_id == late.request_id
                                   for e in record.find(type="DWA")))
    with server.faults.add(action="drop-reply", diameter_command="DWR",
                           origin_host="gw.test", times=1) as dropped:
        gw.peer.idle_timeout = 1                # the next DWR: no DWA comes back
        await wait_for(lambda: dropped.fired == 1)
        gw.peer.idle_timeout = 1000
    dwr = record.find(type="DWR")[-1]
    assert dwr.request_id != late.request_id
    assert not [e for e in record.find(type="DWA") if e.request_id == dwr.request_id]
    assert conn.machine.dwr_received >= 2
