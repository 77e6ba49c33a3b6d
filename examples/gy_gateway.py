"""A Gy gateway written against python-diameter alone: CCR-I, CCR-U, CCR-T for alice.

    .venv/bin/cc-server --catalog examples/catalog.toml --diameter 127.0.0.1:3868
    .venv/bin/python examples/gy_gateway.py [HOST:PORT]

python-diameter (`pip install python-diameter`, in the `test` extra here) speaks the
protocol; nothing of cc-server is imported. Rating group 10 is data, charged per MB
(examples/catalog.toml: `[diameter.rating_groups.10]`).
"""

from __future__ import annotations

import argparse
import logging
import uuid
from typing import Any

from diameter.message.avp.grouped import (  # type: ignore[import-untyped]
    MultipleServicesCreditControl,
    RequestedServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from diameter.message.commands import CreditControlRequest  # type: ignore[import-untyped]
from diameter.node import Node  # type: ignore[import-untyped]
from diameter.node.application import (  # type: ignore[import-untyped]
    SimpleThreadingApplication,
)

MB = 1_000_000


def ccr(session: str, kind: int, number: int, requested: int | None,
        used: int | None) -> Any:
    """A CCR of rating group 10 for the subscriber alice (IMSI-type Subscription-Id)."""
    msg = CreditControlRequest()
    msg.session_id = session
    msg.origin_host = b"gw.example"
    msg.origin_realm = b"example"
    msg.destination_realm = b"example"
    msg.auth_application_id = 4
    msg.service_context_id = "32251@3gpp.org"
    msg.cc_request_type = kind
    msg.cc_request_number = number
    msg.subscription_id = [SubscriptionId(subscription_id_type=1, subscription_id_data="alice")]
    mscc = MultipleServicesCreditControl(rating_group=10)
    if requested is not None:
        mscc.requested_service_unit = RequestedServiceUnit(cc_total_octets=requested)
    if used is not None:
        mscc.used_service_unit = [UsedServiceUnit(cc_total_octets=used)]
    msg.multiple_services_credit_control = [mscc]
    return msg


def granted(answer: Any) -> str:
    mscc = answer.multiple_services_credit_control[0]
    gsu = getattr(mscc, "granted_service_unit", None)
    octets = gsu.cc_total_octets if gsu is not None else 0
    return f"Result-Code {answer.result_code}, RG 10: {mscc.result_code}, granted {octets} octets"


def main(address: str) -> None:
    logging.getLogger("diameter").setLevel(logging.ERROR)   # its connection chatter
    host, port = address.rsplit(":", 1)
    node = Node("gw.example", "example")
    node.wakeup_interval = 0.2
    peer = node.add_peer(f"aaa://cc-server.example:{port};transport=tcp", "example", [host],
                         is_persistent=True, is_default=True)
    app = SimpleThreadingApplication(4, is_auth_application=True)
    node.add_application(app, [peer])
    node.start()
    try:
        app.wait_for_ready(10)
        session = f"gw.example;{uuid.uuid4().hex[:8]};1"
        steps = [("CCR-I", 1, 5 * MB, None), ("CCR-U", 2, 5 * MB, 4 * MB),
                 ("CCR-T", 3, None, 3 * MB)]
        for number, (label, kind, requested, used) in enumerate(steps):
            answer = app.send_request(ccr(session, kind, number, requested, used), 10)
            print(f"{label}: {granted(answer)}")
    finally:
        node.stop(10)


def parse_address(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", default="127.0.0.1:3868", metavar="HOST:PORT",
                        help="cc-server's Diameter address (default 127.0.0.1:3868)")
    return str(parser.parse_args(argv).address)


if __name__ == "__main__":
    main(parse_address())
