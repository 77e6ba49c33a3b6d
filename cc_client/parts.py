"""What each part of the client (containers, listeners, the operator API) needs of it.

The parts hold one of these instead of the whole `Client`; `Client` satisfies them all.
Any object with these members will do, for example a fake in a test.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from protocol import messages as m

from .errors import ChargingError
from .results import SessionResult


class OperationIds(Protocol):
    """Hands out operation ids."""

    def new_operation_id(self) -> bytes:
        """A fresh, unique operation id."""
        ...


class ContainerHost(OperationIds, Protocol):
    """What a start, update or stop container needs: ids, and a way to send itself."""

    async def execute_container(self, msg: m.Execute) -> SessionResult:
        """Send a container; its result, or the whole-container failure raised."""
        ...


class Requester(Protocol):
    """Sends one request and turns an unexpected reply into the exception it stands for."""

    async def call(self, msg_type: int, body: bytes) -> tuple[int, bytes]:
        """The raw reply (type, body) to one request."""
        ...

    def error_of(self, msg_type: int, body: bytes) -> ChargingError:
        """The exception an ERROR (or unexpected) reply stands for."""
        ...


class AdminHost(Requester, OperationIds, Protocol):
    """What the operator API needs."""


class OnewaySender(Protocol):
    """A connection that can send a frame nobody answers."""

    def send_oneway(self, msg_type: int, body: bytes) -> None:
        """Send without waiting for a reply."""
        ...


class ListenerHost(Requester, Protocol):
    """What renewal listeners and their notifications need."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop handlers run on."""
        ...

    @property
    def _conn(self) -> OnewaySender | None:
        """The current connection, if any (for acks that need no reply)."""
        ...
