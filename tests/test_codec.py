"""Message layer: exact types, strict validation, round trips and fuzzing."""

from __future__ import annotations

import contextlib
import datetime as dt
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol import messages as m
from protocol.errors import InvalidMessage
from protocol.frames import FrameDecoder

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 23, 12, 0, 0, 250000, tzinfo=UTC)


def roundtrip(msg: m.Message, rid: int = 7) -> m.Message:
    (frame,) = FrameDecoder().feed(codec.encode(msg, rid))
    assert frame.request_id == rid
    return codec.decode(frame)


# ------------------------------------------------------------------ byte vectors

def test_decimal_is_ext_type_1_with_ascii_text() -> None:
    assert codec.pack(Decimal("10.50")) == bytes.fromhex("c705" "01") + b"10.50"
    assert codec.unpack(bytes.fromhex("d401") + b"7") == Decimal("7")


def test_datetime_is_the_standard_timestamp_extension() -> None:
    packed = codec.pack(dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert packed == bytes.fromhex("d6ff00000001")
    assert codec.unpack(packed) == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_ping_frame_bytes() -> None:
    assert codec.encode(m.Ping(), 5) == bytes.fromhex("00000001" "02" "00" "0000" "00000005" "80")


# ------------------------------------------------------------------ round trips

def test_execute_roundtrip_keeps_exact_types() -> None:
    item = m.ChargeableItem("data", {"volume": Decimal("10.5"), "rat": "5G", "roaming": False,
                                     "start": T0, "count": 3})
    msg = m.Execute(b"op-123", m.ContainerKind.UPDATE, "alice", "DATA", "s-1", (
        m.SubRequest(m.Action.CONFIRM_AND_RESERVE, "r1", item, m.ChargeableItem(None, {}), -1),
        m.SubRequest(m.Action.RESERVE, "r2", item, None, 0.5, m.Resolution.CONFIRMED, "volume"),
    ), None, b"ctx", m.ResultType.NO_TRANSACTIONS)
    back = roundtrip(msg)
    assert back == msg
    assert isinstance(back, m.Execute)
    props = back.subs[0].item.properties  # type: ignore[union-attr]
    assert type(props["volume"]) is Decimal and props["start"] == T0
    assert type(props["roaming"]) is bool and type(props["count"]) is int


def test_execute_result_roundtrip() -> None:
    tx = m.Transaction(42, T0, "alice", "s-1", "r1", m.TxKind.RESERVE, m.TxReason.REQUEST,
                       Decimal("1.00"), "EUR", {"free_data": Decimal(30)})
    rating = m.RatingResult(Decimal("1.00"), "EUR", (tx,))
    msg = m.ExecuteResult("s-1", (
        m.Outcome("r1", None, None, rating, rating, rating, m.ChargeableItem("data", {"v": 1}), T0),
        m.Outcome("r2", "CREDIT_LIMIT_REACHED", "no credit"),
    ))
    assert roundtrip(msg) == msg


@pytest.mark.parametrize("msg", [
    m.Hello((1, 2), "gw-1", "op", "secret"), m.Hello(),
    m.HelloOk(1, "cc-server 0.1", 5.0, 1 << 20, 256, ("charging", "admin")),
    m.Ping(), m.Pong(), m.Goodbye("shutting down"), m.Error("SESSION_NOT_FOUND", "nope"),
    m.AdminRequest("top_up", {"user": "alice", "amount": Decimal("2.5")}, b"o1"),
    m.AdminRequest("stats", {}), m.AdminResult({"x": [1, Decimal(2)]}),
    m.Listen(7), m.ListenOk(), m.Unlisten(127), m.UnlistenOk(),
    m.Notification(1, 7, "s", "r", "u", "DATA", "credit_available", T0, 2, b"gw"),
    m.Ack(1, True), m.AckOk("acknowledged"),
])
def test_every_message_roundtrips(msg: m.Message) -> None:
    assert roundtrip(msg) == msg


def test_admin_values_roundtrip() -> None:
    sub = m.Subscriber("u", "EUR", Decimal(10), Decimal(1), Decimal(9), {"f": Decimal(3)}, {})
    wire = codec.unpack(codec.pack(codec.subscriber_to_wire(sub)))
    assert codec.subscriber_from_wire(wire) == sub
    info = m.SessionInfo("s", "u", "DATA", T0, 7, b"x", (m.ReservationInfo(
        "r1", "open", m.ChargeableItem("data", {"volume": 5}), Decimal("0.05"), T0,
        m.Resolution.CANCELED, {}, None),))
    assert codec.session_from_wire(codec.unpack(codec.pack(codec.session_to_wire(info)))) == info


# ------------------------------------------------------------------ validation

def body(obj: Any) -> bytes:
    return codec.pack(obj)


GOOD_EXEC = {"op": b"1", "kind": "start", "user": "u", "service": "DATA", "session": "s",
             "subs": [["reserve", "r1", ["data", {"volume": 1}], None, 30, None, None]]}


def sub(action: str = "reserve", rid: str = "r1", item: Any = ("data", {"volume": 1}),
        next_item: Any = None, ttl: Any = None, resolution: Any = None,
        inverse: Any = None) -> list[Any]:
    """A sub-request array (see PROTOCOL.md)."""
    return [action, rid, list(item) if isinstance(item, tuple) else item, next_item, ttl,
            resolution, inverse]


def bad_exec(**changes: Any) -> bytes:
    obj = {**GOOD_EXEC, **changes}
    return body({k: v for k, v in obj.items() if v is not ...})


def test_good_execute_decodes() -> None:
    assert isinstance(codec.decode_body(m.MsgType.EXECUTE, body(GOOD_EXEC)), m.Execute)


@pytest.mark.parametrize("raw, fragment", [
    (bad_exec(extra=1), "unknown field"),
    (bad_exec(user=...), "missing field"),
    (bad_exec(user=..., filter=True), "missing field(s) ['user']"),   # as many fields
    (bad_exec(user=..., extra=1), "unknown field(s) 'extra'"),
    (bad_exec(user=5), "user"),
    (bad_exec(user=""), "user"),
    (bad_exec(kind="begin"), "kind"),
    (bad_exec(listener=0), "listener"),
    (bad_exec(listener=128), "listener"),
    (bad_exec(external="text"), "external"),
    (bad_exec(subs=[sub("confirm")]), "does not allow"),
    (bad_exec(subs=[sub(ttl="30")]), "ttl"),
    (bad_exec(subs=[sub(ttl=float("nan"))]), "ttl"),
    (bad_exec(subs=[sub(item=["data", {"v": 1.5}])]), "float"),
    (bad_exec(subs=[sub(item=["data", {"v": None}])]), "v"),
    (bad_exec(subs=[sub(item="data")]), "item"),
    (bad_exec(subs=[["reserve", "r1"]]), "a sub-request is"),
    (bad_exec(subs=[sub("undo")]), "action"),
    (bad_exec(subs="r1"), "subs"),
    (bad_exec(result_type="SOME"), "result_type"),
    (bytes.fromhex("c7030109") + b"NaN", "decimal"),
    (bad_exec(op=b""), "1 to 64 bytes"),
    (bad_exec(op=b"x" * 65), "1 to 64 bytes"),
])
def test_invalid_execute_bodies_are_refused(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        codec.decode_body(m.MsgType.EXECUTE, raw)
    assert fragment in str(info.value)
    assert info.value.code == "INVALID_REQUEST"


_TX = [1, T0, "u", "s", "r1", "reserve", "request", Decimal(1), "EUR", {}]
_OUTCOME = ["r1", None, None, None, None, [Decimal(1), "EUR", [_TX]], None, T0, False]


def bad_result(outcome: Any = None, **changes: Any) -> bytes:
    """An EXECUTE_RESULT body with `outcome` (default: a good one) and the fields changed
    (`...` removes one)."""
    fields: dict[str, Any] = {"session": "s", "results": [outcome or _OUTCOME]}
    fields.update(changes)
    return codec.pack({k: v for k, v in fields.items() if v is not ...})


def _with(values: list[Any], **at: Any) -> list[Any]:
    """`values` with the items at the given indexes (i0=..., i5=...) replaced."""
    out = list(values)
    for key, value in at.items():
        out[int(key[1:])] = value
    return out


def _tx_outcome(**at: Any) -> list[Any]:
    return _with(_OUTCOME, i5=[Decimal(1), "EUR", [_with(_TX, **at)]])


@pytest.mark.parametrize("raw, message", [
    (bad_result(extra=1), "EXECUTE_RESULT: unknown field(s) 'extra'"),
    (bad_result(session=...), "EXECUTE_RESULT: missing field(s) ['session']"),
    (bad_result(session=""), "session must be a non-empty string of at most 256 characters"),
    (bad_result(results="x"), "results must be an array of at most 1048576 elements"),
    (bad_result(["r1"]), "an outcome is an array of 9 fields"),
    (bad_result(_with(_OUTCOME, i1=5)), "outcome 'r1': a field has the wrong type"),
    (bad_result(_with(_OUTCOME, i8=0)), "outcome 'r1': a field has the wrong type"),
    (bad_result(_with(_OUTCOME, i7="now")), "outcome 'r1': a field has the wrong type"),
    (bad_result(_with(_OUTCOME, i3=[1, "EUR", []])),
     "cancel must be [amount, currency, [transaction, ...]]"),
    (bad_result(_with(_OUTCOME, i5=[Decimal(1), "EUR"])),
     "reserve must be [amount, currency, [transaction, ...]]"),
    (bad_result(_with(_OUTCOME, i4=[Decimal(1), "EUR", {}])),
     "confirm must be [amount, currency, [transaction, ...]]"),
    (bad_result(_with(_OUTCOME, i5=[Decimal(1), "EUR", [[1]]])),
     "a transaction is an array of 10 or 11 fields"),
    (bad_result(_tx_outcome(i3=5)), "transaction 1: a field has the wrong type"),
    (bad_result(_tx_outcome(i0="1")), "transaction '1': a field has the wrong type"),
    (bad_result(_tx_outcome(i5="take")),
     "kind must be one of ['confirm', 'release', 'reserve', 'top_up']"),
    (bad_result(_tx_outcome(i6="why")),
     "reason must be one of ['admin', 'expiry', 'refill', 'request', 'stop']"),
    (bad_result(_tx_outcome(i9={"free": "1"})),
     "counters['free'] must be a decimal (extension type 1) or an integer"),
])
def test_invalid_execute_results_are_refused(raw: bytes, message: str) -> None:
    """A client refuses a malformed EXECUTE_RESULT, and says exactly what is wrong."""
    with pytest.raises(InvalidMessage) as info:
        codec.decode_body(m.MsgType.EXECUTE_RESULT, raw)
    assert str(info.value) == message


def test_a_good_execute_result_decodes_to_exact_types() -> None:
    result = codec.decode_body(m.MsgType.EXECUTE_RESULT,
                               bad_result(_tx_outcome(i3=None, i4=None, i9={"f": 2})))
    assert isinstance(result, m.ExecuteResult)
    (outcome,) = result.outcomes
    assert outcome.reserve_result is not None
    (tx,) = outcome.reserve_result.transactions
    assert type(tx) is m.Transaction and tx.kind is m.TxKind.RESERVE
    assert tx.reason is m.TxReason.REQUEST and tx.session_id is None
    assert tx.counters == {"f": Decimal(2)} and type(tx.counters["f"]) is Decimal


def _reserve_item(item: Any) -> bytes:
    return bad_exec(subs=[sub(item=item, ttl=30)])


@pytest.mark.parametrize("raw, code", [
    (bad_exec(user="x" * 257), "STRING_TOO_LONG"),
    (bad_exec(session="s" * 1000), "STRING_TOO_LONG"),
    (_reserve_item(["d" * 257, {"volume": 1}]), "STRING_TOO_LONG"),
    (_reserve_item(["data", {"p" * 257: 1}]), "STRING_TOO_LONG"),
    (_reserve_item(["data", {"volume": 1, "note": "n" * 4097}]), "STRING_TOO_LONG"),
    (_reserve_item(["data", {f"p{i}": i for i in range(65)}]), "TOO_MANY_PROPERTIES"),
    (bad_exec(external=b"x" * 4097), "EXTERNAL_DATA_TOO_LARGE"),
    (bad_exec(subs=[sub("cancel", item=None)] * 1025, kind="update"),
     "CONTAINER_TOO_LARGE"),
])
def test_format_caps_have_their_own_codes(raw: bytes, code: str) -> None:
    """Going past a size cap of the format says which cap, not just INVALID_REQUEST."""
    with pytest.raises(InvalidMessage) as info:
        codec.decode_body(m.MsgType.EXECUTE, raw)
    assert info.value.code == code


def test_error_messages_never_echo_a_whole_frame() -> None:
    huge = "k" * 100_000
    many = {f"{i}": 1 for i in range(999)}
    for msg_type, raw in [(m.MsgType.EXECUTE, bad_exec(**{huge: 1})),
                          (m.MsgType.EXECUTE, body({**GOOD_EXEC, **many})),
                          (m.MsgType.ADMIN, body({"cmd": huge, "args": {}}))]:
        with pytest.raises(InvalidMessage) as info:
            codec.decode_body(msg_type, raw)
        assert len(str(info.value)) < 400   # the known commands listed, not the frame


def test_decimal_text_is_bounded() -> None:
    with pytest.raises(InvalidMessage, match="longer than"):
        codec.unpack(msgpack.packb(msgpack.ExtType(1, b"1" * 10_000)))
    assert codec.unpack(msgpack.packb(msgpack.ExtType(1, b"-0.000000000000000001")))


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1E+30", "1E-19", "abc", "-sNaN"])
def test_out_of_range_or_non_finite_decimals_refused(text: str) -> None:
    with pytest.raises(InvalidMessage):
        codec.unpack(msgpack.packb(msgpack.ExtType(1, text.encode())))


def test_unknown_extension_and_message_type_refused() -> None:
    with pytest.raises(InvalidMessage):
        codec.unpack(msgpack.packb(msgpack.ExtType(9, b"x")))
    with pytest.raises(InvalidMessage, match="unknown message type"):
        codec.decode_body(0x77, body({}))


def test_admin_schema_is_enforced() -> None:
    ok = body({"cmd": "top_up", "args": {"user": "u", "amount": Decimal(1)}})
    assert codec.decode_body(m.MsgType.ADMIN, ok) == m.AdminRequest(
        "top_up", {"user": "u", "amount": Decimal(1)})
    for args in ({"user": "u"}, {"user": "u", "amount": 1}, {"user": "u", "amount": Decimal(1),
                                                              "x": 1}):
        with pytest.raises(InvalidMessage):
            codec.decode_body(m.MsgType.ADMIN, body({"cmd": "top_up", "args": args}))
    with pytest.raises(InvalidMessage, match="unknown admin command"):
        codec.decode_body(m.MsgType.ADMIN, body({"cmd": "drop_tables", "args": {}}))


def test_chargeable_item_refuses_floats_and_naive_datetimes() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        m.ChargeableItem("data", {"volume": 1.5})
    with pytest.raises(ValueError, match="aware"):
        m.ChargeableItem("data", {"at": dt.datetime(2026, 1, 1)})
    with pytest.raises(ValueError):
        m.ChargeableItem("", {})


# ------------------------------------------------------------------ properties

ids = st.text(min_size=1, max_size=20)
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=4,
                       min_value=Decimal("-1e12"), max_value=Decimal("1e12"))
times = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1),
                     timezones=st.just(UTC))
