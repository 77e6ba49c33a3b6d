"""The per-address connection limit (`--max-connections-per-address`, PROTOCOL.md section 5).

Driven through real loopback sockets (the gate and the connection are compiled in the
normal build): 127.0.0.1 and 127.0.0.2 are two addresses on Linux, and ::1 a third where
IPv6 loopback works. Every way a connection ends must give its slot back, or the address
would be locked out for good: each close path is checked with a limit of 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cc_server.app import config_from_args
from cc_server.config import ServerConfig
from cc_server.connection import ServerConnection
from cc_server.limits import ConnectionGate, peer_address
from cc_server.server import ChargingServer
from cc_server.testing import TestServer, running_server
from protocol import codec
from protocol import messages as m
from tests.hostile import client_tls, make_pki, tls_settings
from tests.netfakes import FrameStream, wait_until

pytestmark = pytest.mark.timeout(60)

OTHER = "127.0.0.2"      # a second loopback address (all of 127/8 is loopback on Linux)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _can_bind(family: socket.AddressFamily, host: str) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


async def connect(server: TestServer, source: str | None = None, port: int | None = None,
                  host: str | None = None, tls: ssl.SSLContext | None = None) -> FrameStream:
    """A raw connection to the server from `source` (an address of this machine)."""
    if source == OTHER and not _can_bind(socket.AF_INET, OTHER):
        pytest.skip(f"cannot bind a client socket to {OTHER}")
    reader, writer = await asyncio.open_connection(
        host or server.host, port or server.port, ssl=tls,
        local_addr=(source, 0) if source else None)
    return FrameStream(reader, writer)


async def hello(stream: FrameStream) -> m.Message:
    """Send HELLO; the server's answer."""
    stream.send(m.Hello((1,), "per-address"), 1)
    return (await stream.read_message(3.0))[1]


async def refused(stream: FrameStream) -> str:
    """The message of the ERROR TOO_MANY_CONNECTIONS (request id 0) that closed `stream`."""
    frame = await stream.read_frame(2.0)
    assert frame is not None and frame.request_id == 0
    error = codec.decode(frame)
    assert isinstance(error, m.Error) and error.code == "TOO_MANY_CONNECTIONS", error
    assert await stream.closed_within(2.0)
    return error.message


def counts(server: TestServer) -> dict[str, int]:
    """Open connections by address, as the gate counts them."""
    return dict(server.server.gate.per_address)


async def all_released(server: TestServer) -> bool:
    return await wait_until(lambda: not server.server.connections and not counts(server), 2.0)


async def served_then_released(server: TestServer, tls: ssl.SSLContext | None = None) -> None:
    """The address has its slot: a new connection logs in; closed, it frees the slot."""
    stream = await connect(server, tls=tls)
    assert isinstance(await hello(stream), m.HelloOk)
    stream.close()
    assert await all_released(server)


# ---------------------------------------------------------------------------- the key

@pytest.mark.parametrize("peer, address", [
    (("127.0.0.1", 40000), "127.0.0.1"),
    (("::1", 40000, 0, 0), "::1"),
    (("::ffff:10.1.2.3", 40000, 0, 0), "10.1.2.3"),     # IPv4-mapped: the IPv4 address
    (("::FFFF:10.1.2.3", 40000, 0, 0), "10.1.2.3"),
    (("::ffff:a02", 40000, 0, 0), "::ffff:a02"),        # no dotted quad: left as it is
    (("2001:db8::7", 1, 0, 0), "2001:db8::7"),
    ("", None),                                         # a Unix socket's peer
    (None, None),                                       # unknown
    ((), None),
    (("", 0), None),
])
def test_the_address_counted_is_the_peer_ip_without_the_port(peer: object,
                                                             address: str | None) -> None:
    assert peer_address(peer) == address


def test_the_gate_counts_per_address_and_forgets_an_address_at_zero() -> None:
    gate: ConnectionGate[object] = ConnectionGate(100, 100, 2)
    a1, a2, a3, b1, mapped, unix = (object() for _ in range(6))
    assert gate.admit(a1, "10.0.0.1") is None
    assert gate.admit(mapped, peer_address(("::ffff:10.0.0.1", 1, 0, 0))) is None
    why = gate.admit(a3, "10.0.0.1")
    assert why is not None and "per-address" in why and "2" in why and "10.0.0.1" in why
    assert gate.admit(b1, "10.0.0.2") is None
    assert gate.admit(unix, None) is None                    # not limited per address
    assert gate.per_address == {"10.0.0.1": 2, "10.0.0.2": 1}
    assert gate.refused_per_address == 1
    gate.release(a3)                  # refused: it never counted, so it frees nothing
    assert gate.per_address == {"10.0.0.1": 2, "10.0.0.2": 1}
    gate.release(a1)
    gate.release(a1)                  # idempotent
    assert gate.per_address == {"10.0.0.1": 1, "10.0.0.2": 1}
    assert gate.admit(a2, "10.0.0.1") is None
    for conn in (a2, mapped, b1, unix):
        gate.release(conn)
    assert gate.per_address == {} and not gate.open and not gate.handshaking


