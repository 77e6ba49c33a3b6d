"""One run: spawn or reach the server, connect, provision, load, measure, clean up."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import cc_client
from cc_client import ChargingError, Client

from .cleanup import Removed, remove_run
from .gy import RATING_GROUP, GyClient, GyError, connect
from .gy_workload import GySessions
from .live import LiveSessions
from .progress import Progress
from .provision import BenchError, Provisioned, provision, run_prefix
from .report import build_result
from .settings import CLEANUP_BUDGET, Settings
from .spawn import STOP_TIMEOUT, SpawnedServer, SpawnError, machine_ticks, own_cpu_seconds
from .tls import tls_context
from .workload import Workload

BUILTIN_CATALOG = """\
currency = "EUR"
[services.DATA.items.data]
quantity = "volume"
price = "0.01"
allowance = "free_data"
[services.VOICE.items.call]
quantity = "duration"
step = 60
price = "0.05"
allowance = "free_seconds"
[services.SMS.items.sms]
quantity = "count"
price = "0.10"
"""   # the server's built-in catalog, for a spawned Diameter server (rating groups added)


class CpuMeter:
    """Client (and spawned server) CPU seconds over the measured period; the spawned
    server's memory before it (`mark_memory`) and at its end."""

    def __init__(self, server: SpawnedServer | None) -> None:
        self.server = server
        self.client = 0.0
        self.server_cpu: float | None = None
        self._c0 = 0.0
        self._s0: float | None = None
        self._m0 = machine_ticks()
        self.machine: dict[str, float] | None = None
        self.memory: dict[str, dict[str, float]] = {}

    def mark_memory(self, when: str) -> None:
        """Note the server's resident memory now (spawned, Linux), as `when`."""
        mem = self.server.memory() if self.server is not None else None
        if mem is not None:
            self.memory[when] = mem

    def begin(self) -> None:
        """Mark the start of the measured period."""
        self._c0 = own_cpu_seconds()
        self._s0 = self.server.cpu_seconds() if self.server is not None else None
        self._m0 = machine_ticks()

    def end(self) -> None:
        """Mark its end."""
        self.client = own_cpu_seconds() - self._c0
        if self.server is not None and self._s0 is not None:
            s1 = self.server.cpu_seconds()
            self.server_cpu = None if s1 is None else s1 - self._s0
        self.mark_memory("end_of_measurement")
        m1 = machine_ticks()
        if self._m0 is not None and m1 is not None and m1[2] > self._m0[2]:
            total = m1[2] - self._m0[2]   # shares of all CPUs' time, in percent
            self.machine = {"busy_pct": round(100 * (m1[0] - self._m0[0]) / total, 1),
                            "steal_pct": round(100 * (m1[1] - self._m0[1]) / total, 1)}


class Interrupt:
    """Ctrl-C: the first ends the measurement (the report still comes), another aborts."""

    def __init__(self) -> None:
        self.workload: Workload | None = None
        self.task = asyncio.current_task()

    def __call__(self) -> None:
        w = self.workload
        if w is not None and not w.stopping:
            w.end_measure()
        elif self.task is not None:
            self.task.cancel()