prop_values = st.one_of(st.text(max_size=30), st.integers(-(2**63), 2**64 - 1), decimals,
                        st.booleans(), times)
items = st.builds(m.ChargeableItem, st.one_of(st.none(), ids),
                  st.dictionaries(ids, prop_values, max_size=5))
subs = st.builds(m.SubRequest, st.sampled_from([m.Action.RESERVE]), ids,
                 st.one_of(st.none(), items), st.none(),
                 st.one_of(st.none(), st.integers(-1000, 1000),
                           st.floats(-1000, 1000, allow_nan=False)),
                 st.one_of(st.none(), st.sampled_from(m.Resolution)), st.one_of(st.none(), ids))
executes = st.builds(m.Execute, st.binary(min_size=1, max_size=16),
                     st.just(m.ContainerKind.START), ids, ids, ids,
                     st.lists(subs, max_size=4).map(tuple),
                     st.one_of(st.none(), st.integers(1, 127)),
                     st.one_of(st.none(), st.binary(max_size=64)),
                     st.one_of(st.none(), st.sampled_from(m.ResultType)),
                     st.one_of(st.none(), st.sampled_from(m.ResultType)),
                     st.one_of(st.none(), st.booleans()))


@given(executes)
def test_execute_roundtrip_property(msg: m.Execute) -> None:
    assert roundtrip(msg, 1) == msg


