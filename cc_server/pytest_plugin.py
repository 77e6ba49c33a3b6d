"""pytest fixtures for testing a charging client against cc-server (a `pytest11` plugin).

Installed with the package, so `pip install cc-charging` alone gives any test suite:

- `charging_server` (also named `cc_server`): an in-process server on 127.0.0.1 and a
  free port, running on its own thread, with a manual clock (`.advance(1800)`), the
  request record on (`.record.verify(...)`) and fault rules (`.faults.add(...)`);
- `charging_client` (also named `cc_client`): a blocking client (`cc_client.sync`)
  connected to it. The `charging_*` names leave `import cc_client` usable in the test;
- the marker `@pytest.mark.cc_server(**settings)`: server settings for that test, the
  fields of `cc_server.config.ServerConfig` (e.g. `heartbeat=0.5`, `dedup_window=60`)
  and `clock`: "manual" (the default), "wall", a `ManualClock`, or the epoch seconds a
  manual clock starts at. A key that is none of these is an error naming it.

Async tests (pytest-asyncio) connect their own client: `await cc_client.connect(url)`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import pytest

from .clock import ManualClock
from .config import ServerConfig
from .testing import ServerThread, sync_client

DEFAULT_RECORD = 10_000
#: the marker's keys: ServerConfig's fields and `clock`
SETTINGS = frozenset(f.name for f in fields(ServerConfig)) | {"clock"}


def pytest_configure(config: pytest.Config) -> None:
    """Register the `cc_server` marker."""
    config.addinivalue_line(
        "markers", "cc_server(**settings): cc-server settings (ServerConfig fields, and "
                   "clock='manual'|'wall'|a ManualClock|epoch seconds) for the "
                   "charging_server (cc_server) fixture of this test")


def marker_settings(request: pytest.FixtureRequest) -> tuple[Any, dict[str, Any]]:
    """(clock, ServerConfig settings) of the test's `cc_server` markers (the nearest
    wins); a misspelt key raises TypeError naming it and the valid keys."""
    settings: dict[str, Any] = {"record": DEFAULT_RECORD}
    for marker in reversed(list(request.node.iter_markers("cc_server"))):
        if marker.args:
            raise TypeError("@pytest.mark.cc_server takes keyword settings only, "
                            f"not {marker.args!r}")
        for key in marker.kwargs:
            if key not in SETTINGS:
                near = difflib.get_close_matches(key, SETTINGS, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise TypeError(f"@pytest.mark.cc_server: unknown setting {key!r}{hint}; "
                                f"valid settings: {', '.join(sorted(SETTINGS))}")
        settings.update(marker.kwargs)
    return _clock(settings.pop("clock", "manual")), settings


def _clock(value: Any) -> Callable[[], float] | str:
    if value == "manual":
        return ManualClock()
    if value == "wall":
        return "wall"       # running_server takes the setting
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ManualClock(float(value))
    if callable(value):
        clock: Callable[[], float] = value   # a ManualClock, or any epoch-seconds callable
        return clock
    raise TypeError("@pytest.mark.cc_server: clock must be 'manual', 'wall', a ManualClock "
                    f"or epoch seconds, not {value!r}")


@pytest.fixture
def charging_server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """A cc-server for this test: manual clock, request record, fault rules."""
    clock, settings = marker_settings(request)
    with ServerThread(clock=clock, **settings) as server:
        yield server


@pytest.fixture
def charging_client(charging_server: ServerThread) -> Iterator[Any]:
    """A blocking client connected to the `charging_server` fixture."""
    with sync_client(charging_server.url) as client:
        yield client


@pytest.fixture
def cc_server(charging_server: ServerThread) -> ServerThread:
    """The `charging_server` fixture under its first name."""
    return charging_server


@pytest.fixture
def cc_client(charging_client: Any) -> Any:
    """The `charging_client` fixture under its first name (it hides `import cc_client`
    inside the test: use `charging_client` where the test needs both)."""
    return charging_client
