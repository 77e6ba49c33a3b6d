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
from types import ModuleType
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = ("protocol", "cc_diameter", "cc_server", "cc_client", "cc_bench")


def say(message: str) -> None:
    print(f"cc-charging build: {message}", flush=True)


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
    try:
        return list(mypycify(sources, group_name=info.GROUP, opt_level="3",
                             multi_file=True, verbose=False))
    except (Exception, SystemExit) as exc:  # mypyc exits on type errors
        say(f"pure Python: mypyc failed ({brief(exc)})")
        return []


class BuildPy(build_py):
    """In an editable build, start from a tree without extensions."""

    def run(self) -> None:
        if getattr(self, "editable_mode", False) or getattr(self, "inplace", False):
            remove_inplace_extensions()
        super().run()


class BuildExt(build_ext):
    """Compile in parallel; on any failure, drop the extensions and install pure Python."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

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