@settings(max_examples=300)
@given(st.integers(0, 255), st.binary(max_size=300))
def test_fuzz_any_body_decodes_or_raises_invalid_message(msg_type: int, raw: bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        codec.decode_body(msg_type, raw)


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.text(max_size=10),
              st.binary(max_size=10), decimals, st.floats()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=300)
@given(st.sampled_from(list(m.MsgType)), json_like)
def test_fuzz_well_formed_msgpack_of_wrong_shape(msg_type: int, obj: Any) -> None:
    with contextlib.suppress(InvalidMessage):
        codec.decode_body(msg_type, codec.pack(obj))


@pytest.mark.parametrize("wire", [
    sub("cancel", item=None, ttl=5),
    sub("confirm", next_item=["data", {}]),
    sub("reserve", next_item=["data", {}]),
])
def test_fields_that_do_not_belong_to_the_action_are_refused(wire: list[Any]) -> None:
    with pytest.raises(InvalidMessage, match="does not take"):
        codec.decode_body(m.MsgType.EXECUTE, bad_exec(kind="update", subs=[wire]))


def test_packing_from_several_threads_at_once_never_mixes_messages() -> None:
    """pack() reuses packers; threads (blocking clients each run a loop thread) must
    still each get their own, even while the default hook runs Python code mid-pack."""
    import threading
    bodies = [[Decimal(f"{t}.{i}") for i in range(50)] + [f"thread-{t}"] for t in range(4)]
    expected = [msgpack.packb(b, default=codec._default, use_bin_type=True) for b in bodies]
    wrong: list[int] = []

    def work(t: int) -> None:
        for _ in range(300):
            if codec.pack(bodies[t]) != expected[t]:
                wrong.append(t)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


