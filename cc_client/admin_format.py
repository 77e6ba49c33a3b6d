"""cc-admin's output: tables and key/value text for people, JSON for scripts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from decimal import Decimal
from typing import Any, TextIO

from cc_client import ChargeableItem, ReservationInfo, SessionInfo, Subscriber, Transaction
from protocol.money import exact_sub, exact_sum, plain


def fmt_time(value: dt.datetime, *, precise: bool = True) -> str:
    """ISO 8601 in UTC with a Z; seconds only unless `precise`."""
    utc = value.astimezone(dt.UTC)
    return utc.isoformat(timespec="auto" if precise else "seconds").replace("+00:00", "Z")


def fmt_value(value: object) -> str:
    """A property or counter value as text (Decimals exactly)."""
    if isinstance(value, dt.datetime):
        return fmt_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain(value)       # 0.0000000001, never 1E-10
    return str(value)


def fmt_counters(counters: Mapping[str, Decimal]) -> str:
    """name=units,... or '-'."""
    return ",".join(f"{k}={plain(v)}" for k, v in sorted(counters.items())) or "-"


def fmt_item(item: ChargeableItem | None) -> str:
    """data(volume=100)."""
    if item is None:
        return "-"
    props = ",".join(f"{k}={fmt_value(v)}" for k, v in item.properties.items())
    return f"{item.name or '*'}({props})"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]],
          right: Iterable[int] = ()) -> str:
    """Columns aligned with two spaces; the `right` columns (numbers) right-aligned."""
    cells = [list(headers)] + [["-" if c is None else fmt_value(c) for c in row]
                               for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right_set = set(right)
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right_set else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, object]]) -> str:
    """`key:  value` lines, values aligned."""
    width = max(len(k) for k, _ in pairs) + 1
    return "\n".join(f"{k + ':':<{width}}  {'-' if v is None else fmt_value(v)}"
                     for k, v in pairs)


def to_json(value: object) -> Any:
    """A JSON-ready copy: records (dataclasses, named tuples) as objects, Decimals as
    strings, times ISO 8601 UTC."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, SessionInfo) and value.protocol is None:
            del out["protocol"], out["peer"]   # a msgpack session's JSON as it always was
        return out
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: to_json(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, dt.datetime):
        return fmt_time(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def dumps(value: object) -> str:
    """One line of JSON."""
    return json.dumps(to_json(value), sort_keys=False, separators=(", ", ": "))


def subscriber_text(sub: Subscriber) -> str:
    """A subscriber as aligned key/value lines, plus a counters table."""
    text = key_values([("user", sub.user_id), ("currency", sub.currency),
                       ("balance", sub.balance), ("reserved", sub.reserved),
                       ("available", sub.available),
                       ("plan", sub.plan or "(the catalog's default plan)")])
    names = sorted(set(sub.counters) | set(sub.counters_reserved))
    if names:
        rows = []
        for name in names:
            left = sub.counters.get(name, Decimal(0))
            held = sub.counters_reserved.get(name, Decimal(0))
            rows.append((name, left, held, exact_sub(left, held)))
        text += "\n\n" + table(("COUNTER", "UNITS", "RESERVED", "AVAILABLE"), rows,
                               right=(1, 2, 3))
    return text


def subscribers_text(subs: Sequence[Subscriber]) -> str:
    """Subscribers as a table, one line each."""
    rows = [(s.user_id, s.currency, s.balance, s.reserved, s.available,
             fmt_counters(s.counters)) for s in subs]
    return table(("USER", "CURRENCY", "BALANCE", "RESERVED", "AVAILABLE", "COUNTERS"), rows,
                 right=(2, 3, 4))


TX_HEADERS = ("ID", "TIME", "USER", "SESSION", "RESERVATION", "KIND", "REASON", "AMOUNT",
              "CURRENCY", "COUNTERS")


def transactions_text(txs: Sequence[Transaction]) -> str:
    """Journal entries as a table."""
    rows = [(t.transaction_id, fmt_time(t.time, precise=False), t.user_id, t.session_id,
             t.reservation_id, t.kind, t.reason, t.amount, t.currency, fmt_counters(t.counters))
            for t in txs]
    return table(TX_HEADERS, rows, right=(0, 7))


def live(res: ReservationInfo) -> bool:
    """True for a charging session not yet ended."""
    return res.state != "ended"


def sessions_text(sessions: Sequence[SessionInfo]) -> str:
    """Sessions as a table: open reservations, what they hold, the next expiry."""
    rows: list[tuple[object, ...]] = []
    # a PEER column (Diameter Gy sessions' Origin-Host) only when a Gy session is listed
    peers = any(s.protocol is not None for s in sessions)
    for s in sessions:
        open_ones = [r for r in s.reservations if live(r)]
        held = exact_sum(r.amount for r in open_ones)
        expiry = min((r.expires_at for r in open_ones), default=None)
        row: tuple[object, ...] = (
            s.session_id, s.user_id, s.service_id, fmt_time(s.created_at, precise=False),
            f"{len(open_ones)}/{len(s.reservations)}", held,
            None if expiry is None else fmt_time(expiry, precise=False))
        if peers:
            row += (None if s.protocol is None else f"{s.protocol}:{s.peer or '?'}",)
        rows.append(row)
    head = ("SESSION", "USER", "SERVICE", "CREATED", "OPEN", "HELD", "NEXT EXPIRY")
    return table(head + (("PEER",) if peers else ()), rows, right=(4, 5))


def session_text(s: SessionInfo) -> str:
    """One session with its reservations."""
    external = None
    if s.external_data is not None:
        try:
            external = repr(s.external_data.decode("utf-8"))
        except UnicodeDecodeError:
            external = "0x" + s.external_data.hex()
    text = key_values([("session", s.session_id), ("user", s.user_id),
                       ("service", s.service_id), ("created", fmt_time(s.created_at)),
                       ("listener", s.listener_id), ("external data", external)]
                      + ([("protocol", s.protocol), ("peer", s.peer)]
                         if s.protocol is not None else []))
    rows = [(r.reservation_id, r.state, fmt_item(r.item), r.amount, fmt_counters(r.counters),
             fmt_time(r.expires_at, precise=False), r.default_resolution,
             r.property_to_inverse) for r in s.reservations]
    if rows:
        text += "\n\n" + table(("RESERVATION", "STATE", "ITEM", "HELD", "COUNTERS", "EXPIRES",
                                "DEFAULT", "INVERSE"), rows, right=(3,))
    return text


def stat_key(key: object) -> tuple[int, float, str]:
    """Sort key of a statistic's name: numbers (histogram bounds, `+Inf` last among
    them) in numeric order first, then names alphabetically."""
    try:
        return (0, float(str(key)), "")
    except ValueError:
        return (1, 0.0, str(key))


def flatten(value: object, prefix: str = "") -> list[tuple[str, object]]:
    """Nested mappings as dotted keys, sorted (numeric keys numerically); floats rounded
    to 6 decimal places (sums of seconds), for people."""
    if isinstance(value, Mapping):
        pairs: list[tuple[str, object]] = []
        for key in sorted(value, key=stat_key):
            pairs += flatten(value[key], f"{prefix}{key}.")
        return pairs
    if isinstance(value, float):
        return [(prefix.rstrip("."), f"{value:.6f}".rstrip("0").rstrip(".") or "0")]
    return [(prefix.rstrip("."), to_json(value))]


def emit(out: TextIO, text: str) -> None:
    """Write a block of output."""
    out.write(text + "\n")
