"""Recipe: your retry after a lost reply charges once (fault `drop-reply`)."""

from decimal import Decimal

import pytest

from cc_client import ChargeableItem, CommunicationFailure
from cc_client.sync import SyncClient, connect
from cc_server.testing import ServerThread


def test_a_retry_after_a_lost_reply_charges_once(cc_server: ServerThread,
                                                 cc_client: SyncClient) -> None:
    cc_client.admin.create_subscriber("alice", Decimal("10.00"))
    with connect(cc_server.url, request_timeout=0.5) as gateway:
        start = gateway.create_session_start_operation(user_id="alice", service_id="DATA",
                                                       session_id="s-1")
        start.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=60)
        start.execute()
        stop = gateway.create_session_stop_operation(user_id="alice", service_id="DATA",
                                                     session_id="s-1")
        stop.prepare_confirm("rg-1", ChargeableItem("data", {"volume": 20}))
        with cc_server.faults.add(action="drop-reply", kind="stop", times=1):
            with pytest.raises(CommunicationFailure):
                stop.execute()          # applied and logged, but the reply never came
            stop.execute()              # your retry: same operation id, stored outcome
    assert cc_client.admin.get_subscriber("alice").balance == Decimal("9.80")
    cc_server.record.verify(2, kind="stop", session="s-1")   # sent twice, charged once