async def connect_all(address: str, s: Settings) -> list[Client]:
    """One client (one connection) per `--connections`."""
    window = max(1_000, -(-s.in_flight // s.connections) + 64)
    try:
        ssl = tls_context(s.tls, s.tls_ca, s.tls_cert, s.tls_key)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    results = await asyncio.gather(
        *(cc_client.connect(address, user=s.user, password=s.password, ssl=ssl,
                            request_timeout=s.request_timeout, queue_size_to_notify=window,
                            client_name="cc-bench") for _ in range(s.connections)),
        return_exceptions=True)
    clients = [r for r in results if isinstance(r, Client)]
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        for client in clients:
            await client.close()
        if isinstance(failure, ChargingError):
            raise BenchError(f"cannot connect to {address}: {failure.message}")
        raise failure
    return clients


def environment(address: str, server: SpawnedServer | None) -> dict[str, Any]:
    """Where and on what the run happened."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "nproc": os.cpu_count(), "loop": loop,
            "client_version": cc_client.__version__,
            "server": {"address": address, "spawned": server is not None,
                       "pid": server.pid if server is not None else None,
                       "data_dir": server.data_dir if server is not None else None,
                       "argv": server.argv[1:] if server is not None else None}}


async def _measure(s: Settings, clients: list[Client], prov: Provisioned, meter: CpuMeter,
                   interrupt: Interrupt, gy: list[GyClient] | None = None
                   ) -> tuple[Workload, Progress, bool]:
    workload = Workload(s, clients, prov.users, prov.prefix, prov.renewal_users,
                        str(prov.reserve_amount))
    if gy is not None:
        GySessions(workload, gy)     # its sessions go over Gy
    interrupt.workload = workload
    if workload.renewals is not None and gy is None:
        await clients[0].register_reservation_renewal_listener(
            s.listener_id, workload.renewals.on_notification)
    progress = Progress(workload, s.interval, quiet=s.quiet)

    def begin() -> None:
        meter.begin()
        progress.restart()

    workload.on_begin = begin
    workload.on_end = meter.end
    loop = asyncio.get_running_loop()
    ticker = loop.create_task(progress.run())
    timed_out = False
    try:
        async with asyncio.timeout(s.hard_timeout):
            await workload.run()
    except TimeoutError:
        timed_out = True
        workload.end_measure()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        progress.close()
    return workload, progress, timed_out


async def execute(s: Settings) -> dict[str, Any]:
    """Run the benchmark; the result (see `report.build_result`). Raises BenchError."""
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    loop = asyncio.get_running_loop()
    interrupt = Interrupt()
    with contextlib.suppress(NotImplementedError, RuntimeError):   # main thread only
        loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        return await _execute(s, started_at, interrupt)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


async def _execute(s: Settings, started_at: str, interrupt: Interrupt) -> dict[str, Any]:
    server: SpawnedServer | None = None
    diameter = s.diameter_server
    workdir = tempfile.mkdtemp(prefix="cc-bench-") if s.spawn else None
    if s.spawn:
        assert workdir is not None
        args = list(s.server_args)
        if s.protocol == "diameter":
            args = gy_server_args(args, s, workdir)
        server = SpawnedServer(s.data_dir, args)
        try:
            address = await server.start()
        except (SpawnError, OSError) as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise BenchError(f"--spawn: {exc}") from None
        diameter = server.diameter_address or None
    else:
        assert s.server is not None
        address = s.server
    prefix = run_prefix()
    removed: Removed | None = None
    try:
        t0 = time.monotonic()
        clients = await connect_all(address, s)
        gy: list[GyClient] | None = None
        gone = False
        try:
            prov = await provision(clients, s, prefix)
            if diameter is not None:
                gy = await connect_gy(diameter, s)
            setup_s = time.monotonic() - t0
            live = LiveSessions(s, clients, prov.users, prov.prefix)
            meter = CpuMeter(server)
            meter.mark_memory("before_live_open")
            try:
                await live.open()
                meter.mark_memory("after_live_open")
                workload, progress, timed_out = await _measure(s, clients, prov, meter,
                                                               interrupt, gy)
                gone = workload.aborted is not None
                server_stats: dict[str, Any] | None = None
                if not gone:
                    with contextlib.suppress(ChargingError, TimeoutError):
                        server_stats = await asyncio.wait_for(clients[0].admin.stats(), 3.0)
            finally:   # a spawned server is stopped anyway, a gone one cannot: leave them
                if server is None and not gone:
                    await live.close()
        finally:
            if s.cleanup and server is None and not gone:
                removed = await _cleanup(clients[0], prefix)
            for client in clients:
                await client.close()
            for conn in gy or ():
                if conn.transport is not None:
                    conn.transport.close()
    finally:
        if server is not None:   # a server holding many sessions may take longer to exit
            await server.stop(STOP_TIMEOUT + s.live_sessions / 20_000)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    env = environment(address, server)
    env["server"]["exit_code"] = server.exit_code if server is not None else None
    env["setup_s"] = round(setup_s, 3)
    env["started_at"] = started_at
    env["run_prefix"] = prov.prefix
    env["cleanup"] = removed.to_dict() if removed is not None else None
    env["machine"] = meter.machine
    return build_result(s, workload, meter.client, meter.server_cpu, progress.timeline, env,
                        server_stats, timed_out, live=live.to_dict() if s.live_sessions else None,
                        memory=meter.memory or None)


def gy_server_args(args: list[str], s: Settings, workdir: str) -> list[str]:
    """A spawned server's arguments for `--protocol diameter`: `--diameter 127.0.0.1:0` and
    a catalog whose rating groups 10.. charge --service/--item (the --catalog given with
    --server-arg, else the built-in prices, with those tables added)."""
    text = BUILTIN_CATALOG
    path: str | None = None
    if "--catalog" in args[:-1]:
        at = args.index("--catalog")
        path = args.pop(at + 1)
        args.pop(at)
    for arg in [a for a in args if a.startswith("--catalog=")]:
        path = arg.partition("=")[2]
        args.remove(arg)
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise BenchError(f"--server-arg --catalog {path}: {exc.strerror}") from None
    if "[diameter" not in text:
        text += "".join(f'\n[diameter.rating_groups.{RATING_GROUP + k}]\nservice = '
                        f'"{s.service}"\nitem = "{s.item}"\nunits = "total_octets"\n'
                        for k in range(s.reservations))
    catalog = os.path.join(workdir, "catalog.toml")
    with open(catalog, "w", encoding="utf-8") as f:
        f.write(text)
    return [*args, "--catalog", catalog, "--diameter", "127.0.0.1:0"]


async def connect_gy(address: str, s: Settings) -> list[GyClient]:
    """One Gy connection per `--connections`, each past its CER/CEA."""
    try:
        return list(await asyncio.gather(*(connect(address, s.request_timeout)
                                           for _ in range(s.connections))))
    except (GyError, OSError) as exc:
        raise BenchError(f"cannot connect to the Diameter port {address}: {exc}") from None


async def _cleanup(client: Client, prefix: str) -> Removed | None:
    """`--cleanup`: remove the run's subscribers and sessions; None (after saying why on
    stderr) when that failed."""
    try:
        return await asyncio.wait_for(remove_run(client, prefix + "-"), CLEANUP_BUDGET)
    except (ChargingError, TimeoutError) as exc:
        why = f"{exc.code}: {exc.message}" if isinstance(exc, ChargingError) else "time limit"
        print(f"cc-bench: --cleanup failed ({why}); remove the rest with: cc-bench cleanup "
              f"--prefix {prefix}", file=sys.stderr, flush=True)
        return None
