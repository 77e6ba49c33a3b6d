"""--data-dir: recovery at start, the write-ahead log, and snapshots.

Layout of the directory:
    LOCK                         held (flock) while a server uses the directory
    snapshot-NNNNNNNN.msgpack    state before the first record of wal-NNNNNNNN.log
    wal-NNNNNNNN.log             records in order (see wal.py), one segment per snapshot

Recovery loads the newest snapshot, replays the segments from its index on with the
catalog stored in the snapshot (so amounts are re-derived exactly as first computed),
then switches to the configured catalog, taking a snapshot if it differs. Snapshots are
written by a forked child (copy-on-write) so a large state never stalls the event loop;
where fork is unavailable, and at shutdown, they are written in-process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import snapshot as snap
from .engine import Catalog
from .wal import WalWriter, iter_log, segment_path, segments

log = logging.getLogger("cc_server")
SNAPSHOT_EVERY_BYTES = 64 * 1024 * 1024


class DataDirError(RuntimeError):
    """The data directory cannot be used (locked by another server, unreadable, ...)."""


@dataclass
class Recovery:
    """What recovery found, for the start-up log line."""

    snapshot: int = 0
    records: int = 0
    seconds: float = 0.0
    catalog_changed: bool = False


class Store:
    """One data directory."""

    def __init__(self, directory: str | Path,
                 snapshot_every_bytes: int = SNAPSHOT_EVERY_BYTES) -> None:
        self.dir = Path(directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.dir / "LOCK", "a+b")  # noqa: SIM115 - held for our life
        except OSError as exc:
            raise DataDirError(f"cannot use data directory {self.dir}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataDirError(f"data directory {self.dir} is in use by another server") \
                from None
        self.snapshot_every_bytes = snapshot_every_bytes
        self.writer: WalWriter | None = None
        self.snapshot_index = 0
        self._bytes_at_snapshot = 0
        self._child: tuple[int, int] | None = None   # (pid, index) of a snapshot in progress

    # ------------------------------------------------------------------ recovery

    def load(self) -> tuple[dict[str, Any] | None, int]:
        """(newest snapshot state, its index), or (None, 0) for a new directory."""
        for index in reversed(snap.snapshots(self.dir)):
            try:
                state = snap.read_snapshot(self.dir, index)
                self.snapshot_index = index
                return state, index
            except (OSError, ValueError) as exc:
                log.error("event=snapshot_unreadable index=%d error=%r", index, exc)
        if segments(self.dir):
            raise DataDirError(f"{self.dir} has log segments but no readable snapshot")
        return None, 0

    def replay(self, first: int, apply: Callable[[bytes], None]) -> int:
        """Apply every logged record from segment `first` on; returns how many."""
        count = 0
        for _, records in iter_log(self.dir, first):
            for payload in records:
                apply(payload)
                count += 1
        return count

    def start(self, on_synced: Callable[[int], None]) -> None:
        """Open a fresh segment for appends (after recovery); replayed ones stay as they are."""
        replayed = [i for i in segments(self.dir) if i >= self.snapshot_index]
        index = max(replayed) + 1 if replayed else self.snapshot_index
        self.writer = WalWriter(self.dir, index, on_synced)

    # ------------------------------------------------------------------ snapshots

    def write_initial(self, state: dict[str, Any]) -> None:
        """The first snapshot of a new directory (index 1), before any record."""
        snap.write_snapshot(self.dir, 1, state)
        self.snapshot_index = 1

    def snapshot_now(self, state_fn: Callable[[], dict[str, Any]]) -> int:
        """Rotate the log and write a snapshot in this process (shutdown, catalog change)."""
        assert self.writer is not None and self.writer.idle
        self._reap(block=True)
        index = self.writer.rotate()
        snap.write_snapshot(self.dir, index, state_fn())
        self._done(index)
        return index

    def maybe_snapshot(self, state_fn: Callable[[], dict[str, Any]]) -> None:
        """Start a background snapshot when the log has grown enough (call from a timer)."""
        writer = self.writer
        self._reap(block=False)
        if writer is None or self._child is not None or not writer.idle:
            return
        if writer.bytes_written - self._bytes_at_snapshot < self.snapshot_every_bytes:
            return
        self.snapshot_in_background(state_fn)

    def snapshot_in_background(self, state_fn: Callable[[], dict[str, Any]]) -> None:
        """Fork a child that writes a snapshot of the state as it is now."""
        writer = self.writer
        assert writer is not None and writer.idle
        if not hasattr(os, "fork"):
            self.snapshot_now(state_fn)
            return
        index = writer.rotate()
        self._bytes_at_snapshot = writer.bytes_written
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the WAL thread is idle
            pid = os.fork()
        if pid == 0:   # the child: write and leave without running any of the parent's code
            code = 1
            try:
                snap.write_snapshot(self.dir, index, state_fn())
                code = 0
            finally:
                os._exit(code)
        self._child = (pid, index)
        log.info("event=snapshot_started index=%d pid=%d", index, pid)

    def _reap(self, block: bool) -> None:
        if self._child is None:
            return
        pid, index = self._child
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if done == 0:
            return
        self._child = None
        if os.waitstatus_to_exitcode(status) == 0:
            self._done(index)
        else:
            log.error("event=snapshot_failed index=%d status=%d", index, status)

    def _done(self, index: int) -> None:
        """Snapshot `index` is durable: older snapshots and segments are not needed."""
        self.snapshot_index = index
        if self.writer is not None:
            self._bytes_at_snapshot = self.writer.bytes_written
        for old in snap.snapshots(self.dir):
            if old < index:
                snap.snapshot_path(self.dir, old).unlink(missing_ok=True)
        for old in segments(self.dir):
            if old < index:
                segment_path(self.dir, old).unlink(missing_ok=True)
        log.info("event=snapshot_written index=%d", index)

    # ------------------------------------------------------------------ closing

    async def close(self, state_fn: Callable[[], dict[str, Any]]) -> None:
        """Drain the log, write a final snapshot (fast restart), release the directory."""
        if self.writer is not None:
            await self.writer.drain()
            self.snapshot_now(state_fn)
            self.writer.close()
        self._reap(block=True)
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def catalogs_differ(a: Catalog, b: Catalog) -> bool:
    """True when two catalogs price anything differently (seed subscribers aside)."""
    return dict(a.plans) != dict(b.plans)


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    """(fn(), seconds it took)."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started
