"""Whole-state snapshots: engine, exactly-once window and pending notifications as msgpack.

A snapshot is the state *before* the first record of the WAL segment it is named after,
so recovery loads it and replays that segment and the later ones. Written to a temporary
file, fsynced, read back and checked, then renamed: a crash leaves either the old snapshot
or the new one.

File layout: the 8-byte magic `CCSNAP2\n`, the body's length (8 bytes, big-endian) and its
CRC-32 (4 bytes), then the body (msgpack). A file failing any of these checks is refused
(`SnapshotError`). Files of format 1 (msgpack only, written before checksums) still load.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

from protocol import codec
from protocol import messages as m

from .dedup import OutcomeCache
from .engine import Catalog, ChargingSession, Engine, PricePlan, Session
from .engine.accounts import Account
from .engine.catalog import SubscriberSeed
from .wal import fsync_dir, read_regular

FORMAT = 2
MAGIC = b"CCSNAP2\n"
HEADER = struct.Struct("!8sQI")      # magic, body length, CRC-32 of the body


class SnapshotError(ValueError):
    """A snapshot file that is damaged or of an unknown format."""


def snapshot_path(directory: Path, index: int) -> Path:
    """The snapshot taken before WAL segment `index`."""
    return directory / f"snapshot-{index:08d}.msgpack"


def snapshots(directory: Path) -> list[int]:
    """Indexes of complete snapshots, ascending."""
    found = []
    for path in directory.glob("snapshot-*.msgpack"):
        try:
            found.append(int(path.stem[9:]))
        except ValueError:
            continue
    return sorted(found)


# ------------------------------------------------------------------------ catalog

def catalog_to_state(catalog: Catalog) -> dict[str, Any]:
    """The catalog as plain data (kept with the state: replay must price as before).
    A catalog read from a file keeps that file's content too (`source`: its price plans,
    periods, tiers and allowances), and is rebuilt from it."""
    state: dict[str, Any] = {
        "plans": [[p.service_id, p.item, p.quantity, p.step, dict(p.prices), p.allowance]
                  for p in catalog.plans.values()],
        "subscribers": [[s.user_id, s.balance, s.currency, dict(s.counters)]
                        for s in catalog.subscribers]}
    if catalog.source is not None:
        state["source"] = catalog.source
    return state


def catalog_from_state(state: dict[str, Any]) -> Catalog:
    """Inverse of `catalog_to_state`."""
    if "source" in state:
        return Catalog.from_dict(state["source"], "catalog kept with the snapshot")
    plans = [PricePlan(*row) for row in state["plans"]]
    return Catalog({(p.service_id, p.item): p for p in plans},
                   tuple(SubscriberSeed(*row) for row in state["subscribers"]))


# ------------------------------------------------------------------------ engine

def _item(item: m.ChargeableItem | None) -> Any:
    return codec.item_to_wire(item)


def engine_to_state(engine: Engine) -> dict[str, Any]:
    """Everything the engine holds, as plain data."""
    accounts = [[a.user_id, a.currency, a.balance, a.counters,
                 [[cs.session.session_id, cs.reservation_id] for cs in a.hungry]]
                for a in engine.accounts.values()]
    sessions = []
    for s in engine.sessions.values():
        charging = [[cs.reservation_id, _item(cs.item), cs.ttl, cs.expires_at, cs.expiry_seq,
                     cs.resolution, cs.inverse, cs.held, cs.counter, cs.units, cs.open,
                     cs.starved, cs.reduced] for cs in s.charging_sessions()]
        sessions.append([s.session_id, s.user_id, s.service_id, s.created_at, s.listener_id,
                         s.external_data, s.result_type, s.cleanup_result_type,
                         s.filter_transaction, charging])
    return {"accounts": accounts, "sessions": sessions,
            "journal": {"next_id": engine.journal.next_id,
                        "entries": [codec.tx_to_wire(t) for t in engine.journal.query()]},
            "expiry_seq": engine.expiry.seq,
            "refill_mark": engine.refill_mark,
            "plans": {a.user_id: [a.plan, list(a.plan_next) if a.plan_next else None]
                      for a in engine.accounts.values()
                      if a.plan is not None or a.plan_next is not None},
            "renewals": [[cs.session.session_id, cs.reservation_id, reason]
                         for cs, reason in engine.renewals.items()]}


def _charging(engine: Engine, session_id: str, reservation_id: str) -> ChargingSession:
    cs = engine.sessions[session_id].charging_session(reservation_id)
    if cs is None:
        raise KeyError(f"no charging session {reservation_id!r} in {session_id!r}")
    return cs


def engine_from_state(state: dict[str, Any], catalog: Catalog, journal_retain: int) -> Engine:
    """Rebuild an engine (expiry queue included) from `engine_to_state`'s output."""
    engine = Engine(catalog, journal_retain)
    for user_id, currency, balance, counters, _ in state["accounts"]:
        engine.accounts[user_id] = Account(user_id, balance, currency, counters)
    charging_sessions: list[ChargingSession] = []
    for (sid, user_id, service_id, created, listener, external, rt, crt, filt,
         charging) in state["sessions"]:
        session = Session(sid, user_id, service_id, created, listener, external,
                          m.ResultType(rt), m.ResultType(crt), filt)
        account = engine.accounts[user_id]
        for (rid, item, ttl, expires, seq, resolution, inverse, held, counter, units, is_open,
             starved, reduced) in charging:
            stored = codec.item_from_wire(item)
            assert stored is not None
            cs = ChargingSession(session, rid, stored, ttl, expires, m.Resolution(resolution),
                                 inverse)
            cs.expiry_seq, cs.held, cs.counter, cs.units = seq, held, counter, units
            cs.open, cs.starved, cs.reduced = is_open, starved, reduced
            session.add_charging_session(cs)
            charging_sessions.append(cs)
            if is_open:
                account.hold(held, counter, units)
                engine.tally.open_reservations += 1
        engine.sessions[sid] = session
        account.sessions[sid] = None
    engine.expiry.restore(charging_sessions, state["expiry_seq"])
    engine.refill_mark = state.get("refill_mark")
    for user_id, (plan, plan_next) in state.get("plans", {}).items():
        account = engine.accounts[user_id]
        account.plan = plan
        account.plan_next = (plan_next[0], plan_next[1]) if plan_next else None
    for user_id, _, _, _, hungry in state["accounts"]:
        account = engine.accounts[user_id]
        for sid, rid in hungry:
            account.hungry[_charging(engine, sid, rid)] = None
    for sid, rid, reason in state["renewals"]:
        engine.renewals[_charging(engine, sid, rid)] = m.RenewalReason(reason)
    engine.journal.next_id = state["journal"]["next_id"]
    for entry in state["journal"]["entries"]:
        engine.journal.add(codec.tx_from_wire(entry))
    return engine


