"""pytest fixtures for testing a charging client against cc-server (a `pytest11` plugin).

Installed with the package, so `pip install cc-charging` alone gives any test suite:

- `cc_server`: an in-process server on 127.0.0.1 and a free port, running on its own
  thread, with a manual clock (`cc_server.advance(1800)`), the request record on
  (`cc_server.record.verify(...)`) and fault rules (`cc_server.faults.add(...)`);
- `cc_client`: a blocking client (`cc_client.sync`) connected to it;
- the marker `@pytest.mark.cc_server(**settings)`: server settings for that test, the
  fields of `cc_server.config.ServerConfig` (e.g. `heartbeat=0.5`, `dedup_window=60`).

Async tests (pytest-asyncio) connect their own client: `await cc_client.connect(cc_server.url)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .clock import ManualClock
from .testing import ServerThread, sync_client

DEFAULT_RECORD = 10_000


def pytest_configure(config: pytest.Config) -> None:
    """Register the `cc_server` marker."""
    config.addinivalue_line(
        "markers", "cc_server(**settings): cc-server settings (ServerConfig fields) for the "
                   "cc_server fixture of this test")


@pytest.fixture
def cc_server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """A cc-server for this test: manual clock, request record, fault rules."""
    settings: dict[str, Any] = {"record": DEFAULT_RECORD}
    for marker in reversed(list(request.node.iter_markers("cc_server"))):
        settings.update(marker.kwargs)
    with ServerThread(clock=ManualClock(), **settings) as server:
        yield server


@pytest.fixture
def cc_client(cc_server: ServerThread) -> Iterator[Any]:
    """A blocking client connected to the `cc_server` fixture."""
    with sync_client(cc_server.url) as client:
        yield client
