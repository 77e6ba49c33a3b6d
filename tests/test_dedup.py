"""The exactly-once outcome cache: held for the window, bounded, snapshot round trip."""

from __future__ import annotations

from cc_server.dedup import ANY_BODY, OutcomeCache, digest

T0 = 1_000.0


def reply(n: int) -> tuple[int, bytes]:
    return 0x90, f"body-{n}".encode()


def test_a_stored_reply_comes_back_until_the_window_has_passed() -> None:
    cache = OutcomeCache(window=10.0)
    cache.put(("alice", b"op1"), reply(1), T0 + 0.01)
    assert cache.get(("alice", b"op1")) == reply(1)
    assert cache.get(("bob", b"op1")) is False      # another user's id: nothing
    assert cache.expire(T0 + 9.9) == 0
    assert cache.get(("alice", b"op1")) == reply(1)
    assert cache.expire(T0 + 10.05) == 0                     # deadlines round up to 0.1 s
    assert cache.expire(T0 + 10.1) == 1
    assert cache.get(("alice", b"op1")) is False and len(cache) == 0
    assert cache.hits == 2


def test_entries_expire_oldest_first_and_a_late_clock_never_expires_early() -> None:
    cache = OutcomeCache(window=10.0)
    for n in range(30):
        cache.put(("u", f"op{n}".encode()), reply(n), T0 + n * 0.05)
    cache.put(("u", b"late"), reply(99), T0 - 5)   # the wall clock stepped back
    assert cache.expire(T0 + 10.5) == 11            # op0..op9 and op10 (T0 + 0.5)
    assert cache.get(("u", b"late")) == reply(99)   # not before its neighbours
    assert cache.items()[0][0] == ("u", b"op11")
    assert cache.expire(T0 + 20) == 20 and len(cache) == 0


def test_the_entry_bound_forgets_nothing_and_says_full() -> None:
    cache = OutcomeCache(window=600.0, max_entries=5)
    for n in range(5):
        assert not cache.full
        cache.put(("u", bytes([n])), reply(n), T0 + n)
    assert cache.full and len(cache) == 5
    cache.put(("u", bytes([5])), reply(5), T0 + 5)      # replay: held, never dropped
    assert [cache.get(("u", bytes([n]))) for n in range(6)] == [reply(n) for n in range(6)]
    assert cache.expire(T0 + 601.1) == 2 and not cache.full   # aged out: room again


def test_items_and_restore_round_trip_in_order() -> None:
    cache = OutcomeCache(window=60.0)
    for n in range(5):
        cache.put((f"user{n % 2}", bytes([n])), reply(n), T0 + n)
    copy = OutcomeCache(window=60.0)
    for key, deadline, stored, body_digest in cache.items():
        copy.restore(key, deadline, stored, body_digest)
    assert copy.items() == cache.items()
    assert copy.expire(T0 + 62.1) == 3 and len(copy) == 2


def test_a_repeated_put_keeps_the_first_outcome() -> None:
    cache = OutcomeCache(window=60.0)
    cache.put(("u", b"op"), reply(1), T0)
    cache.put(("u", b"op"), reply(2), T0 + 1)
    assert cache.get(("u", b"op")) == reply(1) and len(cache) == 1
    assert cache.expire(T0 + 100) == 1


def test_a_repeat_with_another_body_is_told_apart() -> None:
    cache = OutcomeCache(window=60.0)
    first, second = digest(b"start s-1"), digest(b"start s-2")
    cache.put(("u", b"op"), reply(1), T0, first)
    assert cache.get(("u", b"op"), first) == reply(1)
    assert cache.get(("u", b"op"), second) is True          # same op id, another body
    assert cache.get(("u", b"other"), second) is False
    assert cache.items()[0][3] == first


def test_entries_without_a_digest_match_any_body() -> None:
    """Entries restored from a snapshot written before digests were kept."""
    cache = OutcomeCache(window=60.0)
    cache.restore(("u", b"op"), T0 + 60, reply(1))
    assert cache.get(("u", b"op"), digest(b"anything")) == reply(1)
    assert cache.items()[0][3] == ANY_BODY


def test_keys_that_concatenate_alike_stay_apart() -> None:
    cache = OutcomeCache(window=60.0)
    keys = [("ab", b"c"), ("b", b"ca"), ("", b"cab"), ("cab", b""), ("é\x00", b"\x01"),
            ("\x01é", b"")]
    for n, key in enumerate(keys):
        cache.put(key, reply(n), T0)
    assert [cache.get(key) for key in keys] == [reply(n) for n in range(len(keys))]
    assert [row[0] for row in cache.items()] == keys
    assert len(cache) == len(keys)


def test_a_put_after_a_get_of_another_key_is_stored_under_its_own_key() -> None:
    """`put` reuses the bytes `get` packed for the same key, and only for that key."""
    cache = OutcomeCache(window=10.0)
    assert cache.get(("alice", b"op1")) is False
    cache.put(("alice", b"op2"), reply(2), T0)       # not the key just looked up
    cache.put(("alice", b"op1"), reply(1), T0)       # the key just looked up
    assert cache.get(("alice", b"op2")) == reply(2) and cache.get(("alice", b"op1")) == reply(1)
    assert cache.get(("bob", b"op1")) is False
    cache.put(("bob", b"op1"), reply(3), T0)
    assert [key for key, *_ in cache.items()] == [("alice", b"op2"), ("alice", b"op1"),
                                                  ("bob", b"op1")]


def test_the_body_digest_is_blake2b_of_8_bytes_as_snapshots_keep_it() -> None:
    from hashlib import blake2b

    for body in (b"", b"x", bytes(range(256)) * 3):
        assert digest(body) == blake2b(body, digest_size=8).digest()
    assert digest(b"a") != digest(b"b")
