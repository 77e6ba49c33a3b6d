"""Listings paged by size as well as by count: no reply passes the frame limit, and the
client's paging follows the server's `next` cursor (issue 25 item 4)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from typing import Any

import pytest

import cc_client
import cc_client.sync
from cc_client import ChargeableItem, admin
from cc_server.engine import Engine
from cc_server.testing import ServerThread, TestServer, running_server
from protocol import codec
from protocol import messages as m
from tests.netfakes import FakeServer, FrameStream, raw_connect, raw_hello, serve_handshake

EXTERNAL = bytes(range(256)) * 16          # 4 KiB, the most a session may carry
LONG = "x" * 250                           # with a 6-character suffix: 256-character ids
MIB = 1 << 20                              # the default max_frame


def long_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:05d}{LONG}"[:256]


async def pages(server: TestServer, cmd: str, **args: Any) -> list[tuple[int, Any, Any]]:
    """Every page of a listing over a raw connection: (body size, value, next)."""
    host, port = server.url.rsplit(":", 1)
    stream = await raw_connect(host, int(port))
    try:
        assert isinstance(await raw_hello(stream), m.HelloOk)
        got: list[tuple[int, Any, Any]] = []
        after = None
        for request_id in range(2, 1000):
            stream.send(m.AdminRequest(cmd, {**args, **({} if after is None
                                                        else {"after": after})}), request_id)
            frame, msg = await stream.read_message(10)
            assert isinstance(msg, m.AdminResult), msg
            got.append((len(frame.body), msg.value, msg.next))
            if msg.next is None:
                return got
            after = msg.next
        raise AssertionError("no last page")
    finally:
        stream.close()


async def open_sessions(client: cc_client.Client, user: str, count: int,
                        reservations: int = 1, external: bytes | None = EXTERNAL,
                        long_ids: bool = False) -> None:
    async def one(i: int) -> None:
        sid = long_id("s", i) if long_ids else f"s-{i:04d}"
        op = client.create_session_start_operation(user_id=user, service_id="DATA",
                                                   session_id=sid)
        if external is not None:
            op.set_external_data(external)
        for r in range(reservations):
            rid = long_id("r", r) if long_ids else f"r-{r}"
            op.prepare_reserve(rid, ChargeableItem("data", {"volume": 1}), ttl=600)
        result = await op.execute()
        assert result.ok, result
    for first in range(0, count, 50):
        await asyncio.gather(*(one(i) for i in range(first, min(count, first + 50))))


async def test_find_sessions_of_300_sessions_with_4_kib_each_is_paged() -> None:
    """The issue's case: 1.29 MB in one reply, over the client's 1 MiB limit."""
    async with running_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("gw", D(1000))
        await open_sessions(client, "gw", 300)
        found = await client.admin.find_sessions()
        assert [s.session_id for s in found] == [f"s-{i:04d}" for i in range(300)]
        assert all(s.external_data == EXTERNAL for s in found)
        got = await pages(server, "find_sessions", limit=1000)
        assert len(got) == 2 and all(size <= MIB for size, _, _ in got)
        assert got[0][2] == got[0][1][-1]["session"]       # `next`: the last one listed
        assert [s["session"] for _, value, _ in got for s in value] == \
            [s.session_id for s in found]
        mine = await client.admin.find_sessions(user_id="gw", limit=120, after="s-0100")
        assert [s.session_id for s in mine] == [f"s-{i:04d}" for i in range(101, 221)]


async def test_transactions_with_256_character_ids_are_paged() -> None:
    """1,600 journal entries of 256-character user, session and reservation ids: 1.3 MB."""
    user = long_id("u", 1)
    async with running_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber(user, D(1000))
        await open_sessions(client, user, 25, reservations=64, external=None, long_ids=True)
        txs = await client.admin.transactions(user_id=user)
        assert len(txs) == 1600 and len({t.transaction_id for t in txs}) == 1600
        assert [t.transaction_id for t in txs] == sorted(t.transaction_id for t in txs)
        got = await pages(server, "transactions", user=user)
        assert len(got) == 2 and all(size <= MIB for size, _, _ in got)
        assert sum(len(value) for _, value, _ in got) == 1600
        assert len(await client.admin.transactions(user_id=user, limit=1500)) == 1500


async def test_subscribers_and_the_record_are_paged_by_a_small_frame_limit() -> None:
    counters = {f"{LONG}{i:03d}": 1 for i in range(64)}      # ~17 KB a subscriber
    async with running_server(max_frame=65536, record=10_000) as server, \
            cc_client.connect(server.url) as client:
        users = [long_id("u", i) for i in range(12)]
        for user in users:
            await client.admin.create_subscriber(user, D(10), counters=counters)
        assert [s.user_id for s in await client.admin.list_subscribers()] == users
        got = await pages(server, "list_subscribers")
        assert len(got) > 3 and all(size <= 65536 for size, _, _ in got)
        assert [s.user_id for s in await client.admin.list_subscribers(limit=5)] == users[:5]
        await open_sessions(client, users[0], 40)              # 40 x 4 KiB in the record
        recorded = await client.admin.record(type="EXECUTE")
        assert len(recorded) == 40
        got = await pages(server, "record_get", type="EXECUTE")
        assert len(got) > 2 and all(size <= 65536 for size, _, _ in got)


def test_cc_admin_sessions_list_of_300_sessions_with_4_kib_each(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`cc-admin sessions list` failed on the 1.29 MB reply."""
    with ServerThread() as server, cc_client.sync.connect(server.url) as client:
        client.admin.create_subscriber("gw", D(1000))
        for i in range(300):
            op = client.create_session_start_operation(user_id="gw", service_id="DATA",
                                                       session_id=f"s-{i:04d}")
            op.set_external_data(EXTERNAL)
            op.prepare_reserve("r-1", ChargeableItem("data", {"volume": 1}), ttl=600)
            assert op.execute().ok
        code = admin.main(["--server", server.url, "sessions", "list", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert len(out.splitlines()) == 300


def test_engine_find_sessions_is_ordered_by_id_and_pages_with_after() -> None:
    e = Engine()
    e.create_subscriber("a", D(100))
    e.create_subscriber("b", D(100))
    for sid, user in [("s3", "a"), ("s1", "b"), ("s2", "a"), ("s0", "a")]:
        sub = m.SubRequest(m.Action.RESERVE, "r", item=m.ChargeableItem("data", {"volume": 1}),
                           ttl=30)
        e.execute(m.Execute(sid.encode(), m.ContainerKind.START, user, "DATA", sid, (sub,)),
                  0.0)
    assert [s.session_id for s in e.find_sessions()] == ["s0", "s1", "s2", "s3"]
    assert [s.session_id for s in e.find_sessions(after="s1", limit=1)] == ["s2"]
    assert [s.session_id for s in e.find_sessions(user_id="a", after="s0")] == ["s2", "s3"]
    assert [s.session_id for s in e.find_sessions(session_id="s1", after="s1")] == []
    assert codec.ADMIN_COMMANDS["find_sessions"]["after"][1] is False


async def test_a_next_cursor_that_does_not_move_stops_the_client() -> None:
    """A server that answered every page with the same `next` would keep a client paging
    forever: the client stops with InvalidReply."""
    sub = {"user": "a", "currency": "EUR", "balance": D(1), "reserved": D(0),
           "available": D(1), "counters": {}, "counters_reserved": {}}

    async def handler(stream: FrameStream) -> None:
        await serve_handshake(stream)
        while (frame := await stream.read_frame(5)) is not None:
            stream.send(m.AdminResult([sub], next="a"), frame.request_id)

    async with FakeServer(handler) as fake, cc_client.connect(fake.url) as client:
        with pytest.raises(cc_client.InvalidReply, match="did not move"):
            await client.admin.list_subscribers()
