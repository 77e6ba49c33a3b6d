"""The server transport (cc_server/connection.py) as a thin driver of the state machine.

A `ServerConnection` on a stub transport: no sockets, no sleeps. What the machine decides
(tests/test_connection_machine.py) reaches the wire in the stream's order, and the
transport itself compares no message type.
"""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cc_server.auth import PENDING
from cc_server.config import ServerConfig
from cc_server.connection import ALL_ROLES, ServerConnection
from cc_server.server import ChargingServer
from protocol import codec
from protocol import messages as m
from protocol.frames import Frame, FrameDecoder, encode_frame

ROOT = Path(__file__).resolve().parent.parent
T = m.MsgType
STATS = codec.pack({"cmd": "stats", "args": {}})


class StubTransport:
    """Keeps what the connection writes; counts pauses; never touches a socket."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None: ...

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def frames(self) -> list[Frame]:
        """Every frame written so far, once."""
        data, self.written = bytes(self.written), bytearray()
        return FrameDecoder().feed(data)


@pytest.fixture
async def server() -> AsyncIterator[ChargingServer]:
    srv = ChargingServer(ServerConfig(port=0))
    yield srv
    srv.auth.close()


def connect(server: ChargingServer) -> tuple[ServerConnection, StubTransport]:
    conn = ServerConnection(server)
    transport = StubTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def welcomed(server: ChargingServer) -> tuple[ServerConnection, StubTransport]:
    conn, transport = connect(server)
    conn.data_received(codec.encode(m.Hello((1,), "stub"), 1))
    assert [f.type for f in transport.frames()] == [T.HELLO_OK]
    return conn, transport


def kinds(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(f.type, f.request_id) for f in frames]


async def test_nothing_read_after_a_bad_frame_is_answered(server: ChargingServer) -> None:
    conn, transport = welcomed(server)
    conn.data_received(encode_frame(T.ADMIN, 2, STATS) + encode_frame(T.EXECUTE, 3, b"\xc1")
                       + encode_frame(T.PING, 4, codec.pack({})))
    frames = transport.frames()
    assert kinds(frames) == [(T.ADMIN_RESULT, 2), (T.ERROR, 0)]
    error = codec.decode(frames[1])
    assert isinstance(error, m.Error) and error.code == "PROTOCOL_ERROR"
    assert transport.closed and conn.closed
    assert server.counts["connection_error.PROTOCOL_ERROR"] == 1
    conn.connection_lost(None)


async def test_a_pong_leaves_in_turn_with_the_replies(server: ChargingServer) -> None:
    conn, transport = welcomed(server)
    conn.data_received(encode_frame(T.ADMIN, 2, STATS) + encode_frame(T.PING, 3, codec.pack({}))
                       + encode_frame(T.ADMIN, 4, STATS))
    assert kinds(transport.frames()) == [(T.ADMIN_RESULT, 2), (T.PONG, 3),
                                         (T.ADMIN_RESULT, 4)]
    conn.connection_lost(None)


async def test_a_goodbye_closes_after_answering_what_came_before(
        server: ChargingServer) -> None:
    conn, transport = welcomed(server)
    conn.data_received(encode_frame(T.ADMIN, 2, STATS) + codec.encode(m.Goodbye("done"), 0)
                       + encode_frame(T.ADMIN, 3, STATS))
    assert kinds(transport.frames()) == [(T.ADMIN_RESULT, 2)]
    assert transport.closed
    conn.connection_lost(None)


async def test_a_client_error_closes_without_an_answer(server: ChargingServer) -> None:
    conn, transport = welcomed(server)
    conn.data_received(codec.encode(m.Error("PROTOCOL_ERROR", "your PONG was bad"), 0))
    assert transport.frames() == [] and transport.closed
    assert server.counts["peer_errors"] == 1
    assert not any(k.startswith("connection_error") for k in server.counts)
    conn.connection_lost(None)


async def test_what_is_read_before_a_late_verdict_waits_for_hello_ok(
        server: ChargingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.auth, "begin", lambda *args: PENDING)
    conn, transport = connect(server)
    conn.data_received(codec.encode(m.Hello((1,), "stub"), 1)
                       + encode_frame(T.PING, 2, codec.pack({}))
                       + encode_frame(T.ADMIN, 3, STATS))
    assert transport.frames() == [] and not transport.reading
    conn.authenticated(ALL_ROLES)
    assert kinds(transport.frames()) == [(T.HELLO_OK, 1), (T.PONG, 2), (T.ADMIN_RESULT, 3)]
    assert transport.reading
    conn.connection_lost(None)


async def test_a_refused_verdict_answers_nothing_that_waited(
        server: ChargingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.auth, "begin", lambda *args: PENDING)
    conn, transport = connect(server)
    conn.data_received(codec.encode(m.Hello((1,), "stub"), 1)
                       + encode_frame(T.ADMIN, 3, STATS))
    conn.authenticated(None)
    frames = transport.frames()
    assert kinds(frames) == [(T.ERROR, 0)] and transport.closed
    error = codec.decode(frames[0])
    assert isinstance(error, m.Error) and error.code == "AUTHENTICATION_FAILED"
    conn.connection_lost(None)


async def test_a_push_waits_for_the_handshake(server: ChargingServer) -> None:
    conn, transport = connect(server)
    note = m.Notification(3, 1, "s", "r", "u", "svc", "expiring",
                          dt.datetime(2030, 1, 1, tzinfo=dt.UTC), 1)
    assert not conn.push(note)
    conn.data_received(codec.encode(m.Hello((1,), "stub"), 1))
    transport.frames()
    assert conn.push(note)
    assert kinds(transport.frames()) == [(T.NOTIFY, 0)]
    conn.connection_lost(None)


#: Names whose use in the server transport would be a protocol rule of its own: the
#: state machine in `protocol/connection.py` owns them.
MACHINE_OWNED = {"PING", "PONG", "GOODBYE", "ERROR", "HELLO", "HELLO_OK", "NOTIFY", "ACK",
                 "REPLY", "MsgType", "MAX_REQUEST_ID", "HELLO_MAX_FRAME", "ANSWERED",
                 "FrameDecoder", "encode_frame", "Liveness", "Due", "decoder"}


@pytest.mark.parametrize("name", ["connection.py", "flow.py"])
def test_the_server_transport_keeps_no_protocol_rule_of_its_own(name: str) -> None:
    source = (ROOT / "cc_server" / name).read_text()
    tree = ast.parse(source)
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used = attributes | {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | \
        {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
         for alias in node.names}
    assert not used & MACHINE_OWNED, sorted(used & MACHINE_OWNED)
    # nor does it read a frame's type: the machine and the dispatcher do
    assert "type" not in attributes
    assert "from protocol.connection import" in source
    assert "protocol.liveness" not in source


class SlowLog:
    """A write-ahead log whose latest record is not on disk yet."""

    appended = 1
    synced = 0
    disk_full = False


async def test_a_goodbye_does_not_let_replies_overtake_the_log(
        server: ChargingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    conn, transport = welcomed(server)
    monkeypatch.setattr(ChargingServer, "wal", property(lambda self: SlowLog()))
    conn.data_received(encode_frame(T.ADMIN, 2, STATS) + codec.encode(m.Goodbye("done"), 0))
    assert transport.frames() == [] and not transport.closed   # held for the log
    conn.release(1)
    assert kinds(transport.frames()) == [(T.ADMIN_RESULT, 2)]
    assert transport.closed
    conn.connection_lost(None)
