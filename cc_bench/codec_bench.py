"""`--op codec`: frame + msgpack encode and decode cost per message kind, no IO.

Encoding is `protocol.codec.encode` (message -> frame bytes); decoding is
`FrameDecoder.feed` plus `codec.decode` (frame bytes -> validated message), the two halves
every request and reply pays on each side. Each kind is timed for `seconds`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from time import perf_counter_ns
from typing import Any

from protocol import codec
from protocol import messages as m
from protocol.frames import FrameDecoder

NOW = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
ITEM = m.ChargeableItem("data", {"volume": 100})


def _tx(tid: int, kind: m.TxKind, amount: str) -> m.Transaction:
    return m.Transaction(transaction_id=tid, time=NOW, user_id="user-000123",
                         session_id="bench-s-000123", reservation_id="r0", kind=kind,
                         reason=m.TxReason.REQUEST, amount=Decimal(amount), currency="EUR")


def _rating(amount: str, kind: m.TxKind, with_tx: bool) -> m.RatingResult:
    txs = (_tx(1000, kind, amount),) if with_tx else ()
    return m.RatingResult(amount=Decimal(amount), currency="EUR", transactions=txs)


def _execute(kind: m.ContainerKind, sub: m.SubRequest) -> m.Execute:
    return m.Execute(operation_id=bytes(16), kind=kind, user_id="user-000123",
                     service_id="DATA", session_id="bench-s-000123", subs=(sub,))


def _result(with_tx: bool, cancel: bool, confirm: bool, reserve: bool) -> m.ExecuteResult:
    outcome = m.Outcome(
        reservation_id="r0",
        cancel_result=_rating("1.00", m.TxKind.RELEASE, with_tx) if cancel else None,
        confirm_result=_rating("0.80", m.TxKind.CONFIRM, with_tx) if confirm else None,
        reserve_result=_rating("1.00", m.TxKind.RESERVE, with_tx) if reserve else None,
        granted_item=ITEM if reserve else None, expires_at=NOW if reserve else None)
    return m.ExecuteResult(session_id="bench-s-000123", outcomes=(outcome,))


def sample_messages() -> list[tuple[str, m.Message]]:
    """One typical message of each kind the charging traffic carries."""
    A = m.Action
    return [
        ("start", _execute(m.ContainerKind.START, m.SubRequest(
            A.RESERVE, "r0", ITEM, ttl=60, default_resolution=m.Resolution.CANCELED))),
        ("update", _execute(m.ContainerKind.UPDATE, m.SubRequest(
            A.CONFIRM_AND_RESERVE, "r0", m.ChargeableItem("data", {"volume": 80}), ttl=-1))),
        ("stop", _execute(m.ContainerKind.STOP, m.SubRequest(
            A.CONFIRM, "r0", m.ChargeableItem("data", {"volume": 20})))),
        ("start result", _result(True, False, False, True)),
        ("update result", _result(True, True, True, True)),
        ("update result, no tx", _result(False, True, True, True)),
        ("stop result", _result(True, True, True, False)),
        ("ping", m.Ping()),
        ("admin top_up", m.AdminRequest("top_up", {"user": "user-000123",
                                                   "amount": Decimal("1.00")}, bytes(16))),
        ("notification", m.Notification(
            notification_id=42, listener_id=7, session_id="bench-s-000123",
            reservation_id="r0", user_id="user-000123", service_id="DATA",
            reason="credit_available", expires_at=NOW, attempt=1)),
        ("ack", m.Ack(42)),
    ]


def _time_per_call(fn: Callable[[], object], seconds: float) -> float:
    """Nanoseconds per call, batches doubling until `seconds` have passed."""
    batch, spent, calls = 64, 0, 0
    budget = int(seconds * 1e9)
    while spent < budget:
        t0 = perf_counter_ns()
        for _ in range(batch):
            fn()
        spent += perf_counter_ns() - t0
        calls += batch
        batch = min(batch * 2, 1 << 16)
    return spent / calls


def run_codec_bench(seconds: float = 0.2) -> list[dict[str, Any]]:
    """Per message kind: frame size, encode and decode nanoseconds and rates."""
    rows = []
    for name, msg in sample_messages():
        frame = codec.encode(msg, 1)
        decoder = FrameDecoder()

        def encode(msg: m.Message = msg) -> bytes:
            return codec.encode(msg, 1)

        def decode(frame: bytes = frame, decoder: FrameDecoder = decoder) -> m.Message:
            return codec.decode(decoder.feed(frame)[0])

        assert decode() == msg, f"{name} does not survive a round trip"
        enc_ns, dec_ns = _time_per_call(encode, seconds), _time_per_call(decode, seconds)
        rows.append({"kind": name, "bytes": len(frame), "encode_ns": round(enc_ns, 1),
                     "decode_ns": round(dec_ns, 1), "encode_per_s": round(1e9 / enc_ns),
                     "decode_per_s": round(1e9 / dec_ns)})
    return rows


def format_codec(rows: list[dict[str, Any]]) -> str:
    """The codec table."""
    header = ["message", "bytes", "encode us", "encode ops/s", "decode us", "decode ops/s"]
    cells = [[r["kind"], f"{r['bytes']:,}", f"{r['encode_ns'] / 1e3:.2f}",
              f"{r['encode_per_s']:,}", f"{r['decode_ns'] / 1e3:.2f}", f"{r['decode_per_s']:,}"]
             for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = ["codec micro-benchmark: frame + msgpack, encode = message -> frame bytes, "
             "decode = bytes -> validated message", "", fmt.format(*header)]
    lines += [fmt.format(*c) for c in cells]
    return "\n".join(lines)
