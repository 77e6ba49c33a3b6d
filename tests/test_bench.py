"""cc-bench: short, bounded runs of every option, and the histogram against known data."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import cc_bench
import cc_client
import cc_client.sync
from cc_bench import main
from cc_bench.cli import parse
from cc_bench.codec_bench import run_codec_bench, sample_messages
from cc_bench.histogram import Histogram
from cc_bench.live import LiveSessions
from cc_bench.progress import Progress
from cc_bench.provision import BenchError
from cc_bench.runner import execute
from cc_server.testing import ServerThread, running_server
from protocol import buildinfo
from tests.hostile import make_pki, tls_settings
from tests.serverproc import ServerProcess, server_process

pytestmark = pytest.mark.timeout(60)
SMALL = ["--connections", "2", "--concurrency", "16", "--users", "20", "--quiet"]
THROUGHPUT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*ops/s")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# ---------------------------------------------------------------------- the package

def test_cc_bench_uses_only_the_public_client_api() -> None:
    """cc_bench is a plain user of cc_client (`from cc_client import <name in __all__>`,
    `cc_client.<name>`), never of the server; the client package holds no load tester."""
    public = {*cc_client.__all__, "__version__"}
    for path in sorted(Path(cc_bench.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] != "cc_server", where
                    assert not alias.name.startswith("cc_client."), where
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] != "cc_server", where
                if node.module.split(".")[0] == "cc_client":
                    assert node.module == "cc_client", f"{where}: {node.module}"
                    assert {a.name for a in node.names} <= public, where
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "cc_client":
                assert node.attr in public, f"{where}: cc_client.{node.attr}"
    assert not (Path(cc_client.__file__).parent / "bench").exists()


# ---------------------------------------------------------------------- histogram

def test_histogram_percentiles_of_known_data() -> None:
    h = Histogram()
    values = [i * 1_000 for i in range(1, 100_001)]      # 1 us .. 100 ms, uniform
    random.Random(1).shuffle(values)
    for v in values:
        h.record(v)
    assert h.total == 100_000
    assert h.min == 1_000 and h.max == 100_000_000
    assert h.mean == pytest.approx(50_000_500)
    for pct, exact in ((50, 50_000_000), (90, 90_000_000), (99, 99_000_000),
                       (99.9, 99_900_000)):
        assert h.percentile(pct) == pytest.approx(exact, rel=0.01)
        assert h.percentile(pct) >= exact          # highest equivalent value: never optimistic
    assert h.percentile(100) == 100_000_000
    assert h.percentile(0) == 1_000
    many = h.percentiles([50, 99, 99.9])
    assert many[50] == h.percentile(50) and many[99.9] == h.percentile(99.9)


def test_histogram_precision_merge_and_round_trip() -> None:
    rng = random.Random(2)
    a, b, both = Histogram(), Histogram(), Histogram()
    for _ in range(20_000):
        v = int(10 ** rng.uniform(3, 11))               # 1 us .. 100 s
        (a if rng.random() < 0.5 else b).record(v)
        both.record(v)
        index = both.index_of(v)
        assert both.lowest_equivalent(index) <= v <= both.highest_equivalent(index)
        assert both.highest_equivalent(index) - both.lowest_equivalent(index) <= \
            max(512, v // 100)                           # 2 significant digits
    a.merge(b)
    assert a.counts == both.counts and a.total == both.total
    assert (a.min, a.max, a.sum) == (both.min, both.max, both.sum)
    again = Histogram.from_dict(json.loads(json.dumps(both.to_dict())))
    assert again.counts == both.counts and again.percentile(99) == both.percentile(99)
    earlier = both.copy()
    for v in (5_000_000, 6_000_000):
        both.record(v)
    delta = both.since(earlier)
    assert delta.total == 2 and delta.percentile(100) >= 6_000_000


def test_histogram_clamps_and_empty() -> None:
    h = Histogram(lowest=1, highest=1_000_000)
    assert h.percentile(99) == 0 and h.mean == 0.0
    h.record(-5)
    h.record(10**12)
    assert h.min == 0 and h.max == 1_000_000


# ---------------------------------------------------------------------- codec

def test_codec_micro_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_codec_bench(0.002)
    assert [r["kind"] for r in rows] == [name for name, _ in sample_messages()]
    assert all(r["encode_ns"] > 0 and r["decode_ns"] > 0 and r["bytes"] > 12 for r in rows)
    out = tmp_path / "codec.json"
    code, text = run(capsys, "--op", "codec", "--codec-seconds", "0.001", "--json", str(out))
    assert code == 0 and "update result" in text
    assert load(out)["messages"][0]["kind"] == "start"


# ---------------------------------------------------------------------- sessions

def test_closed_loop_spawned_json_and_plot(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    js, svg = tmp_path / "run.json", tmp_path / "lat.svg"
    code, text = run(capsys, "--spawn", "--sessions", "300", "--updates", "2",
                     "--reservations", "2", "--json", str(js), "--plot", str(svg), *SMALL)
    assert code == 0
    found = THROUGHPUT.search(text)
    assert found and float(found.group(1).replace(",", "")) > 0
    for word in ("start", "update", "stop", "p99.9", "server CPU", "client CPU"):
        assert word in text
    r = load(js)
    sm = r["summary"]
    assert sm["container_ops_per_s"] > 0 and sm["container_ops"] == 300 * 4
    assert sm["sessions"] == 300 and sm["errors"] == 0
    assert sm["server_cpu_s"] is not None and sm["server_cpu_us_per_op"] > 0
    ops = r["operations"]
    assert (ops["start"]["count"], ops["update"]["count"], ops["stop"]["count"]) == \
        (300, 600, 300)
    for kind in ("start", "update", "stop", "containers"):
        h = r["histograms"][kind]
        assert h["unit"] == "ns" and h["significant_digits"] == 2
        assert sum(c for _, _, c in h["buckets"]) == h["total_count"] > 0
        lat = ops[kind]["latency_ms"]
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert r["settings"]["load_model"] == "closed" and r["environment"]["server"]["spawned"]
    assert r["environment"]["server"]["exit_code"] == 0        # stopped cleanly
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and len(list(root.iter("{http://www.w3.org/2000/svg}"
                                                           "polyline"))) == 4


def test_open_loop_against_running_server(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    js, page = tmp_path / "open.json", tmp_path / "lat.html"
    with ServerThread() as server:
        t0 = time.monotonic()
        code, text = run(capsys, "--server", server.url, "--rate", "400", "--duration", "1",
                         "--updates", "1", "--json", str(js), "--plot", str(page), *SMALL)
        assert time.monotonic() - t0 < 15
    assert code == 0 and "intended send time" in text and "offered 400" in text
    sm = load(js)["summary"]
    # paced to the offered rate, never above it; the lower bounds leave room for a busy
    # machine (server and load share this process), not for a pacer that stalls
    assert sm["offered_rate"] == 400 and 0.5 < sm["achieved_ratio"] <= 1.05
    assert sm["server_cpu_s"] is None                          # not spawned: not measured
    assert 200 <= sm["sessions"] <= 440
    assert page.read_text().startswith("<!doctype html>")


async def test_execute_in_process_with_warmup() -> None:
    async with running_server() as server:
        s = parse(["--server", server.url, "--duration", "0.4", "--warmup", "0.3",
                   "--updates", "0", *SMALL])
        result = await execute(s)
    sm = result["summary"]
    assert 0.35 < sm["elapsed_s"] < 1.5 and sm["container_ops"] > 0
    assert result["operations"]["update"]["count"] == 0
    # a run ended by --duration leaves up to --concurrency sessions started, not stopped
    started, stopped = (result["operations"][k]["count"] for k in ("start", "stop"))
    assert 0 <= started - stopped <= s.concurrency


def test_spawn_durable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js, data = tmp_path / "durable.json", tmp_path / "data"
    code, text = run(capsys, "--spawn", "--data-dir", str(data), "--sessions", "100",
                     "--json", str(js), *SMALL)
    assert code == 0 and f"data dir {data}" in text
    server = load(js)["environment"]["server"]
    assert server["data_dir"] == str(data) and "--data-dir" in server["argv"]
    assert server["exit_code"] == 0 and load(js)["summary"]["container_ops"] == 400
    # the spawned server's own build (it inherits this process's environment)
    assert load(js)["summary"]["server_build"] == buildinfo.build()
    assert f"build:      server {buildinfo.build()}, client {buildinfo.build()}" in text


async def test_the_open_loop_pacer_wakes_once_per_tick_not_once_per_session() -> None:
    """Waking once per session (a timer, a future and a task step each) made the pacer
    cost more than the sessions it sent; tests/test_pacer.py checks its timing on a fake
    clock, this its wiring in a real run."""
    async with running_server() as server:
        result = await execute(parse(["--server", server.url, "--rate", "3000", "--duration",
                                      "0.5", "--updates", "0", *SMALL]))
    sm = result["summary"]
    assert sm["sessions"] > 300 and sm["errors"] == 0
    assert 0 < sm["pacer_wakeups"] < 0.6 * sm["sessions"]


def test_a_busy_generator_warns_that_the_figures_are_its_own() -> None:
    from cc_bench.report import BUSY_PCT, busy_warning
    assert busy_warning(None) == busy_warning(BUSY_PCT) == ""
    assert busy_warning(85.2).startswith("warning:    cc-bench itself was busy 85 % of a core")


async def test_open_loop_counts_a_stall_closed_loop_hides() -> None:
    """Coordinated omission: a 250 ms stall of the (shared) event loop shows in the open
    loop's start latencies, counted from their intended send times."""
    async with running_server() as server:
        args = ["--server", server.url, "--duration", "1", "--updates", "0", *SMALL]
        loop = asyncio.get_running_loop()
        stall = loop.call_later(0.5, time.sleep, 0.25)
        open_loop = await execute(parse([*args, "--rate", "500"]))
        stall.cancel()
        stall = loop.call_later(0.5, time.sleep, 0.25)
        closed = await execute(parse([*args, "--concurrency", "4"]))
        stall.cancel()
    start = open_loop["operations"]["start"]
    assert start["latency_ms"]["p90"] >= 80 and start["latency_ms"]["max"] >= 200
    assert start["latency_ms"]["min"] > 0
    hidden = closed["operations"]["containers"]["latency_ms"]
    assert hidden["p90"] < 50 and hidden["max"] >= 200   # the stall is a few samples only


