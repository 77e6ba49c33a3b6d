"""Renewal burst: N starved sessions, each released by its own top-up. Target (SPEC 4):
10,000 sessions, all notifications delivered and acknowledged within 2 s, client and
server sharing one 2-core machine.

Set-up (not timed): a server is spawned on a free loopback port (or `--server` names a
loopback one); one client registers the renewal listener, another drives. Each of N fresh
subscribers holds exactly one reservation's worth of credit; its session (listener id set
at start) reserves it all, confirms it all and asks for as much again: CREDIT_LIMIT_REACHED,
starved. Timed: the N top-ups go out as fast as possible (bounded in flight); each raises
available credit, so the server pushes one notification, which the handler acknowledges.
The clock runs from the first top-up sent to the N-th distinct notification acknowledged,
and on to the server's `stats`, asked on the listener's connection after the acks, showing
them acknowledged and none pending: that last time is the one held against the target. A
session's latency runs from its top-up's send to its notification's arrival. Resends and
duplicates are counted. Exit status: 0 PASS, 1 complete but too slow, 2 incomplete.

    .venv/bin/python benchmark/renewal_burst.py [--sessions 10000] [--server HOST:PORT]
                                                [--in-flight 512] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import cc_client
from cc_bench.cli import new_loop
from cc_bench.provision import create_subscribers, preflight, run_prefix
from cc_bench.settings import Settings
from cc_bench.spawn import SpawnedServer, SpawnError
from cc_client import ChargeableItem, Client, RenewalNotification

TARGET_S = 2.0
TIME_LIMIT_S = 120.0   # overall, plus 10 ms per session
MAX_PENDING = 10_000   # the server's default pending notifications per listener id
RID = "r0"
MARKS = ("top_ups_answered", "all_notified", "all_acknowledged", "server_confirmed")


@dataclass
class Burst:
    """What the timed phase saw (filled as it goes, so a timeout can still report it)."""

    n: int
    sent: dict[str, int] = field(default_factory=dict)      # session id -> top-up sent, ns
    arrived: dict[str, int] = field(default_factory=dict)   # first notification, ns
    notes: Counter[str] = field(default_factory=Counter)    # notifications per session
    resent: int = 0       # notifications with attempt > 1
    foreign: int = 0      # notifications for sessions not of this run
    acked: int = 0        # distinct sessions acknowledged
    t0: int = 0           # perf_counter_ns of the first top-up
    marks: dict[str, int] = field(default_factory=dict)     # MARKS reached, perf_counter_ns
    top_up_errors: Counter[str] = field(default_factory=Counter)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_notification(self, note: RenewalNotification) -> None:
        """The renewal handler: record the arrival, acknowledge, count."""
        now = perf_counter_ns()
        sid = note.session_id
        if sid not in self.sent:
            self.foreign += 1
            return           # acknowledged by the client on return
        self.resent += note.attempt > 1
        self.notes[sid] += 1
        await note.ack()     # one-way, as on return; explicit so its time is known
        if self.notes[sid] == 1:
            self.arrived[sid] = now
            self.acked += 1
            if self.acked == self.n:
                self.marks.update(all_notified=now, all_acknowledged=perf_counter_ns())
                self.done.set()


async def pipelined(items: Iterable[Any], work: Callable[[Any], Awaitable[None]],
                    limit: int) -> None:
    """Run `work` on every item, `limit` at a time, in order of the items."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(limit)))


def renewal_stats(stats: dict[str, Any]) -> dict[str, int]:
    """The renewal section of the server's stats: `pending`, `listeners` and the counts
    (created, sent, resent, acknowledged, undeliverable...; see cc_server/renewal.py)."""
    return {key: int(value) for key, value in stats.get("renewal", {}).items()}


