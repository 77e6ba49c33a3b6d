"""The fixed cost of a request that arrives alone, without sockets (and the loop's floor).

Like `server_path.py` (pre-encoded EXECUTE frames of the standard mix fed to a
`ServerConnection` whose transport is a stub), but in two ways alternately, each round on
a fresh server: `--batch` frames per read (the closed loop's pipelining) and one frame per
read, one reply per write (a gateway's lone request, the open loop). It prints CPU
microseconds per container of both and their difference, the fixed cost of a read that
carries one request. Process CPU time (`time.process_time`), so a busy machine slows the
figures but hardly skews their ratio.

`--parts`: the pieces of a lone request timed one by one (framing, dispatch, the write
and its bookkeeping, the latency histogram). `--echo`: the asyncio/uvloop floor: a bare
echo (header decoded, a fixed reply written) over a loopback TCP connection in this process,
one request per read and per write against 16 per read; client and server both in the
process, so per round trip it counts both ends' reads, writes and loop turns.
`--profile lone|batched`: cProfile of that mode (compiled modules show as one call).

Run: python benchmark/lone_request.py [--sessions N] [--parts] [--echo] [--profile lone]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from decimal import Decimal
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_path import StubTransport, frames

from cc_server.config import ServerConfig
from cc_server.connection import ServerConnection
from cc_server.latency import Histogram
from cc_server.server import ChargingServer
from protocol.connection import SERVER, Connection
from protocol.frames import HEADER_SIZE, encode_frame
from protocol.messages import MsgType


def fresh(users: int) -> tuple[ChargingServer, ServerConnection]:
    """A server with `users` subscribers and one connection past its HELLO."""
    server = ChargingServer(ServerConfig(port=0))
    for u in range(users):
        server.engine.create_subscriber(f"u{u}", Decimal("1000000"))
    conn = ServerConnection(server)
    conn.connection_made(StubTransport())  # type: ignore[arg-type]
    return server, conn


def pings(n: int) -> list[bytes]:
    """A HELLO and `n` PINGs: answered by the connection's machine itself, so a PING
    costs the connection's glue and framing only (no dispatch, no engine)."""
    return [data_hello(), *(encode_frame(int(MsgType.PING), i + 2, b"\x80") for i in range(n))]


def data_hello() -> bytes:
    from protocol import codec
    from protocol import messages as m
    return codec.encode(m.Hello(), 1)


def feed(data: list[bytes], batch: int, users: int,
         profiler: cProfile.Profile | None = None) -> float:
    """CPU µs per frame with `batch` frames per read (1: the lone request)."""
    server, conn = fresh(users)
    conn.data_received(data[0])                  # the HELLO
    reads = [b"".join(data[i:i + batch]) for i in range(1, len(data), batch)]

    def run() -> float:
        started = time.process_time()
        if profiler is not None:
            profiler.enable()
        for chunk in reads:
            conn.data_received(chunk)
        if profiler is not None:
            profiler.disable()
        return time.process_time() - started

    spent = server.context.run(run)
    return spent / (len(data) - 1) * 1e6


def per_call(fn: Any, args: list[Any], repeat: int = 1) -> float:
    """CPU µs per call of `fn(*a)` over `args`."""
    started = time.process_time()
    for _ in range(repeat):
        for a in args:
            fn(*a)
    return (time.process_time() - started) / (len(args) * repeat) * 1e6


def parts(data: list[bytes], batch: int, users: int) -> None:
    """Each piece of a lone request on its own, lone and batched where they differ."""
    body = data[1:]
    out: dict[str, tuple[float, float | None]] = {}

    def machine() -> Connection:
        mc = Connection(SERVER, 0.0)
        mc.receive_data(data[0], 0.0)
        from protocol import messages as m
        mc.accept(m.HelloOk(1, "x", 5.0, 1 << 20, 256, ("charging",)), 0.0)
        return mc

    mc = machine()
    lone = per_call(mc.receive_data, [(f, 1.0) for f in body])
    mc = machine()
    chunks = [b"".join(body[i:i + batch]) for i in range(0, len(body), batch)]
    batched = per_call(mc.receive_data, [(c, 1.0) for c in chunks]) * len(chunks) / len(body)
    out["read: machine.receive_data (framing, events)"] = (lone, batched)

    server, conn = fresh(users)
    conn.data_received(data[0])
    decoder = Connection(SERVER, 0.0).decoder
    decoder.max_body = 1 << 20
    frames_ = [decoder.feed(f)[0] for f in body]
    handle = server.dispatcher.handle
    out["dispatch: dispatcher.handle (decode, engine, encode)"] = (
        server.context.run(per_call, handle, [(conn, f) for f in frames_]), None)
    reply = encode_frame(0x83, 7, b"\x80" * 300)
    out["write: ServerConnection.write (transport, heartbeat)"] = (
        per_call(conn.write, [(reply,)] * 20000), None)
    out["reply: ServerConnection.reply (log check, write)"] = (
        per_call(conn.reply, [(reply,)] * 20000), None)
    loop = conn.loop
    out["loop.time()"] = (per_call(loop.time, [()] * 50000), None)
    hist = Histogram()
    out["latency: Histogram.observe"] = (per_call(hist.observe, [(0.00004,)] * 50000), None)
    out["latency: perf_counter()"] = (per_call(time.perf_counter, [()] * 50000), None)
    out["join: b''.join([one reply])"] = (per_call(b"".join, [([reply],)] * 50000), None)
    for name, (a, b) in out.items():
        more = "" if b is None else f"   batched {b:6.2f}   difference {a - b:5.2f}"
        print(f"  {name:55s} {a:6.2f} us{more}")


