"""CPU per container through the whole client path, without sockets.

Drives the public client API (`Client`, operations, `execute()`, `SessionResult`) the way
cc-bench's standard mix does (start with one reservation, 2 x confirm_and_reserve, stop)
over a `ClientConnection` whose transport is a stub: each write is answered at once with
replies recorded from a real in-process server. Reports microseconds of CPU per container.
Run: python benchmark/client_path.py [--sessions N] [--concurrency N] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from decimal import Decimal
from typing import Any

from server_path import StubTransport  # this script's folder is first on sys.path

from cc_client import ChargeableItem, Client
from cc_client.connection import ClientConnection
from cc_server.config import ServerConfig
from cc_server.connection import ServerConnection
from cc_server.server import ChargingServer
from protocol import buildinfo, codec
from protocol import messages as m
from protocol.frames import FrameDecoder, encode_frame

REPLY_TYPE = int(m.MsgType.EXECUTE_RESULT)
SORT = os.environ.get("SORT", "tottime")   # pstats order for --profile


class Recorder(StubTransport):
    """A transport stub in front of a real ServerConnection: keeps its reply bodies."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[tuple[int, bytes]] = []
        self.decoder = FrameDecoder(1 << 24)

    def write(self, data: bytes) -> None:
        self.replies += [(f.type, f.body) for f in self.decoder.feed(data)]


class Replayer:
    """The client's transport: answers request i of a session with recorded reply i."""

    def __init__(self, loop: asyncio.AbstractEventLoop, replies: dict[bytes, bytes]) -> None:
        self.loop = loop
        self.replies = replies       # session id marker of the kind -> reply body
        self.decoder = FrameDecoder(1 << 24)
        self.conn: ClientConnection | None = None

    def write(self, data: bytes) -> None:
        out = [encode_frame(REPLY_TYPE, f.request_id, self._reply(f.body))
               for f in self.decoder.feed(data)]
        assert self.conn is not None
        self.loop.call_soon(self.conn.data_received, b"".join(out))

    def _reply(self, body: bytes) -> bytes:
        for marker, reply in self.replies.items():
            # find(), not `in`: bytes.__contains__ first tries the marker as an int and
            # formats a TypeError it then drops, a cost the client would be charged for
            if body.find(marker) != -1:
                return reply
        raise AssertionError("an EXECUTE of no known kind")

    def close(self) -> None: ...
    def abort(self) -> None: ...


async def record() -> dict[bytes, bytes]:
    """One session of the mix through a real server: its three kinds of EXECUTE_RESULT."""
    server = ChargingServer(ServerConfig(port=0))
    server.engine.create_subscriber("u0", Decimal("1000000"))
    rec = Recorder()
    sconn = ServerConnection(server)
    sconn.connection_made(rec)  # type: ignore[arg-type]
    sconn.data_received(codec.encode(m.Hello(), 1))
    client = Client("127.0.0.1:1")
    bodies: dict[bytes, bytes] = {}
    for rid, (kind, op) in enumerate(_session(client, "s0"), start=2):
        sconn.data_received(codec.encode(op.to_message(), rid))
        await asyncio.sleep(0)
        reply_type, body = rec.replies[-1]
        assert reply_type == m.MsgType.EXECUTE_RESULT, codec.decode_body(reply_type, body)
        bodies[kind] = body
    return bodies


ITEM = ChargeableItem("data", {"volume": 100})


def _session(client: Client, sid: str) -> list[tuple[bytes, Any]]:
    start = client.create_session_start_operation("u0", "DATA", sid)
    start.prepare_reserve("r1", ITEM, 60)
    ops: list[tuple[bytes, Any]] = [(b"s", start)]
    for _ in range(2):
        up = client.create_session_update_operation("u0", "DATA", sid)
        up.prepare_confirm_and_reserve("r1", ITEM, None, -1)
        ops.append((b"u", up))
    stop = client.create_session_stop_operation("u0", "DATA", sid)
    stop.prepare_confirm("r1", ITEM)
    ops.append((b"p", stop))
    return ops


async def run(sessions: int, concurrency: int, profile: bool) -> None:
    replies = await record()
    loop = asyncio.get_running_loop()
    client = Client("127.0.0.1:1")
    # the replayer tells the kinds apart by a marker in the session id (the client never
    # compares the reply's session id with its own)
    transport = Replayer(loop, {b"~%s~" % k: v for k, v in replies.items()})
    conn = ClientConnection(loop, lambda _c, _m: None, lambda _c: None)
    transport.conn = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.machine.state = 2   # OPEN: the handshake was measured in record()
    client._conn = conn
    ids = iter(range(sessions))

    async def worker() -> None:
        for n in ids:
            for kind in (b"s", b"u", b"u", b"p"):
                sid = f"x{n}~{kind.decode()}~"
                await _one(client, kind, sid)

    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if profiler:
        profiler.disable()
    spent = time.process_time() - started
    print(f"{spent / (4 * sessions) * 1e6:.2f} us per container ({4 * sessions} containers, "
          f"{concurrency} in flight, {buildinfo.describe()})")
    if profiler:
        pstats.Stats(profiler).sort_stats(SORT).print_stats(40)


async def _one(client: Client, kind: bytes, sid: str) -> None:
    if kind == b"s":
        op: Any = client.create_session_start_operation("u0", "DATA", sid)
        op.prepare_reserve("r1", ITEM, 60)
    elif kind == b"u":
        op = client.create_session_update_operation("u0", "DATA", sid)
        op.prepare_confirm_and_reserve("r1", ITEM, None, -1)
    else:
        op = client.create_session_stop_operation("u0", "DATA", sid)
        op.prepare_confirm("r1", ITEM)
    result = await op.execute()
    assert result.ok, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    try:
        import uvloop
        uvloop.run(run(a.sessions, a.concurrency, a.profile))
    except ImportError:
        asyncio.run(run(a.sessions, a.concurrency, a.profile))


if __name__ == "__main__":
    main()
