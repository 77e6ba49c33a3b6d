"""--data-dir on a full disk: no partial snapshot is left behind, a snapshot that does not
fit is skipped, ENOSPC on the log holds acknowledgements until space is back (no restart),
and a failed final snapshot says so. The disk is faked through the store's seams."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

import cc_client
from cc_server import snapshot as snap
from cc_server.store import DataDirError, Store
from cc_server.testing import running_server
from tests.serverproc import data_dir_files


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"event={name}" in r.getMessage()]


def test_partial_snapshot_files_are_removed_at_start(tmp_path: Path) -> None:
    (tmp_path / "snapshot-00000007.tmp").write_bytes(b"x" * 1000)   # a full disk's leftover
    store = Store(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))
    assert store.load() == (None, 0)


async def test_a_snapshot_that_does_not_fit_is_skipped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cc_server")
    async with running_server(data_dir=str(tmp_path), snapshot_every=1024, tick=0.01) as ts, \
            cc_client.connect(ts.url) as c:
        store = ts.server.store
        assert store is not None
        free = {"bytes": 0}
        store.free_space = lambda directory: free["bytes"]
        store.space_retry = 3600
        await c.admin.create_subscriber("ed", D("0"))
        for _ in range(30):
            await c.admin.top_up("ed", "1")
        await ts.settle(5)
        assert store.snapshot_index == 1 and events(caplog, "snapshot_skipped")
        assert len(events(caplog, "snapshot_skipped")) == 1, "warned once per retry period"
        assert not [f for f in data_dir_files(tmp_path) if f.endswith(".tmp")]
        free["bytes"] = 1 << 40                                     # space is back
        store.space_retry = 0.05
        deadline = time.monotonic() + 5
        while store.snapshot_index == 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert store.snapshot_index > 1
        assert (await c.admin.get_subscriber("ed")).balance == D("30")


async def test_enospc_on_the_log_holds_acknowledgements_until_space_is_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No restart: the server logs the full disk once, answers nothing it could not log,
    and answers it all once the probe finds room."""
    async with running_server(data_dir=str(tmp_path)) as ts, \
            cc_client.connect(ts.url, request_timeout=10) as c:
        await c.admin.create_subscriber("flo", D("0"))
        wal = ts.server.wal
        assert wal is not None
        full = {"on": True}

        def write(fd: int, data: memoryview) -> int:
            if full["on"]:
                raise OSError(errno.ENOSPC, "No space left on device")
            return os.write(fd, data)

        wal.write_fd = write
        wal.probe_interval = 0.02
        pending = [asyncio.create_task(c.admin.top_up("flo", "1")) for _ in range(3)]
        await asyncio.sleep(0.15)
        assert not any(t.done() for t in pending), "nothing unlogged is acknowledged"
        assert wal.disk_full and len(events(caplog, "wal_disk_full")) == 1
        # reads are still served while the changes wait for the disk
        assert (await asyncio.wait_for(c.admin.get_subscriber("flo"), 1)).user_id == "flo"
        assert not any(t.done() for t in pending)
        full["on"] = False
        await asyncio.wait_for(asyncio.gather(*pending), 2)
        assert not wal.disk_full and events(caplog, "wal_disk_space_back")
        assert (await c.admin.get_subscriber("flo")).balance == D("3")
    async with running_server(data_dir=str(tmp_path)) as ts, \
            cc_client.connect(ts.url) as c:
        assert (await c.admin.get_subscriber("flo")).balance == D("3")


async def test_a_killed_snapshot_child_leaves_no_partial_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CC_TEST_SNAPSHOT_DELAY", "30")
    async with running_server(data_dir=str(tmp_path), tick=0.01) as ts:
        store = ts.server.store
        assert store is not None and store.writer is not None
        store.snapshot_in_background(ts.server.state)
        assert store._child is not None
        pid, index = store._child
        snap.tmp_path(tmp_path, index).write_bytes(b"half a snapshot")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while store._child is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert store._child is None and events(caplog, "snapshot_failed")
        assert not [f for f in data_dir_files(tmp_path) if f.endswith(".tmp")]


async def test_a_failed_final_snapshot_has_its_own_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    store.write_initial({"any": "state"})
    store.start(lambda upto: None)

    def no_space(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snap, "write_snapshot", no_space)
    with pytest.raises(DataDirError, match=r"final snapshot not written .*No space left.*"
                                           r"the next start replays the log"):
        await store.close(lambda: {"any": "state"})
    Store(tmp_path)      # the directory was released
    assert not [f for f in data_dir_files(tmp_path) if f.endswith(".tmp")]



async def test_a_full_disk_holds_acknowledgements_not_logins_or_operator_queries(
        tmp_path: Path) -> None:
    """While the log cannot be written, a new connection's HELLO is answered at once, and
    so are `stats` and read-only ADMIN commands; changes wait for the disk."""
    async with running_server(data_dir=str(tmp_path)) as ts, \
            cc_client.connect(ts.url, request_timeout=10) as c:
        await c.admin.create_subscriber("gus", D("0"))
        wal = ts.server.wal
        assert wal is not None
        full = {"on": True}

        def write(fd: int, data: memoryview) -> int:
            if full["on"]:
                raise OSError(errno.ENOSPC, "No space left on device")
            return os.write(fd, data)

        wal.write_fd = write
        wal.probe_interval = 0.02
        pending = asyncio.create_task(c.admin.top_up("gus", "1"))
        await asyncio.sleep(0.1)
        assert wal.disk_full and not pending.done()
        for _ in range(2):           # a second login too (while records wait)
            async with asyncio.timeout(3), \
                    cc_client.connect(ts.url, request_timeout=1) as operator:
                await asyncio.wait_for(operator.ping(), 1)   # heartbeats go on too
                stats = await asyncio.wait_for(operator.admin.stats(), 1)
                assert stats["durability"]["log_records"] > stats["durability"]["log_synced"]
                assert (await asyncio.wait_for(operator.admin.get_subscriber("gus"), 1)
                        ).user_id == "gus"
                held = asyncio.create_task(operator.admin.top_up("gus", "1"))
                await asyncio.sleep(0.05)
                assert not held.done(), "a change still waits for the log"
                full["on"] = False
                await asyncio.wait_for(asyncio.gather(pending, held), 2)
                full["on"] = True
                pending = asyncio.create_task(c.admin.top_up("gus", "1"))
                await asyncio.sleep(0.1)
                assert wal.disk_full
        full["on"] = False
        await asyncio.wait_for(pending, 2)
        assert (await c.admin.get_subscriber("gus")).balance == D("5")
