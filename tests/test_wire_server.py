"""The server's wire rules over loopback: request id 0, undecodable bodies, exactly once
with body digests (OPERATION_ID_REUSED), which whole-container failures are remembered,
and ACK replies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_server.testing import TestServer, running_server
from protocol import buildinfo, codec
from protocol import messages as m
from protocol.frames import encode_frame
from tests.netfakes import FrameStream, raw_connect, raw_hello

pytestmark = pytest.mark.timeout(20)
T = m.MsgType


def start(op: bytes, session: str, user: str = "alice", volume: Any = 10,
          **extra: Any) -> dict[str, Any]:
    """An EXECUTE start body as a map (PROTOCOL.md section 4)."""
    return {"op": op, "kind": "start", "user": user, "service": "DATA", "session": session,
            "subs": [["reserve", "r1", ["data", {"volume": volume}], None, 30, None, None]],
            **extra}


class Wire:
    """A raw, handshaken connection that sends request maps and reads the replies."""

    def __init__(self, stream: FrameStream) -> None:
        self.stream = stream
        self.next_id = 10

    async def call(self, msg_type: int, body: object) -> tuple[int, m.Message]:
        self.next_id += 1
        raw = body if isinstance(body, bytes) else codec.pack(body)
        self.stream.send_raw(encode_frame(msg_type, self.next_id, raw))
        frame, msg = await self.stream.read_message(2.0)
        return frame.request_id, msg

    async def execute(self, body: object) -> m.Message:
        rid, msg = await self.call(T.EXECUTE, body)
        assert rid == self.next_id, msg
        return msg


async def wire(server: TestServer) -> Wire:
    stream = await raw_connect(server.host, server.port)
    assert isinstance(await raw_hello(stream), m.HelloOk)
    return Wire(stream)


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestServer, Wire]]:
    async with running_server() as server:
        server.engine.create_subscriber("alice", Decimal("10.00"))
        link = await wire(server)
        yield server, link
        link.stream.close()


def code(msg: m.Message) -> str | None:
    return msg.code if isinstance(msg, m.Error) else None


# ------------------------------------------------------------------ request id 0

@pytest.mark.parametrize("msg_type, body", [
    (T.PING, {}), (T.EXECUTE, start(b"z", "s-z")), (T.ADMIN, {"cmd": "stats", "args": {}}),
    (T.LISTEN, {"listener": 1}), (T.UNLISTEN, {"listener": 1}),
])
async def test_a_request_that_gets_a_reply_is_refused_with_request_id_0(
        served: tuple[TestServer, Wire], msg_type: int, body: object) -> None:
    server, link = served
    link.stream.send_raw(encode_frame(msg_type, 0, codec.pack(body)))
    frame, msg = await link.stream.read_message(2.0)
    assert (frame.request_id, code(msg)) == (0, "PROTOCOL_ERROR"), msg
    assert isinstance(msg, m.Error) and "request id 0" in msg.message
    assert await link.stream.closed_within(1.0)
    assert "s-z" not in server.engine.sessions


async def test_ack_with_request_id_0_gets_nothing_and_any_other_id_gets_ack_ok(
        served: tuple[TestServer, Wire]) -> None:
    _, link = served
    link.stream.send_raw(encode_frame(T.ACK, 0, codec.pack({"id": 5, "confirm": True})))
    for confirm in (False, True):
        rid, msg = await link.call(T.ACK, {"id": 5, "confirm": confirm})
        assert rid == link.next_id and isinstance(msg, m.AckOk), msg   # nothing came before
    link.stream.send_raw(encode_frame(T.GOODBYE, 0, codec.pack({"reason": "done"})))
    assert await link.stream.closed_within(1.0)


# ------------------------------------------------------------------ undecodable bodies

@pytest.mark.parametrize("msg_type, raw", [
    (T.EXECUTE, b"\xc1"), (T.PING, codec.pack({}) + codec.pack({})),
    (T.EXECUTE, codec.pack([1])), (T.PING, bytes.fromhex("810102")),
    (0x55, codec.pack({})), (T.NOTIFY, codec.pack({})),
])
async def test_a_body_no_valid_peer_sends_closes_the_connection(
        served: tuple[TestServer, Wire], msg_type: int, raw: bytes) -> None:
    _, link = served
    link.stream.send_raw(encode_frame(msg_type, 7, raw))
    frame, msg = await link.stream.read_message(2.0)
    assert (frame.request_id, code(msg)) == (0, "PROTOCOL_ERROR"), msg
    assert isinstance(msg, m.Error) and msg.message and "Error:" not in msg.message
    assert await link.stream.closed_within(1.0)


async def test_a_map_with_a_bad_field_is_that_requests_invalid_request(
        served: tuple[TestServer, Wire]) -> None:
    _, link = served
    rid, msg = await link.call(T.PING, {"x": 1})
    assert (rid, code(msg)) == (link.next_id, "INVALID_REQUEST")
    assert isinstance(await link.execute({"cmd": 1}), m.Error)
    rid, msg = await link.call(T.PING, {})
    assert (rid, type(msg)) == (link.next_id, m.Pong)            # still open


# ------------------------------------------------------------------ operation ids

async def test_an_empty_operation_id_is_refused_and_nothing_applied(
        served: tuple[TestServer, Wire]) -> None:
    server, link = served
    for session in ("s-1", "s-2"):
        assert code(await link.execute(start(b"", session))) == "INVALID_REQUEST"
    assert not server.engine.sessions


async def test_an_operation_id_reused_with_another_body_is_refused_unapplied(
        served: tuple[TestServer, Wire]) -> None:
    server, link = served
    first = await link.execute(start(b"op-1", "s-1"))
    assert isinstance(first, m.ExecuteResult)
    assert await link.execute(start(b"op-1", "s-1")) == first           # a true repeat
    reused = await link.execute(start(b"op-1", "s-2"))
    assert code(reused) == "OPERATION_ID_REUSED", reused
    assert "s-2" not in server.engine.sessions
    assert server.engine.get_subscriber("alice").reserved == Decimal("0.10")
    assert code(await link.execute(start(b"op-1", "s-2"))) == "OPERATION_ID_REUSED"
    assert isinstance(await link.execute(start(b"op-2", "s-2")), m.ExecuteResult)


async def test_admin_op_ids_are_their_own_namespace_and_checked_too(
        served: tuple[TestServer, Wire]) -> None:
    server, link = served
    assert isinstance(await link.execute(start(b"same", "s-1")), m.ExecuteResult)
    top_up = {"cmd": "top_up", "args": {"user": "alice", "amount": Decimal("1")}, "op": b"same"}
    _, first = await link.call(T.ADMIN, top_up)
    assert isinstance(first, m.AdminResult), first          # not EXECUTE's "same"
    _, again = await link.call(T.ADMIN, top_up)
    assert again == first
    _, other = await link.call(T.ADMIN, {**top_up, "args": {"user": "alice",
                                                            "amount": Decimal("2")}})
    assert code(other) == "OPERATION_ID_REUSED"
    assert server.engine.get_subscriber("alice").balance == Decimal("11.00")


# ------------------------------------------------------------------ stored failures

STORED = {
    "USER_UNKNOWN": start(b"f1", "s-f1", user="nobody"),
    "SESSION_NOT_FOUND": {**start(b"f2", "nope"), "kind": "update", "subs": []},
    "INVALID_REQUEST (engine)": {**start(b"f3", "s-f3"), "subs": []},
    "INVALID_REQUEST (codec)": start(b"f4", "s-f4", extra=1),
    "INVALID_REQUEST (ttl)": {**start(b"f5", "s-f5"), "subs": [
        ["reserve", "r1", ["data", {"volume": 1}], None, 401 * 86400, None, None]]},
    "CONTAINER_TOO_LARGE": {**start(b"f6", "s-f6"), "subs": [
        ["reserve", f"r{i}", ["data", {"volume": 1}], None, 30, None, None]
        for i in range(65)]},
    "EXTERNAL_DATA_TOO_LARGE (limit)": start(b"f7", "s-f7", external=b"x" * 2000),
    "STRING_TOO_LONG": start(b"f8", "s" * 300),
    "TOO_MANY_PROPERTIES": {**start(b"f9", "s-f9"), "subs": [
        ["reserve", "r1", ["data", {f"p{i}": i for i in range(65)}], None, 30, None, None]]},
    "SESSION_EXISTS": start(b"f10", "s-dup"),
}


def engine_start(server: TestServer, session: str) -> None:
    msg = codec.decode_body(T.EXECUTE, codec.pack(start(b"x-" + session.encode(), session)))
    assert isinstance(msg, m.Execute)
    server.engine.execute(msg, server.server.clock())


@pytest.mark.parametrize("case", sorted(STORED))
async def test_whole_container_failures_decided_by_the_request_are_remembered(
        case: str) -> None:
    async with running_server(max_external_data=1000) as server:
        server.engine.create_subscriber("alice", Decimal("10.00"))
        link = await wire(server)
        body = STORED[case]
        if case == "SESSION_EXISTS":
            engine_start(server, "s-dup")
        first = await link.execute(body)
        assert code(first) == case.split(maxsplit=1)[0], first
        server.engine.create_subscriber("nobody", Decimal("10.00"))   # would succeed now
        if case == "SESSION_NOT_FOUND":
            engine_start(server, "nope")
        if case == "SESSION_EXISTS":
            server.engine.cancel_session("s-dup", server.server.clock())
        assert await link.execute(body) == first                 # the stored reply
        assert code(await link.execute({**body, "session": "other"})) == \
            "OPERATION_ID_REUSED"
        link.stream.close()


async def test_refusals_that_say_nothing_about_the_request_are_not_remembered() -> None:
    async with running_server(users=None) as server, \
            cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("alice", Decimal("10"))
        link = await wire(server)
        link_roles = [c for c in server.server.connections if c.client_name == "raw-test-client"]
        (conn,) = link_roles
        conn.roles = frozenset({"admin"})                       # FORBIDDEN for EXECUTE
        assert code(await link.execute(start(b"t1", "s-t1"))) == "FORBIDDEN"
        conn.roles = frozenset({"charging"})
        assert isinstance(await link.execute(start(b"t1", "s-t1")), m.ExecuteResult)
        assert [key for key, *_ in server.server.dedup.items() if key[0]] == [
            ("alice", b"t1")]
        link.stream.close()


async def test_too_many_requests_and_server_errors_are_not_remembered() -> None:
    from cc_server.connection import ServerConnection
    from protocol.frames import Frame
    async with running_server(max_in_flight=1) as server:
        server.engine.create_subscriber("alice", Decimal("10.00"))
        conn = ServerConnection(server.server)
        transport = _Transport()
        conn.transport = transport  # type: ignore[assignment]
        conn.roles = frozenset({"charging"})
        frames = [Frame(T.EXECUTE, 0, 100 + n, codec.pack(start(b"busy-%d" % n, f"s-b{n}")))
                  for n in range(2)]
        conn._defer(frames)                            # the second: TOO_MANY_REQUESTS
        assert b"TOO_MANY_REQUESTS" in transport.written
        reply = server.server.dispatcher.handle(conn, frames[1])
        assert reply is not None and reply[0] == T.EXECUTE_RESULT    # not a stored refusal


@pytest.mark.skipif(buildinfo.build() == "compiled",
                    reason="patches the engine, which compiled classes forbid; the "
                           "pure-Python build's run covers it")
async def test_a_server_error_is_not_remembered() -> None:
    from cc_server.connection import ServerConnection
    from protocol.frames import Frame
    async with running_server() as server:
        server.engine.create_subscriber("alice", Decimal("10.00"))
        conn = ServerConnection(server.server)
        conn.transport = _Transport()  # type: ignore[assignment]
        conn.roles = frozenset({"charging"})

        def broken(*args: Any) -> Any:
            raise RuntimeError("disk on fire")

        def fail_stop(*args: Any) -> None:   # the real one ends the process (exit 70)
            raise RuntimeError("fail-stop")
        real, server.engine.execute = server.engine.execute, broken
        server.server.dispatcher.on_fatal = fail_stop
        failing = Frame(T.EXECUTE, 0, 200, codec.pack(start(b"boom", "s-boom")))
        with contextlib.suppress(BaseException):   # SERVER_ERROR, or whatever fail-stop does
            server.server.dispatcher.handle(conn, failing)
        server.engine.execute = real
        assert server.server.dedup.get(("alice", b"boom")) is False
        server.server.dispatcher.stopped = False   # as after a restart
        reply = server.server.dispatcher.handle(conn, failing)
        assert reply is not None and reply[0] == T.EXECUTE_RESULT


@pytest.mark.skipif(buildinfo.build() == "compiled",
                    reason="patches the engine, which compiled classes forbid; the "
                           "pure-Python build's run covers it")
async def test_an_expiry_failing_half_way_stops_the_server() -> None:
    async with running_server() as server:
        def broken(*args: Any) -> Any:
            raise RuntimeError("heap on fire")
        server.engine.expire = server.engine.expire_due = broken
        server.server.run_timers()
        assert server.server.dispatcher.stopped          # fail-stop, not a logged timer failure
        assert server.failure is not None and "heap on fire" in repr(server.failure)
        server.failure = None                             # handled: do not raise at the end


async def test_a_timer_failing_outside_a_change_is_logged_and_the_server_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    async with running_server() as server:
        def broken(now: float) -> None:
            raise RuntimeError("resend failed")
        real, server.server.renewal.tick = server.server.renewal.tick, broken  # type: ignore[method-assign]
        server.server.run_timers()
        server.server.renewal.tick = real  # type: ignore[method-assign]
        assert not server.server.dispatcher.stopped
        assert "event=timer_step_failed step=resends" in caplog.text
        assert server.failure is None


@pytest.mark.parametrize("case", ["INVALID_REQUEST (codec)", "CONTAINER_TOO_LARGE"])
async def test_a_remembered_refusal_survives_a_restart(tmp_path: Path, case: str) -> None:
    body = STORED[case]
    async with running_server(data_dir=str(tmp_path)) as server:
        server.engine.create_subscriber("alice", Decimal("10.00"))
        link = await wire(server)
        first = await link.execute(body)
        link.stream.close()
    async with running_server(data_dir=str(tmp_path), max_subrequests=1024) as server:
        link = await wire(server)
        assert await link.execute(body) == first
        assert code(await link.execute({**body, "session": "x"})) == "OPERATION_ID_REUSED"
        link.stream.close()


async def test_the_client_raises_operation_id_reused() -> None:
    async with running_server() as server, cc_client.connect(server.url) as client:
        server.engine.create_subscriber("alice", Decimal("10.00"))
        for session in ("s-1", "s-2"):
            msg_type, body = await client.call(T.EXECUTE, codec.pack(start(b"op", session)))
        error = client.error_of(msg_type, body)
        assert isinstance(error, cc_client.OperationIdReused)
        assert isinstance(error, cc_client.OperationFailure)


class _Transport:
    """Just enough of a transport for a `ServerConnection` that defers what it reads."""

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        pass


async def test_pings_do_not_count_against_max_in_flight() -> None:
    from cc_server.connection import ServerConnection
    from protocol.connection import Answer
    from protocol.frames import Frame, FrameDecoder
    async with running_server(max_in_flight=2) as server:
        conn = ServerConnection(server.server)
        transport = _Transport()
        conn.transport = transport  # type: ignore[assignment]
        conn.data_received(codec.encode(m.Hello(), 1))
        conn.pause_writing()                           # what the client sends now waits
        for batch in ([T.PING, T.UNLISTEN], [T.PING, T.PING, T.UNLISTEN, T.UNLISTEN]):
            conn.data_received(b"".join(encode_frame(
                t, 100 + n, codec.pack({"listener": 1}) if t == T.UNLISTEN
                else codec.pack({})) for n, t in enumerate(batch)))
        assert [T.PONG if isinstance(e, Answer) else e.type for e in conn._backlog
                if isinstance(e, Answer | Frame)] == [T.PONG, T.UNLISTEN, T.PONG, T.PONG,
                                                      T.UNLISTEN]
        hello_ok, refused = FrameDecoder().feed(transport.written)
        assert hello_ok.type == T.HELLO_OK
        assert (refused.request_id, code(codec.decode(refused))) == (103, "TOO_MANY_REQUESTS")


async def test_counters_may_be_integers_on_the_wire(served: tuple[TestServer, Wire]) -> None:
    server, link = served
    _, msg = await link.call(T.ADMIN, {"cmd": "create_subscriber", "args": {
        "user": "bob", "balance": Decimal("1"), "counters": {"free_data": 30}}})
    assert isinstance(msg, m.AdminResult), msg
    assert msg.value["counters"] == {"free_data": Decimal(30)}
    assert server.engine.get_subscriber("bob").counters == {"free_data": Decimal(30)}


async def test_the_clients_heartbeat_ping_carries_a_request_id() -> None:
    import asyncio

    from tests.netfakes import FakeServer, serve_handshake
    ids: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def server(stream: FrameStream) -> None:
        await serve_handshake(stream, heartbeat=0.05)
        while (frame := await stream.read_frame(1.0)) is not None:
            if frame.type == T.PING and not ids.done():
                ids.set_result(frame.request_id)
                stream.send(m.Pong(), frame.request_id)

    async with FakeServer(server) as fake, cc_client.connect(fake.url) as client:
        assert await asyncio.wait_for(ids, 1.0) != 0
        assert client.connected


async def test_the_client_drops_a_server_that_pings_with_request_id_0() -> None:
    from tests.netfakes import FakeServer, serve_handshake, wait_until

    async def server(stream: FrameStream) -> None:
        await serve_handshake(stream, heartbeat=5.0)
        stream.send(m.Ping(), 0)
        await stream.read_frame(2.0)

    async with FakeServer(server) as fake, cc_client.connect(fake.url) as client:
        conn = client._conn
        assert conn is not None
        await wait_until(lambda: conn.closed, 1.0)
        assert conn.closed and "request id other than 0" in conn.lost_reason
