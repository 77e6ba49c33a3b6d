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

from protocol import messages as m

NO_COUNTERS: Mapping[str, Decimal] = m.Transaction._field_defaults["counters"]  # shared {}
_new_tuple = tuple.__new__
DEFAULT_RETAIN = 2_000_000


def _tx_id(tx: m.Transaction) -> int:
    return tx.transaction_id


class Journal:
    """Append-only list of `Transaction`s, indexed by user and by session."""

    def __init__(self, retain: int = DEFAULT_RETAIN, next_id: int = 1) -> None:
        self.retain = max(1, retain)
        self.next_id = next_id
        self._entries: deque[m.Transaction] = deque()
        self._by_user: dict[str, list[m.Transaction]] = {}
        self._by_session: dict[str, list[m.Transaction]] = {}
        self._chunk = max(1, self.retain // 16)

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, time: dt.datetime, user_id: str, session_id: str | None,
               reservation_id: str | None, kind: m.TxKind, reason: m.TxReason,
               amount: Decimal, currency: str, counter: str | None = None,
               units: Decimal = Decimal(0)) -> m.Transaction:
        """Append one entry and return it."""
        tx = _new_tuple(m.Transaction, (
            self.next_id, time, user_id, session_id, reservation_id, kind, reason, amount,
            currency, {counter: units} if units and counter else NO_COUNTERS))
        self.next_id += 1
        self.add(tx)
        return tx

    def add(self, tx: m.Transaction) -> None:
        """Append an existing entry (used by `record` and by recovery)."""
        self._entries.append(tx)
        by_user = self._by_user.get(tx.user_id)
        if by_user is None:
            self._by_user[tx.user_id] = [tx]
        else:
            by_user.append(tx)
        if tx.session_id is not None:
            by_session = self._by_session.get(tx.session_id)
            if by_session is None:
                self._by_session[tx.session_id] = [tx]
            else:
                by_session.append(tx)
        if len(self._entries) - self.retain >= self._chunk:
            self._trim()

    def _trim(self) -> None:
        users: Counter[str] = Counter()
        sessions: Counter[str] = Counter()
        for _ in range(len(self._entries) - self.retain):
            tx = self._entries.popleft()
            users[tx.user_id] += 1
            if tx.session_id is not None:
                sessions[tx.session_id] += 1
        for index, dropped in ((self._by_user, users), (self._by_session, sessions)):
            for key, count in dropped.items():
                entries = index[key]
                if count >= len(entries):
                    del index[key]
                else:
                    del entries[:count]  # the oldest entries of a key come first

    def query(self, user_id: str | None = None, session_id: str | None = None,
              after: int | None = None, limit: int | None = None) -> list[m.Transaction]:
        """Entries in journal order, filtered; `after` is an exclusive transaction id."""
        source: Iterable[m.Transaction]
        if session_id is not None:
            source = self._by_session.get(session_id, [])
            if user_id is not None:
                source = [tx for tx in source if tx.user_id == user_id]
        elif user_id is not None:
            source = self._by_user.get(user_id, [])
        else:
            source = list(self._entries)
        entries = list(source) if not isinstance(source, list) else source
        start = bisect_right(entries, after, key=_tx_id) if after is not None else 0
        end = len(entries) if limit is None else min(len(entries), start + limit)
        return entries[start:end]
