"""Hostile clients over real loopback sockets (SPEC section 5; README "Security").

Random and mutated frames, oversize length prefixes, truncated frames then silence,
wrong field types and unknown fields, requests before the handshake, slowloris, a client
that never reads, thousands of connections opened and dropped, frames built to be slow
to decode. After each, a normal client is still served, nothing failed inside the server
and the conservation rule holds (`Ledger.assert_healthy`, tests/hostile.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime as dt
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cc_client
from cc_server.connection import BATCH
from cc_server.testing import running_server
from protocol import messages as m
from protocol.frames import HEADER, encode_frame
from tests.hostile import Ledger, drain, frame, hello_stream, raw_frame, uid
from tests.netfakes import raw_connect, wait_until

pytestmark = pytest.mark.timeout(60)

T = m.MsgType
ITEM = m.ChargeableItem("data", {"volume": 10})
FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@contextlib.asynccontextmanager
async def attacked(**settings: Any) -> AsyncIterator[Ledger]:
    """A seeded server (short timers unless overridden)."""
    async with running_server(**{"heartbeat": 0.5, "handshake_timeout": 1.0,
                                 **settings}) as server:
        ledger = Ledger(server)
        await ledger.seed()
        yield ledger


@pytest.fixture
async def target() -> AsyncIterator[Ledger]:
    """One seeded server for all the examples of a property test."""
    async with attacked() as ledger:
        yield ledger


def valid_frames(ledger: Ledger) -> list[bytes]:
    """One valid frame of each request kind, to mutate."""
    user = next(iter(ledger.initial))
    start = m.Execute(b"op-fuzz-1", m.ContainerKind.START, user, "DATA", "fz-1",
                      (m.SubRequest(m.Action.RESERVE, "r-1", ITEM, ttl=600),), 9, b"ctx")
    update = m.Execute(b"op-fuzz-2", m.ContainerKind.UPDATE, user, "DATA", "fz-1",
                       (m.SubRequest(m.Action.CONFIRM_AND_RESERVE, "r-1", ITEM, ITEM, -1),))
    stop = m.Execute(b"op-fuzz-3", m.ContainerKind.STOP, user, "DATA", "fz-1",
                     (m.SubRequest(m.Action.CONFIRM, "r-1", ITEM),))
    return [frame(msg, 5) for msg in (
        start, update, stop, m.AdminRequest("get_subscriber", {"user": user}),
        m.AdminRequest("top_up", {"user": user, "amount": Decimal("1.5")}, b"op-top"),
        m.AdminRequest("transactions", {"user": user, "limit": 3}),
        m.Listen(9), m.Unlisten(9), m.Ack(1, True), m.Ping())]


# ------------------------------------------------------------------ random and mutated bytes

@FUZZ
@given(data=st.binary(max_size=600), handshake=st.booleans())
async def test_random_bytes(target: Ledger, loop_errors: list[Any], data: bytes,
                            handshake: bool) -> None:
    server = target.server
    stream = await (hello_stream(server) if handshake else
                    raw_connect(server.host, server.port))
    stream.send_raw(data)
    got, _ = await drain(stream, 0.05)
    stream.close()
    assert all(isinstance(x, m.Error | m.HelloOk | m.Pong | m.Ping | m.ListenOk | m.UnlistenOk
                          | m.AckOk | m.AdminResult | m.ExecuteResult | bytes) for x in got)
    await target.assert_healthy(loop_errors)


@FUZZ
@given(choice=st.integers(0, 100), edits=st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 1 << 16),
              st.integers(0, 255)), min_size=1, max_size=6))
async def test_mutated_valid_frames(target: Ledger, loop_errors: list[Any], choice: int,
                                    edits: list[tuple[str, int, int]]) -> None:
    frames = valid_frames(target)
    data = bytearray(frames[choice % len(frames)])
    for kind, at, value in edits:
        pos = at % (len(data) + 1)
        if kind == "insert":
            data.insert(pos, value)
        elif data and kind == "flip":
            data[pos % len(data)] ^= value or 1
        elif data:
            del data[pos % len(data)]
    stream = await hello_stream(target.server)
    stream.send_raw(bytes(data) + frame(m.Ping(), 99))
    await drain(stream, 0.05)
    stream.close()
    await target.assert_healthy(loop_errors)


SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=True) | st.text(max_size=12) | st.binary(max_size=12)
           | st.decimals(allow_nan=False, allow_infinity=False, places=3)
           | st.datetimes(timezones=st.just(dt.UTC)))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
KEYS = ["op", "kind", "user", "service", "session", "subs", "listener", "external",
        "result_type", "filter", "cmd", "args", "id", "confirm", "action", "rid", "item",
        "ttl", "next", "inverse", "resolution", "amount", "versions", "password"]


@st.composite
def warped(draw: st.DrawFn) -> tuple[int, dict[str, Any]]:
    """A valid request body with fields replaced by wrong types, removed, or added."""
    user = "sub-2"
    bodies: list[tuple[int, dict[str, Any]]] = [
        (T.EXECUTE, {"op": b"w1", "kind": "start", "user": user, "service": "DATA",
                     "session": "warp", "subs": [["reserve", "r", ["data", {"volume": 5}],
                                                  None, 60, None, None]]}),
        (T.EXECUTE, {"op": b"w2", "kind": "stop", "user": user, "service": "DATA",
                     "session": "warp", "subs": [["confirm", "r", None, None, None, None,
                                                  None]]}),
        (T.ADMIN, {"cmd": "top_up", "args": {"user": user, "amount": Decimal(1)}}),
        (T.ADMIN, {"cmd": "find_sessions", "args": {"user": user}}),
        (T.LISTEN, {"listener": 3}), (T.ACK, {"id": 1, "confirm": True})]
    msg_type, body = draw(st.sampled_from(bodies))
    body = copy.deepcopy(body)                # the templates above stay intact
    if "subs" in body:
        sub = body["subs"][0]                 # a positional array: replace, cut or extend
        for index in draw(st.lists(st.integers(0, len(sub) - 1), max_size=2)):
            sub[index] = draw(VALUES)
        if draw(st.booleans()):
            del sub[draw(st.integers(0, len(sub))):]
        sub.extend(draw(st.lists(VALUES, max_size=1)))
    targets = [body] + ([body["args"]] if "args" in body else [])
    for where in targets:
        for key in draw(st.lists(st.sampled_from(sorted(where)), max_size=2, unique=True)):
            if draw(st.booleans()):
                where[key] = draw(VALUES)
            else:
                del where[key]
        for key in draw(st.lists(st.sampled_from(KEYS) | st.text(max_size=6), max_size=2)):
            where[key] = draw(VALUES)
    return msg_type, body


@FUZZ
@given(request=warped())
async def test_valid_frames_with_wrong_types_or_unknown_fields(
        target: Ledger, loop_errors: list[Any], request: tuple[int, dict[str, Any]]) -> None:
    msg_type, body = request
    stream = await hello_stream(target.server)
    stream.send_raw(raw_frame(msg_type, 7, body) + frame(m.Ping(), 8))
    answered = set()
    while 8 not in answered:                 # PING comes after: every answer is in by then
        got, msg = await stream.read_message(2.0)
        answered.add(got.request_id)
        if got.request_id == 7 and isinstance(msg, m.Error):
            assert msg.code != "SERVER_ERROR", msg
    if msg_type != T.ACK or body.get("confirm") is not False:
        assert 7 in answered or msg_type == T.ACK   # an ACK without confirm needs no reply
    stream.close()
    await target.assert_healthy(loop_errors)


# ------------------------------------------------------------------ framing attacks

@pytest.mark.parametrize("handshake, length", [
    (False, 2**32 - 1), (False, 64 * 1024 + 1), (True, 2**32 - 1), (True, (1 << 20) + 1)])
async def test_oversize_length_prefix_is_refused_from_the_header(
        loop_errors: list[Any], handshake: bool, length: int) -> None:
    async with attacked() as ledger:
        server = ledger.server
        stream = await (hello_stream(server) if handshake else
                        raw_connect(server.host, server.port))
        stream.send_raw(HEADER.pack(length, T.HELLO if not handshake else T.EXECUTE, 0, 0, 3)
                        + b"\x80" * 100)
        got, closed = await drain(stream, 2.0)
        assert closed and isinstance(got[-1], m.Error) and got[-1].code == "FRAME_TOO_LARGE"
        stats = server.server.dispatcher.stats()
        assert stats["security"]["limits"]["FRAME_TOO_LARGE"] == 1
        await ledger.assert_healthy(loop_errors)


async def test_truncated_frames_then_silence_are_dropped(loop_errors: list[Any]) -> None:
    async with attacked(heartbeat=0.2, handshake_timeout=0.4) as ledger:
        server = ledger.server
        quiet = await raw_connect(server.host, server.port)      # half a HELLO, then nothing
        quiet.send_raw(frame(m.Hello((1,), "x"), 1)[:9])
        shaken = await hello_stream(server)                      # half a container, then nothing
        shaken.send_raw(HEADER.pack(500, T.EXECUTE, 0, 0, 2) + b"\x86\xa2op")
        got, closed = await drain(quiet, 2.0)
        assert closed and isinstance(got[-1], m.Error) and got[-1].code == "HANDSHAKE_TIMEOUT"
        _, closed = await drain(shaken, 3.0)        # silent for 3 heartbeats: dropped
        assert closed
        assert await wait_until(lambda: not server.server.connections, 2.0)
        assert server.server.counts["dead_peers"] == 1
        await ledger.assert_healthy(loop_errors)


@pytest.mark.parametrize("msg", [
    m.Execute(b"op", m.ContainerKind.START, "sub-2", "DATA", "early",
              (m.SubRequest(m.Action.RESERVE, "r", ITEM, ttl=60),)),
    m.AdminRequest("top_up", {"user": "sub-2", "amount": Decimal(100)}),
    m.Listen(3), m.Ack(1, True), m.Ping(), m.Goodbye("bye")], ids=lambda x: type(x).__name__)
async def test_requests_before_the_handshake_are_refused(loop_errors: list[Any],
                                                         msg: m.Message) -> None:
    async with attacked() as ledger:
        server = ledger.server
        stream = await raw_connect(server.host, server.port)
        stream.send_raw(frame(msg, 4) + frame(m.Hello(), 5))
        got, closed = await drain(stream, 2.0)
        assert closed and len(got) == 1
        assert isinstance(got[0], m.Error) and got[0].code == "HANDSHAKE_REQUIRED"
        assert "early" not in server.engine.sessions
        await ledger.assert_healthy(loop_errors)


# ------------------------------------------------------------------ slow and broken clients

async def test_slowloris_handshakes_are_cut_off_and_others_are_served(
        loop_errors: list[Any]) -> None:
    async with attacked(handshake_timeout=0.6, idle_timeout=0.6) as ledger:
        server = ledger.server
        hello = frame(m.Hello((1,), "slowloris"), 1)
        streams = [await raw_connect(server.host, server.port) for _ in range(30)]
        late = await hello_stream(server)          # after its handshake: a trickled frame
        body = frame(m.AdminRequest("stats", {}), 2)
        began = time.monotonic()
        latencies: list[float] = []
        async with ledger.connect() as client:
            for i in range(len(hello)):           # one byte per stream every 30 ms
                for s in streams:
                    if not s.writer.is_closing():
                        s.send_raw(hello[i:i + 1])
                if i < len(body):
                    late.send_raw(body[i:i + 1])
                t0 = time.monotonic()
                await client.admin.get_subscriber(ledger.probe_user)
                latencies.append(time.monotonic() - t0)
                await asyncio.sleep(0.03)
                if time.monotonic() - began > 1.5:
                    break
        assert max(latencies) < 0.2, latencies
        for s in [*streams, late]:   # (their ERROR may be lost: we kept writing, so RST)
            _, closed = await drain(s, 1.0)
            assert closed
        assert await wait_until(lambda: not server.server.connections, 2.0)
        limits = server.server.dispatcher.stats()["security"]["limits"]
        assert limits == {"HANDSHAKE_TIMEOUT": 30, "IDLE_TIMEOUT": 1}
        await ledger.assert_healthy(loop_errors)


async def test_a_client_that_never_reads_cannot_hold_up_the_others(
        loop_errors: list[Any]) -> None:
    async with attacked(write_buffer_high=16 * 1024) as ledger:
        server = ledger.server
        user = next(u for u in ledger.initial if u != ledger.probe_user)
        n = 300
        requests = [frame(m.Execute(f"nr-{i}".encode(), m.ContainerKind.START, user, "DATA",
                                    f"never-reads-{i}",
                                    (m.SubRequest(m.Action.RESERVE, "r", ITEM, ttl=600),)),
                          i + 1) for i in range(n)]
        # ~15 KB per reply, ~9 MB in all: more than the kernel's socket buffers hold
        requests += [frame(m.AdminRequest("transactions", {"user": user}), n + i + 1)
                     for i in range(600)]
        sink = await hello_stream(server, rcvbuf=4096)
        sink.send_raw(b"".join(requests))
        await asyncio.sleep(0.3)
        (conn,) = [c for c in server.server.connections if c.client_name == "hostile"]
        assert conn.paused and conn.transport is not None
        assert conn.transport.get_write_buffer_size() < 200_000
        latencies = []
        async with ledger.connect() as client:
            for _ in range(20):
                t0 = time.monotonic()
                await client.admin.get_subscriber(user)
                latencies.append(time.monotonic() - t0)
        assert max(latencies) < 0.2, latencies
        await ledger.assert_healthy(loop_errors)    # conservation with work half done
        sink.close()
        assert await wait_until(lambda: not server.server.connections, 2.0)
        await ledger.assert_healthy(loop_errors)


async def test_pipelining_more_than_max_in_flight_gets_too_many_requests(
        loop_errors: list[Any]) -> None:
    async with attacked(max_in_flight=8, write_buffer_high=4096) as ledger:
        server = ledger.server
        user = next(u for u in ledger.initial if u != ledger.probe_user)
        for _ in range(300):                # ~60 KB per reply: the socket buffers fill up
            server.engine.top_up(user, Decimal("0.01"), time.time())
        n = 300
        stream = await hello_stream(server, rcvbuf=4096)
        stream.send_raw(b"".join(frame(m.AdminRequest("transactions", {"user": user}), i + 1)
                                 for i in range(n)))
        seen: dict[int, str] = {}
        async with asyncio.timeout(10):
            while len(seen) < n:
                got, msg = await stream.read_message(5.0)
                assert got.request_id not in seen
                seen[got.request_id] = msg.code if isinstance(msg, m.Error) else "ok"
        assert set(seen) == set(range(1, n + 1))
        assert set(seen.values()) == {"ok", "TOO_MANY_REQUESTS"}
        limits = server.server.dispatcher.stats()["security"]["limits"]
        assert limits["TOO_MANY_REQUESTS"] == list(seen.values()).count("TOO_MANY_REQUESTS")
        stream.send_raw(frame(m.Ping(), 999))        # and the connection still works
        got, msg = await stream.read_message(2.0)
        assert (got.request_id, type(msg)) == (999, m.Pong)
        stream.close()
        await ledger.assert_healthy(loop_errors)


async def test_a_flood_of_pipelined_requests_does_not_stall_the_loop(
        loop_errors: list[Any]) -> None:
    async with attacked() as ledger:
        server = ledger.server
        flood = await hello_stream(server)
        user = next(u for u in ledger.initial if u != ledger.probe_user)
        request = m.AdminRequest("find_sessions", {"user": user})
        burst = b"".join(frame(request, i + 1) for i in range(6000))   # ~270 KB, one write
        # A callback that re-queues itself runs once per loop turn: the requests answered
        # since its last run (the dispatcher's admin latency count) were answered in one
        # turn, and no turn may answer more than a batch. (Counting this way needs no
        # stand-in for the dispatcher, which the compiled connection would refuse.)
        loop = asyncio.get_running_loop()
        answered = server.server.dispatcher.latency["admin"]
        last = answered.count
        turn = 0
        done = False
        per_turn: collections.Counter[int] = collections.Counter()

        def spin() -> None:
            nonlocal turn, last
            turn += 1
            if answered.count != last:
                per_turn[turn] = answered.count - last
                last = answered.count
            if not done:
                loop.call_soon(spin)

        spin()
        try:
            for _ in range(5):
                flood.send_raw(burst)
                await asyncio.sleep(0.05)
        finally:
            done = True
        assert sum(per_turn.values()) > BATCH and max(per_turn.values()) <= BATCH, per_turn
        limits = server.server.dispatcher.stats()["security"]["limits"]
        assert limits["TOO_MANY_REQUESTS"] > 0      # 6000 at once is past max_in_flight
        flood.close()
        await ledger.assert_healthy(loop_errors)


async def test_thousands_of_connections_opened_and_dropped(loop_errors: list[Any]) -> None:
    async with attacked() as ledger:
        server = ledger.server
        accepted = server.server.counts["accepted"]
        hello = frame(m.Hello((1,), "churn"), 1)

        async def churn(i: int) -> None:
            stream = await raw_connect(server.host, server.port)
            kind = i % 5
            if kind == 1:
                stream.send_raw(hello[:7])
            elif kind >= 2:
                stream.send_raw(hello)
                await stream.read_frame(3.0)
                if kind == 3:
                    stream.send_raw(frame(m.Listen(7), 2) + frame(m.AdminRequest(
                        "transactions", {}), 3))
                elif kind == 4:
                    stream.send_raw(HEADER.pack(1000, T.EXECUTE, 0, 0, 2) + b"\x86")
            stream.close()

        total = 0
        for _ in range(10):
            await asyncio.gather(*(churn(i) for i in range(200)))
            total += 200
        assert total == 2000
        assert await wait_until(lambda: not server.server.connections, 5.0)
        assert server.server.counts["accepted"] - accepted >= 2000
        assert not server.server.renewal.listeners
        assert not server.server.waiting
        await ledger.assert_healthy(loop_errors)


async def test_connections_past_the_limit_are_refused_and_the_rest_served(
        loop_errors: list[Any]) -> None:
    async with attacked(max_connections=20, handshake_timeout=5.0) as ledger:
        server = ledger.server
        streams = [await raw_connect(server.host, server.port) for _ in range(25)]
        refused = 0
        for got, closed in await asyncio.gather(*(drain(s, 0.3) for s in streams)):
            if closed:
                assert isinstance(got[-1], m.Error) and got[-1].code == "TOO_MANY_CONNECTIONS"
                refused += 1
        assert refused == 5
        assert server.server.dispatcher.stats()["security"]["limits"][
            "TOO_MANY_CONNECTIONS"] == 5
        for s in streams:
            s.close()
        assert await wait_until(lambda: not server.server.connections, 2.0)
        await ledger.assert_healthy(loop_errors)


async def test_handshakes_past_max_handshakes_are_refused_and_a_finished_one_frees_a_slot(
        loop_errors: list[Any]) -> None:
    async with attacked(max_handshakes=3, handshake_timeout=5.0) as ledger:
        server = ledger.server
        done = await hello_stream(server)                  # past its handshake: not counted
        waiting = [await raw_connect(server.host, server.port) for _ in range(3)]
        assert await wait_until(lambda: len(server.server.connections) == 4, 1.0)
        extra = await raw_connect(server.host, server.port)
        got, closed = await drain(extra, 0.3)
        assert closed and isinstance(got[-1], m.Error) and got[-1].code == "TOO_MANY_CONNECTIONS"
        assert "handshakes at once" in got[-1].message
        waiting[0].send(m.Hello((1,), "late"), 1)          # one finishes: a slot is free
        assert isinstance((await waiting[0].read_message())[1], m.HelloOk)
        again = await hello_stream(server)
        stats = server.server.dispatcher.stats()
        assert stats["security"]["limits"]["TOO_MANY_CONNECTIONS"] == 1
        assert stats["connections"]["handshaking"] == 2
        for s in [done, *waiting, again]:
            s.close()
        await ledger.assert_healthy(loop_errors)


# ------------------------------------------------------------------ bodies slow to decode

@pytest.mark.parametrize("kind", ["nested arrays", "nested maps", "decimals", "long decimal",
                                  "huge map", "claims 4 GiB"])
async def test_one_mib_bodies_built_to_be_slow_are_refused_quickly(
        loop_errors: list[Any], kind: str) -> None:
    size = (1 << 20) - 16
    body = {
        "nested arrays": b"\x91" * size + b"\xc0",
        "nested maps": b"\x81\xa1k" * (size // 3),
        "decimals": b"\xdd" + (size // 6).to_bytes(4, "big")
                    + msgpack.packb(msgpack.ExtType(1, b"1.5")) * (size // 6),
        "long decimal": msgpack.packb(msgpack.ExtType(1, b"9" * (size - 16))),
        "huge map": msgpack.packb({f"{i}": None for i in range(size // 9)}),
        "claims 4 GiB": b"\xdb\xff\xff\xff\xff" + b"a" * 100,
    }[kind]
    async with attacked() as ledger:
        stream = await hello_stream(ledger.server)
        # CPU time of this process (server and client both run in it), not wall time:
        # what a slow body costs the server, unmoved by other processes on a busy machine
        t0 = time.process_time()
        stream.send_raw(encode_frame(T.EXECUTE, 2, body[:size]) + frame(m.Ping(), 3))
        got, msg = await stream.read_message(5.0)
        elapsed = time.process_time() - t0
        assert isinstance(msg, m.Error) and len(msg.message) <= 500, msg
        assert elapsed < 0.5, elapsed
        if kind in ("long decimal", "huge map"):   # a map with a bad field: that request
            assert (got.request_id, msg.code) == (2, "INVALID_REQUEST")
            got, msg = await stream.read_message(2.0)
            assert (got.request_id, type(msg)) == (3, m.Pong)
        else:                                      # not one msgpack map: the connection
            assert (got.request_id, msg.code) == (0, "PROTOCOL_ERROR")
            assert await stream.closed_within(1.0)
        stream.close()
        await ledger.assert_healthy(loop_errors)


async def test_listing_queries_are_bounded(loop_errors: list[Any]) -> None:
    async with attacked() as ledger:
        stream = await hello_stream(ledger.server)
        for cmd, most in (("transactions", 2000), ("find_sessions", 5000)):
            stream.send(m.AdminRequest(cmd, {"limit": 1 << 20}), 2)
            _, msg = await stream.read_message(2.0)
            assert isinstance(msg, m.AdminResult) and 0 < len(msg.value) <= most
        stream.close()
        await ledger.assert_healthy(loop_errors)


# ------------------------------------------------------------------ other subscribers' data

async def test_no_client_reaches_another_subscribers_session(loop_errors: list[Any]) -> None:
    async with attacked() as ledger:
        owner, other = [u for u in ledger.initial if u != ledger.probe_user][:2]
        sid = next(s for s, session in ledger.server.engine.sessions.items()
                   if session.user_id == owner)
        held = ledger.server.engine.get_subscriber(owner).reserved
        async with ledger.connect() as client:
            for make in (client.create_session_update_operation,
                         client.create_session_stop_operation):
                op = make(other, "DATA", sid)
                op.prepare_confirm("r-1", m.ChargeableItem("data", {"volume": 1000}))
                with pytest.raises(cc_client.ChargingError) as info:
                    await op.execute()
                assert info.value.code == "SESSION_NOT_FOUND"
        stream = await hello_stream(ledger.server)   # acks what it never received
        for nid in range(1, 5):
            stream.send(m.Ack(nid, True), nid)
            _, msg = await stream.read_message(2.0)
            assert isinstance(msg, m.AckOk) and msg.status == "unknown"
        stream.close()
        assert ledger.server.engine.get_subscriber(owner).reserved == held
        assert sid in ledger.server.engine.sessions
        await ledger.assert_healthy(loop_errors)


async def test_listening_costs_nothing_when_notifications_pile_up(
        loop_errors: list[Any]) -> None:
    async with attacked(max_pending_notifications=2) as ledger:
        server = ledger.server
        listened = [(sid, s) for sid, s in server.engine.sessions.items()
                    if s.listener_id == 7 and any(cs.open for cs in s.charging_sessions())]
        assert len(listened) >= 3
        async with ledger.connect() as client:
            for sid, _ in listened[:2]:
                await client.admin.request_renewal(sid, "r-1")
            with pytest.raises(cc_client.ChargingError) as info:
                await client.admin.request_renewal(listened[2][0], "r-1")
            assert info.value.code == "TOO_MANY_NOTIFICATIONS"
        assert len(server.server.renewal.pending) == 2
        await ledger.assert_healthy(loop_errors)


@pytest.mark.parametrize("field, value", [("user", "u" * 40), ("session", "s" * 40)])
async def test_tighter_string_limit_refuses_before_the_engine(
        loop_errors: list[Any], field: str, value: str) -> None:
    async with attacked(max_id_length=32) as ledger:
        stream = await hello_stream(ledger.server)
        body = {"op": b"t", "kind": "start", "user": "sub-2", "service": "DATA",
                "session": uid("tight"), "subs": [["reserve", "r", ["data", {"volume": 1}],
                                                   None, 60, None, None]]}
        body[field] = value
        stream.send_raw(raw_frame(T.EXECUTE, 3, body))
        _, msg = await stream.read_message(2.0)
        assert isinstance(msg, m.Error) and msg.code == "STRING_TOO_LONG"
        stream.close()
        await ledger.assert_healthy(loop_errors)
