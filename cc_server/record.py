"""The request record (`--record N`): the last N frames, both directions, kept decoded.

In the spirit of WireMock's request journal: a test (or `cc-admin record`) reads back
what a client sent and what it got, filtered by subscriber, session, container kind,
message type and time, and `verify` asserts on it::

    server.record.verify(2, kind="update", session="s-1",
                         last=lambda e: e.subrequests[0]["item"][1]["volume"] == 20)

One ring of N frames is shared by all connections (the oldest frame leaves first).
Off by default: the server then keeps no `Record` at all, and the hot path pays one
`is None` test per batch of frames. This module does no IO and reads no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol import codec
from protocol import messages as m
from protocol.frames import Frame

MAX_RECORD = 1_000_000   # frames a record may hold
#: The test controls' own admin commands (faults, record, clock). They are left out of the
#: record, with their replies (reading the record or moving the clock must not change what
#: the record shows), never fail by a fault rule, and are not logged (dispatch.py).
CONTROL_COMMANDS = frozenset({"fault_add", "fault_list", "fault_remove", "fault_clear",
                        "record_get", "record_clear", "clock_get", "clock_advance",
                        "clock_set"})
_ADMIN = int(m.MsgType.ADMIN)
_HELLO = int(m.MsgType.HELLO)
#: requests the server answers, and the types of its answers (replies and ERROR)
_ANSWERED = frozenset(t.name for t in m.MsgType if not t & m.REPLY and t not in (
    m.MsgType.GOODBYE, m.MsgType.NOTIFY, m.MsgType.ERROR))
_REPLIES = frozenset(t.name for t in m.MsgType if t & m.REPLY)
# Diameter (diameter_record.py): a CCR read is answered by the CCA written
_ANSWERED |= {"CCR"}
_REPLIES |= {"CCA"}
_SUB_FIELDS = ("action", "rid", "item", "next", "ttl", "resolution", "inverse")


def _redacted_hello(value: Any) -> Any:
    """A HELLO body fit to keep: its password replaced by "***"; a body that is not a map
    (or did not decode: its bytes are never kept) is kept as None."""
    if not isinstance(value, dict):
        return None
    return {**value, "password": "***"} if "password" in value else value


def type_name(msg_type: int) -> str:
    """The message type's name (`EXECUTE`), or its number in hex when unknown."""
    try:
        return m.MsgType(msg_type).name
    except ValueError:
        return f"{msg_type:#04x}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded frame. `body` is the decoded msgpack value, or None when the body
    did not decode (then `raw` holds its bytes)."""

    seq: int
    time: float
    conn: str
    conn_user: str | None
    direction: str          # "in" (client -> server) or "out"
    type: str
    request_id: int
    body: Any
    raw: bytes | None = None

    def _field(self, key: str) -> Any:
        return self.body.get(key) if isinstance(self.body, dict) else None

    @property
    def user(self) -> str | None:
        """The subscriber the frame concerns (EXECUTE `user`, NOTIFY `user`, ADMIN args)."""
        value = self._field("user")
        if value is None and isinstance(self._field("args"), dict):
            value = self.body["args"].get("user")
        return value if isinstance(value, str) else None

    @property
    def session(self) -> str | None:
        """The session the frame concerns, when it names one."""
        value = self._field("session")
        if value is None and isinstance(self._field("args"), dict):
            value = self.body["args"].get("session")
        return value if isinstance(value, str) else None

    @property
    def kind(self) -> str | None:
        """A container's kind (`start`, `update`, `stop`), else None."""
        value = self._field("kind")
        return value if isinstance(value, str) else None

    @property
    def subrequests(self) -> list[dict[str, Any]]:
        """A container's sub-requests as maps: action, rid, item ([name, props]), ..."""
        subs = self._field("subs")
        if not isinstance(subs, list):
            return []
        return [dict(zip(_SUB_FIELDS, sub, strict=False)) for sub in subs
                if isinstance(sub, list)]

    def to_wire(self) -> dict[str, Any]:
        """The entry as a map (admin replies; bodies as they were decoded)."""
        out = {"seq": self.seq, "time": self.time, "conn": self.conn,
               "conn_user": self.conn_user, "direction": self.direction, "type": self.type,
               "request_id": self.request_id, "body": self.body}
        if self.raw is not None:
            out["raw"] = self.raw
        return out


