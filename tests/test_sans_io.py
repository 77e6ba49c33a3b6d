"""protocol/, cc_diameter/ and the charging engine stay free of IO and clock reads.

Checked on the source (AST): no import of an IO, concurrency or clock module, absolute
or relative (`from ..tomlfile import ...` reaches the server's file reading); no call of
`open`; no clock read (`time.time()`, `datetime.now()`, ...). The checker's own tests
show that each rule catches what it names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANS_IO = ("protocol", "cc_diameter", "cc_server/engine")
FORBIDDEN = {"asyncio", "socket", "selectors", "time", "ssl", "threading", "uvloop",
             "logging", "os", "io", "pathlib", "subprocess", "multiprocessing", "signal",
             "shutil", "tempfile", "tomllib", "concurrent", "mmap", "fcntl", "select"}
#: packages a sans-IO module may import from this project (the rest of cc_server does IO)
OWN_ALLOWED = ("protocol", "cc_diameter", "cc_server.engine")
OWN = {"protocol", "cc_diameter", "cc_server", "cc_client", "cc_bench"}
#: attribute calls that read a clock, whatever they are called on (`x.time()` too: the
#: engine has no use for a datetime's time of day)
CLOCK_METHODS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "monotonic_ns",
                 "perf_counter", "perf_counter_ns", "process_time", "process_time_ns"}
FILE_METHODS = {"open", "read_text", "read_bytes", "write_text", "write_bytes"}


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name of a (possibly relative) `from ... import`."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every IO or clock use in one module's source, as 'line N: what'."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            resolved = _resolve(node, module, is_package)
            names = [resolved]
            if node.module is None:     # from . import x: x may be a module
                names = [f"{resolved}.{alias.name}" for alias in node.names]
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN:
                found.append(f"line {line}: imports {name}")
            elif top in OWN and not any(name == p or name.startswith(p + ".")
                                        for p in OWN_ALLOWED):
                found.append(f"line {line}: imports {name}, which is not sans-IO")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in {"open", "input", "print"}:
                found.append(f"line {node.lineno}: calls {func.id}()")
            elif isinstance(func, ast.Attribute):
                receiver = ast.unparse(func.value)
                if func.attr in FILE_METHODS:
                    found.append(f"line {node.lineno}: calls {receiver}.{func.attr}()")
                elif func.attr in CLOCK_METHODS:
                    found.append(f"line {node.lineno}: reads a clock: "
                                 f"{receiver}.{func.attr}()")
    return found


BUILDINFO = ROOT / "protocol" / "buildinfo.py"


@pytest.mark.parametrize("package", SANS_IO)
def test_package_is_sans_io(package: str) -> None:
    # protocol/buildinfo.py is no layer of the wire core: it picks, before anything else is
    # imported, the compiled or the pure-Python build of every package (it reads the
    # environment and the files beside it), and setup.py loads it by path.
    files = sorted(p for p in (ROOT / package).rglob("*.py") if p != BUILDINFO)
    assert files, f"no python files under {package}"
    problems = [f"{path.relative_to(ROOT)} {problem}" for path in files
                for problem in violations(path.read_text(), _module_of(path),
                                          path.name == "__init__.py")]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", [
    "import asyncio",
    "import logging",
    "from time import monotonic",
    "import os.path",
    "from ..tomlfile import read_toml",          # the server's file reading, relatively
    "from .. import tomlfile",
    "from cc_server import store",
    "from cc_client import Client",
    "with open('catalog.toml') as f: pass",
    "data = path.read_text()",
    "fh = Path(p).open('rb')",
    "now = dt.datetime.now(dt.UTC)",
    "from datetime import datetime\nnow = datetime.now()",
    "today = dt.date.today()",
    "t = time.time()",
    "t = time.monotonic()",
    "t = loop.time()",
    "t = _time.perf_counter()",
])
def test_the_checker_catches(source: str) -> None:
    assert violations(source, "cc_server.engine.catalog"), source


@pytest.mark.parametrize("source", [
    "from . import sessions as rules",
    "from .caches import EngineCaches",
    "from protocol import messages as m",
    "from ..engine import Refused",
    "import datetime as dt\nd = dt.datetime.fromtimestamp(now, dt.UTC)",
    "clock_time = stamp.time_of_day",
])
def test_the_checker_allows(source: str) -> None:
    assert violations(source, "cc_server.engine.catalog") == [], source


def test_relative_imports_resolve_from_a_package_init() -> None:
    assert violations("from .catalog import Catalog", "cc_server.engine", True) == []
    assert violations("from ..tomlfile import read_toml", "cc_server.engine", True)


def test_protocol_never_imports_server_or_client() -> None:
    for path in (ROOT / "protocol").rglob("*.py"):
        assert not _imports(path) & {"cc_server", "cc_client", "cc_diameter"}, path


def test_diameter_core_never_imports_server_or_client() -> None:
    for path in (ROOT / "cc_diameter").rglob("*.py"):
        assert not _imports(path) & {"cc_server", "cc_client", "cc_bench"}, path


def test_client_and_server_do_not_import_each_other() -> None:
    for path in (ROOT / "cc_client").rglob("*.py"):
        assert "cc_server" not in _imports(path), path
    for path in (ROOT / "cc_server").rglob("*.py"):
        if path.name not in {"testing.py", "pytest_plugin.py"}:   # the test helpers
            assert "cc_client" not in _imports(path), path


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names
