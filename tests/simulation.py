"""Deterministic simulation of one server's life: random work, lost replies, snapshots,
graceful restarts and kill -9 at random log-record boundaries (in the spirit of
FoundationDB's simulator and TigerBeetle's VOPR, at our scale).

One seed decides everything: the settings (exactly-once window, a tiny
--dedup-max-entries, a small expiry batch), the subscribers, containers of every kind,
top-ups, adjustments, counter changes, deletions, manual clock moves onto equal
deadlines, and which replies are lost. The oracle is the live server itself: a picture
(`SimServer.picture`) is taken after every log record. After a crash that kept `n`
records of the latest life, the recovered state must equal the picture at record `n`;
after a graceful restart, the last one. A retry of an operation whose reply was lost
must, inside its window, get the very reply stored and change nothing.

    python -m tests.simulation --seeds 200            # seeds 0..199 (make simulate SEEDS=200)
    python -m tests.simulation --seed 17 --steps 400  # one seed: its failure again, exactly
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from cc_server import server as server_module
from protocol import codec
from protocol import messages as m
from protocol.errors import ErrorCode
from tests.simserver import Reply, SimServer, differences

#: Clock moves are sent with an operation id, and their lost replies retried (every
#: state-changing ADMIN command carries one). False: a clock move is sent without one and
#: its reply is never lost (a re-sent one would move the clock twice).
RETRY_ADMIN_CLOCK = True
STEPS = 300
A = m.Action
K = m.ContainerKind
SERVICES = {"DATA": ("data", "volume", (1, 5, 20, 80)), "VOICE": ("call", "duration",
            (30, 60, 200)), "SMS": ("sms", "count", (1, 2))}
TTLS = (10, 20, 30)                       # few values: equal deadlines are common
MOVES = (0.5, 5, 5, 10, 10, 15, 20, 45)  # clock moves that land on those deadlines


class SimulationFailed(AssertionError):
    """A seed found a difference; the message says how to run it again."""


@dataclass
class Lost:
    """A request whose reply never arrived: to be retried with the same operation id."""

    msg_type: int
    body: bytes
    reply: Reply | None
    at: float           # the clock when it was applied
    record: int | None  # its first record, in its life (None: nothing logged)
    durable: bool       # its record survived (False: a crash cut it; a retry applies it)
    what: str


class Simulation:
    """One seed's run."""

    def __init__(self, seed: int, steps: int, directory: Path) -> None:
        self.seed, self.steps = seed, steps
        rng = self.rng = random.Random(seed)
        self.window = rng.choice((30.0, 120.0, 600.0))
        # one seed in three: a tiny --dedup-max-entries; one in four: timer runs cut short
        self.max_entries = rng.choice((3, 5, 12)) if seed % 3 == 1 else 100_000
        self.batch = rng.choice((1, 2, 3)) if seed % 4 == 2 else server_module.EXPIRY_BATCH
        self.sim = SimServer(directory, dedup_window=self.window,
                             dedup_max_entries=self.max_entries)
        self.pictures: list[dict[str, Any]] = []   # [n]: the state after record n of this life
        self.acked = 0                  # records of this life when a reply last arrived
        self.lost: list[Lost] = []
        self.ops = 0
        self.trace: list[str] = []
        self.lives = 0
        self.checks = {"crash": 0, "restart": 0, "retry": 0, "snapshot": 0}

    # ------------------------------------------------------------------ running

    async def run(self) -> dict[str, int]:
        """Run every step; SimulationFailed at the first difference."""
        saved = server_module.EXPIRY_BATCH
        server_module.EXPIRY_BATCH = self.batch
        try:
            await self._start()
            for user in range(3):
                await self._create(f"u{user}")
            for step in range(self.steps + 1):
                try:
                    if step < self.steps:
                        await self._step()
                    else:
                        await self._restart(crash=True)    # the end: one more crash
                except AssertionError as exc:
                    raise self._failed(step, str(exc)) from exc
            await self.sim.stop()
        finally:
            server_module.EXPIRY_BATCH = saved
        return self.checks

    def _failed(self, step: int, message: str) -> SimulationFailed:
        return SimulationFailed(
            f"simulation seed {self.seed} failed at step {step} (window {self.window:g} s, "
            f"dedup-max-entries {self.max_entries}, expiry batch {self.batch}): {message}\n"
            f"  last steps:\n    " + "\n    ".join(self.trace[-12:]) + "\n"
            f"  run it again: make simulate SEED={self.seed} STEPS={self.steps}   (or: "
            f"python -m tests.simulation --seed {self.seed} --steps {self.steps})")

    async def _start(self) -> None:
        sim = self.sim
        await sim.start(before_timers=self._started)
        self.lives += 1
        self.acked = 0

    def _started(self) -> None:
        """Recovery done, before any timer: install the picture taker."""
        server = self.sim.server
        wal = server.dispatcher.wal
        assert wal is not None
        self.pictures = [self.sim.picture()]

        def append(payload: bytes) -> int:
            n = wal(payload)
            self.pictures.append(self.sim.picture())
            return n

        server.dispatcher.wal = append

    async def _step(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.22:
            await self._container(K.START)
        elif roll < 0.45:
            await self._container(K.UPDATE)
        elif roll < 0.55:
            await self._container(K.STOP)
        elif roll < 0.67:
            await self._operator()
        elif roll < 0.79:
            await self._clock()
        elif roll < 0.88:
            await self._retry()
        elif roll < 0.91:
            self.sim.snapshot()
            self.checks["snapshot"] += 1
            self.trace.append("snapshot")
        elif roll < 0.94:
            await self._restart(crash=False)
        else:
            await self._restart(crash=True)

    # ------------------------------------------------------------------ requests

    async def _send(self, msg_type: int, body: bytes, what: str,
                    may_lose: bool = True) -> Reply | None:
        """One request; its reply is lost one time in five (kept to retry)."""
        sim = self.sim
        before = sim.records
        reply = await sim.request(msg_type, body)
        logged = sim.records > before
        if may_lose and self.rng.random() < 0.2:
            # what is not stored: TOO_MANY_REQUESTS, and any refused ADMIN (it changed
            # nothing; the same op is checked again)
            code = _code(reply)
            stored = code != ErrorCode.TOO_MANY_REQUESTS and not (
                code is not None and msg_type == m.MsgType.ADMIN)
            self.lost.append(Lost(msg_type, body, reply, sim.server.clock(),
                                  before + 1 if logged else None, stored, what))
            self.trace.append(f"{what} -> reply lost")
            return None
        self.acked = sim.records
        self.trace.append(f"{what} -> {_code(reply) or 'ok'}")
        return reply

    def _op(self) -> bytes:
        self.ops += 1
        return f"op{self.ops}".encode()

    async def _admin(self, command: str, args: dict[str, Any], op: bool = True,
                     may_lose: bool = True) -> Reply | None:
        body = codec.encode_body(m.AdminRequest(command, args, self._op() if op else None))[1]
        return await self._send(m.MsgType.ADMIN, body, f"{command} {args}", may_lose)

    async def _create(self, user: str) -> None:
        rng = self.rng
        counters = {"free_data": D(rng.choice((0, 10, 50)))} if rng.random() < 0.5 else {}
        await self._admin("create_subscriber", {
            "user": user, "balance": D(rng.choice(("0.5", "2", "10", "40"))),
            "counters": counters})

    def _users(self) -> list[str]:
        return sorted(self.sim.server.engine.accounts) or ["u0"]

    def _item(self, service: str) -> m.ChargeableItem:
        name, quantity, sizes = SERVICES[service]
        return m.ChargeableItem(name, {quantity: self.rng.choice(sizes)})

    async def _container(self, kind: K) -> None:
        rng, engine = self.rng, self.sim.server.engine
        sessions = sorted(engine.sessions)
        if kind is K.START or not sessions or rng.random() < 0.05:
            user = rng.choice(self._users())
            service = rng.choice(sorted(SERVICES))
            session = f"s{self.ops}" if kind is K.START or rng.random() < 0.5 else "gone"
            rids: list[str] = []
        else:
            found = engine.sessions[rng.choice(sessions)]
            user, service, session = found.user_id, found.service_id, found.session_id
            rids = [cs.reservation_id for cs in found.charging_sessions()]
        subs = []
        for n in range(rng.choice((1, 1, 2))):
            rid = rng.choice(rids) if rids and rng.random() < 0.85 else f"r{n}"
            subs.append(self._sub(kind, rid, service))
        msg = m.Execute(self._op(), kind, user, service, session, tuple(subs))
        parts = " ".join(f"{s.action.value}:{s.reservation_id}"
                         f"{'' if s.ttl is None else f'/ttl {s.ttl}'}" for s in subs)
        await self._send(m.MsgType.EXECUTE, codec.encode_body(msg)[1],
                         f"{kind.value} {user}/{session} {parts}")

    def _sub(self, kind: K, rid: str, service: str) -> m.SubRequest:
        rng = self.rng
        resolution = rng.choice((None, m.Resolution.CONFIRMED))
        if kind is K.START or (kind is K.UPDATE and rng.random() < 0.2):
            return m.SubRequest(A.RESERVE, rid, self._item(service), ttl=rng.choice(TTLS),
                                default_resolution=resolution)
        if kind is K.STOP:
            action = rng.choice((A.CONFIRM, A.CONFIRM, A.CANCEL))
        else:
            action = rng.choice((A.CONFIRM_AND_RESERVE, A.CONFIRM_AND_RESERVE, A.CONFIRM,
                                 A.CANCEL))
        if action is A.CONFIRM_AND_RESERVE:
            return m.SubRequest(action, rid, self._item(service), self._item(service),
                                ttl=rng.choice((*TTLS, -1)), default_resolution=resolution)
        return m.SubRequest(action, rid, self._item(service) if action is A.CONFIRM else None)

    async def _operator(self) -> None:
        rng = self.rng
        user = rng.choice(self._users())
        roll = rng.random()
        if roll < 0.3:
            await self._admin("top_up", {"user": user, "amount": D(rng.choice(("0.5", "5")))})
        elif roll < 0.5:
            await self._admin("adjust", {"user": user, "reason": "sim",
                                         "amount": D(rng.choice(("-3", "-0.25", "2")))})
        elif roll < 0.65:
            await self._admin("set_counter", {"user": user, "counter": "free_data",
                                              "units": D(rng.choice((0, 5, 30)))})
        elif roll < 0.72:
            await self._admin("reset_counter", {"user": user, "counter": "free_data"})
        elif roll < 0.82:
            sessions = sorted(self.sim.server.engine.sessions)
            if sessions:
                await self._admin("cancel_session", {"session": rng.choice(sessions)})
        elif roll < 0.9:
            await self._admin("delete_subscriber", {"user": user, "force": rng.random() < 0.7})
        else:
            await self._create(f"u{self.ops}")

    async def _clock(self) -> None:
        seconds = self.rng.choice(MOVES)
        await self._admin("clock_advance", {"seconds": seconds}, op=RETRY_ADMIN_CLOCK,
                          may_lose=RETRY_ADMIN_CLOCK)

    # ------------------------------------------------------------------ checks

    async def _retry(self) -> None:
        """Send a lost request again: inside its window, the stored reply, nothing
        changed, nothing logged."""
        if not self.lost:
            return
        lost = self.lost.pop(self.rng.randrange(len(self.lost)))
        sim = self.sim
        now = sim.server.clock()
        checked = lost.durable and lost.record is not None and now < lost.at + self.window
        before, records = sim.picture(), sim.records
        reply = await sim.request(lost.msg_type, lost.body, timers=False)
        self.acked = sim.records
        self.trace.append(f"retry {lost.what} -> {_code(reply) or 'ok'}"
                          f"{' (checked)' if checked else ''}")
        try:
            if checked:
                self._check_retry(lost, reply, before, records, now)
        finally:
            sim.server.run_timers()      # what the retry's own request left to the timers
            await sim.settle()

    def _check_retry(self, lost: Lost, reply: Reply | None, before: dict[str, Any],
                     records: int, now: float) -> None:
        sim = self.sim
        self.checks["retry"] += 1
        assert reply == lost.reply, (
            f"a retry inside the window ({now - lost.at:g} s after, window "
            f"{self.window:g} s) got {_describe(reply)}, not the stored "
            f"{_describe(lost.reply)}")
        assert sim.records == records, "a retry answered from the stored outcome was logged"
        changed = differences(sim.picture(), before)
        assert not changed, f"a retry inside the window changed the state: {changed}"

    async def _restart(self, crash: bool) -> None:
        sim, rng = self.sim, self.rng
        if crash:
            floor = max(self.acked, sim.snapshot_floor)
            keep = rng.randint(floor, sim.records)
            expected = self.pictures[keep]
            for lost in self.lost:       # requests whose records were cut: never applied
                if lost.record is not None and lost.record > keep:
                    lost.durable = False  # (its first record kept: applied, so the op must
                    # answer from its stored outcome even if a later record was cut)
            self.trace.append(f"kill -9 keeping {keep} of {sim.records} records "
                              f"(acknowledged: {floor})")
            sim.crash(keep)
            self.checks["crash"] += 1
        else:
            expected = sim.picture()
            self.trace.append("graceful restart")
            await sim.stop()
            self.checks["restart"] += 1
        for lost in self.lost:
            lost.record = 0 if lost.record is not None else None   # now before this life
        await self._start()
        changed = differences(self.pictures[0], expected)
        assert not changed, f"the recovered state differs from the acknowledged one: {changed}"


def _code(reply: Reply | None) -> str | None:
    if reply is None or reply[0] != m.MsgType.ERROR:
        return None
    error = codec.decode_body(m.MsgType.ERROR, reply[1])
    assert isinstance(error, m.Error)
    return str(error.code)


def _describe(reply: Reply | None) -> str:
    if reply is None:
        return "no reply"
    return _code(reply) or f"a result {codec.unpack(reply[1])!r:.300}"


def run_seed(seed: int, steps: int = STEPS) -> dict[str, int]:
    """Run one seed in a fresh directory; SimulationFailed on a difference."""
    logger = logging.getLogger("cc_server")
    level = logger.level
    logger.setLevel(logging.CRITICAL)   # a tiny bound logs a lot
    shm = Path("/dev/shm")     # memory: the many fsyncs cost nothing, the files are real
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    try:
        with tempfile.TemporaryDirectory(prefix=f"cc-sim-{seed}-", dir=where) as directory:
            return asyncio.run(Simulation(seed, steps, Path(directory)).run())
    finally:
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.simulation`: run seeds, print each failure's reproduction."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="run seeds 0..N-1")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="run this one seed only")
    parser.add_argument("--steps", type=int, default=STEPS, help="steps per seed")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.first,
                                                            args.first + args.seeds)
    failed, started = 0, time.monotonic()
    totals: dict[str, int] = {}
    for seed in seeds:
        try:
            for key, value in run_seed(seed, args.steps).items():
                totals[key] = totals.get(key, 0) + value
        except SimulationFailed as exc:
            failed += 1
            print(exc, file=sys.stderr)
    print(f"{len(seeds)} seeds, {args.steps} steps each, {failed} failed "
          f"({time.monotonic() - started:.1f} s; checked: {totals})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
