"""Codec rules: undecodable bodies, plain error texts, plain decimal notation, op ids."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgpack
import pytest

from protocol import codec, money
from protocol import messages as m
from protocol.errors import BadBody, InvalidMessage

GOOD_EXEC = {"op": b"1", "kind": "start", "user": "u", "service": "DATA", "session": "s",
             "subs": [["reserve", "r1", ["data", {"volume": 1}], None, 30, None, None]]}
EXEC = m.MsgType.EXECUTE


def packed(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, strict_types=False)


@pytest.mark.parametrize("msg_type, raw, says", [
    (EXEC, b"\xc1", "not msgpack"),
    (EXEC, codec.pack(GOOD_EXEC) + b"\x00", "more bytes follow"),
    (m.MsgType.PING, codec.pack({}) + codec.pack({}), "more bytes follow"),
    (EXEC, codec.pack(GOOD_EXEC)[:-3], "end in the middle"),
    (EXEC, codec.pack([1, 2]), "must be a msgpack map, not an array"),
    (m.MsgType.PING, codec.pack("x"), "not a string"),
    (m.MsgType.PING, bytes.fromhex("810102"), "int, not a string"),
    (m.MsgType.PING, packed({b"k": 1}), "is not a string"),
    (EXEC, packed({**GOOD_EXEC, b"op": b"2"}), "is not a string"),
    (EXEC, packed({**GOOD_EXEC, "subs": [["reserve", "r1", ["data", {b"volume": 1}], None,
                                          30, None, None]]}), "is not a string"),
    (m.MsgType.ADMIN, packed({"cmd": "top_up", "args": {b"user": "u"}}), "is not a string"),
    (0x55, codec.pack({}), "unknown message type 0x55"),
])
def test_a_body_no_valid_peer_sends_is_a_protocol_error(msg_type: int, raw: bytes,
                                                        says: str) -> None:
    with pytest.raises(BadBody) as info:
        codec.decode_body(msg_type, raw)
    assert info.value.code == "PROTOCOL_ERROR"
    assert says in info.value.message, info.value.message
    assert "Error:" not in info.value.message and "<class" not in info.value.message


@pytest.mark.parametrize("payload, says", [
    (b"abc", "bad decimal: 'abc' is not a number"),
    (b"1,5", "bad decimal: '1,5' is not a number"),
    (b"\xff1", "is not ASCII"),
    (b"1E+30", "outside the supported range"),
])
def test_a_bad_decimal_is_a_bad_field_in_plain_words(payload: bytes, says: str) -> None:
    raw = packed({**GOOD_EXEC, "subs": [["reserve", "r1", ["data", {
        "volume": msgpack.ExtType(1, payload)}], None, 30, None, None]]})
    with pytest.raises(InvalidMessage) as info:
        codec.decode_body(EXEC, raw)
    assert info.value.code == "INVALID_REQUEST"
    assert not isinstance(info.value, BadBody)
    assert says in info.value.message and "<class" not in info.value.message


@pytest.mark.parametrize("op", [b"", b"x" * 65, "text"])
def test_an_operation_id_is_1_to_64_bytes(op: Any) -> None:
    with pytest.raises(InvalidMessage) as info:
        codec.decode_body(EXEC, codec.pack({**GOOD_EXEC, "op": op}))
    assert info.value.code == "INVALID_REQUEST" and "1 to 64 bytes" in info.value.message
    with pytest.raises(InvalidMessage):
        codec.decode_body(m.MsgType.ADMIN, codec.pack({"cmd": "stats", "args": {}, "op": op}))


@pytest.mark.parametrize("value, text", [
    (Decimal("1E+3"), b"1000"), (Decimal("1E-10"), b"0.0000000001"),
    (Decimal("-2.5E+2"), b"-250"), (Decimal("1E+24"), b"1" + b"0" * 24),
    (Decimal("0.00"), b"0.00"), (Decimal("12.50"), b"12.50"),
])
def test_decimals_go_on_the_wire_in_plain_notation(value: Decimal, text: bytes) -> None:
    ext = msgpack.unpackb(codec.pack(value))
    assert ext == msgpack.ExtType(1, text)
    assert codec.unpack(codec.pack(value)) == value


@pytest.mark.parametrize("value, currency, text", [
    ("1E+3", "EUR", "1000.00"), ("0", "EUR", "0.00"), ("1.5", "EUR", "1.50"),
    ("1.555", "EUR", "1.555"), ("7", "JPY", "7"), ("7", "KWD", "7.000"),
])
def test_amounts_have_at_least_their_currencys_places(value: str, currency: str,
                                                      text: str) -> None:
    assert money.plain(money.with_places(Decimal(value), currency)) == text


@pytest.mark.parametrize("changes, operation", [
    ({"subs": "x"}, ("u", b"1")), ({"extra": 1}, ("u", b"1")), ({"op": b""}, None),
    ({"user": "u" * 300}, None), ({"user": 7}, None),
])
def test_a_failed_execute_names_its_operation_when_user_and_op_are_valid(
        changes: dict[str, Any], operation: Any) -> None:
    with pytest.raises(InvalidMessage) as info:
        codec.decode_body(EXEC, codec.pack({**GOOD_EXEC, **changes}))
    assert info.value.operation == operation