# ------------------------------------------------------------------------ files

def tmp_path(directory: Path, index: int) -> Path:
    """Where snapshot `index` is written before it is complete."""
    return snapshot_path(directory, index).with_suffix(".tmp")


def encode_snapshot(state: dict[str, Any]) -> bytes:
    """A whole snapshot file: header with checksum, then the state."""
    body = codec.pack({"format": FORMAT, **state})
    return HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def decode_snapshot(data: bytes, name: str, unpack: bool = True) -> dict[str, Any]:
    """The state in a snapshot file's bytes; `SnapshotError` if it is damaged. With
    `unpack` false only the header and checksum are checked ({} is returned)."""
    if data.startswith(MAGIC):
        if len(data) < HEADER.size:
            raise SnapshotError(f"{name}: header cut short")
        _, length, crc = HEADER.unpack_from(data)
        body = memoryview(data)[HEADER.size:]
        if len(body) != length:
            raise SnapshotError(f"{name}: {len(body)} bytes of body, the header says {length}")
        if zlib.crc32(body) != crc:
            raise SnapshotError(f"{name}: checksum mismatch")
        expected = FORMAT
        if not unpack:
            return {}
    else:
        body, expected = memoryview(data), 1     # format 1: no header, no checksum
    try:
        state = codec.unpack(bytes(body))
    except Exception as exc:
        raise SnapshotError(f"{name}: not a snapshot ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != expected:
        raise SnapshotError(f"{name}: unknown snapshot format")
    return state


def write_snapshot(directory: Path, index: int, state: dict[str, Any]) -> Path:
    """Write `state` as snapshot `index` atomically and durably, checked before it counts."""
    path, tmp = snapshot_path(directory, index), tmp_path(directory, index)
    data = encode_snapshot(state)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        del data
        decode_snapshot(tmp.read_bytes(), tmp.name, unpack=False)   # as on disk
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    fsync_dir(directory)
    return path


def read_snapshot(directory: Path, index: int) -> dict[str, Any]:
    """Load snapshot `index` (`SnapshotError` when it is damaged, `wal.NotRegularFile`
    when it is a FIFO, a device...)."""
    path = snapshot_path(directory, index)
    return decode_snapshot(read_regular(path), path.name)


def dedup_to_state(cache: OutcomeCache) -> list[Any]:
    """The exactly-once window as plain data."""
    return [[user, op, deadline, msg_type, body, digest]
            for (user, op), deadline, (msg_type, body), digest in cache.items()]


def dedup_restore(cache: OutcomeCache, rows: list[Any]) -> None:
    """Refill an outcome cache from `dedup_to_state`'s output."""
    for user, op, deadline, msg_type, body, *digest in rows:   # no digest: older snapshot
        cache.restore((user, op), deadline, (msg_type, body), *digest)
