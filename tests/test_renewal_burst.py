"""benchmark/renewal_burst.py at small scale: every notification once, acknowledged."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cc_server.testing import running_server

pytestmark = pytest.mark.timeout(60)
SCRIPT = Path(__file__).resolve().parent.parent / "benchmark" / "renewal_burst.py"
SESSIONS = 200


def load_script() -> ModuleType:
    """Import the script (benchmark/ is not a package)."""
    spec = importlib.util.spec_from_file_location("renewal_burst", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["renewal_burst"] = module   # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def check_complete(result: dict[str, Any], sessions: int) -> None:
    """All notified and acknowledged exactly once, the server holding none pending."""
    assert result["status"] == "ok"
    assert result["verdict"] in ("PASS", "FAIL")   # FAIL: slower than the target only
    assert result["sessions"] == result["notified"] == result["acknowledged"] == sessions
    assert result["duplicates"] == 0 and result["resent"] == 0 and result["foreign"] == 0
    assert result["top_up_errors"] == {}
    delta = result["server_renewal_delta"]
    assert delta["created"] == delta["sent"] == delta["acknowledged"] == sessions
    for count in ("resent", "reused", "undeliverable", "obsolete", "expired_unacknowledged",
                  "dropped_over_limit"):
        assert delta.get(count, 0) == 0, count
    assert result["server_pending_after"] == 0
    seconds = result["seconds"]
    assert 0 < seconds["all_notified"] <= seconds["all_acknowledged"] \
        <= seconds["server_confirmed"]
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["max"]


def test_spawned_server_json_report(tmp_path: Path) -> None:
    out = tmp_path / "burst.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sessions", str(SESSIONS),
                           "--in-flight", "64", "--json", str(out)],
                          check=False, capture_output=True, text=True, timeout=45)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    check_complete(result, SESSIONS)
    assert result["verdict"] in proc.stdout
    assert proc.returncode == (0 if result["verdict"] == "PASS" else 1)


async def test_running_server_in_process() -> None:
    rb = load_script()
    async with running_server() as server:
        args = rb.parse(["--sessions", str(SESSIONS), "--server", server.url])
        result = await rb.main_async(args)
        check_complete(result, SESSIONS)
        assert server.server.renewal.pending == {}


def test_refuses_non_loopback_server(capsys: pytest.CaptureFixture[str]) -> None:
    rb = load_script()
    with pytest.raises(SystemExit):
        rb.parse(["--server", "192.0.2.1:9500"])
    assert "loopback" in capsys.readouterr().err