def report(burst: Burst, before: dict[str, int], after: dict[str, int] | None,
           status: str) -> dict[str, Any]:
    """The JSON-ready result, and its verdict."""
    lat = sorted((burst.arrived[s] - burst.sent[s]) / 1e6 for s in burst.arrived)
    pct = {f"p{q}": round(lat[min(len(lat) - 1, math.ceil(q / 100 * len(lat)) - 1)], 2)
           for q in (50, 99)} if lat else {}
    delta = {k: v - before.get(k, 0) for k, v in after.items()
             if k not in ("pending", "listeners")} if after else {}
    secs = {k: round((burst.marks[k] - burst.t0) / 1e9, 4) if k in burst.marks else None
            for k in MARKS}
    total = secs["server_confirmed"]
    complete = status == "ok" and burst.acked == burst.n and not burst.resent \
        and max(burst.notes.values(), default=0) == 1 and after is not None \
        and after["pending"] == 0 and delta.get("acknowledged", 0) >= burst.n
    verdict = "INCOMPLETE" if not complete else \
        "PASS" if total is not None and total <= TARGET_S else "FAIL"
    return {
        "schema": "renewal-burst/1", "verdict": verdict, "status": status,
        "target_seconds": TARGET_S, "sessions": burst.n,
        "notified": len(burst.arrived), "acknowledged": burst.acked,
        "duplicates": sum(c - 1 for c in burst.notes.values()), "resent": burst.resent,
        "foreign": burst.foreign, "top_up_errors": dict(burst.top_up_errors),
        "seconds": secs,
        "notifications_per_s": round(burst.n / total, 1) if total else None,
        "latency_ms": {**pct, "max": round(lat[-1], 2)} if lat else {},
        "server_renewal_delta": delta, "server_pending_after": after and after["pending"]}


async def starve(client: Client, user: str, sid: str, listener_id: int, s: Settings,
                 failed: Counter[str]) -> None:
    """Bring one session into the starved state (CREDIT_LIMIT_REACHED on its update)."""
    item = ChargeableItem(s.item, {s.quantity_property: s.quantity})
    try:
        start = client.create_session_start_operation(user, s.service, sid)
        start.set_reservation_renewal_listener_id(listener_id)
        start.prepare_reserve(RID, item, s.ttl)
        if not (await start.execute()).ok:
            failed["start refused"] += 1
            return
        update = client.create_session_update_operation(user, s.service, sid)
        update.prepare_confirm_and_reserve(RID, item, None, -1)
        outcome = (await update.execute()).get(RID)
    except cc_client.ChargingError as exc:
        failed[exc.code] += 1
        return
    if outcome is None or outcome.error is None or outcome.error.code != "CREDIT_LIMIT_REACHED":
        failed["not starved"] += 1


