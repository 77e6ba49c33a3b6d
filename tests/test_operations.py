"""Running the server: config file and flags, logs, statistics, Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from dataclasses import asdict
from decimal import Decimal as D
from pathlib import Path

import pytest

import cc_client
from cc_client import ChargeableItem
from cc_server.app import config_from_args
from cc_server.config import ServerConfig, to_toml
from cc_server.latency import Histogram
from cc_server.logs import JsonFormatter, fields_of
from cc_server.metrics import prometheus
from cc_server.testing import running_server
from tests.serverproc import ServerProcess


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text('port = 9700\nheartbeat = 2\nrenewal-resend-attempts = 3\nloop = "asyncio"\n')
    config, print_only = config_from_args(["--config", str(path), "--heartbeat", "7",
                                           "--max-subrequests", "8"])
    assert not print_only
    assert (config.port, config.heartbeat, config.renewal_resend_attempts, config.loop,
            config.max_subrequests, config.host) == (9700, 7.0, 3, "asyncio", 8, "127.0.0.1")


def test_print_config_is_a_complete_config_file(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "cc_server", "--print-config", "--port", "0",
                          "--data-dir", "/tmp/x"], capture_output=True, text=True, check=True)
    parsed = tomllib.loads(out.stdout)
    expected = {k: v for k, v in asdict(ServerConfig(port=0, data_dir="/tmp/x")).items()
                if v is not None and k != "faults"}   # [[faults]]: none here
    assert parsed == expected
    path = tmp_path / "again.toml"
    path.write_text(to_toml(ServerConfig(port=1234)))
    assert config_from_args(["--config", str(path)])[0] == ServerConfig(port=1234)


@pytest.mark.parametrize("content, message", [
    ("bogus = 1\n", "unknown setting 'bogus'"),
    ("port = 'x'\n", "port must be int"),
    ('log_format = "xml"\n', "log_format must be one of"),
    ("heartbeat = -1\n", "--heartbeat (config key heartbeat) must be in 0.001..86400 seconds"),
    ("port = \n", "not valid TOML"),
])
def test_bad_config_files_are_usage_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    out = subprocess.run([sys.executable, "-m", "cc_server", "--config", str(path)],
                         check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and message in out.stderr


def test_json_log_lines_carry_the_event_fields() -> None:
    assert fields_of("event=started host=127.0.0.1 port=9500 message='a b' ratio=0.5") == {
        "event": "started", "host": "127.0.0.1", "port": 9500, "message": "a b", "ratio": 0.5}
    import logging
    record = logging.LogRecord("cc_server", logging.INFO, __file__, 1,
                               "event=peer_dead peer=%s silent_for=%.1f", ("1.2.3.4:5", 15.0),
                               None)
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "peer_dead" and line["silent_for"] == 15.0
    assert line["level"] == "info" and line["time"].endswith("Z")


def test_server_logs_json_and_nothing_per_request(tmp_path: Path) -> None:
    sp = ServerProcess("--log-format", "json").start()

    async def work() -> None:
        async with cc_client.connect(sp.url) as c:
            await c.admin.create_subscriber("u", D(5))
            for i in range(20):
                op = c.create_session_start_operation(user_id="u", service_id="DATA",
                                                      session_id=f"s{i}")
                op.prepare_reserve("r", ChargeableItem("data", {"volume": 1}), ttl=60)
                await op.execute()

    asyncio.run(work())
    assert sp.stop() == 0
    events = [json.loads(line)["event"] for line in sp.log if line.startswith("{")]
    assert events[0] == "started" and events[-1] == "stopped"
    assert len(events) <= 5, f"a log line per request? {events}"


async def test_stats_cover_operations_latency_state_and_connections(tmp_path: Path) -> None:
    async with running_server(data_dir=str(tmp_path)) as server, \
            cc_client.connect(server.url) as c:
        await c.admin.create_subscriber("u", D("0.50"))
        op = c.create_session_start_operation(user_id="u", service_id="DATA", session_id="s")
        op.prepare_reserve("ok", ChargeableItem("data", {"volume": 10}), ttl=60)
        op.prepare_reserve("poor", ChargeableItem("data", {"volume": 100}), ttl=60)
        await op.execute()
        stats = await c.admin.stats()
    assert stats["operations"]["start.ok"] == 1
    assert stats["sub_requests"] == {"reserve.ok": 1, "reserve.CREDIT_LIMIT_REACHED": 1}
    assert stats["engine"]["sessions"] == 1 and stats["engine"]["reservations"] == 1
    assert stats["latency"]["execute"]["count"] == 1
    assert stats["latency"]["execute"]["buckets"]["+Inf"] == 1
    assert stats["connections"]["open"] == 1
    assert stats["durability"]["log_records"] == stats["durability"]["log_synced"] >= 2
    assert stats["renewal"]["listeners"] == 0 and stats["server"]["uptime"] >= 0


async def test_prometheus_endpoint() -> None:
    async with running_server(metrics_port=0) as server, cc_client.connect(server.url) as c:
        await c.admin.create_subscriber("u", D(1))
        assert server.server.metrics is not None
        base = f"http://127.0.0.1:{server.server.metrics.port}"

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, ""

        status, text = await asyncio.to_thread(get, "/metrics")
        assert status == 200
        assert "cc_engine_subscribers 1" in text
        assert 'cc_operations_total{kind="create_subscriber",outcome="ok"} 1' in text
        assert "# TYPE cc_latency_admin_seconds histogram" in text
        assert "cc_connections_open 1" in text
        assert (await asyncio.to_thread(get, "/other"))[0] == 404


def test_histogram_and_exposition_format() -> None:
    h = Histogram()
    for seconds in (0.00004, 0.0003, 0.0003, 2.0):
        h.observe(seconds)
    d = h.to_dict()
    assert d["count"] == 4 and d["buckets"]["5e-05"] == 1 and d["buckets"]["0.0005"] == 3
    assert d["buckets"]["1.0"] == 3 and d["buckets"]["+Inf"] == 4
    text = prometheus({"latency": {"x": d}, "engine": {"sessions": 2, "nested": {"a-b": 1.5}}})
    assert 'cc_latency_x_seconds_bucket{le="+Inf"} 4' in text
    assert "cc_engine_sessions 2" in text and "cc_engine_nested_a_b 1.5" in text
