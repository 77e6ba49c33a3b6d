"""Write-ahead log format: torn tails, corruption, group commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_server.wal import WalWriter, encode_record, iter_log, read_records, segment_path


def test_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "wal-00000001.log"
    payloads = [b"", b"a", b"x" * 1000]
    path.write_bytes(b"".join(encode_record(p) for p in payloads))
    records, good, size = read_records(path)
    assert records == payloads and good == size


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=6), st.data())
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


def test_corrupt_record_ends_the_log(tmp_path: Path) -> None:
    good, bad = encode_record(b"first"), bytearray(encode_record(b"second"))
    bad[-1] ^= 0xFF
    segment_path(tmp_path, 1).write_bytes(good + bytes(bad) + encode_record(b"third"))
    ((_, records),) = list(iter_log(tmp_path, 1))
    assert records == [b"first"]


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
