"""The API reference (`make docs`, Sphinx): its sources name the whole public API, its
pages stay out of git, and it builds with every warning an error where Sphinx is there
(`make docs` installs it, the `docs` extra; CI builds it after the tests)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cc_client
from cc_server import testing

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^\.\. auto(?:module|class|function):: (\S+)", re.M)


def documented() -> set[str]:
    """Every name an autodoc directive of docs/*.rst documents."""
    return {name for page in DOCS.glob("*.rst")
            for name in DIRECTIVE.findall(page.read_text(encoding="utf-8"))}


def test_the_reference_names_the_whole_public_api() -> None:
    names = documented()
    wanted = {f"cc_client.{n}" for n in cc_client.__all__} | {
        f"cc_server.testing.{n}" for n in testing.__all__} | {
        "cc_client.operator.OperatorAPI", "cc_client.faults.FaultsAPI",
        "cc_client.sync.connect", "cc_client.sync.SyncClient", "cc_client.sync.SyncAdmin",
        "cc_server.pytest_plugin", "cc_server.pytest_plugin.cc_server",
        "cc_server.pytest_plugin.cc_client"}
    assert wanted - names == set()
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    for page in DOCS.glob("*.rst"):
        assert page.name == "index.rst" or f"\n   {page.stem}\n" in index, page.name


def test_the_pages_are_built_by_make_docs_and_stay_out_of_git() -> None:
    assert "docs/_build/" in (ROOT / ".gitignore").read_text().splitlines()
    makefile = (ROOT / "Makefile").read_text()
    assert "DOCS_OUT   = docs/_build/html" in makefile
    assert re.search(r"^docs: ", makefile, re.M)
    assert re.search(r"-m sphinx -W --keep-going .*-b html docs \$\(DOCS_OUT\)", makefile)
    assert "make docs" in (ROOT / ".ci" / "run").read_text()
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "make docs" in readme and "docs/_build/html/index.html" in readme


@pytest.mark.skipif(importlib.util.find_spec("sphinx") is None,
                    reason="Sphinx is not installed here (`make docs` installs the docs extra)")
def test_the_reference_builds_without_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "html"
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                          "html", str(DOCS), str(out)], capture_output=True, text=True,
                         timeout=300, check=False, env={**os.environ, "CC_PURE_PYTHON": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    for page, name in (("client", "create_session_start_operation"),
                       ("results", "ReservationResult"), ("admin", "catalog"),
                       ("errors", "CreditLimitReached"), ("sync", "SyncClient"),
                       ("testing", "running_server"), ("testing", "cc_server")):
        assert f'<span class="pre">{name}</span>' in (out / f"{page}.html").read_text(), page
