"""Recipe: your renewal handler when the first notification is lost (`drop-notify`)."""

import threading
from decimal import Decimal

from cc_client import ChargeableItem, RenewalNotification
from cc_client.sync import SyncClient
from cc_server.testing import ServerThread


def test_the_handler_gets_the_resend(cc_server: ServerThread,
                                     cc_client: SyncClient) -> None:
    seen: list[int] = []
    arrived = threading.Event()

    def on_renewal(note: RenewalNotification) -> None:   # yours (on a worker thread)
        seen.append(note.attempt)
        arrived.set()

    cc_client.register_reservation_renewal_listener(7, on_renewal)
    cc_client.admin.create_subscriber("erin", Decimal("10.00"))
    start = cc_client.create_session_start_operation(user_id="erin", service_id="DATA",
                                                     session_id="s-1")
    start.set_reservation_renewal_listener_id(7)
    start.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=600)
    start.execute()
    with cc_server.faults.add(action="drop-notify", times=1) as lost:
        cc_client.admin.request_renewal("s-1", "rg-1")    # attempt 1: never sent
        assert lost.fired == 1 and seen == []
        cc_server.advance(1)                              # the resend interval passes
        assert arrived.wait(5)
    assert seen == [2]                                    # the resend reached you
