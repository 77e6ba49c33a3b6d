"""The expiry queue: an indexed heap of the charging sessions themselves.

Its order must be the order of the true keys (deadline, then the order in which deadlines
were set), whatever the heap did in between, so that the live run, a replay and a restart
from a snapshot agree: a model that sorts by those keys is kept here and both are driven
by the same random steps.
"""

from __future__ import annotations

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
    """The order the queue must give: every item due by now, sorted by (deadline, the
    sequence handed out when that deadline was set)."""

    def __init__(self, items: Items) -> None:
        self.items = items
        self.seq = 0
        self.entry: dict[int, tuple[float, int, Queued]] = {}   # name -> its true key

    def push(self, item: Queued) -> None:
        self.seq += 1
        self.entry[self.items.name[item]] = (item.expires_at, self.seq, item)

    def pop_due(self, now: float, limit: int) -> list[Queued]:
        live = [(at, seq, name) for name, (at, seq, item) in self.entry.items()
                if at <= now and item not in self.items.dead]
        due = [self.entry.pop(name)[2] for _, _, name in sorted(live)[:limit]]
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


def test_equal_deadlines_come_due_in_the_order_they_were_set_whatever_ran_between() -> None:
    """x (deadline 10), y (20), then x moved to 20: y's deadline was set first. Whether
    a timer run looked at the queue between (at 15) or not, y comes due first."""
    for look_between in (False, True):
        queue = ExpiryQueue()
        x, y = Item(10.0, 1), Item(20.0, 2)
        queue.push(x)
        queue.push(y)
        x.expires_at = 20.0
        queue.push(x)
        if look_between:
            assert queue.pop_due(15.0, 10) == []
        assert queue.pop_due(20.0, 1) == [y]
        assert queue.pop_due(20.0, 1) == [x]


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
def test_pops_in_the_order_of_the_true_keys_whatever_the_heap_did(
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
