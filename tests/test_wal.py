"""Write-ahead log format: torn tails, corruption, group commit."""

from __future__ import annotations

import asyncio
import errno
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_server.wal import (
    RESYNC_LIMIT,
    CorruptLog,
    NotRegularFile,
    WalWriter,
    encode_record,
    iter_log,
    read_records,
    scan_segment,
    segment_path,
)


def test_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "wal-00000001.log"
    payloads = [b"a", b"x" * 1000]
    path.write_bytes(b"".join(encode_record(p) for p in payloads))
    records, good, size = read_records(path)
    assert records == payloads and good == size


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6), st.data())
def test_any_truncation_keeps_exactly_the_whole_records(tmp_path_factory: object,
                                                        payloads: list[bytes],
                                                        data: st.DataObject) -> None:
    blob = b"".join(encode_record(p) for p in payloads)
    cut = data.draw(st.integers(0, len(blob)))
    directory = Path(str(tmp_path_factory.mktemp("wal")))  # type: ignore[attr-defined]
    segment_path(directory, 1).write_bytes(blob[:cut])
    ((index, records),) = list(iter_log(directory, 1))
    assert index == 1
    assert records == payloads[:len(records)]
    whole = sum(len(encode_record(p)) for p in records)
    assert whole <= cut < whole + len(encode_record(payloads[len(records)])) \
        if len(records) < len(payloads) else whole == cut
    assert segment_path(directory, 1).stat().st_size == whole   # torn tail cut off


def test_a_bad_record_in_the_middle_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    good, bad = encode_record(b"first"), bytearray(encode_record(b"second"))
    bad[-1] ^= 0xFF
    blob = good + bytes(bad) + encode_record(b"third")
    segment_path(tmp_path, 1).write_bytes(blob)
    with pytest.raises(CorruptLog, match=r"wal-00000001.log: damaged log record at offset "
                                         r"13 \(checksum mismatch\)") as caught:
        list(iter_log(tmp_path, 1))
    assert caught.value.offset == len(good) and caught.value.scan is not None
    assert caught.value.scan.later == [b"third"]
    assert segment_path(tmp_path, 1).read_bytes() == blob, "a damaged file is never cut"


def test_a_flipped_length_byte_is_corruption_when_records_follow(tmp_path: Path) -> None:
    """A length made too large looks like a short last record; the whole records after
    it show that it is not."""
    second = bytearray(encode_record(b"second" * 5))
    second[0] = 0x7F
    blob = encode_record(b"first") + bytes(second) + encode_record(b"third" * 5)
    segment_path(tmp_path, 1).write_bytes(blob)
    with pytest.raises(CorruptLog, match="runs past the end"):
        list(iter_log(tmp_path, 1))
    assert segment_path(tmp_path, 1).read_bytes() == blob


def test_a_bad_tail_of_an_older_segment_is_corruption(tmp_path: Path) -> None:
    """Only the newest segment can have been torn by a crash."""
    segment_path(tmp_path, 1).write_bytes(encode_record(b"a") + encode_record(b"b")[:-1])
    segment_path(tmp_path, 2).write_bytes(encode_record(b"c"))
    with pytest.raises(CorruptLog, match=r"wal-00000001\.log"):
        list(iter_log(tmp_path, 1))


def test_a_missing_segment_is_corruption(tmp_path: Path) -> None:
    segment_path(tmp_path, 1).write_bytes(encode_record(b"a"))
    segment_path(tmp_path, 3).write_bytes(encode_record(b"c"))
    with pytest.raises(CorruptLog, match=r"wal-00000002\.log.*segment missing"):
        list(iter_log(tmp_path, 1))


def test_a_torn_last_record_of_the_last_segment_is_cut(tmp_path: Path) -> None:
    torn = bytearray(encode_record(b"second"))
    torn[-1] ^= 0xFF                   # full length, garbage bytes: a torn page
    segment_path(tmp_path, 1).write_bytes(encode_record(b"zero"))
    segment_path(tmp_path, 2).write_bytes(encode_record(b"first") + bytes(torn))
    assert [r for _, rs in iter_log(tmp_path, 1) for r in rs] == [b"zero", b"first"]
    assert segment_path(tmp_path, 2).read_bytes() == encode_record(b"first")


