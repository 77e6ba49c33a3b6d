"""CPU per container through the whole server path, without sockets.

Feeds pre-encoded EXECUTE frames (the standard mix: start, 2 x confirm_and_reserve, stop)
to a ServerConnection whose transport is a stub, in reads of `--batch` frames, and
reports microseconds per container. Run: python benchmark/server_path.py [--profile]
(`--record N`: with the request record on, as `cc-server --record N`; `--catalog FILE`:
rated by that catalog's DATA item, e.g. benchmark/catalogs/periods.toml or tiers.toml
against flat.toml, the same item at one price).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import time
from decimal import Decimal
from typing import Any

from cc_server.config import ServerConfig
from cc_server.connection import ServerConnection
from cc_server.server import ChargingServer
from protocol import codec
from protocol import messages as m

SORT = os.environ.get("SORT", "tottime")   # pstats order for --profile


class StubTransport:
    """Swallows writes; looks like a socket transport to the connection."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None: ...
    def get_write_buffer_size(self) -> int: return 0
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def frames(sessions: int, users: int, result_type: m.ResultType | None) -> list[bytes]:
    item = m.ChargeableItem("data", {"volume": 100})
    out = [codec.encode(m.Hello(), 1)]
    rid = 2
    for n in range(sessions):
        user, sid = f"u{n % users}", f"s{n}"
        subs_by_kind = [
            (m.ContainerKind.START, m.SubRequest(m.Action.RESERVE, "r1", item, ttl=60)),
            (m.ContainerKind.UPDATE, m.SubRequest(m.Action.CONFIRM_AND_RESERVE, "r1", item,
                                                  item, -1)),
            (m.ContainerKind.UPDATE, m.SubRequest(m.Action.CONFIRM_AND_RESERVE, "r1", item,
                                                  item, -1)),
            (m.ContainerKind.STOP, m.SubRequest(m.Action.CONFIRM, "r1", item))]
        for k, (kind, sub) in enumerate(subs_by_kind):
            op = n.to_bytes(8, "big") + k.to_bytes(8, "big")
            out.append(codec.encode(m.Execute(op, kind, user, "DATA", sid, (sub,),
                                              result_type=result_type), rid))
            rid += 1
    return out


async def run(sessions: int, users: int, batch: int, profile: bool,
              result_type: m.ResultType | None, freeze_every: int, record: int = 0,
              catalog: str | None = None) -> float:
    """Feed the containers; microseconds per container."""
    server = ChargingServer(ServerConfig(port=0, record=record, catalog=catalog))
    for u in range(users):
        server.engine.create_subscriber(f"u{u}", Decimal("1000000"))
    conn = ServerConnection(server)
    conn.connection_made(StubTransport())  # type: ignore[arg-type]
    data = frames(sessions, users, result_type)
    conn.data_received(data[0])
    reads = [b"".join(data[i:i + batch]) for i in range(1, len(data), batch)]
    profiler = cProfile.Profile() if profile else None

    def feed() -> float:
        started = time.process_time()
        if profiler:
            profiler.enable()
        for n, chunk in enumerate(reads):
            conn.data_received(chunk)
            if freeze_every and n % freeze_every == 0:
                gc.freeze()          # what cc-server's GcPolicy does about once a second
        if profiler:
            profiler.disable()
        return time.process_time() - started

    spent = server.context.run(feed)   # the context a server's connections run in
    per_container = spent / (len(data) - 1) * 1e6
    print(f"{per_container:.2f} us per container "
          f"({len(data) - 1} containers, {batch} per read)")
    if profiler:
        stats = pstats.Stats(profiler).sort_stats(SORT)
        stats.print_stats(40)
        if os.environ.get("CALLERS"):
            stats.print_callers(os.environ["CALLERS"])
    return per_container


def measure(sessions: int, users: int, batch: int, freeze_every: int = 1000) -> float:
    """Microseconds per container of the standard mix (other scripts compare with it)."""
    return asyncio.run(run(sessions, users, batch, False, None, freeze_every))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=20_000)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--record", type=int, default=0, metavar="N",
                   help="keep the request record of the last N frames (default: off)")
    p.add_argument("--no-tx", action="store_true", help="result type NO_TRANSACTIONS")
    p.add_argument("--catalog", metavar="FILE", help="a TOML catalog (default: built-in)")
    p.add_argument("--freeze-every", type=int, default=1000,
                   help="gc.freeze() every N reads, like cc-server (0: Python's default GC)")
    a = p.parse_args()
    asyncio.run(run(a.sessions, a.users, a.batch, a.profile,
                    m.ResultType.NO_TRANSACTIONS if a.no_tx else None, a.freeze_every,
                    a.record, a.catalog))


if __name__ == "__main__":
    main()
