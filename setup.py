"""Build: compile the hot modules (`protocol/buildinfo.py: HOT_MODULES`) with mypyc.

Where that cannot be done (no C compiler or Python headers, mypyc missing or failing, a C
compile error) the install goes on in pure Python. Either way it prints one line that starts
with "cc-charging build:". CC_PURE_PYTHON=1 skips the attempt. An editable (in-place) build
first removes the extensions of the previous build, so a pure build leaves a pure tree.
Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = ("protocol", "cc_diameter", "cc_server", "cc_client", "cc_bench")
# What the whole compile (mypyc, then the C compiler on every core) took on the reference
# machine, 2 cores (README "Two commands"); printed so a user knows what to expect.
USUAL = ("a few seconds of mypyc, then about 20 s of C on 2 idle cores (1-3 minutes on a "
         "busy or slow machine)")


SAY = threading.Lock()


def say(message: str) -> None:
    """One line of the build's own, written at once: the compiler threads log beside it."""
    with SAY:
        sys.stdout.write(f"cc-charging build: {message}\n")
        sys.stdout.flush()


def brief(exc: BaseException) -> str:
    """An exception in one short line (the compiler's own output is above it in the log)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:100]}{'...' if len(text) > 100 else ''}"


def load_buildinfo() -> ModuleType:
    """protocol/buildinfo.py, loaded by path: the build environment lacks the runtime deps."""
    spec = importlib.util.spec_from_file_location("_cc_buildinfo",
                                                  os.path.join(HERE, "protocol", "buildinfo.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cannot_compile() -> str | None:
    """Why no C extension can be built here, or None when a compiler and headers are there."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if not os.path.isfile(headers):
        return f"no Python headers ({headers})"
    return None


def remove_inplace_extensions() -> None:
    """Delete the extensions an earlier in-place build left beside the sources."""
    patterns = [os.path.join(HERE, "*__mypyc*.so"), os.path.join(HERE, "*__mypyc*.pyd")]
    for package in PACKAGES:
        patterns += [os.path.join(HERE, package, "**", "*.so"),
                     os.path.join(HERE, package, "**", "*.pyd")]
    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True):
            os.remove(path)


def compiled_extensions() -> list[Any]:
    """The mypyc extensions, or [] (after saying why) when this install stays pure."""
    info = load_buildinfo()
    if info.forced_pure():
        say(f"pure Python ({info.PURE_ENV}=1)")
        return []
    reason = cannot_compile()
    if reason is None:
        try:
            from mypyc.build import mypycify
        except ImportError:
            reason = "mypyc is not installed"
    if reason is not None:
        say(f"pure Python: {reason}; the compiled build needs a C compiler, Python headers "
            f"and mypy")
        return []
    sources = [os.path.relpath(info.source_path(name, HERE), HERE)
               for name in info.hot_modules(HERE)]
    say(f"compiling {len(sources)} modules with mypyc on {cores()} cores; usually {USUAL}")
    say("mypyc: type-checking and writing C ...")
    started = time.monotonic()
    try:
        extensions = list(mypycify(sources, group_name=info.GROUP, opt_level="3",
                                   multi_file=True, verbose=False))
    except (Exception, SystemExit) as exc:  # mypyc exits on type errors
        say(f"pure Python: mypyc failed ({brief(exc)})")
        return []
    say(f"mypyc: C written in {time.monotonic() - started:.0f} s")
    return extensions


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def parallel_compile(compiler: Any, jobs: int, done: Callable[[str], None]) -> Any:
    """`compiler.compile`, compiling the sources of one extension `jobs` at a time (the
    distutils one compiles them one after the other, and mypyc puts nearly all the C of
    the group in one extension). One gate for every extension: `build_ext --parallel`
    builds several extensions at once, and `jobs` bounds the compilers running in all."""
    gate = threading.BoundedSemaphore(jobs)

    def compile(sources: list[str], output_dir: str | None = None, macros: Any = None,
                include_dirs: Any = None, debug: bool = False, extra_preargs: Any = None,
                extra_postargs: Any = None, depends: Any = None) -> list[str]:
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj: str) -> None:
            if obj in build:
                src, ext = build[obj]
                with gate:
                    compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)
                done(src)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, objects))      # the first compile error is raised here
        return list(objects)

    return compile


class Progress:
    """Says how many C files are compiled, every tenth of the way (thread-safe)."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, source: str) -> None:
        with self.lock:
            before = 10 * self.done // self.total
            self.done += 1
            if 10 * self.done // self.total > before:
                say(f"C: {self.done}/{self.total} files compiled "
                    f"({time.monotonic() - self.started:.0f} s)")


class BuildPy(build_py):
    """In an editable build, start from a tree without extensions."""

    def run(self) -> None:
        if getattr(self, "editable_mode", False) or getattr(self, "inplace", False):
            remove_inplace_extensions()
        super().run()


class BuildExt(build_ext):
    """Compile in parallel (every C file, on every core); on any failure, drop the
    extensions and install pure Python."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = cores()

    def build_extensions(self) -> None:
        jobs = cores() if self.parallel is True else max(1, int(self.parallel or 1))
        compiler = self.compiler
        if type(compiler).compile.__qualname__ in ("CCompiler.compile", "Compiler.compile"):
            progress = Progress(sum(len(ext.sources) for ext in self.extensions))
            compiler.compile = parallel_compile(compiler, jobs, progress)
            say(f"C: compiling {progress.total} files, {jobs} at a time")
        super().build_extensions()

    def run(self) -> None:
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as exc:
            for ext in self.extensions:     # never a mixture of compiled and pure modules
                for path in (self.get_ext_fullpath(ext.name),):
                    if os.path.exists(path):
                        os.remove(path)
            if self.inplace or getattr(self, "editable_mode", False):
                remove_inplace_extensions()
            self.extensions = []
            self.distribution.ext_modules = []
            say(f"pure Python: compiling failed ({brief(exc)})")
            return
        for output in self.get_outputs():  # stamp: the build is newer than the sources
            if os.path.exists(output):
                os.utime(output)
        say(f"compiled {len(self.extensions) - 1} modules with mypyc")


# Only a build compiles: the metadata steps (egg_info, dist_info) do not need the extensions.
BUILDS = {"bdist_wheel", "editable_wheel", "build", "build_ext", "install", "develop"}

if __name__ == "__main__":
    extensions = compiled_extensions() if BUILDS & set(sys.argv[1:]) else []
    setup(ext_modules=extensions, cmdclass={"build_py": BuildPy, "build_ext": BuildExt})