async def run(address: str, burst: Burst, in_flight: int, listener_base: int,
              out: dict[str, Any]) -> None:
    """Set up, fire the top-ups, wait for the notifications; results into `burst`/`out`."""
    s = Settings(ttl=600.0)
    n = burst.n
    async with cc_client.connect(address, request_timeout=30.0) as driver, \
            cc_client.connect(address, request_timeout=30.0) as listener:
        listener_ids = [listener_base + i for i in range(math.ceil(n / MAX_PENDING))]
        for lid in listener_ids:
            await listener.register_reservation_renewal_listener(lid, burst.on_notification)
        prefix = run_prefix()
        amount = await preflight(driver, s, prefix)
        users = [f"{prefix}-u{i}" for i in range(n)]
        await create_subscribers([driver], users, amount)
        failed: Counter[str] = Counter()
        await pipelined(range(n), lambda i: starve(driver, users[i], f"{prefix}-s{i}",
                                                   listener_ids[i % len(listener_ids)], s,
                                                   failed), in_flight)
        if failed:
            raise RuntimeError(f"set-up: sessions not starved: {dict(failed)}")
        burst.sent = dict.fromkeys((f"{prefix}-s{i}" for i in range(n)), 0)
        out["before"] = renewal_stats(await listener.admin.stats())

        async def top_up(i: int) -> None:
            burst.sent[f"{prefix}-s{i}"] = perf_counter_ns()
            try:
                await driver.admin.top_up(users[i], amount)
            except cc_client.ChargingError as exc:
                burst.top_up_errors[exc.code] += 1

        burst.t0 = perf_counter_ns()
        await pipelined(range(n), top_up, in_flight)
        burst.marks["top_ups_answered"] = perf_counter_ns()
        try:
            await asyncio.wait_for(burst.done.wait(), 15.0)
        except TimeoutError:
            out["status"] = "notifications missing after 15 s"
        for _ in range(100):   # same connection as the acks: they were processed first
            out["after"] = after = renewal_stats(await listener.admin.stats())
            if after["pending"] == 0 or after.get("acknowledged", 0) \
                    - out["before"].get("acknowledged", 0) >= burst.acked:
                break
            await asyncio.sleep(0.05)
        else:
            if out["status"] == "ok":
                out["status"] = f"the server still had {after['pending']} pending after 5 s"
        if burst.done.is_set():
            burst.marks["server_confirmed"] = perf_counter_ns()

        async def stop(i: int) -> None:   # clean-up, not timed: leave nothing behind
            op = driver.create_session_stop_operation(users[i], s.service, f"{prefix}-s{i}")
            op.prepare_cancel(RID)
            await op.execute()

        await pipelined(range(n), stop, in_flight)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """One run, bounded by the overall time limit; the report."""
    burst = Burst(args.sessions)
    out: dict[str, Any] = {"status": "ok"}
    server = None if args.server else SpawnedServer()
    try:
        async with asyncio.timeout(TIME_LIMIT_S + args.sessions / 100):
            address = args.server if server is None else await server.start()
            await run(address, burst, args.in_flight, args.listener_id, out)
    except TimeoutError:
        out["status"] = "overall time limit reached"
    except (cc_client.ChargingError, RuntimeError, OSError, SpawnError) as exc:
        out["status"] = f"error: {exc}"
    finally:
        if server is not None:
            await server.stop()
    return report(burst, out.get("before", {}), out.get("after"), out["status"])


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description="N starved sessions released by one top-up "
                                "each: time until all renewal notifications are acknowledged")
    p.add_argument("--sessions", type=int, default=10_000, help="starved sessions (10000)")
    p.add_argument("--server", help="a running server, HOST:PORT on loopback (default: spawn)")
    p.add_argument("--in-flight", type=int, default=512, help="requests in flight (512)")
    p.add_argument("--listener-id", type=int, default=100,
                   help=f"renewal listener id (100; one more per {MAX_PENDING} sessions)")
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)
    if args.sessions < 1 or args.in_flight < 1:
        p.error("--sessions and --in-flight must be >= 1")
    if not 1 <= args.listener_id <= 128 - math.ceil(args.sessions / MAX_PENDING):
        p.error("--listener-id out of range 1..127 for this many sessions")
    if args.server:
        try:
            host = cc_client.client.parse_address(args.server)[0]
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise ValueError(host)
        except ValueError:
            p.error("--server must be a loopback HOST:PORT")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status (0 PASS, 1 FAIL, 2 incomplete)."""
    args = parse(argv)
    loop = new_loop("auto")
    try:
        result = loop.run_until_complete(main_async(args))
    finally:
        loop.close()
    r = result
    print(f"renewal burst: {r['sessions']} sessions, {r['notified']} notified, "
          f"{r['acknowledged']} acknowledged, {r['duplicates']} duplicates, {r['resent']} "
          f"resent; status: {r['status']}\n  seconds from the first top-up: {r['seconds']} "
          f"({r['notifications_per_s']} notifications/s)\n  latency top-up -> notification, "
          f"ms: {r['latency_ms']}\n  server renewal counts: {r['server_renewal_delta']}, "
          f"pending after: {r['server_pending_after']}\n"
          f"{r['verdict']} (target: all acknowledged within {TARGET_S:g} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return {"PASS": 0, "FAIL": 1}.get(result["verdict"], 2)


if __name__ == "__main__":
    sys.exit(main())
