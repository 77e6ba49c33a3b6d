"""Which build runs (compiled or pure), and how it falls back to pure Python."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import cc_client
from protocol import buildinfo
from protocol import messages as m
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
COMPILED = buildinfo.build() == "compiled"
needs_compiled = pytest.mark.skipif(
    not COMPILED, reason="the pure build is installed (no C compiler, or CC_PURE_PYTHON=1): "
                         "no compiled modules to break")


def run(code: str, cwd: Path = ROOT, **env: str) -> str:
    """stdout of `python -c code` in `cwd` (which comes first on its sys.path)."""
    environ = {k: v for k, v in os.environ.items() if k != buildinfo.PURE_ENV}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**environ, **env},
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def copy_tree(dest: Path) -> Path:
    """The installed packages, compiled modules included, copied under `dest`."""
    for package in ("protocol", "cc_server"):
        shutil.copytree(ROOT / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for lib in [*ROOT.glob(f"{buildinfo.RUNTIME_LIB}*"), ROOT / "setup.py"]:
        shutil.copy2(lib, dest / lib.name)
    return dest


def test_every_hot_module_has_a_source() -> None:
    names = buildinfo.hot_modules()
    assert "protocol.codec" in names and "cc_server.engine.sessions" in names
    assert "cc_server.engine.*" not in names
    for name in names:
        assert Path(buildinfo.source_path(name)).is_file(), name


def _no_hot_module_breaks(scan: Callable[[str], list[str]], tmp_path: Path, sample: str,
                          expected: list[str]) -> None:
    """`scan` finds nothing in any hot module, and finds `expected` in `sample` (so the
    check itself finds what it looks for)."""
    assert [hit for name in buildinfo.hot_modules()
            for hit in scan(buildinfo.source_path(name))] == []
    bad = tmp_path / "bad.py"
    bad.write_text(sample)
    assert scan(str(bad)) == expected


def _awaits_in_handlers(path: str) -> list[str]:
    """`await`, `async with` and `async for` inside a `finally` or `except` block of an
    async function in the file at `path`, as "file:line function"."""
    found = []
    for fn in ast.walk(ast.parse(Path(path).read_text())):
        if not isinstance(fn, ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Try):
                for body in [node.finalbody, *(h.body for h in node.handlers)]:
                    found += [f"{Path(path).name}:{sub.lineno} {fn.name}"
                              for stmt in body for sub in ast.walk(stmt)
                              if isinstance(sub, ast.Await | ast.AsyncWith | ast.AsyncFor)]
    return found


def test_no_compiled_coroutine_awaits_while_handling_an_exception(tmp_path: Path) -> None:
    """mypyc mishandles an await in a `finally` or `except` block (mypyc/mypyc#1114): the
    exception being handled is swallowed or left behind, to be raised later from an
    unrelated await (cc-bench's next run in the process failed with a CancelledError
    nothing had sent). Compiled coroutines clean up after the handler instead."""
    _no_hot_module_breaks(_awaits_in_handlers, tmp_path, (
        "async def f(x):\n    try:\n        pass\n    finally:\n        await x\n"
        "    try:\n        pass\n    except E:\n        async with x:\n            pass\n"),
        ["bad.py:5 f", "bad.py:9 f"])


def _names_caught_as_two_types(path: str) -> list[str]:
    """Names that two `except ... as NAME` clauses of one function bind to different
    exception types, as "file:line function name" (the second clause)."""
    found = []
    for fn in ast.walk(ast.parse(Path(path).read_text())):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        caught: dict[str, str] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                kind = ast.dump(node.type)
                if caught.setdefault(node.name, kind) != kind:
                    found.append(f"{Path(path).name}:{node.lineno} {fn.name} {node.name}")
    return found


def test_no_compiled_function_catches_two_types_under_one_name(tmp_path: Path) -> None:
    """mypyc gives a variable one type: `except A as exc: ... except B as exc:` in one
    compiled function raises TypeError ("A object expected; got B") when B is caught,
    in the compiled build only (met while changing the client's request path)."""
    _no_hot_module_breaks(_names_caught_as_two_types, tmp_path, (
        "def f():\n    try:\n        pass\n    except A as exc:\n        pass\n"
        "    except B as exc:\n        pass\n    except (A, B) as other:\n        pass\n"
        "    except A as exc:\n        pass\n"), ["bad.py:6 f exc"])


def test_build_is_all_or_nothing() -> None:
    import cc_server.dispatch  # noqa: F401  (a server-side hot module)

    loaded = [sys.modules[n] for n in buildinfo.hot_modules() if n in sys.modules]
    kinds = {str(mod.__file__).endswith(".py") for mod in loaded}
    assert kinds == {buildinfo.build() == "pure"}
    if buildinfo.forced_pure():
        assert buildinfo.build() == "pure"


def test_pure_python_forced_at_run_time() -> None:
    code = "import protocol.codec as c, protocol.buildinfo as b; print(b.build(), c.__file__)"
    assert run(code, CC_PURE_PYTHON="1").split()[0] == "pure"
    assert run(code, CC_PURE_PYTHON="1").endswith(os.path.join("codec", "__init__.py"))
    if not buildinfo.forced_pure():   # "0" forces nothing: the build this process has
        assert run(code, CC_PURE_PYTHON="0").split()[0] == buildinfo.build()


def test_reply_types_are_the_request_types_with_the_reply_bit() -> None:
    pairs = {"HELLO": "HELLO_OK", "PING": "PONG", "EXECUTE": "EXECUTE_RESULT",
             "ADMIN": "ADMIN_RESULT", "LISTEN": "LISTEN_OK", "UNLISTEN": "UNLISTEN_OK",
             "ACK": "ACK_OK"}
    for request, reply in pairs.items():
        assert m.MsgType[reply] == m.MsgType[request] | m.REPLY


def test_error_codes_default_per_class_and_can_be_given() -> None:
    from protocol.errors import ErrorCode, FrameTooLarge, InvalidMessage, ProtocolError

    assert InvalidMessage("x").code == ErrorCode.INVALID_REQUEST
    assert FrameTooLarge("x").code == ErrorCode.FRAME_TOO_LARGE
    assert ProtocolError("x").code == ErrorCode.PROTOCOL_ERROR
    assert InvalidMessage("x", ErrorCode.STRING_TOO_LONG).code == ErrorCode.STRING_TOO_LONG


async def test_stats_and_cc_bench_say_which_build_runs(client: cc_client.Client) -> None:
    from cc_bench.cli import parse
    from cc_bench.report import describe_settings

    assert (await client.admin.stats())["server"]["build"] == buildinfo.build()
    lines = describe_settings(parse(["--sessions", "10"]))
    assert f"build:      build={buildinfo.build()}" in "\n".join(lines)


@needs_compiled
def test_sources_edited_after_compiling_run_pure(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    script = [sys.executable, "protocol/buildinfo.py", "needs-build"]
    assert subprocess.run(script, cwd=tree, check=False).returncode == 1
    wire = tree / "protocol" / "codec" / "wire.py"
    (compiled,) = wire.parent.glob("wire.*.so")
    later = compiled.stat().st_mtime + 3600     # edited after it was compiled, however long
    os.utime(wire, (later, later))              # the tree had been there before
    out = run("import protocol.buildinfo as b; print(b.describe())", cwd=tree)
    assert out == ("build=pure (protocol.codec.wire changed after it was compiled; "
                   "rebuild with `make build`)")
    assert subprocess.run(script, cwd=tree, check=False, capture_output=True).returncode == 0


@needs_compiled
def test_server_falls_back_to_pure_when_compiled_modules_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = copy_tree(tmp_path)
    (runtime,) = tree.glob(f"{buildinfo.RUNTIME_LIB}*")
    runtime.write_bytes(b"not a shared library")   # what a broken or foreign build looks like
    monkeypatch.chdir(tree)                        # `python -m cc_server` imports from here
    monkeypatch.delenv(buildinfo.PURE_ENV, raising=False)
    server = ServerProcess().start()
    server.stop()
    log = "\n".join(server.log)
    assert "event=build_fallback build=pure reason='the compiled modules failed to load" in log
    assert "event=started" in log and "build=pure" in log.split("event=started")[1]


# ------------------------------------------------------------------------------ setup.py

def load_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_cc_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # setup() itself runs only as __main__
    return module


def test_install_is_pure_when_asked(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(buildinfo.PURE_ENV, "1")
    assert load_setup().compiled_extensions() == []
    assert capsys.readouterr().out == "cc-charging build: pure Python (CC_PURE_PYTHON=1)\n"


def test_install_is_pure_without_a_compiler(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(buildinfo.PURE_ENV, raising=False)
    monkeypatch.setenv("CC", "no-such-c-compiler")
    assert load_setup().compiled_extensions() == []
    out = capsys.readouterr().out
    assert out.startswith("cc-charging build: pure Python: no C compiler") and out.count("\n") == 1


def test_editable_build_starts_from_a_tree_without_extensions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = load_setup()
    (tmp_path / "protocol" / "codec").mkdir(parents=True)
    (tmp_path / "cc_server" / "engine").mkdir(parents=True)
    kept = [tmp_path / "protocol" / "codec" / "wire.py",
            tmp_path / "cc_server" / "engine" / "journal.py"]
    stale = [tmp_path / "protocol" / "codec" / "wire.cpython-311-x86_64-linux-gnu.so",
             tmp_path / "cc_server" / "engine" / "journal.cpython-311-x86_64-linux-gnu.so",
             tmp_path / f"{buildinfo.RUNTIME_LIB}.cpython-311-x86_64-linux-gnu.so"]
    for path in kept + stale:
        path.write_text("")
    monkeypatch.setattr(setup, "HERE", str(tmp_path))
    setup.remove_inplace_extensions()
    assert [p.exists() for p in kept + stale] == [True, True, False, False, False]


@needs_compiled
def test_the_client_path_is_compiled() -> None:
    """The sans-IO machine, the client transport, results, flow control and the request
    hot path, and cc-bench's histogram run compiled in the compiled build (client.py and
    operations.py stay pure)."""
    import cc_bench.histogram
    import cc_client.client
    import cc_client.connection
    import cc_client.containers
    import cc_client.flow
    import cc_client.hot
    import cc_client.results
    import protocol.connection

    for module in (protocol.connection, cc_client.connection, cc_client.containers,
                   cc_client.results, cc_client.flow, cc_client.hot, cc_bench.histogram):
        assert not str(module.__file__).endswith(".py"), module.__name__
    assert str(cc_client.client.__file__).endswith(".py")


# ---------------------------------------------------------------------- the compile itself

class CCompiler:
    """A stand-in for distutils' C compiler (setup.py recognises the base class's
    `compile` by its qualified name, CCompiler.compile), timing its compiles."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.done: list[str] = []

    def compile(self, sources: list[str], **options: object) -> list[str]:
        raise AssertionError("setup.py compiles through its own parallel compile()")

    def _setup_compile(self, outdir: object, macros: object, incdirs: object,
                       sources: list[str], depends: object, extra: object
                       ) -> tuple[object, list[str], object, list[str], dict[str, Any]]:
        build = {s.replace(".c", ".o"): (s, ".c") for s in sources}
        return macros, list(build), extra, [], build

    def _get_cc_args(self, pp_opts: object, debug: object, before: object) -> list[str]:
        return []

    def _compile(self, obj: str, *args: object) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
            self.done.append(obj)


def test_the_c_files_of_one_extension_compile_on_every_core(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """mypyc puts nearly all the C in one extension, whose files distutils compiled one
    after the other: one core busy (`build_ext --parallel` spreads whole extensions)."""
    from setuptools import Distribution, Extension

    setup = load_setup()
    cmd = setup.BuildExt(Distribution())
    cmd.initialize_options()
    cmd.finalize_options()
    assert cmd.parallel == setup.cores() >= 1           # every core unless told
    cmd.parallel = 3
    compiler = CCompiler()
    cmd.compiler = compiler
    cmd.extensions = [Extension("group", [f"m{i}.c" for i in range(12)]),
                      Extension("shim", ["shim.c"])]

    def build_extensions(self: Any) -> None:    # what build_ext does: compile() per extension
        for ext in self.extensions:
            self.compiler.compile(ext.sources)

    monkeypatch.setattr(setup.build_ext, "build_extensions", build_extensions)
    t0 = time.monotonic()
    cmd.build_extensions()
    assert time.monotonic() - t0 < 13 * 0.05            # not one after the other
    assert sorted(compiler.done) == sorted([f"m{i}.o" for i in range(12)] + ["shim.o"])
    assert compiler.most == 3
    out = capsys.readouterr().out
    assert "cc-charging build: C: compiling 13 files, 3 at a time" in out
    assert "cc-charging build: C: 13/13 files compiled" in out


def test_the_build_says_how_long_it_usually_takes(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    setup = load_setup()
    monkeypatch.delenv(buildinfo.PURE_ENV, raising=False)
    monkeypatch.setattr(setup, "cannot_compile", lambda: None)
    fake = ModuleType("mypyc.build")
    fake.mypycify = lambda sources, **options: [f"ext of {len(sources)}"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mypyc.build", fake)
    assert setup.compiled_extensions() == [f"ext of {len(buildinfo.hot_modules(str(ROOT)))}"]
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"cc-charging build: compiling {len(buildinfo.hot_modules(str(ROOT)))}"
                            f" modules with mypyc on {setup.cores()} cores; usually ")


def _stamp(venv: Path) -> Path:
    """The install stamp the Makefile looks for in `venv`."""
    text = (ROOT / "pyproject.toml").read_bytes() + (ROOT / "setup.py").read_bytes()
    done = subprocess.run(["cksum"], input=text, capture_output=True, check=True)
    return venv / f".installed-{done.stdout.split()[0].decode()}"


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("cksum") is None,
                    reason="needs make and cksum")
@pytest.mark.parametrize("status", [0, 1])
def test_make_shows_the_builds_progress_as_it_comes(tmp_path: Path, status: int) -> None:
    """`make build` (as the first `make run`) showed nothing while pip ran: its output went
    to install.log, and the build's lines were shown after it ended. A stand-in for the
    venv's python prints a build line, then waits (at most 10 s) until the test saw it."""
    venv, seen = tmp_path / "venv", tmp_path / "seen"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "python"
    fake.write_text(f"""#!/bin/sh
echo "Collecting msgpack"
echo "  cc-charging build: compiling 35 modules with mypyc on 2 cores; usually a minute"
i=0
while [ ! -e {seen} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
echo "gcc -O3 -c a.c -o a.o  cc-charging build: C: 2/2 files compiled (1 s)"
[ -e {seen} ] && echo "  cc-charging build: compiled 35 modules with mypyc" || echo unseen
exit {status}
""")
    fake.chmod(0o755)
    _stamp(venv).touch()
    proc = subprocess.Popen(["make", "--no-print-directory", "-C", str(ROOT), "build",
                             f"VENV={venv}"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        first = [proc.stdout.readline() for _ in range(2)]
        seen.touch()
        rest = proc.stdout.read()
    finally:
        proc.stdout.close()
        assert proc.wait(30) == (0 if status == 0 else 2)
    assert first[0].startswith(f"installing into {venv}: ")
    assert first[1] == "cc-charging build: compiling 35 modules with mypyc on 2 cores; " \
                       "usually a minute\n"
    log = (venv / "install.log").read_text()
    assert "Collecting msgpack" in log and "unseen" not in log
    if status == 0:
        assert rest.startswith("cc-charging build: C: 2/2 files compiled (1 s)\n"
                               "cc-charging build: compiled 35 modules with mypyc\n")
        assert re.search(r"^installed in \d+ s$", rest, re.M), rest
    else:
        assert "Collecting msgpack" in rest and "installed in" not in rest