def test_zero_turns_the_per_address_limit_off() -> None:
    gate: ConnectionGate[object] = ConnectionGate(100, 100, 0)
    conns = [object() for _ in range(50)]
    assert all(gate.admit(conn, "10.0.0.1") is None for conn in conns)
    assert gate.per_address == {}                            # nothing tracked
    for conn in conns:
        gate.release(conn)
    assert not gate.open


def test_the_global_limit_is_reported_before_the_per_address_one() -> None:
    gate: ConnectionGate[object] = ConnectionGate(1, 100, 1)
    assert gate.admit(object(), "10.0.0.1") is None
    why = gate.admit(object(), "10.0.0.1")
    assert why == "the server accepts at most 1 connections"
    assert gate.refused_per_address == 0


# ---------------------------------------------------------------------------- settings

def test_the_default_leaves_room_for_load_testers_and_stops_one_peer_taking_all() -> None:
    defaults = ServerConfig()
    assert defaults.max_connections_per_address == 1000
    assert 256 < defaults.max_connections_per_address < defaults.max_connections


@pytest.mark.parametrize("value, ok", [("0", True), ("1", True), ("1000000", True),
                                       ("-1", False), ("1000001", False)])
def test_the_setting_is_checked_against_its_range(
        value: str, ok: bool, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--max-connections-per-address", value, "--port", "0"]
    if ok:
        config, _ = config_from_args(argv)
        assert config.max_connections_per_address == int(value)
        return
    with pytest.raises(SystemExit):
        config_from_args(argv)
    assert ("--max-connections-per-address (config key max_connections_per_address) must "
            "be in 0..1000000 (0: no per-address limit), not " + value) in \
        capsys.readouterr().err


async def test_an_embedder_gets_the_same_range_error() -> None:
    with pytest.raises(ValueError, match="max_connections_per_address"):
        ChargingServer(ServerConfig(max_connections_per_address=-1))


# ---------------------------------------------------------------------------- plain TCP

async def test_one_address_past_its_limit_is_refused_while_another_connects(
        loop_errors: list[Any]) -> None:
    async with running_server(max_connections_per_address=3, handshake_timeout=5.0) as server:
        held = [await connect(server) for _ in range(2)]
        held.append(await connect(server))
        assert isinstance(await hello(held[2]), m.HelloOk)      # logged in or not: counted
        extra = await connect(server)
        message = await refused(extra)
        assert "at most 3 connections from one address" in message
        assert "per-address limit" in message and "127.0.0.1" in message
        other = await connect(server, OTHER)                    # another address: served
        assert isinstance(await hello(other), m.HelloOk)
        assert counts(server) == {"127.0.0.1": 3, OTHER: 1}     # the refused one: not counted
        stats = server.server.dispatcher.stats()
        assert stats["security"]["limits"]["TOO_MANY_CONNECTIONS"] == 1
        assert stats["connections"]["refused_connections"] == 1
        assert stats["connections"]["refused_per_address"] == 1
        again = await connect(server)                           # still full after the refusal
        await refused(again)
        held.pop().close()                                      # one goes: one slot is free
        assert await wait_until(lambda: counts(server)["127.0.0.1"] == 2, 2.0)
        held.append(await connect(server))
        assert isinstance(await hello(held[-1]), m.HelloOk)
        for stream in [*held, other]:
            stream.close()
        assert await all_released(server)
        assert not loop_errors


async def test_the_limit_off_lets_one_address_past_it(loop_errors: list[Any]) -> None:
    async with running_server(max_connections_per_address=0, max_connections=8) as server:
        streams = [await connect(server) for _ in range(8)]
        assert await wait_until(lambda: len(server.server.connections) == 8, 2.0)
        assert counts(server) == {}
        message = await refused(await connect(server))          # only the global limit
        assert message == "the server accepts at most 8 connections"
        for stream in streams:
            stream.close()
        assert await all_released(server)
        assert not loop_errors


async def _goodbye(stream: FrameStream) -> None:
    assert isinstance(await hello(stream), m.HelloOk)
    stream.send(m.Goodbye("done"), 0)
    assert await stream.closed_within(2.0)


async def _client_drops(stream: FrameStream) -> None:
    assert isinstance(await hello(stream), m.HelloOk)
    stream.close()


async def _drops_mid_handshake(stream: FrameStream) -> None:
    stream.send_raw(codec.encode(m.Hello((1,), "half"), 1)[:7])
    await asyncio.sleep(0.02)
    stream.close()


async def _handshake_timeout(stream: FrameStream) -> None:
    frame = await stream.read_frame(2.0)                 # silent: the deadline passes
    assert frame is not None
    error = codec.decode(frame)
    assert isinstance(error, m.Error) and error.code == "HANDSHAKE_TIMEOUT", error
    assert await stream.closed_within(2.0)


async def _idle_timeout(stream: FrameStream) -> None:
    assert isinstance(await hello(stream), m.HelloOk)
    while (frame := await stream.read_frame(2.0)) is not None:
        msg = codec.decode(frame)
        if isinstance(msg, m.Error):
            assert msg.code == "IDLE_TIMEOUT"


async def _protocol_error(stream: FrameStream) -> None:
    stream.send_raw(b"\xff" * 12)                         # not a frame header
    frame = await stream.read_frame(2.0)
    assert frame is not None and isinstance(codec.decode(frame), m.Error)
    assert await stream.closed_within(2.0)


CLOSES: dict[str, tuple[Callable[[FrameStream], Any], dict[str, Any]]] = {
    "goodbye": (_goodbye, {}),
    "client drops after HELLO_OK": (_client_drops, {}),
    "client drops mid-handshake": (_drops_mid_handshake, {}),
    "handshake timeout": (_handshake_timeout, {"handshake_timeout": 0.1}),
    "idle timeout": (_idle_timeout, {"idle_timeout": 0.1}),
    "protocol error": (_protocol_error, {}),
}


@pytest.mark.parametrize("how", list(CLOSES))
async def test_every_close_gives_the_slot_back(how: str, loop_errors: list[Any]) -> None:
    end, settings = CLOSES[how]
    async with running_server(max_connections_per_address=1, **settings) as server:
        for _ in range(3):             # a leak would refuse the second round
            stream = await connect(server)
            assert await wait_until(lambda: counts(server) == {"127.0.0.1": 1}, 2.0)
            await end(stream)
            assert await all_released(server), counts(server)
        await served_then_released(server)
        assert not loop_errors


# ---------------------------------------------------------------------------- TLS

async def test_over_tls_half_open_handshakes_count_and_the_refused_close_at_once(
        pki: Path, loop_errors: list[Any]) -> None:
    settings = tls_settings(pki, max_connections_per_address=2, handshake_timeout=5.0)
    async with running_server(**settings) as server:
        half_open = [await connect(server) for _ in range(2)]   # no TLS handshake yet
        assert await wait_until(lambda: counts(server) == {"127.0.0.1": 2}, 2.0)
        extra = await connect(server)
        assert await extra.read_frame(2.0) is None              # closed without a frame
        tls_client = await connect(server, OTHER, tls=client_tls(pki))
        assert isinstance(await hello(tls_client), m.HelloOk)
        assert counts(server) == {"127.0.0.1": 2, OTHER: 1}
        stats = server.server.dispatcher.stats()
        assert stats["security"]["limits"]["TOO_MANY_CONNECTIONS"] == 1
        assert stats["connections"]["refused_per_address"] == 1
        half_open[0].send_raw(b"\x16\x03\x01\x00\x05hello")      # not TLS: the handshake fails
        assert await half_open[0].closed_within(2.0)
        assert await wait_until(lambda: counts(server)["127.0.0.1"] == 1, 2.0)
        assert server.server.counts["tls_failed"] >= 1
        for stream in [half_open[1], tls_client]:
            stream.close()
        assert await all_released(server)
        assert not loop_errors


async def test_a_tls_handshake_that_times_out_gives_the_slot_back(
        pki: Path, loop_errors: list[Any]) -> None:
    settings = tls_settings(pki, max_connections_per_address=1, handshake_timeout=0.1)
    async with running_server(**settings) as server:
        for _ in range(2):
            silent = await connect(server)
            assert await silent.closed_within(2.0)
            assert await all_released(server)
        await served_then_released(server, client_tls(pki))
        assert not loop_errors


# ---------------------------------------------------------------------------- IPv6

@contextlib.asynccontextmanager
async def also_on_ipv6_loopback(server: TestServer) -> AsyncIterator[int]:
    """A second listener of the same server on ::1: its port."""
    if not _can_bind(socket.AF_INET6, "::1"):
        pytest.skip("IPv6 loopback (::1) is not available")
    charging = server.server
    listener = await charging.loop.create_server(lambda: ServerConnection(charging), "::1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


async def test_ipv6_loopback_is_another_address(loop_errors: list[Any]) -> None:
    async with running_server(max_connections_per_address=1) as server, \
            also_on_ipv6_loopback(server) as port6:
        v4 = await connect(server)
        assert isinstance(await hello(v4), m.HelloOk)
        v6 = await connect(server, host="::1", port=port6)
        assert isinstance(await hello(v6), m.HelloOk)
        assert counts(server) == {"127.0.0.1": 1, "::1": 1}
        message = await refused(await connect(server, host="::1", port=port6))
        assert "::1 has 1 open" in message
        for stream in (v4, v6):
            stream.close()
        assert await all_released(server)
        assert not loop_errors
