"""The expiry queue: an indexed heap of the charging sessions themselves.

Its order must be exactly the order of the tuple heap it replaced (deadline, then the order
of queueing), so that a write-ahead log written before the change replays to the same
state: a model of that heap is kept here and both are driven by the same random steps.
"""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from cc_server.engine.expiry import ExpiryQueue, Queued


class Items:
    """Queue entries (`Queued`: compiled, it cannot be subclassed here), with the name
    and liveness the model needs kept beside them."""

    def __init__(self) -> None:
        self.name: dict[Queued, int] = {}
        self.dead: set[Queued] = set()

    def __call__(self, at: float, name: int = 0) -> Queued:
        item = Queued(at)
        self.name[item] = name
        return item


Item = Items()


class TupleHeap:
    """The queue as it was: (deadline, sequence, item) tuples, stale entries skipped."""

    def __init__(self, items: Items) -> None:
        self.items = items
        self.heap: list[tuple[float, int, Queued]] = []
        self.seq = 0
        self.entry: dict[int, tuple[int, float]] = {}     # name -> (live seq, its deadline)

    def push(self, item: Queued) -> None:
        live = self.entry.get(self.items.name[item])
        if live is not None and live[1] <= item.expires_at:
            return
        self._add(item)

    def _add(self, item: Queued) -> None:
        self.seq += 1
        self.entry[self.items.name[item]] = (self.seq, item.expires_at)
        heapq.heappush(self.heap, (item.expires_at, self.seq, item))

    def pop_due(self, now: float, limit: int) -> list[Queued]:
        due: list[Queued] = []
        while self.heap and self.heap[0][0] <= now and len(due) < limit:
            _, seq, item = heapq.heappop(self.heap)
            name = self.items.name[item]
            if self.entry.get(name, (0,))[0] != seq or item in self.items.dead:
                continue
            if item.expires_at > now:
                self._add(item)
            else:
                del self.entry[name]
                due.append(item)
        return due


def test_ties_come_due_in_the_order_they_were_queued() -> None:
    queue = ExpiryQueue()
    items = [Item(100.0, n) for n in range(50)]
    for item in reversed(items[25:]):
        queue.push(item)
    for item in items[:25]:
        queue.push(item)
    due = queue.pop_due(100.0, 1000)
    assert [Item.name[i] for i in due] == list(range(49, 24, -1)) + list(range(25))
    assert len(queue) == 0 and all(i.heap_index == -1 for i in due)


def test_a_later_deadline_moves_when_the_old_one_comes_due() -> None:
    queue = ExpiryQueue()
    a, b = Item(10.0, 1), Item(20.0, 2)
    queue.push(a)
    queue.push(b)
    a.expires_at = 30.0
    queue.push(a)                       # later: nothing moves yet
    assert queue.next_deadline() == 10.0
    assert queue.pop_due(15.0, 10) == [] and queue.next_deadline() == 20.0
    assert queue.pop_due(25.0, 10) == [b]
    assert queue.pop_due(30.0, 10) == [a]


def test_an_earlier_deadline_moves_up_at_once() -> None:
    queue = ExpiryQueue()
    items = [Item(100.0 + n, n) for n in range(100)]
    for item in items:
        queue.push(item)
    items[77].expires_at = 5.0
    queue.push(items[77])
    assert queue.next_deadline() == 5.0
    assert queue.pop_due(5.0, 10) == [items[77]]
    assert len(queue) == 99


def test_a_removed_item_never_comes_due_and_leaves_no_entry() -> None:
    queue = ExpiryQueue()
    items = [Item(float(n % 7), n) for n in range(200)]
    for item in items:
        queue.push(item)
    for item in items[::3]:
        queue.remove(item)
        queue.remove(item)                # twice: the second does nothing
    assert len(queue) == 200 - len(items[::3])
    due = queue.pop_due(10.0, 1000)
    assert {Item.name[i] for i in due} == {n for n in range(200) if n % 3}
    assert [i.queued_at for i in due] == sorted(i.queued_at for i in due)


def test_restore_orders_by_deadline_then_sequence() -> None:
    items = [Item(float(n % 4), n) for n in range(40)]
    for n, item in enumerate(items):
        item.expiry_seq = 1000 - n
    queue = ExpiryQueue()
    queue.restore(items, 5000)
    assert queue.seq == 5000
    due = queue.pop_due(10.0, 1000)
    assert due == sorted(items, key=lambda i: (i.expires_at, i.expiry_seq))


steps = st.lists(st.tuples(st.sampled_from(["push", "later", "earlier", "remove", "pop"]),
                           st.integers(0, 29), st.integers(0, 40), st.integers(1, 5)),
                 max_size=300)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_pops_exactly_what_the_tuple_heap_popped_in_the_same_order(
        script: list[tuple[str, int, int, int]]) -> None:
    make = Items()
    queue, model = ExpiryQueue(), TupleHeap(make)
    items = [make(0.0, n) for n in range(30)]
    queued: set[int] = set()
    now = 0.0
    for action, n, delta, limit in script:
        item = items[n]
        if action == "pop":
            now += delta / 4
            got, want = queue.pop_due(now, limit), model.pop_due(now, limit)
            assert got == want
            queued -= {make.name[i] for i in got}
        elif action == "remove":
            queue.remove(item)               # the engine removes a dead session's items
            make.dead.add(item)
            queued.discard(n)
        else:
            if item in make.dead:
                items[n] = item = make(0.0, n)
                model.entry.pop(n, None)
            if n not in queued or action == "push":
                item.expires_at = now + delta
            elif action == "later":
                item.expires_at += delta
            else:
                item.expires_at = max(now, item.expires_at - delta)
            queue.push(item)
            model.push(item)
            queued.add(n)
        assert len(queue) == len(queued)
    assert queue.pop_due(now + 1000, 1000) == model.pop_due(now + 1000, 1000)
