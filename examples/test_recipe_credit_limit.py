"""Recipe: your handling of a credit-limit path (an injected CREDIT_LIMIT_REACHED)."""

from decimal import Decimal

from cc_client import ChargeableItem
from cc_client.sync import SyncClient
from cc_server.testing import ServerThread


def gateway_update(client: SyncClient, user: str, session: str, used: int) -> str:
    """The code under test: on CREDIT_LIMIT_REACHED, end the session (Diameter: a
    CCA with 4012 and a final CCR-T)."""
    update = client.create_session_update_operation(user_id=user, service_id="DATA",
                                                    session_id=session)
    update.prepare_confirm_and_reserve("rg-1", ChargeableItem("data", {"volume": used}),
                                       ChargeableItem("data", {"volume": 100}), ttl=-1)
    result = update.execute()["rg-1"]
    if result.error is not None and result.error.code == "CREDIT_LIMIT_REACHED":
        stop = client.create_session_stop_operation(user_id=user, service_id="DATA",
                                                    session_id=session)
        stop.prepare_confirm("rg-1", ChargeableItem("data", {"volume": used}))
        stop.execute()
        return "terminated"
    return "continued"


def test_the_gateway_ends_the_session_on_credit_limit(cc_server: ServerThread,
                                                      cc_client: SyncClient) -> None:
    cc_client.admin.create_subscriber("dave", Decimal("10.00"))
    start = cc_client.create_session_start_operation(user_id="dave", service_id="DATA",
                                                     session_id="s-1")
    start.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=60)
    start.execute()
    cc_server.faults.add(action="error", code="CREDIT_LIMIT_REACHED", scope="subrequest",
                         kind="update", times=1)
    assert gateway_update(cc_client, "dave", "s-1", used=30) == "terminated"
    assert cc_client.admin.get_subscriber("dave").balance == Decimal("9.70")
    assert cc_client.admin.find_sessions(user_id="dave") == []