class Record:
    """A ring of the last `size` frames."""

    def __init__(self, size: int) -> None:
        if not 1 <= size <= MAX_RECORD:
            raise ValueError(f"record size must be 1..{MAX_RECORD}")
        self.size = size
        self.entries: deque[Entry] = deque(maxlen=size)
        self.seq = 0
        self._unrecorded: set[tuple[str, int]] = set()   # (conn, request id) awaiting reply

    def add(self, now: float, conn: str, conn_user: str | None, direction: str,
            msg_type: int, request_id: int, body: bytes) -> None:
        """Record one frame (its body is decoded here; undecodable ones are kept raw)."""
        try:
            value: Any = codec.unpack(body)
            raw = None
        except Exception:   # anything msgpack refuses is kept as it came
            value, raw = None, bytes(body)
        if self._unrecorded and direction == "out" and (conn, request_id) in self._unrecorded:
            self._unrecorded.discard((conn, request_id))
            return
        if msg_type == _ADMIN and isinstance(value, dict) and value.get("cmd") in CONTROL_COMMANDS:
            if len(self._unrecorded) < 100_000:
                self._unrecorded.add((conn, request_id))
            return
        if msg_type == _HELLO:     # never keep a password, whatever the frame looks like
            value, raw = _redacted_hello(value), None
        self.seq += 1
        self.entries.append(Entry(self.seq, now, conn, conn_user, direction,
                                  type_name(msg_type), request_id, value, raw))

    def add_entry(self, now: float, conn: str, conn_user: str | None, direction: str,
                  type: str, request_id: int, body: Any, raw: bytes | None = None) -> None:
        """Record one message decoded elsewhere (a Diameter message: diameter_record.py)."""
        self.seq += 1
        self.entries.append(Entry(self.seq, now, conn, conn_user, direction, type,
                                  request_id, body, raw))

    def add_raw(self, now: float, conn: str, conn_user: str | None, direction: str,
                data: bytes) -> None:
        """Record bytes that are not a valid frame (type `RAW`, kept as they came)."""
        self.seq += 1
        self.entries.append(Entry(self.seq, now, conn, conn_user, direction, "RAW", 0,
                                  None, bytes(data)))

    def add_frame(self, now: float, conn: str, conn_user: str | None, direction: str,
                  frame: Frame) -> None:
        """Record one decoded frame."""
        self.add(now, conn, conn_user, direction, frame.type, frame.request_id, frame.body)

    def add_frames(self, now: float, conn: str, conn_user: str | None, direction: str,
                   data: bytes) -> None:
        """Record every whole frame in `data` (bytes written in one go)."""
        pos = 0
        size = len(data)
        while size - pos >= 12:
            length = int.from_bytes(data[pos:pos + 4], "big")
            end = pos + 12 + length
            if end > size:
                break
            self.add(now, conn, conn_user, direction, data[pos + 4],
                     int.from_bytes(data[pos + 8:pos + 12], "big"), data[pos + 12:end])
            pos = end

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self.entries.clear()

    def find(self, *, user: str | None = None, session: str | None = None,
             kind: str | None = None, type: str | None = None,
             direction: str | None = None, since: float | None = None,
             until: float | None = None, conn_user: str | None = None,
             limit: int | None = None, user_id: str | None = None,
             session_id: str | None = None) -> list[Entry]:
        """The entries that agree with every filter given, oldest first (`limit`: the
        newest that many).

        `user`, `session` and `kind` select exchanges: a frame that names them, and the
        reply (result or ERROR) to each request that does. `user_id` and `session_id`
        are other names of `user` and `session`."""
        user = user if user is not None else user_id
        session = session if session is not None else session_id
        selecting = user is not None or session is not None or kind is not None
        pending: set[tuple[str, int]] = set()   # (conn, request id) of selected requests
        found = []
        for e in list(self.entries):              # list(): safe while the server appends
            chosen = ((user is None or e.user == user)
                      and (session is None or e.session == session)
                      and (kind is None or e.kind == kind))
            if selecting:
                key = (e.conn, e.request_id)
                if e.direction == "in":
                    if chosen and e.request_id and e.type in _ANSWERED:
                        pending.add(key)
                elif e.type in _REPLIES and key in pending:
                    pending.discard(key)
                    chosen = True
            if (chosen and (type is None or e.type == type.upper())
                    and (direction is None or e.direction == direction)
                    and (conn_user is None or e.conn_user == conn_user)
                    and (since is None or e.time >= since)
                    and (until is None or e.time <= until)):
                found.append(e)
        return found[-limit:] if limit else found

    def verify(self, count: int | None = None, *,
               last: Callable[[Entry], bool] | None = None,
               each: Callable[[Entry], bool] | None = None,
               direction: str = "in", **filters: Any) -> list[Entry]:
        """Assert on what was recorded (requests by default), WireMock-`verify` style.

        `count`: exactly that many entries match the filters; `each`: every one passes;
        `last`: the newest one passes. Returns the entries; raises AssertionError with
        a description of what was recorded instead."""
        found = self.find(direction=direction, **filters)
        what = ", ".join(f"{k}={v!r}" for k, v in sorted(filters.items())) or "any"
        if count is not None and len(found) != count:
            raise AssertionError(f"expected {count} {direction} frame(s) with {what}, "
                                 f"recorded {len(found)}: {describe(found)}")
        if each is not None:
            bad = [e for e in found if not each(e)]
            if bad:
                raise AssertionError(f"{len(bad)} frame(s) with {what} fail the check: "
                                     f"{describe(bad)}")
        if last is not None:
            if not found:
                raise AssertionError(f"no {direction} frame with {what} was recorded")
            if not last(found[-1]):
                raise AssertionError(f"the last frame with {what} fails the check: "
                                     f"{describe(found[-1:])}")
        return found


def describe(entries: Iterable[Entry], most: int = 5) -> str:
    """A short text of some entries, for assertion messages."""
    items = list(entries)
    parts = [f"#{e.seq} {e.type} {e.kind or ''} session={e.session} "
             f"subs={[s.get('action') for s in e.subrequests]}" for e in items[-most:]]
    more = f" (and {len(items) - most} earlier)" if len(items) > most else ""
    return "[" + "; ".join(parts) + "]" + more


def jsonable(value: Any) -> Any:
    """A decoded body made printable as JSON (bytes as hex, decimals and times as text)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, msgpack.ExtType):
        return {"ext": value.code, "data": value.data.hex()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
