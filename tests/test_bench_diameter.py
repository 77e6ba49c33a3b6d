"""cc-bench --protocol diameter: the same mix as CCRs over Gy against a spawned server
(loopback, free ports), closed and open loop, RARs answered, errors by Result-Code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cc_bench import main
from cc_bench.cli import parse
from cc_bench.runner import execute, gy_server_args
from cc_bench.settings import Settings
from cc_server.config import ServerConfig
from cc_server.testing import running_server

pytestmark = pytest.mark.timeout(90)
SMALL = ["--protocol", "diameter", "--spawn", "--connections", "2", "--concurrency", "16",
         "--users", "20", "--quiet"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_closed_loop_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "gy.json"
    code, text = run(capsys, *SMALL, "--sessions", "200", "--reservations", "2",
                     "--json", str(js))
    assert code == 0, text
    assert "Diameter Gy: CCR-I + CCR-U + CCR-T" in text
    for word in ("start", "update", "stop", "containers", "p99.9", "server CPU",
                 "client CPU", "errors:     none"):
        assert word in text, word
    r = load(js)
    sm, ops = r["summary"], r["operations"]
    assert r["settings"]["protocol"] == "diameter"
    assert (ops["start"]["count"], ops["update"]["count"], ops["stop"]["count"]) == \
        (200, 400, 200)
    assert sm["errors"] == 0 and sm["sessions"] == 200
    assert sm["server_cpu_s"] is not None and sm["server_cpu_us_per_op"] > 0
    assert sm["client_cpu_us_per_op"] > 0
    assert r["server_stats"]["diameter"]["stop"] == 200   # every CCR-T served
    assert r["environment"]["server"]["exit_code"] == 0


def test_open_loop_with_rars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "gy-open.json"
    code, text = run(capsys, *SMALL, "--rate", "200", "--duration", "1", "--updates", "1",
                     "--renewals", "--renewal-ratio", "0.25", "--notification-timeout", "3",
                     "--json", str(js))
    assert code == 0, text
    assert "intended send time" in text and "offered 200" in text
    r = load(js)
    sm = r["summary"]
    assert sm["errors"] == 0, sm["errors_by_code"]
    assert sm["renewal_sessions_starved"] > 0
    # every starved session got its RAR (answered RAA 2001) and asked again by CCR-U
    # (errors 0: no TIMEOUT waiting for one; the last may land after the measurement)
    assert 0 < sm["notifications"] <= sm["renewal_sessions_starved"]
    assert r["operations"]["notification"]["count"] == sm["notifications"]
    assert 100 <= sm["sessions"] <= 220


def test_errors_counted_by_result_code(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "gy-errors.json"
    code, text = run(capsys, *SMALL, "--sessions", "100", "--balance", "0",
                     "--json", str(js))
    assert code == 0 and "4012" in text
    r = load(js)
    assert r["summary"]["errors_by_code"]["start"] == {"4012": 100}   # per-MSCC code
    assert r["operations"]["update"]["count"] == 0      # nothing granted, no CCR-U


def test_server_needs_its_diameter_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--protocol", "diameter", "--server", "127.0.0.1:9500"])
    assert exc.value.code == 2
    assert "--diameter-server" in capsys.readouterr().err


def test_spawned_server_args_add_rating_groups_to_a_given_catalog(tmp_path: Path) -> None:
    given = tmp_path / "mine.toml"
    given.write_text('currency = "EUR"\n[services.VOICE.items.call]\nquantity = "duration"\n'
                     'price = "0.05"\n')
    s = Settings(protocol="diameter", spawn=True, service="VOICE", item="call",
                 reservations=2)
    args = gy_server_args(["--catalog", str(given), "--x"], s, str(tmp_path))
    assert args[:1] == ["--x"] and args[-2:] == ["--diameter", "127.0.0.1:0"]
    text = Path(args[args.index("--catalog") + 1]).read_text()
    assert text.startswith(given.read_text())
    assert '[diameter.rating_groups.11]\nservice = "VOICE"\nitem = "call"' in text
    again = gy_server_args([f"--catalog={given}"], s, str(tmp_path))
    assert again[:1] == ["--catalog"] and "--catalog=" not in " ".join(again)


async def test_running_server_over_its_diameter_port(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('currency = "EUR"\n[services.DATA.items.data]\nquantity = "volume"\n'
                       'price = "0.01"\n[diameter.rating_groups.10]\nservice = "DATA"\n'
                       'item = "data"\nunits = "total_octets"\n')
    async with running_server(ServerConfig(catalog=str(catalog),
                                           diameter="127.0.0.1:0")) as server:
        assert server.server.diameter is not None
        host, port = server.server.diameter.address
        s = parse(["--protocol", "diameter", "--server", server.url, "--diameter-server",
                   f"{host}:{port}", "--sessions", "50", "--updates", "1", "--connections",
                   "2", "--concurrency", "8", "--users", "5", "--quiet"])
        result = await execute(s)
        assert server.server.diameter.front.counts["stop"] == 50   # all of it went over Gy
    sm, ops = result["summary"], result["operations"]
    assert sm["errors"] == 0, sm["errors_by_code"]
    assert (ops["start"]["count"], ops["update"]["count"], ops["stop"]["count"]) == \
        (50, 50, 50)
    assert sm["server_cpu_s"] is None                  # not spawned: not measured