async def test_group_commit_batches_records_appended_together(tmp_path: Path) -> None:
    synced: list[int] = []
    writer = WalWriter(tmp_path, 1, synced.append)
    seqs = [writer.append(f"r{i}".encode()) for i in range(100)]
    assert seqs == list(range(1, 101)) and writer.synced == 0
    await writer.drain()
    assert writer.synced == 100 and synced[-1] == 100
    assert writer.syncs <= 2, "100 records appended in one loop iteration: one or two syncs"
    for _i in range(10):
        writer.append(b"more")
        await asyncio.sleep(0)
    await writer.drain()
    writer.close()
    records, _, _ = read_records(segment_path(tmp_path, 1))
    assert len(records) == 110 and records[0] == b"r0"


def test_a_log_that_cannot_be_synced_acknowledges_nothing_and_stops_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync runs on the loop: a failing disk ends the loop with SystemExit, and the
    records of the failed batch are never reported synced (their replies never leave)."""
    loop = asyncio.new_event_loop()
    synced: list[int] = []

    async def open_writer() -> WalWriter:
        return WalWriter(tmp_path, 1, synced.append)

    writer = loop.run_until_complete(open_writer())

    def broken_disk(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("cc_server.wal.os.fdatasync", broken_disk)
    writer.append(b"lost")
    with pytest.raises(SystemExit, match="cannot write the log"):
        loop.run_forever()                       # the flush callback ends it
    assert synced == [] and writer.synced == 0
    loop.close()


async def test_a_full_disk_stops_acknowledging_then_resumes_without_restart(
        tmp_path: Path) -> None:
    """ENOSPC half way through a batch: the partial write is cut back off our file,
    nothing is reported synced, and the probe writes the whole batch once space is back."""
    synced: list[int] = []
    writer = WalWriter(tmp_path, 1, synced.append)
    writer.append(b"before")
    await writer.drain()
    full = {"on": True}

    def half_then_enospc(fd: int, data: memoryview) -> int:
        if full["on"]:
            os.write(fd, data[:3])          # some bytes made it, then the disk was full
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    writer.write_fd = half_then_enospc
    writer.probe_interval = 0.01
    writer.append(b"one")
    writer.append(b"two")
    for _ in range(5):
        await asyncio.sleep(0.02)
    assert writer.disk_full and writer.synced == 1 and synced == [1]
    assert segment_path(tmp_path, 1).read_bytes() == encode_record(b"before")
    writer.append(b"three")                   # accepted, held like the rest
    full["on"] = False
    for _ in range(20):
        if not writer.disk_full:
            break
        await asyncio.sleep(0.02)
    assert not writer.disk_full and writer.synced == 4 and synced == [1, 4]
    await writer.drain()
    writer.close()
    assert read_records(segment_path(tmp_path, 1))[0] == [b"before", b"one", b"two", b"three"]


def test_an_empty_payload_is_not_a_record() -> None:
    """A zero header would be one (CRC-32 of nothing is 0): the writer never makes it."""
    with pytest.raises(ValueError, match="never empty"):
        encode_record(b"")


@pytest.mark.parametrize("zeros", [1, 7, 8, 9, 4096, 65536])
def test_a_run_of_zeros_after_the_last_record_is_a_torn_tail(
        tmp_path: Path, zeros: int, caplog: pytest.LogCaptureFixture) -> None:
    """What a power loss leaves: the file grew, its last blocks were never written."""
    whole = encode_record(b"first") + encode_record(b"second")
    segment_path(tmp_path, 1).write_bytes(encode_record(b"older"))
    segment_path(tmp_path, 2).write_bytes(whole + bytes(zeros))
    scan = scan_segment(segment_path(tmp_path, 2))
    assert scan.records == [b"first", b"second"] and scan.good == len(whole)
    assert scan.torn(last=True) and not scan.torn(last=False)
    assert [r for _, rs in iter_log(tmp_path, 1) for r in rs] == [b"older", b"first",
                                                                  b"second"]
    assert segment_path(tmp_path, 2).read_bytes() == whole
    cut = [r.getMessage() for r in caplog.records if "event=wal_torn_tail_cut" in
           r.getMessage()]
    assert len(cut) == 1 and f"dropped_bytes={zeros} " in cut[0] and "zero bytes" in cut[0]


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes_after_the_last_record_are_a_torn_tail(tmp_path: Path,
                                                            seed: int) -> None:
    rng = random.Random(seed)
    tail = rng.randbytes(rng.choice([1, 5, 9, 100, 4096, 20000]))
    whole = encode_record(b"first")
    segment_path(tmp_path, 1).write_bytes(whole + tail)
    assert [r for _, rs in iter_log(tmp_path, 1) for r in rs] == [b"first"]
    assert segment_path(tmp_path, 1).read_bytes() == whole


def test_a_small_bad_record_followed_by_garbage_is_a_torn_tail(tmp_path: Path) -> None:
    """A header whose length fits, checksum wrong, garbage after: nothing whole follows."""
    bad = bytearray(encode_record(b"second"))
    bad[5] ^= 0xFF
    blob = encode_record(b"first") + bytes(bad) + b"\x13" * 300
    segment_path(tmp_path, 1).write_bytes(blob)
    assert [r for _, rs in iter_log(tmp_path, 1) for r in rs] == [b"first"]


def test_zeros_in_the_middle_of_the_log_are_corruption(tmp_path: Path) -> None:
    """A run of zeros followed by a whole record is damage, never a torn tail."""
    blob = encode_record(b"first") + bytes(4096) + encode_record(b"third")
    segment_path(tmp_path, 1).write_bytes(blob)
    with pytest.raises(CorruptLog, match=r"offset 13 \(empty record \(a zero header\)\)"):
        list(iter_log(tmp_path, 1))
    assert segment_path(tmp_path, 1).read_bytes() == blob, "a damaged file is never cut"
    blob = encode_record(b"first") + bytes(4096)
    segment_path(tmp_path, 1).write_bytes(blob)
    segment_path(tmp_path, 2).write_bytes(encode_record(b"next"))
    with pytest.raises(CorruptLog, match="wal-00000001"):   # zeros in an older segment
        list(iter_log(tmp_path, 1))


def test_garbage_too_long_to_search_is_not_cut(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the search limit, whole records could hide after the bad one: refused."""
    monkeypatch.setattr("cc_server.wal.RESYNC_LIMIT", 64)
    assert RESYNC_LIMIT > 64
    bad = bytearray(encode_record(b"second"))
    bad[5] ^= 0xFF
    blob = encode_record(b"first") + bytes(bad) + b"\x13" * 300
    segment_path(tmp_path, 1).write_bytes(blob)
    with pytest.raises(CorruptLog, match="checksum mismatch"):
        list(iter_log(tmp_path, 1))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_a_device_named_like_a_segment_is_never_read(tmp_path: Path) -> None:
    segment_path(tmp_path, 1).write_bytes(encode_record(b"first"))
    os.mkfifo(segment_path(tmp_path, 2))
    with pytest.raises(NotRegularFile, match=r"not a regular file \(a FIFO\)"):
        scan_segment(segment_path(tmp_path, 2))
    with pytest.raises(CorruptLog, match=r"wal-00000002.log: damaged log record at offset 0 "
                                         r"\(not a regular file \(a FIFO\)\)"):
        list(iter_log(tmp_path, 1))
    segment_path(tmp_path, 2).unlink()
    segment_path(tmp_path, 2).symlink_to("/dev/zero")
    with pytest.raises(CorruptLog, match=r"not a regular file \(a device\)"):
        list(iter_log(tmp_path, 1))
