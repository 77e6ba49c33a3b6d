"""Transport integration tests over real loopback sockets (SPEC section 5 and 6).

Servers listen on 127.0.0.1 and a free port; fakes, raw sockets and a frame-aware proxy
come from `netfakes`. Heartbeats and timeouts are short so each test takes a few seconds
at most, and every wait is bounded.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import os
import re
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

import cc_client
from cc_client import ChargeableItem, CommunicationFailure
from cc_client.connection import ClientConnection, ConnectionLost, HandshakeRefused
from cc_server.connection import ServerConnection
from cc_server.testing import TestServer, running_server
from protocol import codec
from protocol import messages as m
from protocol.frames import HEADER, MAX_REQUEST_ID, Frame, FrameDecoder, encode_frame
from tests.conftest import new_subscriber
from tests.netfakes import (
    FakeServer,
    FrameStream,
    Proxy,
    dead_port,
    raw_connect,
    raw_hello,
    serve_handshake,
    wait_until,
)

pytestmark = pytest.mark.timeout(20)

T = m.MsgType
ROOT = Path(__file__).resolve().parent.parent
CENT = Decimal("0.01")


def start_op(client: cc_client.Client, user: str, session: str, volume: int,
             ttl: float = 60) -> cc_client.SessionStartOperation:
    op = client.create_session_start_operation(user_id=user, service_id="DATA",
                                               session_id=session)
    op.prepare_reserve("r-1", ChargeableItem("data", {"volume": volume}), ttl=ttl)
    return op


def reserved(result: cc_client.SessionResult, rid: str = "r-1") -> Decimal:
    """The amount a sub-request reserved."""
    rating = result[rid].reserve_result
    assert rating is not None, result[rid]
    return rating.amount


def fake_execute_result(frame: Frame) -> m.ExecuteResult:
    """What a fake server answers to an EXECUTE: each sub-request reserved at its volume
    in cents, so the caller can tell its own reply from another one."""
    msg = codec.decode(frame)
    assert isinstance(msg, m.Execute)
    outcomes = []
    for sub in msg.subs:
        assert sub.item is not None
        volume = sub.item.properties["volume"]
        assert isinstance(volume, int)
        outcomes.append(m.Outcome(sub.reservation_id,
                                  reserve_result=m.RatingResult(volume * CENT, "EUR")))
    return m.ExecuteResult(msg.session_id, tuple(outcomes))


async def assert_server_serves(server: TestServer) -> None:
    """A fresh client can still do a round trip."""
    async with cc_client.connect(server.url, request_timeout=2.0) as other:
        stats = await other.admin.stats()
        assert "engine" in stats


# ----------------------------------------------------------------------- 1. pipelining

async def test_pipelining_hundreds_of_calls_on_one_connection() -> None:
    async with running_server() as server:
        async with Proxy(server.host, server.port) as proxy, \
                cc_client.connect(proxy.url, request_timeout=5.0) as client:
            users = [await new_subscriber(client, f"pipe-{i}", "1000.00") for i in range(5)]

            async def start(i: int) -> tuple[int, cc_client.SessionResult]:
                return i, await start_op(client, users[i % 5], f"pipe-s{i}", i + 1).execute()

            n = 400
            starts, subs = await asyncio.wait_for(asyncio.gather(
                asyncio.gather(*(start(i) for i in range(n))),
                asyncio.gather(*(client.admin.get_subscriber(u) for u in users * 20))), 10)

            for i, result in starts:
                assert result.session_id == f"pipe-s{i}"
                assert result.ok
                assert reserved(result) == (i + 1) * CENT
            assert [s.user_id for s in subs] == users * 20

            # one connection, many requests on the wire at once
            assert proxy.connections == 1
            assert client.reconnects == 0
            assert len(server.server.connections) == 1
            assert proxy.max_outstanding >= 50
            assert len(proxy.requests) == 5 + n + 100

        for i, user in enumerate(users):
            expected = sum((j + 1 for j in range(i, n, 5)), 0) * CENT
            assert server.engine.get_subscriber(user).reserved == expected


# ----------------------------------------------------------------------- 2. out of order

async def test_replies_out_of_order_are_paired_by_request_id() -> None:
    n = 6
    answered: list[int] = []

    async def reverse(stream: FrameStream) -> None:
        await serve_handshake(stream)
        frames: list[Frame] = []
        while len(frames) < n:
            frame = await stream.read_frame(3.0)
            assert frame is not None
            if frame.type == T.EXECUTE:
                frames.append(frame)
        for frame in reversed(frames):
            stream.send(fake_execute_result(frame), frame.request_id)
            answered.append(frame.request_id)
            await stream.writer.drain()
            await asyncio.sleep(0.01)   # separate reads on the client side
        await stream.read_frame(5.0)

    async with FakeServer(reverse) as fake, \
            cc_client.connect(fake.url, request_timeout=3.0) as client:
        results = await asyncio.gather(
            *(start_op(client, "u", f"ooo-{i}", 10 * (i + 1)).execute() for i in range(n)))
        for i, result in enumerate(results):
            assert result.session_id == f"ooo-{i}"
            assert reserved(result) == 10 * (i + 1) * CENT
        assert answered == sorted(answered, reverse=True) and len(answered) == n
        assert not fake.errors


# ----------------------------------------------------------------------- 3. request timeout

async def test_unanswered_request_times_out_and_the_client_stays_usable() -> None:
    late: list[asyncio.Task[None]] = []
    gave_up = asyncio.Event()

    async def answers_admin_only(stream: FrameStream) -> None:
        await serve_handshake(stream)

        async def answer_late(frame: Frame) -> None:
            await gave_up.wait()   # answer once the caller gave up
            stream.send(fake_execute_result(frame), frame.request_id)

        while (frame := await stream.read_frame(10.0)) is not None:
            if frame.type == T.ADMIN:
                stream.send(m.AdminResult({"alive": True}), frame.request_id)
            elif frame.type == T.EXECUTE and b"late" in frame.body:
                late.append(asyncio.create_task(answer_late(frame)))

    async with FakeServer(answers_admin_only) as fake, \
            cc_client.connect(fake.url, request_timeout=0.3) as client:
        began = time.monotonic()
        with pytest.raises(CommunicationFailure) as info:
            await start_op(client, "u", "never", 5).execute()
        elapsed = time.monotonic() - began
        assert 0.25 <= elapsed < 1.0, elapsed
        assert "0.3" in str(info.value)
        # a reply that comes after its caller gave up is dropped without harm
        with pytest.raises(CommunicationFailure):
            await start_op(client, "u", "late", 5).execute()
        gave_up.set()
        await asyncio.wait_for(late[0], 1.0)
        # the same connection still carries other calls (their replies follow the late
        # one on the wire), and nothing is left pending
        assert await client.admin.stats() == {"alive": True}
        assert client.connected and client.reconnects == 0
        assert len(fake.streams) == 1
        conn = client._conn
        assert conn is not None and not conn.pending


# ----------------------------------------------------------------------- 4. oversize frames

async def test_server_refuses_an_oversize_frame_from_its_header() -> None:
    async with running_server(max_frame=4096) as server, \
            cc_client.connect(server.url, request_timeout=2.0) as bystander:
        await new_subscriber(bystander, "big", "5.00")
        raw = await raw_connect(server.host, server.port)
        assert isinstance(await raw_hello(raw), m.HelloOk)
        # announce 1 MiB but send only the header: the server must not wait for the body
        raw.send_raw(HEADER.pack(1 << 20, T.EXECUTE, 0, 0, 7))
        frame, msg = await raw.read_message(2.0)
        assert isinstance(msg, m.Error) and msg.code == "FRAME_TOO_LARGE"
        assert frame.request_id == 0
        assert await raw.closed_within(2.0)
        # the other connection never noticed
        sub = await bystander.admin.get_subscriber("big")
        assert sub.balance == Decimal("5.00")
        assert bystander.reconnects == 0
        assert server.server.counts["connection_error.FRAME_TOO_LARGE"] == 1


async def test_client_refuses_to_send_a_container_over_the_negotiated_limit() -> None:
    async with running_server(max_frame=2048) as server, \
            cc_client.connect(server.url, request_timeout=2.0) as client:
        await new_subscriber(client, "ext", "5.00")
        op = start_op(client, "ext", "too-big", 1)
        op.set_external_data(b"\x00" * 4096)
        with pytest.raises(CommunicationFailure, match="message too long"):
            await op.execute()
        # never sent: the server saw no container, and the connection is intact
        assert not server.engine.sessions
        assert not any(kind == "start" for kind, _ in server.server.dispatcher.counts)
        assert client.reconnects == 0 and client.connected
        small = start_op(client, "ext", "small", 1)
        small.set_external_data(b"\x00" * 1024)
        assert (await small.execute()).ok


async def test_client_refuses_a_container_over_the_default_one_mib_limit() -> None:
    async with running_server() as server, \
            cc_client.connect(server.url, request_timeout=2.0) as client:
        await new_subscriber(client, "huge", "5.00")
        op = client.create_session_start_operation("huge", "DATA", "huge-s")
        props: dict[str, m.PropertyValue] = {f"p{k}": "x" * 4000 for k in range(63)}
        props["volume"] = 1
        for i in range(5):   # 5 x 63 x 4000 bytes > 1 MiB
            op.prepare_reserve(f"r-{i}", ChargeableItem("data", props), ttl=60)
        op.set_external_data(b"\x01" * 4096)
        with pytest.raises(CommunicationFailure, match="message too long"):
            await op.execute()
        assert not server.engine.sessions
        assert (await client.admin.get_subscriber("huge")).reserved == 0


# ----------------------------------------------------------------------- 5. handshake

HANDSHAKE_CASES = {
    "not-hello-first": (encode_frame(T.ADMIN, 3, codec.pack({"cmd": "stats", "args": {}})),
                        "HANDSHAKE_REQUIRED"),
    "ping-first": (encode_frame(T.PING, 4, codec.pack({})), "HANDSHAKE_REQUIRED"),
    "version-99": (codec.encode(m.Hello((99,), "future"), 1), "UNSUPPORTED_VERSION"),
    "hello-bad-body": (encode_frame(T.HELLO, 1, b"\xc1\xc1"), "PROTOCOL_ERROR"),
    "hello-bad-field": (encode_frame(T.HELLO, 1, codec.pack({"versions": "1"})),
                        "INVALID_REQUEST"),
    "hello-request-id-0": (codec.encode(m.Hello((1,), "x"), 0), "PROTOCOL_ERROR"),
    "http-garbage": (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "FRAME_TOO_LARGE"),
    "reserved-bits": (HEADER.pack(2, T.HELLO, 0x40, 0, 1) + b"\x80\x80", "PROTOCOL_ERROR"),
}


@pytest.mark.parametrize("case", sorted(HANDSHAKE_CASES))
async def test_bad_handshake_gets_an_error_and_is_closed(case: str) -> None:
    data, code = HANDSHAKE_CASES[case]
    async with running_server(heartbeat=0.2, handshake_timeout=0.3) as server:
        raw = await raw_connect(server.host, server.port)
        raw.send_raw(data)
        frame, msg = await raw.read_message(1.0)
        assert isinstance(msg, m.Error), msg
        assert msg.code == code and msg.message
        assert frame.request_id == 0
        assert await raw.closed_within(1.0)
        await assert_server_serves(server)
        assert server.server.counts[f"connection_error.{code}"] == 1


async def test_no_hello_within_the_handshake_timeout() -> None:
    async with running_server(heartbeat=0.2, handshake_timeout=0.3) as server:
        began = time.monotonic()
        raw = await raw_connect(server.host, server.port)
        _, msg = await raw.read_message(2.0)
        elapsed = time.monotonic() - began
        assert isinstance(msg, m.Error) and msg.code == "HANDSHAKE_TIMEOUT"
        assert 0.25 <= elapsed < 1.0, elapsed
        assert await raw.closed_within(1.0)
        await assert_server_serves(server)


async def test_client_reports_an_unsupported_version_refusal() -> None:
    async def refuse(stream: FrameStream) -> None:
        frame, msg = await stream.read_message()
        assert isinstance(msg, m.Hello)
        stream.send(m.Error("UNSUPPORTED_VERSION", "speaks version 7 only"), frame.request_id)
        await stream.writer.drain()
        stream.writer.close()

    async with FakeServer(refuse) as fake:
        began = time.monotonic()
        with pytest.raises(CommunicationFailure, match=r"UNSUPPORTED_VERSION|version 7"):
            await cc_client.connect(fake.url, request_timeout=5)
        assert time.monotonic() - began < 1.0, "a version refusal is final: no retries"
        assert len(fake.streams) == 1


# ----------------------------------------------------------------------- 6. heartbeat

async def test_server_drops_a_silent_peer_after_three_heartbeats() -> None:
    async with running_server(heartbeat=0.2, handshake_timeout=0.3) as server:
        raw = await raw_connect(server.host, server.port)
        assert isinstance(await raw_hello(raw), m.HelloOk)
        began = time.monotonic()
        pings = 0
        while (frame := await raw.read_frame(2.0)) is not None:   # never answered
            pings += frame.type == T.PING
        elapsed = time.monotonic() - began
        assert 0.5 <= elapsed < 1.2, elapsed
        assert pings >= 2
        assert server.server.counts["dead_peers"] == 1
        assert not server.server.connections
        await assert_server_serves(server)


async def test_client_answers_server_pings() -> None:
    pongs: list[int] = []

    async def pinger(stream: FrameStream) -> None:
        await serve_handshake(stream, heartbeat=0.2)
        for rid in (77, 78, 79):
            stream.send(m.Ping(), rid)
            async with asyncio.timeout(1.0):
                while True:
                    frame = await stream.read_frame(1.0)
                    assert frame is not None
                    if frame.type == T.PONG and frame.request_id == rid:
                        pongs.append(rid)
                        break
            await asyncio.sleep(0.15)
        await stream.read_frame(5.0)

    async with FakeServer(pinger) as fake, \
            cc_client.connect(fake.url, request_timeout=2.0) as client:
        await wait_until(lambda: len(pongs) == 3 or bool(fake.errors), 3.0)
        assert pongs == [77, 78, 79]
        assert not fake.errors
        assert client.connected


async def test_idle_client_pings_and_its_connection_survives_many_intervals() -> None:
    # the rule itself (both ends, any number of intervals) is tested on the fake clock in
    # test_connection_machine.py; this is the client's timer on a real socket
    pings: list[int] = []

    async def answers_pings(stream: FrameStream) -> None:
        await serve_handshake(stream, heartbeat=0.05)
        while (frame := await stream.read_frame(5.0)) is not None:
            if frame.type == T.PING:
                pings.append(frame.request_id)
                stream.send(m.Pong(), frame.request_id)

    async with FakeServer(answers_pings) as fake, \
            cc_client.connect(fake.url, request_timeout=1.0) as client:
        assert await wait_until(lambda: len(pings) >= 7, 3.0)   # 7 idle intervals
        assert 0 not in pings and len(set(pings)) == len(pings)
        assert client.connected and client.reconnects == 0
        assert len(fake.streams) == 1 and not fake.errors


async def test_client_detects_a_silent_server_and_fails_the_pending_call() -> None:
    closed_after: list[float] = []
    seen: list[int] = []

    async def goes_silent(stream: FrameStream) -> None:
        await serve_handshake(stream, heartbeat=0.2)
        began = time.monotonic()
        while (frame := await stream.read_frame(5.0)) is not None:   # read, never write
            seen.append(frame.type)
        closed_after.append(time.monotonic() - began)

    async with FakeServer(goes_silent) as fake:
        client = await cc_client.connect(fake.url, request_timeout=1.5)
        try:
            began = time.monotonic()
            with pytest.raises(CommunicationFailure):
                await start_op(client, "u", "silent", 1).execute()
            elapsed = time.monotonic() - began
        finally:
            await client.close()
        assert 1.4 <= elapsed < 2.5, elapsed
        assert T.EXECUTE in seen
        # the client dropped the first connection after ~3 heartbeats, long before the
        # call's own deadline, and tried again on a new one
        assert closed_after and 0.5 <= closed_after[0] < 1.2, closed_after
        assert len(fake.streams) >= 2
        assert seen.count(T.EXECUTE) >= 2


# ----------------------------------------------------------------------- 7. shutdown

async def test_shutdown_with_requests_in_flight_keeps_client_and_engine_in_agreement() -> None:
    async with running_server(heartbeat=0.5) as server:
        clients = [await cc_client.connect(server.url, request_timeout=1.0) for _ in range(3)]
        try:
            for k in range(3):
                await new_subscriber(clients[0], f"sd-{k}", "100000.00")
            ok: dict[str, Decimal] = {}
            failed: list[str] = []
            unexpected: list[BaseException] = []

            async def worker(k: int, w: int) -> None:
                client = clients[k]
                for i in range(400):
                    sid = f"sd-{k}-{w}-{i}"
                    try:
                        result = await start_op(client, f"sd-{k}", sid, 1 + i % 7).execute()
                    except CommunicationFailure:
                        failed.append(sid)
                        return
                    except BaseException as exc:   # anything else is a bug
                        unexpected.append(exc)
                        return
                    assert result.ok
                    ok[sid] = reserved(result)

            tasks = [asyncio.create_task(worker(k, w)) for k in range(3) for w in range(20)]
            assert await wait_until(lambda: len(ok) >= 300, 2.0, 0.005)
            await asyncio.wait_for(server.server.shutdown(drain=2.0), 3.0)
            await asyncio.wait_for(asyncio.gather(*tasks), 4.0)
        finally:
            for client in clients:
                await client.close()

        assert not unexpected, unexpected
        assert len(failed) == 60, "every worker ends on a CommunicationFailure"
        engine = server.engine
        for k in range(3):
            user = f"sd-{k}"
            mine = {sid: amount for sid, amount in ok.items() if sid.startswith(f"{user}-")}
            assert engine.get_subscriber(user).reserved == sum(mine.values(), Decimal(0))
            live = {sid for sid, s in engine.sessions.items() if s.user_id == user}
            assert live == set(mine)
            reserves = [t for t in engine.transactions(user, None, None, 100_000)
                        if t.kind == "reserve"]
            assert len(reserves) == len(mine)


async def test_shutdown_drains_then_drops_a_peer_that_does_not_read() -> None:
    high = 32 * 1024
    async with running_server(write_buffer_high=high) as server:
        # a client that came and went before must not make shutdown skip the drain
        async with cc_client.connect(server.url, request_timeout=2.0) as early:
            user = await new_subscriber(early, "drain", "1.00")
        assert await wait_until(lambda: not server.server.connections, 1.0)
        now = time.time()
        for _ in range(500):
            server.engine.top_up(user, Decimal("0.01"), now)
        request = codec.encode_body(m.AdminRequest("transactions", {"user": user}))[1]
        raw = await raw_connect(server.host, server.port, rcvbuf=4096)
        try:
            assert isinstance(await raw_hello(raw), m.HelloOk)
            raw.send_raw(b"".join(encode_frame(T.ADMIN, i + 1, request) for i in range(300)))
            assert await wait_until(lambda: any(c.paused for c in server.server.connections),
                                    3.0)
            assert len(server.server.connections) == 1

            began = time.monotonic()
            await asyncio.wait_for(server.server.shutdown(drain=0.5), 3.0)
            elapsed = time.monotonic() - began
            assert 0.45 <= elapsed < 1.5, f"shutdown took {elapsed:.2f} s, drain was 0.5 s"
            assert await wait_until(lambda: not server.server.connections, 1.0), \
                "the non-reading peer was not dropped"
            assert await raw.closed_within(5.0)
        finally:
            raw.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_cc_server_command_exits_cleanly_on_signal(sig: signal.Signals) -> None:
    exe = ROOT / ".venv" / "bin" / "cc-server"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "cc_server"]
    proc = await asyncio.create_subprocess_exec(
        *command, "--host", "127.0.0.1", "--port", "0", "--heartbeat", "0.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        found = re.fullmatch(r"listening on (127\.0\.0\.1):(\d+)( \(.*\))?\n", line)
        assert found, line
        port = int(found[2])
        assert port != 0
        client = await cc_client.connect(f"127.0.0.1:{port}", request_timeout=1.0)
        try:
            await new_subscriber(client, "sig", "3.00")
            assert (await start_op(client, "sig", "sig-s", 10).execute()).ok
            began = time.monotonic()
            proc.send_signal(sig)
            _, err = await asyncio.wait_for(proc.communicate(), 5)
            assert proc.returncode == 0, err.decode()
            assert time.monotonic() - began < 5
            with pytest.raises(CommunicationFailure):
                await client.admin.stats()
        finally:
            await client.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ----------------------------------------------------------------------- 8. lost reply

async def test_retry_after_a_lost_reply_charges_once() -> None:
    executed = 0

    def cut_first_reply_of_each_container(frame: Frame) -> bool:
        # replies 1 (start) and 3 (stop) never reach the client; 2 and 4 are the retries
        nonlocal executed
        if frame.type != T.EXECUTE_RESULT:
            return False
        executed += 1
        return executed in (1, 3)

    async with running_server(heartbeat=0.5) as server, \
            Proxy(server.host, server.port, cut_first_reply_of_each_container) as proxy, \
            cc_client.connect(proxy.url, request_timeout=3.0) as client:
        user = await new_subscriber(client, "lost", "10.00")
        started = await start_op(client, user, "lost-s", 100).execute()
        assert started.ok and reserved(started) == Decimal("1.00")
        assert proxy.cuts == 1 and client.reconnects == 1

        stop = client.create_session_stop_operation(user, "DATA", "lost-s")
        stop.prepare_confirm("r-1", ChargeableItem("data", {"volume": 30}))
        stopped = await stop.execute()
        confirm = stopped["r-1"].confirm_result
        assert stopped.ok and confirm is not None and confirm.amount == Decimal("0.30")
        assert proxy.cuts == 2 and client.reconnects == 2

        # the retries were the very same bytes (same operation id), and the outcome the
        # client got is byte for byte the one the server sent the first time
        executes = [f for f in proxy.requests if f.type == T.EXECUTE]
        assert len(executes) == 4
        assert executes[0].body == executes[1].body != executes[2].body == executes[3].body
        results = [f for f in proxy.replies if f.type == T.EXECUTE_RESULT]
        assert len(results) == 4
        assert results[0].body == results[1].body and results[2].body == results[3].body
        assert server.server.dedup.hits == 2

        sub = await client.admin.get_subscriber(user)
        assert sub.balance == Decimal("9.70") and sub.reserved == 0
        journal = await client.admin.transactions(user_id=user)
        kinds = sorted(t.kind for t in journal if t.session_id == "lost-s")
        assert kinds == ["confirm", "release", "reserve"]


# ----------------------------------------------------------------------- 9. flow control

async def test_flow_control_window_bounds_requests_on_the_wire() -> None:
    outstanding: set[int] = set()
    peak = 0
    served = 0

    async def slow(stream: FrameStream) -> None:
        nonlocal peak
        await serve_handshake(stream)
        pending: set[asyncio.Task[None]] = set()

        async def answer(frame: Frame) -> None:
            nonlocal served
            await asyncio.sleep(0.03)
            outstanding.discard(frame.request_id)
            served += 1
            stream.send(fake_execute_result(frame), frame.request_id)

        while (frame := await stream.read_frame(5.0)) is not None:
            if frame.type == T.EXECUTE:
                outstanding.add(frame.request_id)
                peak = max(peak, len(outstanding))
                task = asyncio.create_task(answer(frame))
                pending.add(task)
                task.add_done_callback(pending.discard)

    async with FakeServer(slow) as fake, \
            cc_client.connect(fake.url, request_timeout=5.0, queue_size_to_notify=2,
                              max_queue_size_to_wait=50) as client:
        began = time.monotonic()
        results = await asyncio.gather(
            *(start_op(client, "u", f"fc-{i}", i + 1).execute() for i in range(20)))
        elapsed = time.monotonic() - began
        assert [r.session_id for r in results] == [f"fc-{i}" for i in range(20)]
        assert [reserved(r) for r in results] == \
            [(i + 1) * CENT for i in range(20)]
        assert served == 20
        assert peak == 2
        assert elapsed >= 10 * 0.03   # 20 calls, two at a time
        assert not fake.errors


# ----------------------------------------------------------------------- 10. slow reader

async def test_a_slow_reader_does_not_stall_other_clients() -> None:
    high = 32 * 1024
    async with running_server(heartbeat=5.0, write_buffer_high=high) as server, \
            cc_client.connect(server.url, request_timeout=2.0) as client:
        user = await new_subscriber(client, "slow", "1.00")
        now = time.time()
        for _ in range(500):
            server.engine.top_up(user, Decimal("0.01"), now)
        request = codec.encode_body(m.AdminRequest("transactions", {"user": user}))[1]
        reply_size = len((await client.call(T.ADMIN, request))[1])
        assert reply_size > 20_000
        answered_before = server.server.dispatcher.counts["transactions", "ok"]

        latencies: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            for _ in range(500):
                if stop.is_set():
                    return
                began = time.monotonic()
                assert (await client.admin.get_subscriber(user)).user_id == user
                latencies.append(time.monotonic() - began)
                await asyncio.sleep(0.005)

        prober = asyncio.create_task(probe())
        raw = await raw_connect(server.host, server.port, rcvbuf=4096)
        try:
            assert isinstance(await raw_hello(raw), m.HelloOk)
            n = 400   # ~14 MB of replies, asked for in one small write and never read
            raw.send_raw(b"".join(encode_frame(T.ADMIN, i + 1, request) for i in range(n)))
            def slow_conns() -> list[ServerConnection]:
                return [c for c in server.server.connections
                        if c.client_name == "raw-test-client" and c.paused]

            assert await wait_until(lambda: bool(slow_conns()), 3.0), \
                "the server should have stopped reading the slow reader"
            (slow_conn,) = slow_conns()
            assert slow_conn.transport is not None
            buffered = slow_conn.transport.get_write_buffer_size()
            assert buffered < high + 2 * reply_size, buffered
            answered = server.server.dispatcher.counts["transactions", "ok"] - answered_before
            assert answered < n // 2, answered   # the rest waits in its backlog
            assert (await start_op(client, user, "while-slow", 1).execute()).ok
            assert await wait_until(lambda: len(latencies) >= 20, 3.0), latencies
            stop.set()
            await asyncio.wait_for(prober, 2.0)
            assert len(latencies) >= 20 and max(latencies) < 0.2, latencies

            # once the reader reads, it gets every reply, in order, and nothing else
            rids: list[int] = []
            async with asyncio.timeout(8.0):
                while len(rids) < n:
                    frame = await raw.read_frame(2.0)
                    assert frame is not None and frame.type == T.ADMIN_RESULT
                    rids.append(frame.request_id)
            assert rids == list(range(1, n + 1))
        finally:
            stop.set()
            raw.close()


# ----------------------------------------------------------------------- 11. connect()

async def test_connect_to_nothing_fails_as_soon_as_no_address_answers() -> None:
    port, other = dead_port(), dead_port()
    began = time.monotonic()
    with pytest.raises(CommunicationFailure, match="no address answers") as info:
        await cc_client.connect(f"127.0.0.1:{port}", f"127.0.0.1:{other}", request_timeout=5)
    assert time.monotonic() - began < 1.0, "refused everywhere: no need to wait 5 s"
    assert str(port) in str(info.value) and str(other) in str(info.value)

    began = time.monotonic()
    with pytest.raises(CommunicationFailure):
        async with cc_client.connect(f"127.0.0.1:{port}", request_timeout=0.5):
            pytest.fail("connected to nothing")
    assert time.monotonic() - began < 1.5


async def test_connect_both_ways_and_failover_to_the_second_address() -> None:
    async with running_server() as server:
        client = await cc_client.connect(server.url, request_timeout=2.0)
        try:
            assert isinstance(client, cc_client.Client) and client.connected
            await new_subscriber(client, "both", "2.00")
        finally:
            await client.close()
        assert client.closed
        with pytest.raises(CommunicationFailure):
            await client.admin.stats()

        async with cc_client.connect(server.url, request_timeout=2.0) as ctx_client:
            assert (await ctx_client.admin.get_subscriber("both")).balance == Decimal("2.00")
        assert ctx_client.closed

        dead = dead_port()
        began = time.monotonic()
        async with cc_client.connect(f"127.0.0.1:{dead}", server.url,
                                     request_timeout=2.0) as failover:
            assert time.monotonic() - began < 1.0
            assert failover.connected
            assert (await start_op(failover, "both", "fo-s", 10).execute()).ok
            conn = failover._conn
            assert conn is not None and conn.transport is not None
            assert conn.transport.get_extra_info("peername")[1] == server.port


async def test_close_fails_waiting_calls_with_communication_failure() -> None:
    # a call that waits for a reconnect (its server went away)
    async with running_server() as server:
        client = await cc_client.connect(server.url, request_timeout=5.0)
        await server.server.shutdown(drain=0.5)
        call = asyncio.create_task(client.admin.stats())
        assert await wait_until(lambda: not client.connected, 1.0)
        await asyncio.sleep(0.05)   # the call now waits for a reconnect
        assert not call.done()
        began = time.monotonic()
        await client.close()
        with pytest.raises(CommunicationFailure, match="closed"):
            await asyncio.wait_for(call, 1.0)
        assert time.monotonic() - began < 0.5

    # a call that waits for its reply on a live connection
    async def mute(stream: FrameStream) -> None:
        await serve_handshake(stream)
        while await stream.read_frame(10.0) is not None:
            pass

    async with FakeServer(mute) as fake:
        client = await cc_client.connect(fake.url, request_timeout=5.0)
        execute = asyncio.create_task(start_op(client, "u", "mute", 1).execute())
        conn = client._conn
        assert conn is not None
        assert await wait_until(lambda: bool(conn.pending), 1.0)   # sent, not answered
        assert not execute.done()
        began = time.monotonic()
        await client.close()
        with pytest.raises(CommunicationFailure, match="closed"):
            await asyncio.wait_for(execute, 1.0)
        assert time.monotonic() - began < 0.5
        with pytest.raises(CommunicationFailure, match="closed"):
            await client.admin.stats()


# ----------------------------------------------------------------------- 12. request ids

class Wire:
    """A transport that keeps what the connection writes (no socket, no clock)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def frames(self) -> list[Frame]:
        """Every frame written so far, and forget them."""
        data, self.written = b"".join(self.written), []
        return FrameDecoder().feed(data)


