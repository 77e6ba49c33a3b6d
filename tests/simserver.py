"""A charging server driven in process for deterministic simulation: no sockets, a manual
clock, a data directory, and crashes made by abandoning the server at a log-record boundary.

`SimServer.request` hands one request frame to the server's dispatcher, runs its timers
(as its next tick would) and waits until every record is on disk, so a reply returned is
one the server could have sent. `crash(keep)` is kill -9: the process is gone, and of the
records of this life only the first `keep` reached the disk (a torn batch; the rest were
never acknowledged). `picture()` is everything recovery must give back.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cc_server import snapshot as snap
from cc_server.clock import ManualClock
from cc_server.config import ServerConfig
from cc_server.connection import ALL_ROLES
from cc_server.server import ChargingServer
from cc_server.wal import encode_record, scan_segment, segment_path
from protocol import codec
from protocol import messages as m
from protocol.frames import Frame

T0 = 1_800_000_000.0     # the manual clock's start (epoch seconds)
Reply = tuple[int, bytes]


class SimPeer:
    """The one client: every role."""

    roles = ALL_ROLES
    name = "sim"
    user: str | None = None


PEER = SimPeer()


class SimServer:
    """One data directory and the server currently running on it (if any)."""

    def __init__(self, directory: Path, **settings: Any) -> None:
        self.dir = directory
        self.settings = settings
        self._server: ChargingServer | None = None
        #: records of this life at the newest snapshot: a crash never cuts below it
        self.snapshot_floor = 0

    @property
    def server(self) -> ChargingServer:
        """The running server."""
        assert self._server is not None, "not running"
        return self._server

    @property
    def records(self) -> int:
        """Log records appended in this life."""
        wal = self.server.wal
        assert wal is not None
        return wal.appended

    async def start(self, before_timers: Callable[[], None] | None = None) -> None:
        """Start (recover) on the directory, with the clock where the log left it;
        `before_timers` is called once recovery is done, before the first timer run."""
        config = ServerConfig(data_dir=str(self.dir), snapshot_every=1 << 40,
                              test_controls=True, **self.settings)
        server = ChargingServer(config, clock=ManualClock(T0))
        store = server.store
        assert store is not None
        # the snapshot after a replay is written in process (no fork): same content
        store.snapshot_in_background = store.snapshot_now  # type: ignore[method-assign,assignment]
        server.recovery = server._recover(store)
        self._server = server
        self.snapshot_floor = 0
        if before_timers is not None:
            before_timers()
        server.run_timers()          # the first tick
        await self.settle()

    async def settle(self) -> None:
        """Wait until every record appended is on disk."""
        wal = self.server.wal
        assert wal is not None
        for _ in range(100):
            if wal.idle:
                return
            await asyncio.sleep(0)
        raise AssertionError("the log did not become idle")

    async def request(self, msg_type: int, body: bytes, timers: bool = True) -> Reply | None:
        """One request, then (with `timers`) a timer run, and its records on disk; the
        reply."""
        server = self.server
        reply = server.dispatcher.handle(PEER, Frame(msg_type, 0, 1, body))
        if timers:
            server.run_timers()
        await self.settle()
        assert not server.dispatcher.stopped, "the server failed-stop"
        return reply

    async def execute(self, msg: m.Execute, timers: bool = True) -> Reply | None:
        """An EXECUTE."""
        return await self.request(m.MsgType.EXECUTE, codec.encode_body(msg)[1], timers)

    async def admin(self, command: str, args: dict[str, Any], op: bytes | None = None,
                    timers: bool = True) -> Reply | None:
        """An ADMIN command (with an operation id when `op`)."""
        body = codec.encode_body(m.AdminRequest(command, args, op))[1]
        return await self.request(m.MsgType.ADMIN, body, timers)

    def snapshot(self) -> None:
        """A snapshot now (the log rotates)."""
        store = self.server.store
        assert store is not None
        store.snapshot_now(self.server.state)
        self.snapshot_floor = self.records

    async def stop(self) -> None:
        """A graceful stop (final snapshot)."""
        await self.server.shutdown(drain=0)
        self._server = None

    def crash(self, keep: int | None = None) -> None:
        """kill -9, with only the first `keep` records of this life on disk (None: all)."""
        server = self.server
        store, wal = server.store, server.wal
        assert store is not None and wal is not None and wal.idle
        wal.close()
        store._lock.close()          # the kernel drops the lock with the process
        server.auth.close()
        self._server = None
        if keep is None or keep == wal.appended:
            return
        assert self.snapshot_floor <= keep <= wal.appended
        path = segment_path(self.dir, wal.index)
        records = scan_segment(path).records
        kept = keep - (wal.appended - len(records))
        assert 0 <= kept <= len(records)
        path.write_bytes(b"".join(encode_record(r) for r in records[:kept]))

    def picture(self) -> dict[str, Any]:
        """Everything acknowledged: balances, counters, sessions and reservations with
        their expiries and ordering keys, the journal with its ids, the stored outcomes
        still inside their window, and the clock."""
        server = self.server
        now = server.clock()
        engine = copy.deepcopy(snap.engine_to_state(server.engine))   # it shares dicts
        # renewals the engine has queued for the renewal service: handed over right after
        # the record that made them (outside the fail-stop window), so a picture taken at
        # the record sees them queued while replay hands them over at once; the service's
        # own resend state is not part of what recovery promises (README, Durability)
        del engine["renewals"]
        engine["accounts"] = {row[0]: row[1:] for row in engine["accounts"]}
        engine["sessions"] = {row[0]: row[1:] for row in engine["sessions"]}
        journal = engine["journal"]
        journal["entries"] = {entry[0]: entry for entry in journal["entries"]}   # by id
        outcomes = {(user, op): (deadline, reply, digest)
                    for (user, op), deadline, reply, digest in server.dedup.items()
                    if deadline > now}
        return {"clock": now, "engine": engine, "outcomes": outcomes}


def differences(a: dict[str, Any], b: dict[str, Any], path: str = "") -> list[str]:
    """Where two pictures differ (the first few)."""
    out: list[str] = []
    for key in sorted(set(a) | set(b), key=repr):
        left, right = a.get(key, "<missing>"), b.get(key, "<missing>")
        if left == right:
            continue
        if isinstance(left, dict) and isinstance(right, dict):
            out += differences(left, right, f"{path}{key!r}.")
        else:
            out.append(f"{path}{key!r}: {_short(left)} != {_short(right)}")
        if len(out) >= 8:
            break
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 400 else text[:400] + "..."


def wal_files(directory: Path) -> list[str]:
    """The data directory's files (for a failure message)."""
    return sorted(os.listdir(directory))
