"""--data-dir: recovery at start, the write-ahead log, and snapshots.

Layout of the directory:
    LOCK                         held (flock) while a server uses the directory
    snapshot-NNNNNNNN.msgpack    state before the first record of wal-NNNNNNNN.log
    wal-NNNNNNNN.log             records in order (see wal.py), one segment per snapshot
    corrupt/                     damaged files moved aside, kept for the operator

Recovery loads the newest snapshot that passes its checksum (a damaged one is moved to
corrupt/ and the one before it is used, with the longer log kept for that), replays the
segments from its index on with the catalog stored in the snapshot (so amounts are
re-derived exactly as first computed), then switches to the configured catalog, taking
a snapshot if it differs. A damaged log record that is not a torn tail stops the start;
with `recover_to_last_good` the records before it are kept, the damaged file is copied
to corrupt/ and the records lost are counted and logged with the time they span.

Snapshots are written by a forked child (copy-on-write) so a large state never stalls
the event loop; where fork is unavailable, and at shutdown, they are written in-process.
The child closes every inherited descriptor (listening socket, connections, the LOCK) and
dies with its parent, so a crash during a snapshot never blocks the restart. Once a
snapshot is written and verified, files older than the snapshot before it are deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import codec

from . import snapshot as snap
from .engine import Catalog
from .wal import (
    CorruptLog,
    Scan,
    WalWriter,
    encode_record,
    fsync_dir,
    iter_log,
    scan_segment,
    segment_path,
    segments,
)

log = logging.getLogger("cc_server")
SNAPSHOT_EVERY_BYTES = 64 * 1024 * 1024
SPACE_MARGIN = 1024 * 1024          # bytes of free space kept beyond a snapshot's estimate
SPACE_RETRY = 30.0                  # seconds before a snapshot skipped for space is retried
#: test-only: seconds a snapshot child waits before writing (to crash the parent meanwhile)
DELAY_ENV = "CC_TEST_SNAPSHOT_DELAY"


class DataDirError(RuntimeError):
    """The data directory cannot be used (locked by another server, damaged, ...)."""


@dataclass
class Recovery:
    """What recovery found, for the start-up log line."""

    snapshot: int = 0
    records: int = 0
    seconds: float = 0.0
    catalog_changed: bool = False


def disk_free(directory: Path) -> int:
    """Bytes an unprivileged process may still write on the file system of `directory`."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def record_time(payload: bytes) -> float | None:
    """The time a log record was applied at (None if it cannot be decoded)."""
    try:
        _, now, _ = codec.unpack(payload)
        return float(now)
    except Exception:
        return None


def time_range(records: list[bytes]) -> str:
    """`FIRST..LAST` (UTC) of some log records, for the log."""
    times = [t for t in map(record_time, records) if t is not None]
    if not times:
        return "unknown"
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return f"{time.strftime(fmt, time.gmtime(min(times)))}.." \
           f"{time.strftime(fmt, time.gmtime(max(times)))}"


def die_with_parent(parent: int) -> None:
    """In a forked child: be killed when `parent` dies (Linux PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:        # it died before the line above took effect
        os._exit(1)


def detach_descriptors() -> None:
    """In a forked child: drop every inherited descriptor (sockets, the LOCK, pipes)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)


