"""The examples run against a live server."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from cc_server.engine import Catalog
from cc_server.testing import TestServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def test_charge_session_example(server: TestServer, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    await load("charge_session").main(server.url)  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert "(2) confirmed=0.30 EUR" in out
    assert "final : balance 3.00 EUR, reserved 0.00" in out


async def test_renewal_gateway_example(server: TestServer, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    await load("renewal_gateway").main(server.url)  # type: ignore[attr-defined]
    assert "final balance" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["charge_session", "renewal_gateway"])
def test_examples_parse_their_command_line(name: str) -> None:
    """`--help` is help, not a server address; a wrong option is a usage error."""
    script = str(EXAMPLES / f"{name}.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0 and "usage:" in shown.stdout and "HOST:PORT" in shown.stdout
    wrong = subprocess.run([sys.executable, script, "--bogus"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert wrong.returncode == 2 and "unrecognized arguments: --bogus" in wrong.stderr
    module = load(name)
    assert module.parse_address([]) == "127.0.0.1:9500"  # type: ignore[attr-defined]
    assert module.parse_address(["10.0.0.1:9"]) == "10.0.0.1:9"  # type: ignore[attr-defined]


def test_example_catalog_loads() -> None:
    catalog = Catalog.load(EXAMPLES / "catalog.toml")
    assert catalog.plan("VIDEO", "stream") is not None
    assert [s.user_id for s in catalog.subscribers] == ["alice", "bob"]


def test_the_copyable_fixture_example_passes() -> None:
    run = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=",
                          "-p", "no:cacheprovider", "--rootdir", str(EXAMPLES),
                          str(EXAMPLES / "test_with_cc_server.py")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "2 passed" in run.stdout
