"""Renewal listeners: handlers run off the read path, acknowledgements, re-registration.

A handler (sync or async) gets a `RenewalNotification`. Returning normally acknowledges
it; raising leaves it unacknowledged (the server resends); it may instead
`await notification.ack(confirm=True)` to have the server confirm the acknowledgement.
Each notification runs in its own task, so a handler may execute containers itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from protocol import codec
from protocol import messages as m

from .errors import InvalidArgument, InvalidArgumentType

if TYPE_CHECKING:
    from .connection import ClientConnection
    from .parts import ListenerHost

log = logging.getLogger("cc_client")
T = m.MsgType


class RenewalNotification:
    """A "renew reservation" notification from the server."""

    __slots__ = ("_acked", "_client", "attempt", "expires_at", "external_data", "listener_id",
                 "notification_id", "reason", "reservation_id", "service_id", "session_id",
                 "user_id")

    def __init__(self, client: ListenerHost, msg: m.Notification) -> None:
        self._client = client
        self._acked = False
        self.notification_id = msg.notification_id
        self.listener_id = msg.listener_id
        self.session_id = msg.session_id
        self.reservation_id = msg.reservation_id
        self.user_id = msg.user_id
        self.service_id = msg.service_id
        self.reason = msg.reason
        self.external_data = msg.external_data
        self.expires_at: dt.datetime = msg.expires_at
        self.attempt = msg.attempt

    @property
    def acknowledged(self) -> bool:
        """True once an ack() was sent (or, with confirm=True, confirmed)."""
        return self._acked

    async def ack(self, confirm: bool = False) -> None:
        """Acknowledge; with confirm=True wait until the server confirms it. Without a
        connection at that moment nothing is sent (`acknowledged` stays False) and the
        server resends the notification, as it does for any lost ack."""
        ack = m.Ack(self.notification_id, confirm)
        if confirm:
            msg_type, body = await self._client.call(*codec.encode_body(ack))
            if msg_type != T.ACK_OK:
                raise self._client.error_of(msg_type, body)
            self._acked = True
        else:
            conn = self._client._conn
            if conn is not None:
                conn.send_oneway(*codec.encode_body(ack))
                self._acked = True

    def __repr__(self) -> str:
        return (f"RenewalNotification(id={self.notification_id}, session={self.session_id!r}, "
                f"reservation={self.reservation_id!r}, user={self.user_id!r}, "
                f"reason={self.reason!r}, attempt={self.attempt})")


RenewalHandler = Callable[[RenewalNotification], Awaitable[Any] | Any]


class Listeners:
    """The client's registered listener ids and their handlers."""

    def __init__(self, client: ListenerHost, sync_in_thread: bool = False) -> None:
        self.client = client
        self.handlers: dict[int, RenewalHandler] = {}
        self.sync_in_thread = sync_in_thread   # the blocking facade runs sync handlers off-loop
        self._tasks: set[asyncio.Task[None]] = set()
        self.received = 0

    @property
    def active(self) -> bool:
        """True while any listener is registered."""
        return bool(self.handlers)

    async def register(self, listener_id: int, handler: RenewalHandler) -> None:
        """Register with the server and remember it for reconnects."""
        if not callable(handler):
            raise InvalidArgumentType("handler must be callable")
        if isinstance(listener_id, bool) or not isinstance(listener_id, int) or \
                not 1 <= listener_id <= m.MAX_LISTENER_ID:
            raise InvalidArgument(f"listener id must be in 1..{m.MAX_LISTENER_ID}")
        self.handlers[listener_id] = handler
        msg_type, body = await self.client.call(*codec.encode_body(m.Listen(listener_id)))
        if msg_type != T.LISTEN_OK:
            del self.handlers[listener_id]
            raise self.client.error_of(msg_type, body)

    async def unregister(self, listener_id: int) -> None:
        """Unregister (no error if it was not registered)."""
        if self.handlers.pop(listener_id, None) is None:
            return
        msg_type, body = await self.client.call(*codec.encode_body(m.Unlisten(listener_id)))
        if msg_type != T.UNLISTEN_OK:
            raise self.client.error_of(msg_type, body)

    def reregister(self, conn: ClientConnection) -> None:
        """Send LISTEN for every handler on a new connection, ahead of other requests."""
        for listener_id in self.handlers:
            fut = conn.request(*codec.encode_body(m.Listen(listener_id)))
            fut.add_done_callback(_ignore)

    def dispatch(self, msg: m.Notification) -> None:
        """Run the handler of a received notification in its own task."""
        handler = self.handlers.get(msg.listener_id)
        if handler is None:
            return
        self.received += 1
        task = self.client.loop.create_task(
            self._run(handler, RenewalNotification(self.client, msg)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, handler: RenewalHandler, note: RenewalNotification) -> None:
        try:
            if self.sync_in_thread and not inspect.iscoroutinefunction(handler):
                result = await asyncio.to_thread(handler, note)
            else:
                result = handler(note)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.warning("event=renewal_handler_failed notification=%d", note.notification_id,
                        exc_info=True)
            return
        if not note.acknowledged:
            await note.ack()

    async def close(self) -> None:
        """Cancel running handlers."""
        for task in list(self._tasks):
            task.cancel()


def _ignore(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
