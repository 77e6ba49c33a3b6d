"""cc-server as a real subprocess (for crash and signal tests), loopback only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


class ServerProcess:
    """`python -m cc_server` on 127.0.0.1; restartable on the same port."""

    def __init__(self, *args: str, port: int = 0, module: str = "cc_server") -> None:
        self.args = list(args)
        self.module = module          # run as `python -m MODULE` (a test's own wrapper)
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.first_line = ""

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port),
             *self.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.first_line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            raise RuntimeError(f"server did not start: {line!r}\n{err}")
        self.port = int(line.split()[2].rsplit(":", 1)[1])   # listening on HOST:PORT (...)
        assert time.monotonic() < deadline
        return self

    def kill9(self) -> None:
        """A crash: SIGKILL, nothing flushed, nothing said."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._collect()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._collect()
        return self.proc.returncode

    def _collect(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(Exception):
            _, err = self.proc.communicate(timeout=5)
            self.log += err.splitlines()

    def recovered_line(self) -> str:
        """The 'event=recovered' log line of the latest run (after stop/kill)."""
        return next((line for line in reversed(self.log) if "event=recovered" in line), "")


@contextlib.contextmanager
def server_process(*args: str) -> Iterator[ServerProcess]:
    """A started server, stopped (or killed) at the end."""
    sp = ServerProcess(*args).start()
    try:
        yield sp
    finally:
        if sp.proc is not None and sp.proc.poll() is None:
            sp.proc.kill()
            sp.proc.wait(10)


def data_dir_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())
