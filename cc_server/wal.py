"""Write-ahead log: segment files of checksummed records, written with group commit.

Record layout: 4-byte big-endian payload length, 4-byte CRC-32 of the payload, payload.
A crash can leave a torn last record (short, or failing its checksum); reading stops
there and recovery truncates the file to the last whole record.

`WalWriter.append` queues a record and returns its sequence number at once. At the end
of the event-loop turn (a callback queued by the turn's first append) everything queued
is written and fdatasynced in one batch, then the highest sequence number now on disk is
reported, so the cost of a sync is shared by every record of the turn.

The sync runs on the loop thread, as Redis does with `appendfsync always`. A writer
thread was measured first: on a busy 2-core machine handing it the batch and getting the
result back waited for the GIL and the loop for longer than the sync itself (3 ms plus
1.7 ms around a 1 ms fdatasync), and the standard mix ran at 15,700 container ops/s
against 21,700 with the sync inline. Nothing is lost by blocking: every reply of the
turn waits for this sync anyway. A disk that stalls stalls the server, visibly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("cc_server")
RECORD = struct.Struct("!II")
MAX_RECORD = 64 * 1024 * 1024


def segment_path(directory: Path, index: int) -> Path:
    """The file of WAL segment `index`."""
    return directory / f"wal-{index:08d}.log"


def segments(directory: Path) -> list[int]:
    """Indexes of the WAL segments present, ascending."""
    found = []
    for path in directory.glob("wal-*.log"):
        try:
            found.append(int(path.stem[4:]))
        except ValueError:
            continue
    return sorted(found)


def encode_record(payload: bytes) -> bytes:
    """Length, checksum, payload."""
    return RECORD.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: Path) -> tuple[list[bytes], int, int]:
    """(payloads, bytes of whole records, file size); stops at the first torn record."""
    data = path.read_bytes()
    out: list[bytes] = []
    pos, size = 0, len(data)
    while size - pos >= RECORD.size:
        length, crc = RECORD.unpack_from(data, pos)
        end = pos + RECORD.size + length
        if length > MAX_RECORD or end > size:
            break
        payload = data[pos + RECORD.size:end]
        if zlib.crc32(payload) != crc:
            break
        out.append(payload)
        pos = end
    return out, pos, size


def iter_log(directory: Path, first: int) -> Iterator[tuple[int, list[bytes]]]:
    """Every segment from `first` on, with its records; torn tails are truncated away."""
    for index in segments(directory):
        if index < first:
            continue
        path = segment_path(directory, index)
        records, good, size = read_records(path)
        if good < size:
            log.warning("event=wal_truncated segment=%s dropped_bytes=%d", path.name,
                        size - good)
            with open(path, "r+b") as fh:
                fh.truncate(good)
                os.fsync(fh.fileno())
        yield index, records


def fsync_dir(directory: Path) -> None:
    """Make renames and new files in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WalWriter:
    """Appends records to the current segment with group commit."""

    def __init__(self, directory: Path, index: int, on_synced: Callable[[int], None]) -> None:
        self.directory = directory
        self.index = index
        self.on_synced = on_synced
        self.appended = 0        # sequence number of the latest appended record
        self.synced = 0          # ... of the latest record known to be on disk
        self.bytes_written = 0
        self.syncs = 0
        self._buffer: list[bytes] = []
        self._flushing = False
        self._fd = self._open(index)
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()

    def _open(self, index: int) -> int:
        fd = os.open(segment_path(self.directory, index),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.directory)
        return fd

    @property
    def idle(self) -> bool:
        """True when everything appended is on disk."""
        return not self._flushing and not self._buffer

    def append(self, payload: bytes) -> int:
        """Queue one record; returns its sequence number (on disk once `synced` >= it)."""
        self._buffer.append(encode_record(payload))
        self.appended += 1
        if not self._flushing:
            self._flushing = True
            self._idle.clear()
            self._loop.call_soon(self._flush)
        return self.appended

    def _flush(self) -> None:
        data = b"".join(self._buffer)
        self._buffer.clear()
        upto = self.appended
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fdatasync(self._fd)
        except OSError as exc:  # a disk that cannot be written: nothing more is acknowledged
            log.critical("event=wal_write_failed error=%r", exc)
            self._flushing = False
            raise SystemExit(f"cc-server: cannot write the log: {exc}") from None
        self.synced = upto
        self.bytes_written += len(data)
        self.syncs += 1
        self._flushing = False
        self._idle.set()
        self.on_synced(upto)

    async def drain(self) -> None:
        """Wait until everything appended is on disk."""
        await self._idle.wait()

    def rotate(self) -> int:
        """Start a new segment (only when idle); returns its index."""
        assert self.idle, "rotate only when everything is on disk"
        os.close(self._fd)
        self.index += 1
        self._fd = self._open(self.index)
        return self.index

    def close(self) -> None:
        """Close the file (after `drain`)."""
        os.close(self._fd)
