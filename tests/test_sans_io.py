"""protocol/ and the charging engine stay free of IO and clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"asyncio", "socket", "selectors", "time", "ssl", "threading", "uvloop"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["protocol", "cc_server/engine"])
def test_package_is_sans_io(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no python files under {package}"
    for path in files:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_protocol_never_imports_server_or_client() -> None:
    for path in (ROOT / "protocol").rglob("*.py"):
        assert not _imports(path) & {"cc_server", "cc_client"}, path


def test_client_and_server_do_not_import_each_other() -> None:
    for path in (ROOT / "cc_client").rglob("*.py"):
        assert "cc_server" not in _imports(path), path
    for path in (ROOT / "cc_server").rglob("*.py"):
        if path.name not in ("testing.py", "pytest_plugin.py"):   # users' test helpers
            assert "cc_client" not in _imports(path), path