# ---------------------------------------------------------------------- the echo floor

REQUEST = encode_frame(0x10, 1, b"\x81\xa2id\x01")
ANSWER = encode_frame(0x90, 1, b"\x84\xa2id\x01\xa2rc\xcd\x07\xd1\xa3gsu\x64\xa2vt\x3c")


class EchoServer(asyncio.Protocol):
    """A bare server: split frames by their header, one fixed answer per frame, the answers
    of one read in one write (as cc-server does)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        n = 0
        pos = 0
        while pos + HEADER_SIZE <= len(data):
            pos += HEADER_SIZE + int.from_bytes(data[pos:pos + 4], "big")
            n += 1
        self.transport.write(ANSWER * n if n > 1 else ANSWER)


class EchoClient(asyncio.Protocol):
    """Sends `window` requests in one write each time the previous `window` answers came."""

    def __init__(self, window: int, rounds: int, done: asyncio.Future[None]) -> None:
        self.window, self.left, self.done = window, rounds, done
        self.got = 0
        self.burst = REQUEST * window

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.burst)

    def data_received(self, data: bytes) -> None:
        self.got += len(data) // len(ANSWER)
        if self.got < self.window:
            return
        self.got = 0
        self.left -= 1
        if self.left:
            self.transport.write(self.burst)
        elif not self.done.done():
            self.done.set_result(None)


async def echo(window: int, requests: int) -> float:
    """Process CPU µs per request for a bare echo over a socket pair, `window` per read."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    done: asyncio.Future[None] = loop.create_future()
    started = time.process_time()
    transport, _ = await loop.create_connection(
        lambda: EchoClient(window, requests // window, done), "127.0.0.1", port)
    await done
    spent = time.process_time() - started
    transport.close()
    server.close()
    return spent / requests * 1e6


async def loop_costs() -> None:
    """A loop turn with one callback, and a future awaited by a task."""
    loop = asyncio.get_running_loop()
    n = 20000
    started = time.process_time()
    for _ in range(n):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        await fut
    turn = (time.process_time() - started) / n * 1e6
    print(f"  loop turn with call_soon + a future awaited: {turn:5.2f} us")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=5000)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="pairs of runs (median shown)")
    p.add_argument("--parts", action="store_true")
    p.add_argument("--echo", action="store_true")
    p.add_argument("--profile", choices=["lone", "batched"])
    a = p.parse_args()
    asyncio.run(server_side(a))
    if a.echo:
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:   # pragma: no cover - uvloop is a runtime dependency
            runner = asyncio.run
        print("bare echo over a loopback TCP connection, client and server in this process:")
        for window in (1, a.batch):
            us = min(runner(echo(window, 40000)) for _ in range(3))
            print(f"  {window:3d} per read: {us:6.2f} us per request (both ends)")
        runner(loop_costs())


async def server_side(a: argparse.Namespace) -> None:
    """The alternating rounds, the profile and the parts."""
    data = frames(a.sessions, a.users, None)
    ping = pings(len(data) - 1)
    lone: list[float] = []
    batched: list[float] = []
    lone_ping: list[float] = []
    batched_ping: list[float] = []
    for _ in range(a.rounds):
        batched.append(feed(data, a.batch, a.users))
        lone.append(feed(data, 1, a.users))
        batched_ping.append(feed(ping, a.batch, 0))
        lone_ping.append(feed(ping, 1, 0))
    lo, ba = statistics.median(lone), statistics.median(batched)
    print(f"batched: {ba:6.2f} us per container ({a.batch} per read, {len(data) - 1} "
          f"containers, median of {a.rounds})")
    print(f"lone:    {lo:6.2f} us per container (1 per read, one write per reply)")
    print(f"fixed cost of a lone request: {lo - ba:5.2f} us ({lo / ba:.3f} x); "
          f"each round's: {', '.join(f'{x - y:.2f}' for x, y in zip(lone, batched, strict=True))}")
    lp, bp = statistics.median(lone_ping), statistics.median(batched_ping)
    print(f"PING (the connection's glue and framing only): batched {bp:5.2f} us, "
          f"lone {lp:5.2f} us, fixed cost {lp - bp:5.2f} us")
    if a.profile:
        profiler = cProfile.Profile()
        feed(data, 1 if a.profile == "lone" else a.batch, a.users, profiler)
        pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(25)
    if a.parts:
        print("parts of a lone request (CPU us per call):")
        parts(data, a.batch, a.users)


if __name__ == "__main__":
    main()
