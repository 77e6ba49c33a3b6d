"""`--spawn`: run `cc-server` as a child process on a free loopback port, and measure it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
from collections.abc import Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc/<pid>/stat (None where unavailable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()   # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_memory(pid: int) -> dict[str, float] | None:
    """VmRSS and VmHWM (peak) of a process in MiB, from /proc/<pid>/status (Linux only)."""
    found: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0]) / 1024   # kB
    except (OSError, ValueError, IndexError):
        return None
    if len(found) < 2:
        return None
    return {"rss_mib": round(found["VmRSS"], 1), "hwm_mib": round(found["VmHWM"], 1)}


def machine_ticks() -> tuple[int, int, int] | None:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat (None where unavailable)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    values += [0] * (8 - len(values))
    total = sum(values)
    return total - values[3] - values[4], values[7], total


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SpawnError(Exception):
    """The server child did not start."""


class SpawnedServer:
    """A `python -m cc_server` child; `address` once started, SIGTERM on `stop`."""

    def __init__(self, data_dir: str | None = None, extra_args: Sequence[str] = (),
                 log_level: str = "warning") -> None:
        self.argv = [sys.executable, "-m", "cc_server", "--host", "127.0.0.1", "--port", "0",
                     "--log-level", log_level]
        if data_dir:
            self.argv += ["--data-dir", data_dir]
        self.argv += list(extra_args)
        self.data_dir = data_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.address = ""
        self.diameter_address = ""     # with --diameter: from its `diameter listening on` line
        self.exit_code: int | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        """CPU seconds the server has used so far."""
        return None if self.proc is None else process_cpu_seconds(self.proc.pid)

    def memory(self) -> dict[str, float] | None:
        """The server's resident memory now and at its peak, MiB (None where unknown)."""
        return None if self.proc is None else process_memory(self.proc.pid)

    async def start(self) -> str:
        """Start the child and return its `host:port` from its first line of output."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=None)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            await self.stop()
            raise SpawnError(f"the server did not start within {READY_TIMEOUT:.0f} s") from None
        text = line.decode(errors="replace").strip()
        if not text.startswith("listening on "):
            await self.stop()
            raise SpawnError(f"the server did not start (exit code {self.exit_code}; "
                             f"first line {text!r})")
        # "listening on HOST:PORT (details...)": the address is the first word.
        self.address = text.removeprefix("listening on ").split()[0]
        if "--diameter" in self.argv:
            await self._diameter_line()
        self._drain = asyncio.get_running_loop().create_task(self._discard_output())
        return self.address

    async def _diameter_line(self) -> None:
        """Read the `diameter listening on HOST:PORT` line printed after the first one."""
        assert self.proc is not None and self.proc.stdout is not None
        for _ in range(8):    # a few lines at most come before it
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), READY_TIMEOUT)
            except TimeoutError:
                break
            text = line.decode(errors="replace").strip()
            if text.startswith("diameter listening on "):
                self.diameter_address = text.removeprefix("diameter listening on ").split()[0]
                return
            if not line:
                break
        await self.stop()
        raise SpawnError("the server printed no 'diameter listening on' line")

    async def _discard_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    async def stop(self, grace: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait for a clean exit (SIGKILL after `grace` seconds); the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        self.exit_code = proc.returncode
        return self.exit_code
