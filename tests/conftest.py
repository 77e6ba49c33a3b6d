"""Shared fixtures: in-process servers on 127.0.0.1 and a free port, with a movable clock."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

import cc_client
from cc_server.testing import ManualClock, TestServer, running_server


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Any:
    """A test that runs `cc_server.app.main()` installs a stderr handler on the root
    logger; put the root logger back afterwards, so that later tests neither log into a
    closed capture stream nor see another test's log lines on their stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)

os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), "cc-tests-hypothesis"))


@pytest.fixture
def clock() -> ManualClock:
    """A clock tests move by hand."""
    return ManualClock(1_800_000_000.0)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    """A fresh in-memory server on the real clock."""
    async with running_server() as srv:
        yield srv


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[cc_client.Client]:
    """A client connected to `server`."""
    async with cc_client.connect(server.url) as c:
        yield c


async def new_subscriber(client: cc_client.Client, user_id: str, balance: str = "10.00",
                         **kwargs: object) -> str:
    """Create a subscriber and return its id."""
    await client.admin.create_subscriber(user_id, Decimal(balance), **kwargs)  # type: ignore[arg-type]
    return user_id


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Every context the event loop's exception handler sees during the test."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)