async def flushed() -> None:
    """Let the connection's scheduled flush run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def wired(pushes: list[m.Message] | None = None,
                heartbeat: float = 5.0) -> tuple[ClientConnection, Wire]:
    """A ClientConnection on a `Wire`, past its handshake."""
    loop = asyncio.get_running_loop()
    seen = pushes if pushes is not None else []
    conn = ClientConnection(loop, lambda _conn, msg: seen.append(msg), lambda _conn: None)
    wire = Wire()
    conn.connection_made(wire)  # type: ignore[arg-type]
    handshake = asyncio.create_task(conn.handshake(m.Hello((1,), "wired")))
    await flushed()
    (hello,) = wire.frames()
    assert hello.type == T.HELLO and hello.request_id != 0
    conn.data_received(codec.encode(m.HelloOk(1, "wire", heartbeat, 1 << 20, 1024, ()),
                                    hello.request_id))
    await handshake
    return conn, wire


async def test_request_ids_wrap_after_the_largest_and_skip_pending_ones() -> None:
    conn, wire = await wired()
    loop = asyncio.get_running_loop()
    conn.pending[1] = loop.create_future()          # id 1 still waits for its reply
    conn.machine._next_id = MAX_REQUEST_ID - 1
    for _ in range(3):
        conn.request(T.PING, codec.pack({}))
    await asyncio.sleep(0)                          # the frames leave in one write
    assert len(wire.written) == 1
    assert [f.request_id for f in wire.frames()] == [MAX_REQUEST_ID, 2, 3]
    conn.abort("test over")


# ----------------------------------------------------------------------- 13. the machine

async def test_client_heartbeat_pings_use_fresh_non_zero_ids_and_swallow_pongs() -> None:
    conn, wire = await wired()
    live = conn.machine.liveness
    ids: list[int] = []
    for _ in range(3):
        live.last_sent -= 5.0                       # one interval with nothing sent
        conn._tick()
        await flushed()
        (ping,) = wire.frames()
        assert ping.type == T.PING
        ids.append(ping.request_id)
        conn.data_received(encode_frame(T.PONG, ping.request_id, codec.pack({})))
    assert 0 not in ids and len(set(ids)) == 3
    assert not conn.closed and not conn.pending
    conn.abort("test over")


async def test_client_drops_a_server_silent_for_three_intervals() -> None:
    conn, wire = await wired()
    fut = conn.request(T.PING, codec.pack({}))
    live = conn.machine.liveness
    live.last_received -= 15.0
    live.last_sent -= 15.0
    conn._tick()
    assert conn.closed and wire.closed
    assert conn.lost_reason.startswith("no data from the server for 15.")
    conn.connection_lost(None)
    with pytest.raises(ConnectionLost, match="no data from the server"):
        await fut


async def test_client_answers_a_ping_in_the_same_write_as_its_requests() -> None:
    conn, wire = await wired()
    conn.request(T.PING, codec.pack({}))
    conn.data_received(encode_frame(T.PING, 41, codec.pack({})))
    await asyncio.sleep(0)
    assert len(wire.written) == 1
    frames = wire.frames()
    assert [(f.type, f.request_id) for f in frames] == [(T.PING, 2), (T.PONG, 41)]
    conn.abort("test over")


async def test_ack_without_confirm_uses_id_0_and_with_confirm_a_request_id() -> None:
    conn, wire = await wired()
    conn.send_oneway(*codec.encode_body(m.Ack(7, False)))
    fut = conn.request(*codec.encode_body(m.Ack(8, True)))
    await flushed()
    first, second = wire.frames()
    assert (first.type, first.request_id) == (T.ACK, 0)
    assert second.type == T.ACK and second.request_id != 0
    conn.data_received(encode_frame(T.ACK_OK, second.request_id, codec.pack({})))
    assert (await fut)[0] == T.ACK_OK
    conn.abort("test over")


async def test_goodbye_drains_and_an_error_with_id_0_closes_with_its_code() -> None:
    pushes: list[m.Message] = []
    conn, wire = await wired(pushes)
    waiting = conn.request(T.PING, codec.pack({}))
    conn.data_received(codec.encode(m.Goodbye("restart"), 0))
    assert conn.draining and not conn.closed
    with pytest.raises(ConnectionLost):
        conn.request(T.PING, codec.pack({}))       # a new request goes elsewhere
    await flushed()
    assert pushes == [m.Goodbye("restart")]
    conn.data_received(codec.encode(m.Error("SHUTTING_DOWN", "bye"), 0))
    assert conn.closed and wire.closed
    assert conn.lost_reason == "server closed the connection: SHUTTING_DOWN: bye"
    conn.connection_lost(None)
    with pytest.raises(ConnectionLost, match="SHUTTING_DOWN"):
        await waiting


async def test_handshake_refusal_with_id_0_surfaces_the_servers_code() -> None:
    loop = asyncio.get_running_loop()
    conn = ClientConnection(loop, lambda _conn, _msg: None, lambda _conn: None)
    wire = Wire()
    conn.connection_made(wire)  # type: ignore[arg-type]
    handshake = asyncio.create_task(conn.handshake(m.Hello((1,), "wired")))
    await flushed()
    conn.data_received(codec.encode(m.Error("AUTHENTICATION_FAILED", "wrong password"), 0))
    with pytest.raises(HandshakeRefused) as info:
        await handshake
    assert info.value.code == "AUTHENTICATION_FAILED"
    assert info.value.message == "wrong password"
    assert conn.closed and wire.closed


async def test_a_bad_frame_from_the_server_is_answered_with_an_error_and_closed() -> None:
    conn, wire = await wired()
    fut = conn.request(T.PING, codec.pack({}))
    await flushed()
    wire.frames()
    conn.data_received(encode_frame(0x55, 0, codec.pack({})))
    assert conn.closed and wire.closed
    (error,) = wire.frames()
    msg = codec.decode(error)
    assert isinstance(msg, m.Error) and msg.code == "PROTOCOL_ERROR"
    assert conn.lost_reason.startswith("server sent a bad frame")
    conn.connection_lost(None)
    with pytest.raises(ConnectionLost):
        await fut


async def test_notifications_reach_the_push_callback_off_the_read_path() -> None:
    pushes: list[m.Message] = []
    conn, _ = await wired(pushes)
    note = m.Notification(3, 1, "s", "r", "u", "svc", "expiring",
                          dt.datetime(2030, 1, 1, tzinfo=dt.UTC), 1)
    conn.data_received(codec.encode(note, 0))
    assert pushes == []                            # not on the read path
    await asyncio.sleep(0)
    assert pushes == [note]
    conn.abort("test over")


#: Attribute names whose comparison in the client transport would be a protocol rule
#: of its own: the state machine in `protocol/connection.py` owns them.
MACHINE_OWNED = {"PING", "PONG", "GOODBYE", "ERROR", "HELLO_OK", "NOTIFY", "REPLY",
                 "MAX_REQUEST_ID", "FrameDecoder", "encode_frame", "Liveness", "Due"}


def test_the_client_transport_keeps_no_protocol_rule_of_its_own() -> None:
    source = (ROOT / "cc_client" / "connection.py").read_text()
    tree = ast.parse(source)
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} | \
        {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | \
        {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
         for alias in node.names}
    assert not used & MACHINE_OWNED, sorted(used & MACHINE_OWNED)
    assert "from protocol.connection import" in source
    assert "protocol.liveness" not in source
