"""cc_server.testing's test controls, the record's contents, and fail-stop in process."""

from __future__ import annotations

import asyncio
import datetime as dt
import struct
from decimal import Decimal as D
from typing import Any

import msgpack
import pytest

import cc_client
import cc_client.sync
from cc_server.testing import ServerFailed, ServerThread, running_server
from protocol import buildinfo
from tests.mockkit import balance, mock_server, start, update

#: these patch the engine, which the compiled (mypyc) build forbids; CI's pure run covers them
PURE_ONLY = pytest.mark.skipif(buildinfo.build() == "compiled",
                               reason="patches a compiled class; the pure build's run covers it")


async def test_the_record_holds_both_directions_with_user_and_connection() -> None:
    async with mock_server() as server, \
            cc_client.connect(server.url, user="gw-1", password="x") as client:
        await client.admin.create_subscriber("amy", D("10.00"))
        await start(client, "amy", "s-1")
        await update(client, "amy", "s-1", used=30).execute()
        executes = server.record.find(type="EXECUTE")
        assert [e.kind for e in executes] == ["start", "update"]
        assert {e.conn_user for e in executes} == {"gw-1"}
        replies = server.record.find(type="EXECUTE_RESULT", direction="out")
        assert [e.request_id for e in replies] == [e.request_id for e in executes]
        hello = server.record.find(type="HELLO")[0]
        assert hello.conn == executes[0].conn
        assert hello.body["user"] == "gw-1" and hello.body["password"] == "***"
        with pytest.raises(AssertionError, match="expected 3 in frame"):
            server.record.verify(3, kind="update")
        got = await client.admin.record(session_id="s-1", direction="in")
        assert [e["body"]["kind"] for e in got] == ["start", "update"]
        assert await client.admin.record(type="EXECUTE", limit=1) == \
            [e.to_wire() for e in executes[:1]]
        future = dt.datetime.fromtimestamp(server.clock() + 1, dt.UTC)
        assert await client.admin.record(since=future) == []
        assert [e["type"] for e in await client.admin.record(until=future, kind="update")] \
            == ["EXECUTE", "EXECUTE_RESULT"]   # the update and its reply
        assert await client.admin.record_clear() > 0
        assert await client.admin.record() == []


async def _send_raw(server: Any, data: bytes) -> None:
    """Send bytes on a fresh connection and read until the server closes it."""
    host, port = server.url.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    await reader.read()          # the server answers PROTOCOL_ERROR and closes
    writer.close()


def _frame(msg_type: int, request_id: int, body: bytes) -> bytes:
    return struct.pack(">IBBHI", len(body), msg_type, 0, 0, request_id) + body


async def test_an_undecodable_frame_is_recorded_raw() -> None:
    hello = msgpack.packb({"versions": [1]})
    async with mock_server() as server:
        await _send_raw(server, _frame(0x01, 1, hello) + _frame(0x20, 2, b"\xc1\xc1\xc1"))
        first, second = server.record.find(direction="in")[:2]
        assert first.type == "HELLO" and first.body == {"versions": [1]}
        assert second.body is None and second.raw == b"\xc1\xc1\xc1"


@pytest.mark.parametrize("tail", [b"\x00", b"\xc1", msgpack.packb({"a": 1})])
async def test_a_hello_is_never_kept_with_its_password(tail: bytes) -> None:
    """A HELLO with bytes after its body does not decode: it is recorded without its
    bytes (issue 25 item 6: it was kept raw, the password in clear)."""
    body = msgpack.packb({"versions": [1], "user": "gw", "password": "s3cret-pw"})
    async with mock_server() as server:
        await _send_raw(server, _frame(0x01, 1, body + tail))
        await _send_raw(server, _frame(0x01, 1, b"\xc1s3cret-pw"))
        await _send_raw(server, _frame(0x01, 1, msgpack.packb(["s3cret-pw"])))
        entries = server.record.find(type="HELLO")
        assert len(entries) == 3
        for entry in entries:
            assert entry.raw is None and "s3cret-pw" not in repr(entry.to_wire())
        async with cc_client.connect(server.url) as client:
            got = await client.admin.record(type="HELLO")
        assert len(got) == 4 and "s3cret-pw" not in repr(got)
        assert server.record.find(type="ERROR", direction="out")


