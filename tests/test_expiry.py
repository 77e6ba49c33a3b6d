"""The expiry heap's rebuilds: only when enough of it is stale to be worth it."""

from __future__ import annotations

from cc_server.engine.expiry import ExpiryQueue


class Item:
    def __init__(self, at: float) -> None:
        self.expires_at = at
        self.expiry_seq = 0
        self.queued_at = at
        self.alive = True


def test_a_mostly_live_heap_is_not_rebuilt_and_a_mostly_stale_one_is() -> None:
    items = [Item(1000.0 + i) for i in range(5000)]
    live = [len(items)]
    queue = ExpiryQueue(lambda: live[0])
    for item in items:
        queue.push(item)
    assert len(queue) == 5000                    # nothing stale: never rebuilt
    for item in items[:4500]:                    # more than half will be stale at the check
        item.alive = False
    live[0] = 500
    for i in range(5000):                        # enough pushes to reach the next check
        extra = Item(9000.0 + i)
        items.append(extra)
        queue.push(extra)
        live[0] += 1
    assert len(queue) == 5500                    # the 4,500 stale entries were dropped
    due = queue.pop_due(20_000.0, 100_000)
    assert len(due) == 5500 and all(item.alive for item in due)


def test_without_a_live_count_the_heap_is_rebuilt_when_it_doubles() -> None:
    queue = ExpiryQueue()
    items = [Item(1000.0 + i) for i in range(2048)]
    for item in items:
        queue.push(item)
    assert len(queue) == 2048
    for item in items:
        item.alive = False
    queue.push(Item(5000.0))
    for i in range(2100):
        queue.push(Item(6000.0 + i))
    assert len(queue) < 4096
