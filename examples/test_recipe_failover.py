"""Recipe: your failover when the first address dies (two servers)."""

from decimal import Decimal

from cc_client import ChargeableItem, SessionResult
from cc_client.sync import SyncClient, connect
from cc_server.testing import ServerThread


def charge(client: SyncClient, session: str) -> SessionResult:
    start = client.create_session_start_operation(user_id="bob", service_id="DATA",
                                                  session_id=session)
    start.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 10}), ttl=60)
    return start.execute()


def test_the_client_moves_to_the_second_address(cc_server: ServerThread,
                                                cc_client: SyncClient) -> None:
    cc_client.admin.create_subscriber("bob", Decimal("10.00"))     # on the backup
    with ServerThread() as first:
        with connect(first.url) as admin:
            admin.admin.create_subscriber("bob", Decimal("10.00"))
        gateway = connect(first.url, cc_server.url, request_timeout=5)
        assert charge(gateway, "s-1").ok                             # on the first
    # the first server is gone: the next container goes to the backup
    assert charge(gateway, "s-2").ok
    gateway.close()
    cc_server.record.verify(1, kind="start", session="s-2")