def test_ping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "ping.json"
    code, text = run(capsys, "--spawn", "--op", "ping", "--sessions", "3000", "--json", str(js),
                     *SMALL)
    assert code == 0 and "ping" in text
    r = load(js)
    assert r["operations"]["ping"]["count"] == 3000 and r["summary"]["container_ops"] == 0
    assert r["summary"]["ops_per_s"] > 0


def test_open_loop_ping_counts_from_intended_time(capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread() as server:
        code, text = run(capsys, "--server", server.url, "--op", "ping", "--rate", "2000",
                         "--sessions", "600", *SMALL)
    assert code == 0 and "achieved" in text


def test_renewals_deliver_notifications(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "renew.json"
    code, text = run(capsys, "--spawn", "--sessions", "200", "--renewals", "--renewal-ratio",
                     "0.25", "--notification-timeout", "3", "--json", str(js), *SMALL)
    assert code == 0 and "notification" in text
    r = load(js)
    sm = r["summary"]
    assert sm["renewal_sessions_starved"] == 50
    assert sm["notifications"] == 50, r["operations"]["notification"]
    assert r["operations"]["top_up"]["count"] == 50
    assert r["histograms"]["notification"]["total_count"] == 50
    assert sm["errors"] == 0, sm["errors_by_code"]


def test_errors_counted_by_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "errors.json"
    code, text = run(capsys, "--spawn", "--sessions", "200", "--balance", "0.50",
                     "--json", str(js), *SMALL)
    assert code == 0 and "CREDIT_LIMIT_REACHED" in text
    sm = load(js)["summary"]
    assert sm["errors_by_code"]["start"] == {"CREDIT_LIMIT_REACHED": 200}
    assert load(js)["operations"]["update"]["count"] == 0      # no session, no update


def test_every_run_is_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread() as server:
        t0 = time.monotonic()
        code, _ = run(capsys, "--server", server.url, "--duration", "0.5", *SMALL)
        assert code == 0 and time.monotonic() - t0 < 10
        t0 = time.monotonic()
        code, text = run(capsys, "--server", server.url, "--sessions", "100000000",
                         "--timeout", "0.5", *SMALL)
        assert code == 1 and "hard time limit" in text and time.monotonic() - t0 < 15


def test_unreachable_server_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--server", "127.0.0.1:1", "--request-timeout", "0.3", "--quiet"]) == 1
    assert "cannot connect" in capsys.readouterr().err
    for bad in (["--spawn", "--server", "127.0.0.1:9"], ["--data-dir", "/tmp/x"],
                ["--spawn", "--reservations", "0"], ["--spawn", "--op", "ping", "--renewals"],
                ["--spawn", "--op", "ping", "--live-sessions", "5"],
                ["--spawn", "--live-sessions", "-1"], ["--spawn", "--live-ttl", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(bad)
        assert exc.value.code == 2


# ---------------------------------------------------------------------- a server that goes

def _run_while(capsys: pytest.CaptureFixture[str], server: ServerProcess, after: float,
               act: Any, *args: str) -> tuple[int, str, float]:
    """Run cc-bench against `server`, calling `act()` `after` seconds in; (exit, out, s)."""
    timer = threading.Timer(after, act)
    timer.start()
    try:
        t0 = time.monotonic()
        code, text = run(capsys, "--server", server.url, *args)
        return code, text, time.monotonic() - t0
    finally:
        timer.cancel()


def test_a_server_that_dies_mid_run_aborts_the_run(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM reaches the server 1 s into a 4 s run: not a clean run (issue: `errors:
    none`, throughput over all 4 s, exit 0 after request_timeout and more)."""
    js = tmp_path / "dead.json"
    with server_process() as server:
        code, text, took = _run_while(capsys, server, 1.0, server.stop, "--duration", "4",
                                      "--request-timeout", "3", "--json", str(js), *SMALL)
    assert code == 1
    assert took < 1.0 + 3                          # gone within request_timeout
    sm = load(js)["summary"]
    assert sm["aborted"] and "lost" in sm["aborted"], sm["aborted"]
    assert f"run aborted ({sm['aborted']})" in text
    failures = sum(codes.get("COMMUNICATION_FAILURE", 0)
                   for codes in sm["errors_by_code"].values())
    assert failures > 0 and sm["errors"] >= failures and "errors:     none" not in text
    assert 0.5 < sm["elapsed_s"] < 1.3             # the time that served, not 4 s
    assert sm["container_ops"] > 0
    assert sm["container_ops_per_s"] == pytest.approx(sm["container_ops"] / sm["elapsed_s"],
                                                      rel=0.01)


def test_a_server_that_stops_answering_aborts_the_run(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """A frozen server (SIGSTOP): connections stay open, nothing answers."""
    js = tmp_path / "frozen.json"
    with server_process() as server:
        assert server.proc is not None
        pid = server.proc.pid
        try:
            code, text, took = _run_while(capsys, server, 1.0, lambda: os.kill(pid, signal.SIGSTOP),
                                          "--duration", "4", "--request-timeout", "1",
                                          "--json", str(js), *SMALL)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert code == 1 and took < 1.0 + 2 * 1 + 0.5
    sm = load(js)["summary"]
    assert sm["aborted"], text
    assert sm["errors"] > 0 and 0.5 < sm["elapsed_s"] < 1.3


def test_plot_refuses_a_name_it_would_not_honour(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    """`--plot out.png` wrote SVG into a .png file: a usage error now, before any run."""
    for name in ("out.png", "out.pdf", "chart"):
        with pytest.raises(SystemExit) as exc:
            main(["--spawn", "--plot", str(tmp_path / name)])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"--plot {tmp_path / name}" in err and ".svg" in err
    assert not list(tmp_path.iterdir())
    for name in ("a.svg", "b.SVG", "c.html"):
        assert parse(["--spawn", "--plot", name]).plot == name


# ---------------------------------------------------------------------- live sessions

def test_live_sessions_held_during_a_spawned_run(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "live.json"
    t0 = time.monotonic()
    code, text = run(capsys, "--spawn", "--live-sessions", "300", "--sessions", "200",
                     "--json", str(js), *SMALL)
    assert code == 0 and time.monotonic() - t0 < 10
    assert "300 sessions held open" in text and "300 sessions open during" in text
    r = load(js)
    sm = r["summary"]
    assert sm["errors"] == 0 and sm["sessions"] == 200 and not sm["timed_out"]
    assert sm["live_sessions"] == 300 and sm["live"]["opened"] == 300
    assert sm["live"]["closed"] == 0                       # spawned: stopped with the server
    assert r["server_stats"]["engine"]["sessions"] == 300  # still open after the load
    assert r["server_stats"]["engine"]["reservations"] == 300
    assert r["settings"]["live_sessions"] == 300 and r["settings"]["live_ttl"] == 3600
    assert r["environment"]["server"]["exit_code"] == 0
    if sys.platform == "linux":
        mem = sm["server_memory"]
        held, end = mem["after_live_open"], mem["end_of_measurement"]
        assert held["rss_mib"] > mem["before_live_open"]["rss_mib"] > 0
        assert end["hwm_mib"] >= max(end["rss_mib"], held["rss_mib"])
        assert "server RSS:" in text and "with 300 live sessions open" in text


async def test_live_sessions_closed_on_a_shared_server() -> None:
    async with running_server() as server:
        s = parse(["--server", server.url, "--live-sessions", "300", "--sessions", "200",
                   *SMALL])
        result = await execute(s)
        sm = result["summary"]
        assert sm["errors"] == 0 and sm["sessions"] == 200
        assert sm["live"]["opened"] == 300 and sm["live"]["closed"] == 300
        assert result["server_stats"]["engine"]["sessions"] == 300   # open during the run
        assert sm["server_memory"] is None                          # not spawned
        prefix = result["environment"]["run_prefix"]
        async with cc_client.connect(server.url) as client:
            for i in range(s.users):
                user = f"{prefix}-u{i}"
                assert await client.admin.find_sessions(user_id=user) == []
                assert (await client.admin.get_subscriber(user)).reserved == 0
        assert server.engine.stats()["sessions"] == 0


async def test_live_sessions_refused_fail_clearly_and_are_cleaned_up() -> None:
    async with running_server() as server:
        s = parse(["--server", server.url, "--live-sessions", "40", "--users", "4", "--quiet",
                   "--property", "volume"])      # (no set-up here to read the catalog)
        async with cc_client.connect(server.url) as client:
            users = ["poor-0", "rich-1", "rich-2", "rich-3"]
            for user in users:
                await client.admin.create_subscriber(user, 0 if "poor" in user else 1000)
            live = LiveSessions(s, [client], users, "t")
            with pytest.raises(BenchError, match="CREDIT_LIMIT_REACHED"):
                await live.open()
            assert 0 < live.opened < 40 and server.engine.stats()["sessions"] == live.opened
            opened = live.opened
            await live.close()
            assert live.closed == opened and server.engine.stats()["sessions"] == 0
            assert await client.admin.find_sessions(user_id="rich-1") == []


def test_live_sessions_scale_the_time_limits() -> None:
    few = parse(["--spawn", "--sessions", "100000"])
    many = parse(["--spawn", "--sessions", "100000", "--live-sessions", "1000000"])
    assert few.overall_timeout == few.hard_timeout + 180 and few.live_budget == 0
    assert many.hard_timeout == few.hard_timeout            # the load phase is unchanged
    assert many.overall_timeout >= few.overall_timeout + 2 * 1_000_000 / 1_000


def test_progress_lines_when_not_a_terminal() -> None:
    fake = SimpleNamespace(s=parse(["--spawn", "--sessions", "10"]), measuring=True,
                           measure_start=1, completed=4, elapsed=1.0, stats={})
    out = io.StringIO()
    p = Progress(fake, stream=out)  # type: ignore[arg-type]
    p.sample()
    assert out.getvalue().startswith("[cc-bench]") and "ops/s" in out.getvalue()
    assert "sessions 4/10" in out.getvalue() and len(p.timeline) == 1


def test_module_entry_point(tmp_path: Path) -> None:
    js = tmp_path / "m.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cc_bench", "--spawn", "--sessions", "200",
         "--interval", "0.2", "--json", str(js), "--connections", "2", "--concurrency", "8"],
        check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert THROUGHPUT.search(proc.stdout)
    assert load(js)["summary"]["container_ops_per_s"] > 0


# ---------------------------------------------------------------------- catalog items

def test_the_catalog_command_lists_each_items_quantity_property() -> None:
    """The operator command `catalog` (read-only): what cc-bench learns an item's
    quantity property from."""
    with ServerThread() as server, cc_client.sync.connect(server.url) as client:
        plans = client.admin.catalog()
        assert [(p["service"], p["item"], p["quantity"]) for p in plans] == [
            ("DATA", "data", "volume"), ("SMS", "sms", "count"), ("VOICE", "call", "duration")]
        voice = client.admin.catalog("VOICE")
        assert voice == [{"service": "VOICE", "item": "call", "quantity": "duration",
                          "step": Decimal(60), "prices": {"EUR": Decimal("0.05")},
                          "allowance": "free_seconds"}]
        assert client.admin.catalog("FAX") == []
        with pytest.raises(cc_client.InvalidRequest):
            client.admin.catalog(7)  # type: ignore[arg-type]


def test_voice_calls_take_the_quantity_property_from_the_catalog(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--service VOICE --item call` reserved `{"volume": 100}` of a call: refused."""
    js = tmp_path / "voice.json"
    with ServerThread() as server:
        code, text = run(capsys, "--server", server.url, "--service", "VOICE", "--item", "call",
                         "--sessions", "40", "--updates", "1", "--json", str(js), *SMALL)
        assert code == 0, text
        r = load(js)
        assert r["summary"]["errors"] == 0 and r["summary"]["sessions"] == 40
        assert r["settings"]["quantity_property"] == "duration"
        assert "VOICE/call <the catalog's quantity property>=100" in text
        user = f"{r['environment']['run_prefix']}-u0"
        with cc_client.sync.connect(server.url) as client:
            txs = client.admin.transactions(user_id=user)
        assert txs and {t.amount for t in txs if t.kind == "reserve"} == {Decimal("0.10")}
        code = main(["--server", server.url, "--service", "VOICE", "--item", "fax",
                     "--sessions", "5", *SMALL])
        assert code == 1
        err = capsys.readouterr().err
        assert "no item 'fax' in service 'VOICE'" in err and "'call'" in err


# ---------------------------------------------------------------------- clean-up

async def test_cleanup_removes_the_runs_subscribers_and_open_sessions() -> None:
    """A run ended by --duration leaves sessions open; --cleanup removes them and the
    run's subscribers, and nothing else."""
    async with running_server() as server, cc_client.connect(server.url) as client:
        await client.admin.create_subscriber("alice", Decimal("10.00"))
        s = parse(["--server", server.url, "--duration", "0.5", "--cleanup", *SMALL])
        result = await execute(s)
        prefix = result["environment"]["run_prefix"]
        removed = result["environment"]["cleanup"]
        assert removed["subscribers"] == s.users + 1           # and the probe
        assert removed["prefix"] == f"{prefix}-"
        assert await client.admin.list_subscribers(prefix=prefix) == []
        assert server.engine.stats()["sessions"] == 0
        assert (await client.admin.get_subscriber("alice")).balance == Decimal("10.00")


def test_cleanup_command_removes_what_an_earlier_run_left(
        capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread() as server:
        code, text = run(capsys, "--server", server.url, "--duration", "0.5", *SMALL)
        assert code == 0
        found = re.search(r"remove them with: (cc-bench cleanup --server \S+ --prefix (\S+))",
                          text)
        assert found, text
        prefix = found.group(2)
        with cc_client.sync.connect(server.url) as client:
            client.admin.create_subscriber("bob", Decimal("1.00"))
            assert len(client.admin.list_subscribers(prefix=prefix)) == 21
            code, text = run(capsys, *found.group(1).split()[1:], "--dry-run")
            assert code == 0 and "would remove 21 subscribers" in text
            assert len(client.admin.list_subscribers(prefix=prefix)) == 21
            code, text = run(capsys, *found.group(1).split()[1:])
            assert code == 0 and "removed 21 subscribers" in text, text
            assert client.admin.list_subscribers(prefix=prefix) == []
            assert client.admin.find_sessions() == []
            assert [s.user_id for s in client.admin.list_subscribers()] == ["bob"]
        with pytest.raises(SystemExit) as exc:
            main(["cleanup", "--server", server.url, "--prefix", " "])
        assert exc.value.code == 2
    assert main(["cleanup", "--server", "127.0.0.1:1", "--prefix", "bench",
                 "--request-timeout", "0.3"]) == 1


# ---------------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_options_like_cc_admins(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = str(pki / "ca.pem")
    with ServerThread(**tls_settings(pki, tls_client_ca=ca)) as server:
        mine = ["--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")]
        code, text = run(capsys, "--server", server.url, "--tls-ca", ca, *mine,
                         "--sessions", "50", "--cleanup", *SMALL)
        assert code == 0 and "removed 21 subscribers" in text, text
        # no client certificate, or no TLS: the server refuses the connection
        assert main(["--server", server.url, "--tls-ca", ca, "--sessions", "5",
                     "--request-timeout", "1", *SMALL]) == 1
        assert main(["--server", server.url, "--sessions", "5", "--request-timeout", "1",
                     *SMALL]) == 1
        assert main(["cleanup", "--server", server.url, "--tls-ca", ca, *mine,
                     "--prefix", "bench"]) == 0
    capsys.readouterr()
    for args, message in (
            (["--tls-ca", str(pki / "nope.pem")], f"--tls-ca {pki / 'nope.pem'}: no such file"),
            (["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "client.key")],
             f"--tls-cert {pki / 'server.pem'} --tls-key {pki / 'client.key'}: not a usable"),
            (["--tls-ca", str(pki / "ca.key")], f"--tls-ca {pki / 'ca.key'}: not a usable"),
            (["--tls-key", str(pki / "client.key")], "--tls-key needs --tls-cert")):
        for command in ([], ["cleanup", "--prefix", "bench"]):
            with pytest.raises(SystemExit) as exc:
                main([*command, *args])
            assert exc.value.code == 2
            assert message in capsys.readouterr().err


# ---------------------------------------------------------------------- help

def test_every_option_says_its_default() -> None:
    from cc_bench import cleanup, cli

    for parser in (cli.build_parser(), cleanup.build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.option_strings in (["-h", "--help"], ["--version"]) or action.required:
                continue
            text = formatter._expand_help(action)   # what --help prints for it
            assert "default" in text and "None" not in text, (action.dest, text)
        assert "(default: " in parser.format_help()