class Store:
    """One data directory."""

    def __init__(self, directory: str | Path,
                 snapshot_every_bytes: int = SNAPSHOT_EVERY_BYTES,
                 recover_to_last_good: bool = False) -> None:
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
        self.recover_to_last_good = recover_to_last_good
        #: free bytes on the directory's file system (a seam: tests pass a fake)
        self.free_space: Callable[[Path], int] = disk_free
        #: seconds before a snapshot skipped for lack of space is tried again
        self.space_retry = SPACE_RETRY
        self.writer: WalWriter | None = None
        self.snapshot_index = 0
        self._bytes_at_snapshot = 0
        self._skipped_at = float("-inf")    # when a snapshot was last skipped for space
        self._child: tuple[int, int] | None = None   # (pid, index) of a snapshot in progress
        for tmp in self.dir.glob("snapshot-*.tmp"):  # left by a crash or a full disk
            log.warning("event=snapshot_partial_removed file=%s bytes=%d", tmp.name,
                        tmp.stat().st_size)
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ recovery

    def load(self) -> tuple[dict[str, Any] | None, int]:
        """(newest good snapshot state, its index), or (None, 0) for a new directory.
        A damaged snapshot is moved to corrupt/ and the one before it is tried."""
        damaged = 0
        for index in reversed(snap.snapshots(self.dir)):
            try:
                state = snap.read_snapshot(self.dir, index)
                self.snapshot_index = index
                return state, index
            except (OSError, ValueError) as exc:
                damaged += 1
                kept = self.move_aside(snap.snapshot_path(self.dir, index))
                log.error("event=snapshot_damaged index=%d error=%r moved_to=%s (falling "
                          "back to the snapshot before it and the longer log)", index,
                          str(exc), kept)
        if damaged or segments(self.dir):     # never start afresh over lost state
            raise DataDirError(f"{self.dir} has log segments but no readable snapshot; "
                               f"see {self.dir / 'corrupt'} and `cc-admin verify {self.dir}`")
        return None, 0

    def move_aside(self, path: Path, copy: bool = False) -> Path:
        """Move (or copy) a damaged file to corrupt/, under a name that is never reused."""
        target_dir = self.dir / "corrupt"
        target_dir.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target, n = target_dir / f"{stamp}-{path.name}", 1
        while target.exists():
            n += 1
            target = target_dir / f"{stamp}-{n}-{path.name}"
        if copy:
            shutil.copy2(path, target)
            with open(target, "rb") as fh:
                os.fsync(fh.fileno())
        else:
            os.replace(path, target)
        fsync_dir(target_dir)
        fsync_dir(self.dir)
        return target

    def replay(self, first: int, apply: Callable[[bytes], None]) -> int:
        """Apply every logged record from segment `first` on; returns how many. A damaged
        log raises DataDirError, unless `recover_to_last_good` accepts the loss."""
        count = 0
        present = [i for i in segments(self.dir) if i >= first]
        try:
            if present and present[0] != first:
                raise CorruptLog(segment_path(self.dir, first), 0, "segment missing")
            for index, records in iter_log(self.dir, first):
                for payload in records:
                    _apply(apply, payload, segment_path(self.dir, index), count)
                    count += 1
        except CorruptLog as exc:
            if not self.recover_to_last_good:
                raise DataDirError(
                    f"{exc}. The write-ahead log is damaged: the server will not start "
                    f"past it, and nothing was changed. `cc-admin verify {self.dir}` lists "
                    "the damage; restore the directory from a backup, or start with "
                    "--recover-to-last-good to keep the records before the damage and "
                    "lose the rest") from None
            for payload in exc.scan.records if exc.scan else ():
                _apply(apply, payload, exc.path, count)
                count += 1
            self._drop_after(exc)
        return count

    def _drop_after(self, exc: CorruptLog) -> None:
        """--recover-to-last-good: keep a damaged segment's good records, move the damaged
        file and every later segment to corrupt/, and log what was lost."""
        damaged = int(exc.path.stem[4:])
        later = [i for i in segments(self.dir) if i > damaged]
        scan = exc.scan
        lost: list[bytes] = list(scan.later) if scan else []
        if scan is not None:                   # the evidence first, then the good prefix
            kept = self.move_aside(exc.path, copy=True)
            log.error("event=wal_damaged_file_kept segment=%s offset=%d copy=%s",
                      exc.path.name, exc.offset, kept)
        for index in later:
            path = segment_path(self.dir, index)
            try:
                found = scan_segment(path)
                lost += found.records + found.later
            except OSError as err:             # not a regular file, unreadable: moved
                log.error("event=wal_segment_unreadable segment=%s error=%r", path.name,
                          err.strerror or str(err))
            log.error("event=wal_segment_dropped segment=%s moved_to=%s", path.name,
                      self.move_aside(path))
        if scan is not None:
            _rewrite(exc.path, scan)
        elif os.path.lexists(exc.path):        # not a regular file: never read, moved
            log.error("event=wal_segment_dropped segment=%s moved_to=%s reason=%r",
                      exc.path.name, self.move_aside(exc.path), exc.reason)
        log.error("event=wal_records_dropped count=%d time=%s damaged=%s offset=%d "
                  "reason=%r (plus the damaged record itself; --recover-to-last-good)",
                  len(lost), time_range(lost), exc.path.name, exc.offset, exc.reason)

    def start(self, on_synced: Callable[[int], None]) -> None:
        """Open a fresh segment for appends (after recovery); replayed ones stay as they are."""
        replayed = [i for i in segments(self.dir) if i >= self.snapshot_index]
        index = max(replayed) + 1 if replayed else self.snapshot_index
        self.writer = WalWriter(self.dir, index, on_synced)

    # ------------------------------------------------------------------ snapshots

    def write_initial(self, state: dict[str, Any]) -> None:
        """The first snapshot of a new directory (index 1), before any record."""
        self._write(1, state)
        self.snapshot_index = 1

    def snapshot_now(self, state_fn: Callable[[], dict[str, Any]]) -> int:
        """Rotate the log and write a snapshot in this process (catalog change, shutdown);
        DataDirError when it cannot be written (the log alone stays valid)."""
        assert self.writer is not None and self.writer.idle
        self._reap(block=True)
        try:
            index = self.writer.rotate()
        except OSError as exc:
            raise DataDirError(f"cannot start a log segment in {self.dir}: "
                               f"{exc.strerror}") from None
        self._write(index, state_fn())
        self._done(index)
        return index

    def _write(self, index: int, state: dict[str, Any]) -> None:
        try:
            snap.write_snapshot(self.dir, index, state)
        except OSError as exc:
            raise DataDirError(f"cannot write snapshot {snap.snapshot_path(self.dir, index)}: "
                               f"{exc.strerror or exc}") from None

    def space_for_snapshot(self) -> bool:
        """Whether a snapshot fits: the newest one plus the log since it, and a margin
        (warns and returns False when not)."""
        newest = snap.snapshots(self.dir)
        size = snap.snapshot_path(self.dir, newest[-1]).stat().st_size if newest else 0
        logged = self.writer.bytes_written - self._bytes_at_snapshot if self.writer else 0
        need, free = size + logged + SPACE_MARGIN, self.free_space(self.dir)
        if free >= need:
            return True
        log.warning("event=snapshot_skipped reason=disk_space need=%d free=%d (the log "
                    "alone stays valid)", need, free)
        return False

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
        """Fork a child that writes a snapshot of the state as it is now (skipped, and
        retried later, when the disk has no room for it)."""
        writer = self.writer
        assert writer is not None and writer.idle
        if time.monotonic() < self._skipped_at + self.space_retry:
            return
        if not self.space_for_snapshot():
            self._skipped_at = time.monotonic()
            return
        if not hasattr(os, "fork"):
            self.snapshot_now(state_fn)
            return
        try:
            index = writer.rotate()
        except OSError as exc:
            log.warning("event=snapshot_skipped reason=%r", exc.strerror)
            self._skipped_at = time.monotonic()
            return
        self._bytes_at_snapshot = writer.bytes_written
        parent = os.getpid()
        with warnings.catch_warnings():
            # fork() warns when other threads run (the login hashing pool, a test's own;
            # the WAL has no thread): the child runs none of their code, only the write
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:   # the child: write and leave without running any of the parent's code
            code = 1
            try:
                die_with_parent(parent)
                detach_descriptors()
                time.sleep(float(os.environ.get(DELAY_ENV) or 0))
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
            snap.tmp_path(self.dir, index).unlink(missing_ok=True)
            log.error("event=snapshot_failed index=%d status=%d (partial file removed; "
                      "the log alone stays valid)", index, status)

    def _done(self, index: int) -> None:
        """Snapshot `index` is written and verified. The one before it and its log stay
        (the fallback should this one be damaged later); anything older goes."""
        self.snapshot_index = index
        if self.writer is not None:
            self._bytes_at_snapshot = self.writer.bytes_written
        older = [i for i in snap.snapshots(self.dir) if i < index]
        keep = older[-1] if older else index
        for old in older[:-1]:
            snap.snapshot_path(self.dir, old).unlink(missing_ok=True)
        for old in segments(self.dir):
            if old < keep:
                segment_path(self.dir, old).unlink(missing_ok=True)
        log.info("event=snapshot_written index=%d", index)

    # ------------------------------------------------------------------ closing

    async def close(self, state_fn: Callable[[], dict[str, Any]] | None) -> None:
        """Drain the log, write a final snapshot (fast restart), release the directory.
        The final snapshot is skipped when the disk is full or has no room for it, and
        when `state_fn` is None (a fail-stop: the state may be half changed); if it
        fails, DataDirError says so once the directory is released."""
        failed: DataDirError | None = None
        if self.writer is not None:
            await self.writer.drain()
            if state_fn is None:
                log.warning("event=snapshot_skipped reason=fail_stop (the state in memory "
                            "may be half changed; the next start replays the log)")
            elif self.writer.disk_full:
                log.warning("event=snapshot_skipped reason=disk_full (records not on disk "
                            "were never acknowledged)")
            elif self.space_for_snapshot():
                try:
                    self.snapshot_now(state_fn)
                except DataDirError as exc:
                    log.error("event=snapshot_failed at=shutdown error=%r", str(exc))
                    failed = exc
            self.writer.close()
        self._reap(block=True)
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()
        if failed is not None:
            raise DataDirError(f"final snapshot not written ({failed}); nothing is lost: "
                               "the next start replays the log")


def _apply(apply: Callable[[bytes], None], payload: bytes, path: Path, count: int) -> None:
    """Replay one record; one that cannot be applied (a kind this version does not know,
    or one that does not fit the state) stops the start: DataDirError, nothing cut."""
    try:
        apply(payload)
    except Exception as exc:
        raise DataDirError(
            f"{path}: log record {count + 1} of the replay cannot be applied ({exc!r}); it "
            "passed its checksum, so it was written by another version or belongs to "
            "another state. Nothing was changed: `cc-admin verify` lists the log; start "
            "with the version that wrote it, or restore the directory from a backup") \
            from exc


def _rewrite(path: Path, scan: Scan) -> None:
    """Replace a segment by its good records (its original was copied to corrupt/)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(b"".join(encode_record(r) for r in scan.records))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def catalogs_differ(a: Catalog, b: Catalog) -> bool:
    """True when two catalogs price anything differently (seed subscribers aside)."""
    return not a.same_prices(b)
