"""--data-dir under damage: corrupt log records and snapshots, a crash during a snapshot,
an internal error half way through a container. Nothing is dropped silently."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from decimal import Decimal as D
from pathlib import Path

import pytest

import cc_client
from cc_client import ChargeableItem
from cc_client.admin import main as admin_main
from cc_server.store import DataDirError, Store
from cc_server.wal import scan_segment, segment_path
from tests.serverproc import ServerProcess, data_dir_files

ROOT = Path(__file__).resolve().parent.parent


def verify(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit status, stdout and stderr) of `cc-admin verify DIR`."""
    capsys.readouterr()
    code = admin_main(["verify", str(directory)])
    out = capsys.readouterr()
    return code, out.out + out.err


def newest_segment(directory: Path) -> Path:
    """The log segment holding the most records."""
    return max(directory.glob("wal-*.log"), key=lambda p: p.stat().st_size)


async def top_ups(sp: ServerProcess, user: str, balance: str, count: int) -> None:
    """A new subscriber and `count` acknowledged top-ups of 1."""
    async with cc_client.connect(sp.url) as c:
        await c.admin.create_subscriber(user, D(balance))
        for _ in range(count):
            await c.admin.top_up(user, "1")


async def test_a_damaged_record_mid_log_stops_the_start_until_the_loss_is_accepted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sp = ServerProcess("--data-dir", str(tmp_path)).start()
    try:
        await top_ups(sp, "ann", "0", 200)
        sp.kill9()
        segment = newest_segment(tmp_path)
        whole = scan_segment(segment).records
        assert len(whole) >= 201
        damaged = bytearray(segment.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        segment.write_bytes(bytes(damaged))
        code, text = verify(tmp_path, capsys)
        assert code == 1 and f"DAMAGED  {segment.name}: damaged at offset" in text, text

        with pytest.raises(RuntimeError, match=rf"{segment.name}: damaged log record at "
                                               r"offset \d+ \(checksum mismatch\)"):
            sp.start()
        assert segment.read_bytes() == bytes(damaged), "the damaged file is left as it was"

        scan = scan_segment(segment)
        kept, lost = len(scan.records), len(scan.later)
        assert kept + 1 + lost == len(whole)
        sp.args.append("--recover-to-last-good")
        sp.start()
        async with cc_client.connect(sp.url) as c:
            balance = (await c.admin.get_subscriber("ann")).balance
        assert sp.stop() == 0
        assert balance == D(kept - (len(whole) - 200)), "the records before the damage"
        dropped = next(line for line in sp.log if "event=wal_records_dropped" in line)
        assert re.search(rf"count={lost} time=\d{{4}}-\d\d-\d\dT[\d:]+Z\.\.\d{{4}}-", dropped)
        copies = list((tmp_path / "corrupt").iterdir())
        assert [p.read_bytes() for p in copies] == [bytes(damaged)], "the evidence is kept"
        assert verify(tmp_path, capsys)[0] == 0

        sp.args.remove("--recover-to-last-good")
        sp.start()                     # the directory is whole again: a plain start works
        async with cc_client.connect(sp.url) as c:
            assert (await c.admin.get_subscriber("ann")).balance == balance
    finally:
        sp.stop()


async def test_a_damaged_snapshot_is_refused_and_the_one_before_it_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sp = ServerProcess("--data-dir", str(tmp_path)).start()
    try:
        await top_ups(sp, "bea", "123.45", 1)
        assert sp.stop() == 0            # a final snapshot; the previous one stays
        snapshots = [f for f in data_dir_files(tmp_path) if f.startswith("snapshot-")]
        assert len(snapshots) == 2
        newest = tmp_path / snapshots[-1]
        data = newest.read_bytes()
        assert b"124.45" in data
        newest.write_bytes(data.replace(b"124.45", b"924.45", 1))
        code, text = verify(tmp_path, capsys)
        assert code == 1 and "checksum mismatch" in text, text

        sp.start()
        async with cc_client.connect(sp.url) as c:
            assert (await c.admin.get_subscriber("bea")).balance == D("124.45")
        sp.stop()
        assert any("event=snapshot_damaged" in line for line in sp.log)
        assert [p.name.endswith(newest.name) for p in (tmp_path / "corrupt").iterdir()] == \
            [True]
    finally:
        sp.stop()


def children(pid: int) -> list[int]:
    """Child processes of `pid` (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def process_state(pid: int) -> str:
    """R, S, Z, ... of a process; "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def gone_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` ends (or is a zombie) within `seconds`."""
    deadline = time.monotonic() + seconds
    while process_state(pid) not in ("", "Z") and time.monotonic() < deadline:
        time.sleep(0.01)
    return process_state(pid) in ("", "Z")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
async def test_a_crash_during_a_snapshot_does_not_block_the_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of the server while its snapshot child runs: the child holds neither the
    directory lock nor the listening socket, dies with its parent, and the restart on the
    same port and directory succeeds at once."""
    monkeypatch.setenv("CC_TEST_SNAPSHOT_DELAY", "30")
    sp = ServerProcess("--data-dir", str(tmp_path), "--snapshot-every", "2000").start()
    try:
        async with cc_client.connect(sp.url) as c:
            await c.admin.create_subscriber("cid", D("0"))
            for _ in range(40):
                await c.admin.top_up("cid", "1")
            assert sp.proc is not None
            deadline = time.monotonic() + 5
            while not (kids := children(sp.proc.pid)) and time.monotonic() < deadline:
                await c.admin.top_up("cid", "1")
            assert kids, "a snapshot child should be running"
            assert process_state(kids[0]) not in ("", "Z"), \
                "the child is still writing (slowed by the test hook)"
            balance = (await c.admin.get_subscriber("cid")).balance
        sp.kill9()
        monkeypatch.delenv("CC_TEST_SNAPSHOT_DELAY")
        sp.start()                                  # same port, same directory, at once
        async with cc_client.connect(sp.url) as c:
            assert (await c.admin.get_subscriber("cid")).balance == balance
        assert gone_within(kids[0], 2), "the child died with its parent"
    finally:
        sp.stop()
        for kid in locals().get("kids") or []:
            if process_state(kid) not in ("", "Z"):
                os.kill(kid, signal.SIGKILL)


async def test_an_internal_error_mid_container_stops_the_server_and_applies_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault between two sub-requests: the first was applied in memory, the container
    was not logged. The server stops (exit 70) instead of answering; after the restart
    the state is the log's, and the retried container is applied exactly once."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    faulty = ServerProcess("--data-dir", str(tmp_path), module="tests.faultserver").start()
    try:
        async with cc_client.connect(faulty.url, request_timeout=2) as c:
            await c.admin.create_subscriber("dee", D("10"))
            op = c.create_session_start_operation(user_id="dee", service_id="DATA",
                                                  session_id="s1")
            op.prepare_reserve("r1", ChargeableItem("data", {"volume": 100}), ttl=600)
            op.prepare_reserve("boom", ChargeableItem("data", {"volume": 100}), ttl=600)
            with pytest.raises(cc_client.CommunicationFailure):
                await op.execute()
            assert faulty.proc is not None
            assert faulty.proc.wait(5) == 70
        faulty.stop()
        assert any("CRITICAL" in line and "internal_error_while_applying" in line
                   for line in faulty.log), faulty.log
        sp = ServerProcess("--data-dir", str(tmp_path), port=faulty.port).start()
        try:
            async with cc_client.connect(sp.url, request_timeout=5) as c:
                sub = await c.admin.get_subscriber("dee")
                assert (sub.balance, sub.reserved) == (D("10"), D("0"))
                assert await c.admin.find_sessions(user_id="dee") == []
                assert [t.kind for t in await c.admin.transactions(user_id="dee")] == []
                result = await c.execute_container(op.to_message())   # retried, same id
                assert result.ok
                await c.execute_container(op.to_message())               # and again
                assert (await c.admin.get_subscriber("dee")).reserved == D("2.00")
        finally:
            sp.stop()
    finally:
        faulty.stop()


def test_cc_admin_verify_exit_status(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(tmp_path / "missing", capsys)[0] == 2
    code, text = verify(tmp_path, capsys)
    assert code == 2 and "not a data directory" in text


def test_a_directory_whose_only_snapshot_is_damaged_is_not_started_afresh(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_initial({"engine": "whatever"})
    path = tmp_path / "snapshot-00000001.msgpack"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DataDirError, match="no readable snapshot"):
        store.load()
    assert [p.name.endswith(path.name) for p in (tmp_path / "corrupt").iterdir()] == [True]


def test_snapshots_written_before_checksums_still_load(tmp_path: Path) -> None:
    from cc_server import snapshot as snap
    from protocol import codec

    snap.snapshot_path(tmp_path, 4).write_bytes(codec.pack({"format": 1, "engine": "x"}))
    assert snap.read_snapshot(tmp_path, 4)["engine"] == "x"
    snap.write_snapshot(tmp_path, 5, {"engine": "y"})
    assert snap.snapshot_path(tmp_path, 5).read_bytes().startswith(snap.MAGIC)
    assert snap.read_snapshot(tmp_path, 5)["engine"] == "y"


def last_segment(directory: Path) -> Path:
    """The log segment with the highest index (the one a crash can tear)."""
    return max(directory.glob("wal-*.log"))


@pytest.mark.parametrize(("tail", "flag"), [(bytes(1), None), (bytes(4096), None),
                                            (bytes(65536), "--recover-to-last-good"),
                                            (random.Random(7).randbytes(5000), None)])
async def test_a_zero_filled_or_garbage_tail_is_cut_as_a_torn_tail(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: bytes,
        flag: str | None) -> None:
    """What a power loss leaves after the last record: verify reports a torn tail (not
    damage), the server cuts it with a log line and starts, no traceback anywhere."""
    sp = ServerProcess("--data-dir", str(tmp_path)).start()
    try:
        await top_ups(sp, "zed", "0", 5)
        sp.kill9()
        segment = last_segment(tmp_path)
        whole = segment.read_bytes()
        segment.write_bytes(whole + tail)
        code, text = verify(tmp_path, capsys)
        assert code == 0 and "torn tail of" in text and "Traceback" not in text, text
        assert f"{len(tail)} bytes at offset {len(whole)}" in text, text
        if flag:
            sp.args.append(flag)
        sp.start()
        async with cc_client.connect(sp.url) as c:
            assert (await c.admin.get_subscriber("zed")).balance == D("5")
        sp.kill9()
        assert segment.read_bytes() == whole, "cut back to the whole records"
        assert not any("Traceback" in line for line in sp.log), sp.log
        cut = [line for line in sp.log if "event=wal_torn_tail_cut" in line]
        assert len(cut) == 1 and f"dropped_bytes={len(tail)} " in cut[0], sp.log
        assert verify(tmp_path, capsys)[0] == 0
    finally:
        sp.stop()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
async def test_a_segment_that_is_not_a_regular_file_is_reported_never_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    """A FIFO blocked `verify` forever and a link to /dev/zero made it loop: each is
    reported (verify, and a start that refuses with one line), never read."""
    sp = ServerProcess("--data-dir", str(tmp_path)).start()
    try:
        await top_ups(sp, "fay", "0", 3)
        sp.kill9()
        odd = segment_path(tmp_path, int(last_segment(tmp_path).stem[4:]) + 1)
        if kind == "fifo":
            os.mkfifo(odd)
        else:
            odd.symlink_to("/dev/zero")
        code, text = verify(tmp_path, capsys)
        what = "a FIFO" if kind == "fifo" else "a device"
        assert code == 1 and f"DAMAGED  {odd.name}: unreadable: not a regular file " \
                             f"({what})" in text, text
        with pytest.raises(RuntimeError, match=rf"{odd.name}: damaged log record at offset "
                                               rf"0 \(not a regular file \({what}\)\)"):
            sp.start()
        assert "Traceback" not in "\n".join(sp.log)
        sp.args.append("--recover-to-last-good")
        sp.start()
        async with cc_client.connect(sp.url) as c:
            assert (await c.admin.get_subscriber("fay")).balance == D("3")
        assert sp.stop() == 0
        assert odd.name not in data_dir_files(tmp_path), "moved to corrupt/"
        assert [p.name.endswith(odd.name) for p in (tmp_path / "corrupt").iterdir()] == [True]
        assert verify(tmp_path, capsys)[0] == 0
    finally:
        sp.stop()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_snapshot_that_is_a_fifo_is_reported_never_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(tmp_path)
    store.write_initial({"engine": "whatever"})
    os.mkfifo(tmp_path / "snapshot-00000002.msgpack")
    code, text = verify(tmp_path, capsys)
    assert code == 1 and "snapshot-00000002.msgpack: unreadable: not a regular file (a " \
                         "FIFO)" in text, text
    assert store.load()[1] == 1, "moved aside, the one before it used"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_recover_to_last_good_moves_a_later_fifo_aside_without_reading_it(
        tmp_path: Path) -> None:
    from cc_server.wal import encode_record

    store = Store(tmp_path, recover_to_last_good=True)
    store.write_initial({"engine": "whatever"})
    bad = bytearray(encode_record(b"second"))
    bad[-1] ^= 0xFF
    segment_path(tmp_path, 1).write_bytes(encode_record(b"first") + bytes(bad) +
                                          encode_record(b"third"))
    os.mkfifo(segment_path(tmp_path, 2))
    assert store.load()[1] == 1
    applied: list[bytes] = []
    assert store.replay(1, applied.append) == 1 and applied == [b"first"]
    assert sorted(p.name for p in tmp_path.glob("wal-*")) == ["wal-00000001.log"]
    assert len(list((tmp_path / "corrupt").iterdir())) == 2
