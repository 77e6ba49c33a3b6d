"""Containers built through the compiled helpers (`cc_client.containers`): the same
messages, the same wire bytes and the same refusals, in the same order, as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest

import cc_client
from cc_client import ChargeableItem, Resolution, ResultType
from cc_client.operations import SessionStartOperation, SessionStopOperation, SessionUpdateOperation
from protocol import buildinfo, codec
from protocol import messages as m

ROOT = Path(__file__).resolve().parent.parent


class Ids:
    """A container host that only hands out operation ids."""

    def __init__(self) -> None:
        self.n = 0

    def new_operation_id(self) -> bytes:
        self.n += 1
        return self.n.to_bytes(16, "big")

    async def execute_container(self, msg: m.Execute) -> cc_client.SessionResult:
        raise AssertionError("not sent")


def containers() -> list[bytes]:
    """EXECUTE bodies of every kind of sub-request and option (deterministic ids)."""
    host = Ids()
    item = ChargeableItem("data", {"volume": 100, "rate": D("0.50")})
    start = SessionStartOperation(host, "u", "DATA", "s")
    start.prepare_reserve("r1", item, 60)
    start.prepare_reserve("r2", item, 1.5, Resolution.CONFIRMED, "volume")
    start.prepare_reserve("r3", item, D("30"), "CANCELED")  # type: ignore[arg-type]
    start.set_external_data(b"ext")
    start.set_reservation_renewal_listener_id(7)
    start.set_result_type(ResultType.NO_TRANSACTIONS)
    start.set_filter_transaction(True)
    update = SessionUpdateOperation(host, "u", "DATA", "s")
    update.prepare_confirm_and_reserve("r1", item, None, -1)
    update.prepare_confirm_and_reserve("r2", None, item, 90, "CONFIRMED")  # type: ignore[arg-type]
    update.prepare_confirm("r3")
    update.prepare_cancel("r4")
    update.prepare_reserve("r5", item, 10)
    stop = SessionStopOperation(host, "u", "DATA", "s")
    stop.prepare_confirm("r1", ChargeableItem(None, {"volume": 5}))
    stop.prepare_cancel("r2")
    stop.set_cleanup_result_type("NO_TRANSACTIONS")  # type: ignore[arg-type]
    return [codec.encode_body(op.to_message())[1] for op in (start, update, stop)]


def test_containers_encode_the_same_bytes_in_both_builds() -> None:
    """The compiled helpers build what the pure ones build: an int ttl stays an int on the
    wire, a Decimal one becomes a float, enums named by their value become members."""
    code = ("import json, tests.test_client_containers as t; "
            "print(json.dumps([b.hex() for b in t.containers()]))")
    environ = {**os.environ, buildinfo.PURE_ENV: "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=True)
    assert [bytes.fromhex(h) for h in json.loads(done.stdout)] == containers()
    start = codec.unpack(containers()[0])
    assert [s[4] for s in start["subs"]] == [60, 1.5, 30.0]
    assert [type(s[4]) for s in start["subs"]] == [int, float, float]


def test_a_container_holds_only_what_was_set() -> None:
    op = SessionUpdateOperation(Ids(), "u", "DATA", "s")
    op.prepare_cancel("r1")
    msg = op.to_message()
    assert type(msg) is m.Execute and type(msg.subs[0]) is m.SubRequest
    assert msg == m.Execute(op.operation_id, m.ContainerKind.UPDATE, "u", "DATA", "s",
                            (m.SubRequest(m.Action.CANCEL, "r1"),))
    assert op.to_message() is msg   # frozen after the first call


def test_refusals_come_in_the_order_they_always_came() -> None:
    """Arguments are checked before the container's state, items before the ttl."""
    op = SessionUpdateOperation(Ids(), "u", "DATA", "s")
    op.prepare_cancel("r1")
    op.to_message()
    with pytest.raises(cc_client.InvalidArgumentType, match="confirm_item must be"):
        op.prepare_confirm_and_reserve("", "x", "y", "z")  # type: ignore[arg-type]
    with pytest.raises(cc_client.InvalidArgumentType, match="reserve_item must be"):
        op.prepare_confirm_and_reserve("", None, "y", "z")  # type: ignore[arg-type]
    with pytest.raises(cc_client.InvalidArgumentType, match="ttl must be a number"):
        op.prepare_confirm_and_reserve("", None, None, True)
    with pytest.raises(cc_client.InvalidArgument, match="'NO' is not a valid Resolution"):
        op.prepare_confirm_and_reserve("", None, None, 5, "NO")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="executed already"):
        op.prepare_confirm_and_reserve("", None, None, 5)
    fresh = SessionStopOperation(Ids(), "u", "DATA", "s")
    with pytest.raises(cc_client.InvalidArgument, match="reservation_id must be"):
        fresh.prepare_cancel(7)  # type: ignore[arg-type]
    for args, name in [((5, "DATA", "s"), "user_id"), (("u", "", "s"), "service_id"),
                       (("u", "DATA", None), "session_id")]:
        with pytest.raises(cc_client.InvalidArgument, match=f"{name} must be a non-empty"):
            SessionStartOperation(Ids(), *args)  # type: ignore[arg-type]
    assert fresh.to_message().subs == ()

