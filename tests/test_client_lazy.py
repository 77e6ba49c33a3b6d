"""The client reads an EXECUTE_RESULT checked in full but built as it is read
(`codec.execute_result_outcomes`, then `SessionResult.from_outcomes` on the wire arrays):
the same values, types and errors as decoding the whole message (`codec.decode_body`, then
`SessionResult.from_outcomes` on the Outcomes)."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_client import SessionResult
from protocol import codec
from protocol import messages as m
from protocol.errors import ProtocolError
from tests.test_build_codec import results

RESULT = int(m.MsgType.EXECUTE_RESULT)
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def fields(result: SessionResult) -> list[tuple[Any, ...]]:
    """Every field of every ReservationResult, with the types of the values."""
    out = []
    for r in result:
        values = (r.reservation_id, type(r.error), r.error and str(r.error),
                  r.cancel_result, r.confirm_result, r.reserve_result, r.granted_item,
                  r.expires_at, r.balance_below_zero)
        out.append(values + tuple(_types(v) for v in values))
    return out


def _types(value: Any) -> Any:
    """The type tree of a value (equal values of other types would compare equal)."""
    if isinstance(value, tuple | list):
        return (type(value), tuple(_types(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((type(k), _types(v)) for k, v in value.items()))
    return type(value)


@settings(max_examples=150, deadline=None)
@given(results)
def test_built_when_read_equals_built_at_once(msg: m.ExecuteResult) -> None:
    body = codec.encode_body(msg)[1]
    decoded = codec.decode_body(RESULT, body)
    assert isinstance(decoded, m.ExecuteResult)
    whole = SessionResult.from_outcomes(*decoded)
    lazy = SessionResult.from_outcomes(*codec.execute_result_outcomes(body))
    assert (lazy.session_id, lazy.ok, len(lazy)) == (whole.session_id, whole.ok, len(whole))
    assert fields(lazy) == fields(whole)


def test_a_rating_result_is_built_once_when_first_read() -> None:
    tx = m.Transaction(7, WHEN, "u", "s", "r", m.TxKind.CONFIRM, m.TxReason.REQUEST,
                       D("1.50"), "EUR", {})
    rating = m.RatingResult(tx.amount, "EUR", (tx,))
    body = codec.encode_body(m.ExecuteResult("s", (m.Outcome("r", confirm_result=rating),)))[1]
    (r,) = SessionResult.from_outcomes(*codec.execute_result_outcomes(body))
    first = r.confirm_result
    assert first == rating and type(first.transactions[0].kind) is m.TxKind  # type: ignore[union-attr]
    assert r.confirm_result is first and r.cancel_result is None and r.reserve_result is None


def _wire(msg: m.ExecuteResult) -> dict[str, Any]:
    return codec.unpack(codec.encode_body(msg)[1])  # type: ignore[no-any-return]


def _broken_bodies() -> list[bytes]:
    """EXECUTE_RESULT bodies each wrong in one place, deep or shallow."""
    tx = m.Transaction(1, WHEN, "u", "s", "r", m.TxKind.CONFIRM, m.TxReason.REQUEST, D("1"),
                       "EUR", {"free": D("2")})
    rating = m.RatingResult(D("1"), "EUR", (tx,))
    good = _wire(m.ExecuteResult("s", (m.Outcome("r", None, None, rating, rating, rating,
                                                 m.ChargeableItem("data", {"v": 1})),)))
    edits: list[tuple[tuple[Any, ...], Any]] = [
        (("results", 0, 3, 2, 0, 5), "refund"),          # unknown transaction kind
        (("results", 0, 4, 2, 0, 6), "whim"),            # unknown reason
        (("results", 0, 5, 2, 0, 7), "1.00"),            # amount a string
        (("results", 0, 3, 2, 0, 9), {"free": "x"}),     # counters not decimal
        (("results", 0, 4, 2, 0), [1, 2]),               # a short transaction
        (("results", 0, 5, 1), 5),                       # currency not a string
        (("results", 0, 3), "x"),                        # a rating not an array
        (("results", 0, 6), ["data"]),                   # a bad item
        (("results", 0, 8), "yes"),                      # below zero not a bool
        (("results", 0), ["r"]),                         # a short outcome
        (("results",), "x"),
        (("session",), 5),
    ]
    bodies = [codec.pack(["not", "a", "map"]), b"\xc1"]
    for path, value in edits:
        broken = copy.deepcopy(good)
        target: Any = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        bodies.append(codec.pack(broken))
    return bodies


@pytest.mark.parametrize("body", _broken_bodies())
def test_the_same_error_for_a_bad_reply(body: bytes) -> None:
    with pytest.raises(ProtocolError) as whole:
        codec.decode_body(RESULT, body)
    with pytest.raises(ProtocolError) as lazy:
        codec.execute_result_outcomes(body)
    assert (type(lazy.value), str(lazy.value)) == (type(whole.value), str(whole.value))


@given(st.data())
@settings(max_examples=30, deadline=None)
def test_public_decoders_leave_their_argument_as_it_was(data: st.DataObject) -> None:
    """`rating_from_wire` and `tx_from_wire` decode a copy: the same wire value twice gives
    the same result (the lazy path prepares its own freshly unpacked arrays in place)."""
    msg = data.draw(results.filter(lambda r: any(o.confirm_result for o in r.outcomes)))
    wire = next(o[4] for o in _wire(msg)["results"] if o[4] is not None)
    before = copy.deepcopy(wire)
    first = codec.rating_from_wire(wire, "confirm")
    assert wire == before and codec.rating_from_wire(wire, "confirm") == first
    for tx in wire[2]:
        assert codec.tx_from_wire(tx) == codec.tx_from_wire(tx)
    assert wire == before
