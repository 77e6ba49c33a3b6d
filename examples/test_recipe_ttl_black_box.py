"""Recipe: a 30-minute TTL expired in a black-box test, by `cc-admin clock advance 1800`.

The server is a separate process (as it would be for a gateway written in Java or Go);
only the command line and the wire are used."""

import subprocess
import sys
from decimal import Decimal

from cc_client import ChargeableItem
from cc_client.sync import connect


def test_a_30_minute_ttl_runs_out_without_waiting() -> None:
    server = subprocess.Popen([sys.executable, "-m", "cc_server", "--port", "0",
                               "--clock", "manual"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        address = server.stdout.readline().split()[2]    # listening on HOST:PORT (...)
        with connect(address) as client:                 # your gateway, in any language
            client.admin.create_subscriber("fay", Decimal("10.00"))
            start = client.create_session_start_operation(user_id="fay", service_id="DATA",
                                                          session_id="s-1")
            start.prepare_reserve("rg-1", ChargeableItem("data", {"volume": 100}), ttl=1800)
            start.execute()
            subprocess.run([sys.executable, "-m", "cc_client.admin", "--server", address,
                            "clock", "advance", "1800"], check=True)
            assert client.admin.get_subscriber("fay").reserved == Decimal("0.00")
    finally:
        server.terminate()
        server.wait(10)
