"""Which build runs: the hot modules compiled with mypyc, or all of it pure Python.

`HOT_MODULES` is the one list of modules that `setup.py` compiles; extend it there. This module
is never compiled itself and uses the standard library only, so `setup.py` can load it by path.

Every package of the project calls `select()` first thing. It decides once per process:

- `CC_PURE_PYTHON=1` in the environment, or compiled modules older than their sources (an
  editable tree edited since its last build), or a compiled runtime library that fails to load:
  every hot module is then imported from its ``.py`` file, whatever ``.so`` lies beside it;
- otherwise Python's own import finds the compiled extensions where they were built.

It is all or nothing: compiled code calls the other compiled modules directly, so a mixture of
compiled and pure copies of one module would disagree about its classes.

The compiled-speed tricks live in the hot modules only, each commented where it is used:

- `Final` aliases (``_new_tuple: Final = tuple.__new__``, ``_ERROR: Final = int(T.ERROR)``):
  a `Final` module constant is a C static, any other global a dict lookup per use (an enum
  member two lookups);
- NamedTuples built with ``tuple.__new__``: their own ``__new__`` is interpreted Python even
  compiled. It skips the arity check, so tests/test_tuple_sites.py checks every site;
- wire rows unpacked at once and classes called by name, not ``cls``: a NamedTuple field by
  name is an attribute lookup compiled, a call through a type object a generic call;
- values built when first read (`cc_client.results`: `_rating`, `SessionResult._outcomes`);
- native classes as the interface between interpreted and compiled code (`cc_client.hot.Lane`).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

#: Modules compiled by `setup.py` when a C compiler is there; "pkg.*" means every module of pkg.
#: Not cc_diameter/errors.py nor cc_diameter/codes.py: exceptions raised on bad input only,
#: and a table of plain constants.
#: Not protocol/errors.py: its exceptions carry a peer's code as a plain str, which a compiled
#: `code: ErrorCode` refuses; raising them is rare and gains nothing from compiling.
#: Not cc_client/client.py nor cc_client/operations.py: their public methods check their
#: arguments themselves (a str where bytes are declared is an InvalidArgumentType), where
#: compiled code would refuse the call with a bare TypeError first; the checks and messages
#: behind them are cc_client/containers.py, the common case of a request cc_client/hot.py.
#: No compiled coroutine awaits inside `finally` or `except` (mypyc/mypyc#1114; a test checks).
#: No compiled function binds one name in two `except` clauses of different types (mypyc
#: gives it one type: the second clause would raise TypeError; a test checks).
HOT_MODULES: tuple[str, ...] = (
    "protocol.codec",
    "protocol.codec.*",
    "protocol.connection",
    "protocol.frames",
    "protocol.liveness",
    "protocol.messages",
    "protocol.money",
    "cc_diameter.base",
    "cc_diameter.cc",
    "cc_diameter.codec",
    "cc_diameter.dictionary",
    "cc_diameter.fields",
    "cc_diameter.peer",
    "cc_diameter.reauth",
    "cc_diameter.stream",
    "cc_client.connection",
    "cc_client.containers",
    "cc_client.flow",
    "cc_client.hot",
    "cc_client.results",
    "cc_bench.histogram",
    "cc_bench.pacer",
    "cc_bench.workload",
    "cc_server.clock",
    "cc_server.connection",
    "cc_server.dedup",
    "cc_server.dispatch",
    "cc_server.flow",
    "cc_server.gy",
    "cc_server.latency",
    "cc_server.limits",
    "cc_server.engine",
    "cc_server.engine.*",
)
#: mypyc's group name; its shared runtime library is the top-level module RUNTIME_LIB.
GROUP = "cc_charging"
RUNTIME_LIB = f"{GROUP}__mypyc"
PURE_ENV = "CC_PURE_PYTHON"

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def forced_pure(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """True when CC_PURE_PYTHON asks for pure Python (any value but "", "0", "no", "false")."""
    return environ.get(PURE_ENV, "").strip().lower() not in ("", "0", "no", "false")


def hot_modules(root: str = _ROOT) -> list[str]:
    """`HOT_MODULES` with each "pkg.*" expanded to the modules found under `root`."""
    names: list[str] = []
    for name in HOT_MODULES:
        if not name.endswith(".*"):
            names.append(name)
            continue
        package = name[:-2]
        folder = os.path.join(root, *package.split("."))
        names += [f"{package}.{f[:-3]}" for f in sorted(os.listdir(folder))
                  if f.endswith(".py") and f != "__init__.py"]
    return names


def source_path(name: str, root: str = _ROOT) -> str:
    """The .py file of module `name` under `root`."""
    base = os.path.join(root, *name.split("."))
    package_init = os.path.join(base, "__init__.py")
    return package_init if os.path.isfile(package_init) else base + ".py"


class _SourceFinder:
    """A meta-path finder that imports the hot modules from their .py files."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name not in self.names:
            return None
        leaf = name.rpartition(".")[2]
        for entry in path if path is not None else sys.path:
            init = os.path.join(entry, leaf, "__init__.py")
            if os.path.isfile(init):
                return importlib.util.spec_from_file_location(
                    name, init, submodule_search_locations=[os.path.dirname(init)])
            module = os.path.join(entry, leaf + ".py")
            if os.path.isfile(module):
                return importlib.util.spec_from_file_location(name, module)
        return None


