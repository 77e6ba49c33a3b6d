"""--version, the start-up line, debug logging and cc-admin stats text (issue item 17)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path

import pytest

import cc_client
import cc_client.sync
from cc_bench.cli import main as bench_main
from cc_client.admin import main as admin_main
from cc_server import app
from cc_server.app import config_from_args, startup_line
from cc_server.server import ChargingServer
from cc_server.testing import ServerThread, running_server


@pytest.mark.parametrize("main", [app.main, admin_main, bench_main])
def test_version(main: Callable[[list[str]], int],
                 capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["--version"])
    except SystemExit as exc:
        code = exc.code      # type: ignore[assignment]
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r"cc-(server|admin|bench) \d+\.\d+\.\d+ \((pure|compiled) build, "
                        r"Python 3\.\d+\.\d+\)", line), line


async def test_the_startup_line_names_the_test_controls_in_force(tmp_path: Path) -> None:
    config_file = tmp_path / "cc.toml"
    config_file.write_text('[[faults]]\naction = "busy"\nkind = "start"\n\n'
                           '[[faults]]\naction = "drop-reply"\ntimes = 1\n')
    config, _ = config_from_args(["--clock", "manual", "--record", "50", "--config",
                                  str(config_file)])
    line = startup_line("127.0.0.1", 9500, ChargingServer(config))
    assert line.endswith("; manual clock; request record of 50 frames; "
                         "2 fault rule(s) loaded)"), line
    config, _ = config_from_args(["--clock-speed", "60"])
    assert "; clock at 60 times real time)" in startup_line("127.0.0.1", 9500,
                                                            ChargingServer(config))
    config, _ = config_from_args([])
    plain = startup_line("127.0.0.1", 9500, ChargingServer(config))
    assert "clock" not in plain and "record" not in plain and "fault" not in plain


async def test_debug_logs_connections_and_one_line_per_request(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cc_server")
    async with running_server() as server:
        assert server.server.debug_log
        async with cc_client.connect(server.url) as client:
            await client.admin.create_subscriber("dbg-1", D("1.00"))
            with pytest.raises(cc_client.UserUnknown):
                await client.admin.get_subscriber("dbg-none")
        await server.settle()
    events = [r.getMessage() for r in caplog.records if r.name == "cc_server"]
    opened = [e for e in events if e.startswith("event=connection_opened")]
    closed = [e for e in events if e.startswith("event=connection_closed")]
    requests = [e for e in events if e.startswith("event=request ")]
    assert len(opened) == 1 and len(closed) == 1
    assert [re.findall(r"(?:type|reply)=(\S+)", e) for e in requests] == [
        ["ADMIN", "ADMIN_RESULT"], ["ADMIN", "ERROR"]]
    assert all(opened[0].split()[1] in e for e in requests + closed)   # peer=...


async def test_at_info_nothing_is_logged_per_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cc_server")
    async with running_server() as server:
        assert not server.server.debug_log
        async with cc_client.connect(server.url) as client:
            await client.admin.create_subscriber("dbg-2", D("1.00"))
    assert not [r for r in caplog.records if "event=request" in r.getMessage()
                or "event=connection_" in r.getMessage()]


def test_stats_text_sorts_buckets_numerically_and_rounds_sums(
        capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread() as server:
        with cc_client.sync.connect(server.url) as client:
            client.admin.create_subscriber("st-1", D("1.00"))
            client.admin.get_subscriber("st-1")
        assert admin_main(["--server", server.url, "stats"]) == 0
    rows = [line.split(None, 1) for line in capsys.readouterr().out.splitlines()[1:]]
    rows = [(row[0], row[1].strip() if len(row) > 1 else "") for row in rows]
    buckets = [name.rsplit(".buckets.", 1)[1] for name, _ in rows
               if name.startswith("latency.admin.buckets.")]
    assert buckets and buckets[-1] == "+Inf"
    bounds = [float(b) for b in buckets]
    assert bounds == sorted(bounds)
    sums = [value for name, value in rows if name.endswith(".sum")]
    assert sums and all(len(v.partition(".")[2]) <= 6 for v in sums), sums
