"""The transaction journal (SAP CC's "TIF"): every movement of money or counters.

Amounts are never negative; the kind says the direction. From the journal alone:
    balance  == initial + sum(top_up) - sum(confirm)
    reserved == sum(reserve) - sum(release)
The in-memory journal keeps the newest `retain` entries (older ones are dropped in chunks,
indexes included); with --data-dir the full journal is also on disk.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from protocol import messages as m

NO_COUNTERS: Final[Mapping[str, Decimal]] = m.Transaction._field_defaults["counters"]  # {}
_new_tuple: Final = tuple.__new__   # compiled-speed trick (protocol/buildinfo.py)
_TRANSACTION: Final = m.Transaction
DEFAULT_RETAIN = 2_000_000


# An entry is an exact tuple of the Transaction fields with plain-str kind and reason:
# CPython stops tracking such tuples at their first garbage collection, so a journal of
# millions of entries costs the collector nothing. Transactions are built from them.
Entry = tuple[Any, ...]
_ID: Final = 0        # the fields an entry is looked up by (Final: constants compiled)
_USER: Final = 2
_SESSION: Final = 3
_KIND: Final = 5
_REASON: Final = 6
# member -> its plain str (`_value_` is an attribute lookup; these hash as their str)
_KIND_TEXT: Final[dict[m.TxKind, str]] = {k: k._value_ for k in m.TxKind}
_REASON_TEXT: Final[dict[m.TxReason, str]] = {r: r._value_ for r in m.TxReason}


def _entry_id(entry: Entry) -> int:
    return entry[_ID]  # type: ignore[no-any-return]


def _transaction(entry: Entry) -> m.Transaction:
    return _new_tuple(m.Transaction, (*entry[:_KIND], _KINDS[entry[_KIND]],
                                      _REASONS[entry[_REASON]], *entry[_REASON + 1:]))


_KINDS = {k.value: k for k in m.TxKind}
_REASONS = {r.value: r for r in m.TxReason}


class Journal:
    """Append-only journal, indexed by user and by session."""

    def __init__(self, retain: int = DEFAULT_RETAIN, next_id: int = 1) -> None:
        self.retain = max(1, retain)
        self.next_id = next_id
        self._entries: deque[Entry] = deque()
        self._by_user: dict[str, list[Entry]] = {}
        # A session's only entry is held as is, a list from its second on: most sessions
        # of a million live ones have one entry, and a list would cost 64 bytes more each.
        self._by_session: dict[str, Entry | list[Entry]] = {}
        # Entries past `retain` are dropped this many at a time: enough to amortise the
        # index updates, few enough that one trim is a short pause (4,096: ~5 ms; a
        # sixteenth of 2,000,000 stalled the loop for 100+ ms).
        self._chunk = max(1, min(self.retain // 16, 4096))

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, time: dt.datetime, user_id: str, session_id: str | None,
               reservation_id: str | None, kind: m.TxKind, reason: m.TxReason,
               amount: Decimal, currency: str, counter: str | None = None,
               units: Decimal = Decimal(0), rating: str | None = None) -> m.Transaction:
        """Append one entry and return it as a Transaction (`rating`: which period or
        tier priced it)."""
        tid = self.next_id
        self.next_id = tid + 1
        counters = {counter: units} if units and counter else NO_COUNTERS
        self._append((tid, time, user_id, session_id, reservation_id, _KIND_TEXT[kind],
                      _REASON_TEXT[reason], amount, currency, counters, rating))
        return _new_tuple(_TRANSACTION, (tid, time, user_id, session_id, reservation_id,
                                          kind, reason, amount, currency, counters, rating))

    def add(self, tx: m.Transaction) -> None:
        """Append an existing transaction (recovery)."""
        self._append((*tx[:_KIND], str(tx.kind), str(tx.reason), *tx[_REASON + 1:]))

    def _append(self, entry: Entry) -> None:
        self._entries.append(entry)
        by_user = self._by_user.get(entry[_USER])
        if by_user is None:
            self._by_user[entry[_USER]] = [entry]
        else:
            by_user.append(entry)
        session_id = entry[_SESSION]
        if session_id is not None:
            by_session = self._by_session.get(session_id)
            if by_session is None:
                self._by_session[session_id] = entry
            elif type(by_session) is list:
                by_session.append(entry)
            else:
                self._by_session[session_id] = [by_session, entry]  # type: ignore[list-item]
        if len(self._entries) - self.retain >= self._chunk:
            self._trim()

    def _trim(self) -> None:
        users: Counter[str] = Counter()
        sessions: Counter[str] = Counter()
        for _ in range(len(self._entries) - self.retain):
            entry = self._entries.popleft()
            users[entry[_USER]] += 1
            if entry[_SESSION] is not None:
                sessions[entry[_SESSION]] += 1
        for index, dropped in ((self._by_user, users), (self._by_session, sessions)):
            for key, count in dropped.items():
                entries = index[key]
                if type(entries) is not list or count >= len(entries):
                    del index[key]
                else:
                    del entries[:count]  # the oldest entries of a key come first

    def query(self, user_id: str | None = None, session_id: str | None = None,
              after: int | None = None, limit: int | None = None) -> list[m.Transaction]:
        """Entries in journal order, filtered; `after` is an exclusive transaction id."""
        source: Iterable[Entry]
        if session_id is not None:
            found = self._by_session.get(session_id, [])
            source = found if type(found) is list else [found]  # type: ignore[list-item]
            if user_id is not None:
                source = [e for e in source if e[_USER] == user_id]
        elif user_id is not None:
            source = self._by_user.get(user_id, [])
        else:
            source = self._entries
        entries = source if isinstance(source, list) else list(source)
        start = bisect_right(entries, after, key=_entry_id) if after is not None else 0
        end = len(entries) if limit is None else min(len(entries), start + limit)
        return [_transaction(e) for e in entries[start:end]]
