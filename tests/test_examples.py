"""The examples and every python snippet of README.md run against a live server."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cc_server.catalogfile import load_catalog
from cc_server.testing import ServerThread, TestServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
README = EXAMPLES.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
NOT_RUN = re.compile(r"<!-- not run: (\S.*?) -->")   # on the line before a block, with why
DEFAULT_ADDRESS = "127.0.0.1:9500"                   # what `make run` listens on


def readme_snippets() -> list[tuple[int, str, str | None]]:
    """Each python block of README.md: (line, code, why it is not run, or None)."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in BLOCK.finditer(text):
        before = text[:block.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marked = NOT_RUN.fullmatch(before.strip())
        found.append((text.count("\n", 0, block.start()) + 1, block.group(1),
                      marked.group(1) if marked else None))
    return found


SNIPPETS = readme_snippets()
RUN = [(line, code) for line, code, why in SNIPPETS if why is None]


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
    catalog = load_catalog(EXAMPLES / "catalog.toml")
    assert catalog.plan("VIDEO", "stream") is not None
    assert [s.user_id for s in catalog.subscribers] == ["alice", "bob"]


def test_the_copyable_fixture_example_passes() -> None:
    run = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=",
                          "-p", "no:cacheprovider", "--rootdir", str(EXAMPLES),
                          str(EXAMPLES / "test_with_cc_server.py")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "2 passed" in run.stdout


def test_readme_snippets_are_all_run_or_say_why_not() -> None:
    assert len(RUN) >= 3, SNIPPETS                 # the extraction finds the blocks
    for line, code, why in SNIPPETS:
        if why is not None:                        # shown, not run: it must still parse
            compile(code, f"README.md:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize(("line", "code"), RUN, ids=[f"README.md:{line}" for line, _ in RUN])
def test_readme_snippet_runs_as_written(line: int, code: str, tmp_path: Path) -> None:
    """A block with tests runs under pytest (asyncio_mode=auto, as the README says); any
    other block runs as a script against a fresh server in place of `make run`'s."""
    where = f"README.md:{line}"
    tests = [node.name for node in ast.walk(ast.parse(code, where))
             if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
             and node.name.startswith("test_")]
    if tests:
        path = tmp_path / "test_readme_snippet.py"
        path.write_text(code, encoding="utf-8")
        run = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-o",
                              "asyncio_mode=auto", "-p", "no:cacheprovider", "--rootdir",
                              str(tmp_path), str(path)],
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0 and f"{len(tests)} passed" in run.stdout, \
            f"{where}\n{run.stdout[-3000:]}"
        return
    with ServerThread() as server:
        run = subprocess.run([sys.executable, "-c", code.replace(DEFAULT_ADDRESS, server.url)],
                             capture_output=True, text=True, timeout=120, check=False,
                             cwd=tmp_path)
    assert run.returncode == 0, f"{where}\n{run.stderr[-3000:]}"
    assert run.stdout.strip(), f"{where} printed nothing"


def test_server_thread_settle_needs_a_running_server() -> None:
    server = ServerThread()
    with pytest.raises(RuntimeError, match="not running"):
        server.settle()
    with server:
        server.settle(ticks=1)          # returns once the timer has run
    with pytest.raises(RuntimeError, match="not running"):
        server.settle()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_conformance_without_the_suite_says_what_it_needs(tmp_path: Path) -> None:
    """A clone without the external suite: a clear message and a failure, nothing built."""
    missing = tmp_path / "conformance" / "run.sh"
    run = subprocess.run(["make", "--no-print-directory", "conformance",
                          f"CONFORMANCE={missing}", "VENV=" + str(tmp_path / "venv")],
                         cwd=README.parent, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode != 0
    assert "needs the black-box conformance suite" in run.stderr
    assert f"no executable {missing}" in run.stderr and "CONFORMANCE=" in run.stderr
    assert not (tmp_path / "venv").exists()


def test_the_five_minute_tour_runs_twice_against_the_same_server(tmp_path: Path) -> None:
    """A new user runs the tour again (or after restarting `make run`, whose ./data keeps
    the subscribers): the second run got USER_EXISTS for "alice"."""
    text = README.read_text(encoding="utf-8")
    tour = text[text.index("\n## Five-minute tour\n"):]
    code = BLOCK.search(tour)
    assert code is not None
    with ServerThread() as server:
        script = code.group(1).replace(DEFAULT_ADDRESS, server.url)
        outputs = []
        for _ in range(2):
            run = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                 text=True, timeout=120, check=False, cwd=tmp_path)
            assert run.returncode == 0, run.stderr[-3000:]
            outputs.append(run.stdout)
    first, second = (out.splitlines() for out in outputs)
    assert first[0].startswith("True 0.70 ") and second[0].startswith("True 0.70 ")
    assert first[-1] != second[-1]                 # two subscribers, each with its own id
