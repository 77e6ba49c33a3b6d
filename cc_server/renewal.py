"""Reservation renewal notifications (SPEC section 4): listener registry and delivery.

Registrations: listener id -> connections in registration order; the earliest live one is
the primary, the others are backups. Delivery is driven by `RenewalService.submit` (from
the dispatcher) and the server's timer calling `RenewalService.tick`.
"""

from __future__ import annotations

from typing import Any

from protocol import messages as m


class RenewalService:
    """Listener registry; notification delivery is added by the renewal issue."""

    def __init__(self) -> None:
        self.listeners: dict[int, list[Any]] = {}

    def register(self, peer: Any, listener_id: int) -> None:
        """`peer` listens for `listener_id` (idempotent; keeps its place)."""
        peers = self.listeners.setdefault(listener_id, [])
        if peer not in peers:
            peers.append(peer)

    def unregister(self, peer: Any, listener_id: int) -> None:
        """`peer` stops listening for `listener_id`."""
        peers = self.listeners.get(listener_id)
        if peers and peer in peers:
            peers.remove(peer)
            if not peers:
                del self.listeners[listener_id]

    def connection_lost(self, peer: Any) -> None:
        """Drop every registration of a closed connection."""
        for listener_id in [lid for lid, peers in self.listeners.items() if peer in peers]:
            self.unregister(peer, listener_id)

    def ack(self, peer: Any, notification_id: int) -> str:
        """Acknowledge a notification; returns the status."""
        return "unknown"

    def submit(self, due: dict[Any, m.RenewalReason], now: float) -> None:
        """Charging sessions due a notification."""

    def tick(self, now: float) -> float | None:
        """Send what is due; returns when to be called next (None: nothing pending)."""
        return None

    def stats(self) -> dict[str, int]:
        """Counts for admin.stats()."""
        return {"listeners": sum(len(p) for p in self.listeners.values())}
