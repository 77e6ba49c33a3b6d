"""The compiled codec encodes and decodes byte for byte like the pure one.

The pure modules are loaded from their .py files under another package name, so both
builds live side by side in this process; a message is built once with each build's classes.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import buildinfo, codec
from protocol import messages as m
from protocol.errors import InvalidMessage
from protocol.frames import FrameDecoder
from tests.test_codec import decimals, ids, items, times

pytestmark = pytest.mark.skipif(
    buildinfo.build() != "compiled",
    reason="the pure build is installed (no C compiler, or CC_PURE_PYTHON=1): "
           "nothing compiled to compare with")

PURE = "_pure_protocol"


def load_pure_protocol() -> tuple[types.ModuleType, types.ModuleType]:
    """(codec, messages) of the pure build, from protocol/**/*.py as package _pure_protocol."""
    if f"{PURE}.codec" not in sys.modules:
        folder = Path(m.__file__ or "").parent
        package = types.ModuleType(PURE)
        package.__path__ = [str(folder)]
        sys.modules[PURE] = package
        names = [".".join((PURE, *p.relative_to(folder).with_suffix("").parts))
                 .removesuffix(".__init__") for p in folder.rglob("*.py")]
        sys.meta_path.insert(0, buildinfo._SourceFinder([n for n in names if n != PURE]))
    return importlib.import_module(f"{PURE}.codec"), importlib.import_module(f"{PURE}.messages")


pure_codec, pure_m = load_pure_protocol()


def to_pure(value: Any) -> Any:
    """The same message built with the pure build's classes."""
    kind = type(value)
    if isinstance(value, enum.Enum):
        return getattr(pure_m, kind.__name__)(value.value)
    if kind is m.ChargeableItem:
        return pure_m.ChargeableItem(value.name, to_pure(value.properties))
    if dataclasses.is_dataclass(value):
        fields = {f.name: to_pure(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return getattr(pure_m, kind.__name__)(**fields)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return getattr(pure_m, kind.__name__)(*(to_pure(v) for v in value))
    if kind is tuple or kind is list:
        return kind(to_pure(v) for v in value)
    if kind is dict:
        return {to_pure(k): to_pure(v) for k, v in value.items()}
    return value


def test_the_pure_codec_is_really_pure() -> None:
    names = [n for n in buildinfo.hot_modules() if n.split(".")[:2] == ["protocol", "codec"]]
    assert len(names) > 1   # the package and its modules
    for name in names:
        compiled = importlib.import_module(name)
        pure = importlib.import_module(PURE + name.removeprefix("protocol"))
        assert not str(compiled.__file__).endswith(".py"), name
        assert str(pure.__file__).endswith(".py"), name


maybe = st.one_of
subs = st.builds(m.SubRequest, st.sampled_from(m.Action), ids, maybe(st.none(), items),
                 maybe(st.none(), items), maybe(st.none(), st.integers(-5, 10**6)),
                 maybe(st.none(), st.sampled_from(m.Resolution)), maybe(st.none(), ids))
executes = st.builds(m.Execute, st.binary(min_size=1, max_size=16),
                     st.sampled_from(m.ContainerKind), ids, ids, ids,
                     st.lists(subs, max_size=3).map(tuple),
                     maybe(st.none(), st.integers(1, 127)),
                     maybe(st.none(), st.binary(max_size=32)),
                     maybe(st.none(), st.sampled_from(m.ResultType)),
                     maybe(st.none(), st.sampled_from(m.ResultType)),
                     maybe(st.none(), st.booleans()))
transactions = st.builds(m.Transaction, st.integers(1, 2**62), times, ids, maybe(st.none(), ids),
                         maybe(st.none(), ids), st.sampled_from(m.TxKind),
                         st.sampled_from(m.TxReason), decimals, st.just("EUR"),
                         st.dictionaries(ids, decimals, max_size=2),
                         maybe(st.none(), st.text(max_size=30)))
ratings = st.builds(m.RatingResult, decimals, st.just("EUR"),
                    st.lists(transactions, max_size=2).map(tuple))
outcomes = st.builds(m.Outcome, ids, maybe(st.none(), st.just("CREDIT_LIMIT_REACHED")),
                     maybe(st.none(), st.text(max_size=20)), maybe(st.none(), ratings),
                     maybe(st.none(), ratings), maybe(st.none(), ratings),
                     maybe(st.none(), items), maybe(st.none(), times), st.booleans())
results = st.builds(m.ExecuteResult, ids, st.lists(outcomes, max_size=3).map(tuple))
notifications = st.builds(m.Notification, st.integers(1, 2**62), st.integers(1, 127), ids, ids,
                          ids, ids, st.sampled_from(["credit_available", "operator"]), times,
                          st.integers(1, 100), maybe(st.none(), st.binary(max_size=32)))
others = st.sampled_from([m.Ping(), m.Pong(), m.Goodbye("bye"), m.Error("SERVER_ERROR", "x"),
                          m.Hello(client_name="c"), m.Listen(3), m.Ack(5, True), m.AckOk("unknown"),
                          m.HelloOk(1, "s", 5.0, 1 << 20, 100, ("admin",))])
messages = st.one_of(executes, results, notifications, others)


def valid(msg: Any) -> bool:
    """Whether the compiled codec accepts what it encoded (the strategies are loose)."""
    try:
        (frame,) = FrameDecoder().feed(codec.encode(msg, 9))
        codec.decode(frame)
    except InvalidMessage:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(messages, st.integers(0, 2**32 - 1))
def test_compiled_and_pure_encode_byte_for_byte(msg: m.Message, rid: int) -> None:
    assert codec.encode(msg, rid) == pure_codec.encode(to_pure(msg), rid)


@settings(max_examples=200, deadline=None)
@given(messages.filter(valid))
def test_compiled_and_pure_decode_alike(msg: m.Message) -> None:
    msg_type, body = codec.encode_body(msg)
    compiled, pure = codec.decode_body(msg_type, body), pure_codec.decode_body(msg_type, body)
    assert to_pure(compiled) == pure
    assert codec.encode(compiled, 1) == pure_codec.encode(pure, 1)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(m.MsgType)), st.binary(max_size=200))
def test_compiled_and_pure_refuse_the_same_bodies(msg_type: int, raw: bytes) -> None:
    def outcome(decode_body: Any, error: type[Exception]) -> str:
        try:
            return repr(decode_body(msg_type, raw))
        except error as exc:
            return f"refused: {exc}"

    compiled = outcome(codec.decode_body, InvalidMessage)
    pure = outcome(pure_codec.decode_body, sys.modules[f"{PURE}.errors"].InvalidMessage)
    assert compiled.startswith("refused") == pure.startswith("refused")
    if compiled.startswith("refused"):
        assert compiled == pure
