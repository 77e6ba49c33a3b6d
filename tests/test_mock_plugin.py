"""The pytest plugin: its fixtures here, and in a fresh virtualenv that installed only
the package (and pytest)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import venv
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from cc_client import ChargeableItem
from cc_server.testing import ServerThread

ROOT = Path(__file__).resolve().parent.parent


def test_the_fixtures_give_a_server_with_test_controls(cc_server: ServerThread,
                                                       cc_client: Any) -> None:
    cc_client.admin.create_subscriber("p-1", D("5.00"))
    op = cc_client.create_session_start_operation(user_id="p-1", service_id="DATA",
                                                  session_id="s-1")
    op.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=1800)
    with cc_server.faults.add(action="busy", kind="start", times=1) as rule:
        assert op.execute().ok                  # the client backed off and sent again
    assert rule.fired == 1
    cc_server.record.verify(2, kind="start", session="s-1")
    cc_server.advance(1800)                      # the TTL runs out: no sleeping
    assert cc_client.admin.get_subscriber("p-1").reserved == D("0.00")


@pytest.mark.cc_server(dedup_window=1.0, record=5)
def test_the_marker_sets_server_settings(cc_server: ServerThread) -> None:
    assert cc_server.test_server is not None
    config = cc_server.test_server.server.config
    assert (config.dedup_window, config.record) == (1.0, 5)


PROJECT_TEST = '''
from decimal import Decimal

import pytest
from cc_client import ChargeableItem, CommunicationFailure
from cc_client.sync import connect


def test_a_gateway_retry_after_a_lost_reply_charges_once(cc_server, cc_client):
    cc_client.admin.create_subscriber("alice", Decimal("10.00"))
    with connect(cc_server.url, request_timeout=0.5) as gateway:
        op = gateway.create_session_start_operation(user_id="alice", service_id="DATA",
                                                    session_id="s-1")
        op.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=60)
        with cc_server.faults.add(action="drop-reply", kind="start", times=1):
            with pytest.raises(CommunicationFailure):
                op.execute()
            assert op.execute().ok
    assert cc_client.admin.get_subscriber("alice").reserved == Decimal("1.00")
    cc_server.record.verify(2, kind="start")
'''


@pytest.mark.timeout(600)
def test_a_fresh_virtualenv_with_only_the_package_has_the_fixtures(tmp_path: Path) -> None:
    """`pip install cc-charging` (here: from this source tree) and pytest alone."""
    if os.environ.get("CC_SKIP_VENV_TEST"):
        pytest.skip("CC_SKIP_VENV_TEST is set")
    source = tmp_path / "source"        # a clean copy: no build/ left over in the tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", "data"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source), "pytest"],
        capture_output=True, text=True, timeout=420, check=False)
    if install.returncode != 0:
        reason = install.stderr[-800:]
        if any(word in reason for word in ("Could not find a version", "NewConnectionError",
                                           "Temporary failure", "No matching distribution")):
            pytest.skip(f"pip cannot reach a package index here: {reason}")
        raise AssertionError(f"pip install failed:\n{reason}")
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_gateway.py").write_text(textwrap.dedent(PROJECT_TEST))
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=project, capture_output=True, text=True, timeout=120,
                         check=False, env={k: v for k, v in os.environ.items()
                                           if k not in ("PYTHONPATH",)})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
    assert sys.executable != str(python)