class _State:
    decided = False
    pure_reason: str | None = None   # why pure Python runs although compiled modules are there
    fell_back = False                # the compiled modules were there but failed to load


def _compiled_files(root: str) -> dict[str, str]:
    """Module name -> the compiled extension beside its source, for those that have one."""
    found: dict[str, str] = {}
    for name in hot_modules(root):
        base = source_path(name, root)[:-3]
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if os.path.isfile(base + suffix):
                found[name] = base + suffix
                break
    return found


def _stale(root: str, compiled: dict[str, str]) -> str | None:
    """A hot module whose source changed after it was compiled, if any (in a source tree, the
    one an editable install runs from: an installed wheel is never edited)."""
    if not os.path.isfile(os.path.join(root, "setup.py")):
        return None
    for name, ext in compiled.items():
        if os.stat(source_path(name, root)).st_mtime > os.stat(ext).st_mtime + 1.0:
            return name
    return None


def select() -> None:
    """Decide, once per process, whether the hot modules load compiled or from source."""
    if _State.decided:
        return
    _State.decided = True
    compiled = _compiled_files(_ROOT)
    reason: str | None = None
    if forced_pure():
        reason = f"{PURE_ENV}=1"
    elif not compiled:
        return
    elif (stale := _stale(_ROOT, compiled)) is not None:
        reason = f"{stale} changed after it was compiled; rebuild with `make build`"
    else:
        try:
            importlib.import_module(RUNTIME_LIB)
        except Exception as exc:  # a broken or foreign .so: run pure rather than not at all
            reason = f"the compiled modules failed to load ({type(exc).__name__}: {exc})"
            _State.fell_back = True
    if reason is not None:
        _State.pure_reason = reason if compiled else None
        sys.meta_path.insert(0, _SourceFinder(hot_modules(_ROOT)))


def build() -> str:
    """"compiled" when the hot modules imported so far are compiled extensions, else "pure"."""
    select()
    importlib.import_module("protocol.codec")
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    loaded = [sys.modules[n] for n in hot_modules(_ROOT) if n in sys.modules]
    compiled = [m for m in loaded if (getattr(m, "__file__", None) or "").endswith(suffixes)]
    return "compiled" if compiled and len(compiled) == len(loaded) else "pure"


def pure_reason() -> str | None:
    """Why pure Python runs although compiled modules are installed (None otherwise)."""
    return _State.pure_reason


def fell_back() -> bool:
    """True when compiled modules are installed but failed to load (worth a warning)."""
    return _State.fell_back


def describe() -> str:
    """"build=compiled" or "build=pure", with the reason when compiled modules went unused."""
    reason = pure_reason()
    return f"build={build()}" + (f" ({reason})" if reason else "")


if __name__ == "__main__":
    # `python protocol/buildinfo.py needs-build` (the Makefile): exit status 0 when this tree
    # has compiled modules older than their sources and CC_PURE_PYTHON is not set.
    _compiled = _compiled_files(_ROOT)
    _name = None if forced_pure() or not _compiled else _stale(_ROOT, _compiled)
    if _name is not None:
        print(f"cc-charging build: {_name} changed since it was compiled; recompiling")
    sys.exit(0 if _name is not None else 1)
else:
    select()