# ------------------------------------------------------------------ the package

#: every name of protocol.codec that the rest of the project (or a user) reaches
PUBLIC = ["ADMIN_COMMANDS", "DECIMALS", "EXT_BOUND", "EXT_DECIMAL", "MAX_DECIMAL_EXPONENT",
          "MAX_DECIMAL_TEXT", "MAX_OP_ID", "MIN_DECIMAL_EXPONENT", "MUTATING_ADMIN",
          "DecimalCache", "admin_value_from_wire", "check_decimal", "decode", "decode_body",
          "encode", "encode_body", "execute_result_outcomes", "item_from_wire", "item_to_wire",
          "pack", "rating_from_prepared", "rating_from_wire", "session_from_wire",
          "session_to_wire", "short",
          "subscriber_from_wire", "subscriber_to_wire", "tx_from_wire", "tx_to_wire",
          "unpack", "_default"]


def test_the_codec_package_keeps_every_name_and_one_copy_of_each_cache() -> None:
    """protocol.codec is a package of modules; its names are the ones its modules define
    (not copies), and the two decimal caches are one object each, filled by every path."""
    from protocol.codec import admin, bodies, fields, values, wire

    modules = (admin, bodies, fields, values, wire)
    for name in PUBLIC:
        assert any(getattr(module, name, None) is getattr(codec, name) for module in modules), name
    assert codec.DECIMALS is wire.DECIMALS and codec.ADMIN_COMMANDS is admin.ADMIN_COMMANDS
    amount = Decimal("9876.54321")
    body = codec.encode_body(m.AdminRequest("top_up", {"user": "u", "amount": amount}))[1]
    assert "9876.54321" in wire._EXT_BY_TEXT
    assert codec.decode_body(m.MsgType.ADMIN, body).args["amount"] == amount
    assert b"9876.54321" in codec.DECIMALS.table


def test_decimals_packed_again_by_identity_give_their_own_text_and_stay_bounded() -> None:
    """The encoder's cache by decimal object: equal decimals of other exponents keep their
    own text, a decimal comes back the same after an eviction, and the cache is bounded."""
    from protocol.codec import wire

    first, other = Decimal("1.5"), Decimal("1.50")
    assert codec.pack([first, other, first]) == codec.pack([Decimal("1.5"), Decimal("1.50"),
                                                            Decimal("1.5")])
    assert codec.unpack(codec.pack([first, other])) == [first, other]
    assert [str(d) for d in codec.unpack(codec.pack([first, other]))] == ["1.5", "1.50"]
    many = [Decimal(n).scaleb(-2) for n in range(wire.EXT_BOUND + 10)]
    for value in many:
        assert codec.unpack(codec.pack(value)) == value
        assert len(wire._EXT_BY_ID) <= wire.EXT_BOUND
    assert str(codec.unpack(codec.pack(first))) == "1.5"
    held = [value for value, _ in wire._EXT_BY_ID.values()]
    assert all(wire._EXT_BY_ID[id(value)][0] is value for value in held)
