"""Recipe: your back-off under `busy` (TOO_MANY_REQUESTS)."""

from decimal import Decimal

from cc_client import ChargeableItem
from cc_client.sync import SyncClient
from cc_server.testing import ServerThread


def test_the_client_backs_off_and_sends_again(cc_server: ServerThread,
                                              cc_client: SyncClient) -> None:
    cc_client.admin.create_subscriber("carol", Decimal("10.00"))
    start = cc_client.create_session_start_operation(user_id="carol", service_id="DATA",
                                                     session_id="s-1")
    start.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=60)
    with cc_server.faults.add(action="busy", kind="start", times=3) as busy:
        assert start.execute().ok       # refused unapplied three times, then applied
    assert busy.fired == 3
    cc_server.record.verify(4, kind="start")     # your client sent it four times
    assert cc_client.admin.get_subscriber("carol").reserved == Decimal("1.00")