async def test_the_record_is_off_by_default_and_faults_need_nothing_else() -> None:
    async with running_server() as server:
        assert server.server.record is None
        with pytest.raises(RuntimeError, match="record=N"):
            server.record.find()
        async with cc_client.connect(server.url) as client:
            with pytest.raises(cc_client.InvalidRequest, match="--record"):
                await client.admin.record()
            rule_id = await client.admin.faults.add("busy", kind="start", times=1)
            assert [r["id"] for r in await client.admin.faults.list()] == [rule_id]
            assert await client.admin.faults.remove(rule_id)
            assert await client.admin.faults.clear() == 0
            with pytest.raises(cc_client.InvalidRequest, match="not manual"):
                await client.admin.clock_advance(1)
            with pytest.raises(cc_client.InvalidRequest, match="action must be one of"):
                await client.admin.faults.add("explode")


async def test_client_admin_moves_a_manual_clock() -> None:
    async with mock_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("bea", D("10.00"))
        await start(client, "bea", "s-1", ttl=1800)
        before = (await client.admin.clock_get())["time"]
        moved = await client.admin.clock_advance(1800)
        assert (moved - before).total_seconds() == 1800
        assert await balance(client, "bea") == (D("10.00"), D("0.00"))   # expired at once
        later = await client.admin.clock_set("2030-01-01T00:00:00Z")
        assert later.year == 2030 and server.clock() == later.timestamp()
        with pytest.raises(cc_client.InvalidRequest, match="backwards"):
            await client.admin.clock_set(before)


def test_server_thread_faults_record_and_advance_from_the_test_thread() -> None:
    with ServerThread(clock="manual", record=100) as server, \
            cc_client.sync.connect(server.url, request_timeout=0.5) as client:
        client.admin.create_subscriber("cy", D("10.00"))
        op = client.create_session_start_operation(user_id="cy", service_id="DATA",
                                                   session_id="s-1")
        op.prepare_reserve("rg-1", cc_client.ChargeableItem("data", {"volume": 100}), ttl=30)
        with server.faults.add(action="drop-reply", kind="start", times=1), \
                pytest.raises(cc_client.CommunicationFailure):
            op.execute()
        assert op.execute().ok
        server.record.verify(2, kind="start")
        assert client.admin.get_subscriber("cy").reserved == D("1.00")
        server.advance(31)                       # runs on the server loop; waits
        assert client.admin.get_subscriber("cy").reserved == D("0.00")


def _broken_execute(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug while applying")


@PURE_ONLY
async def test_an_internal_error_while_applying_stops_the_test_server_not_the_test() -> None:
    with pytest.raises(ServerFailed, match="a bug while applying"):
        async with running_server() as server, cc_client.connect(
                server.url, request_timeout=0.5) as client:
            await client.admin.create_subscriber("dan", D("10.00"))
            server.server.engine.execute = _broken_execute   # type: ignore[method-assign]
            with pytest.raises(cc_client.ChargingError):
                await start(client, "dan", "s-1")
            assert server.failure is not None


@PURE_ONLY
def test_an_internal_error_in_a_server_thread_is_raised_at_the_end() -> None:
    with pytest.raises(ServerFailed), ServerThread() as server, \
                cc_client.sync.connect(server.url, request_timeout=0.5) as client:
        client.admin.create_subscriber("eli", D("10.00"))
        assert server.test_server is not None
        server.test_server.server.engine.execute = _broken_execute  # type: ignore
        op = client.create_session_start_operation(user_id="eli", service_id="DATA",
                                                   session_id="s-1")
        op.prepare_reserve("rg-1", cc_client.ChargeableItem("data", {"volume": 1}),
                           ttl=30)
        with pytest.raises(cc_client.ChargingError):
            op.execute()
