"""Bytes a live session costs the server, without sockets: a quick probe for memory work.

Opens `--sessions` sessions through a ServerConnection (as cc-bench `--live-sessions`
does: a START with one reservation each, result type NO_TRANSACTIONS, op ids kept in
the exactly-once window) and prints the resident-memory growth per session, and with
`--trace` where tracemalloc saw it allocated (by file and line).
Run: python benchmark/live_memory.py [--sessions 200000] [--trace]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tracemalloc
from decimal import Decimal

from server_path import StubTransport  # benchmark/server_path.py, beside this file

from cc_server.config import ServerConfig
from cc_server.connection import ServerConnection
from cc_server.server import ChargingServer
from protocol import codec
from protocol import messages as m


def rss() -> int:
    """Resident bytes of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def frame(n: int, users: int, rid: int) -> bytes:
    """One START container holding one reservation (cc-bench's live session)."""
    item = m.ChargeableItem("data", {"volume": 100})
    sub = m.SubRequest(m.Action.RESERVE, "r0", item, ttl=3600)
    return codec.encode(m.Execute(n.to_bytes(16, "big"), m.ContainerKind.START,
                                  f"u{n % users}", "DATA", f"bench-live{n}", (sub,),
                                  result_type=m.ResultType.NO_TRANSACTIONS), rid)


async def run(sessions: int, users: int, trace: bool) -> None:
    server = ChargingServer(ServerConfig(port=0))
    for u in range(users):
        server.engine.create_subscriber(f"u{u}", Decimal("1e12"))
    conn = ServerConnection(server)
    conn.connection_made(StubTransport())  # type: ignore[arg-type]
    conn.data_received(codec.encode(m.Hello(), 1))
    gc.collect()
    gc.freeze()
    if trace:
        tracemalloc.start()
    before = rss()
    batch = 64
    for start in range(0, sessions, batch):
        conn.data_received(b"".join(frame(n, users, n + 2)
                                    for n in range(start, min(start + batch, sessions))))
        if start % 65536 == 0:
            gc.freeze()
    grown = rss() - before
    assert server.engine.stats()["sessions"] == sessions, server.engine.stats()
    print(f"{grown / sessions:.0f} bytes of RSS per live session ({sessions:,} sessions, "
          f"{grown / 2**20:.1f} MiB)")
    if trace:
        snap = tracemalloc.take_snapshot()
        for stat in snap.statistics("lineno")[:25]:
            print(f"{stat.size / sessions:8.1f} B/session  {stat.traceback}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=200_000)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--trace", action="store_true")
    a = p.parse_args()
    asyncio.run(run(a.sessions, a.users, a.trace))


if __name__ == "__main__":
    main()
