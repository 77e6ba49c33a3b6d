"""Users, password hashes, and the handshake's authentication (SPEC section 5).

Users file (TOML, written by `cc-admin user add`, read here at start and on SIGHUP)::

    [users.gw1]
    password = "scrypt$16384$8$1$<salt, base64>$<key, base64>"
    roles = ["charging"]

A hash string carries everything needed to check it: scheme, scrypt cost parameters
(n, r, p), a random per-user salt and the derived key; `verify_password` compares keys
with `hmac.compare_digest`. (cc-admin, which may not import the server, writes the same
format with its own few lines; tests/test_auth.py keeps the two in step.) scrypt costs
tens of milliseconds on purpose, so the server runs it on a small thread pool, never on
the event loop (`Authenticator`).

Back-off: a handshake is in flight from the moment its HELLO arrives, and the checks of
one peer address run one at a time, in arrival order (parallel guesses are serial ones).
An address with `max_failures` failed handshakes within `window` seconds has each further
check delayed (0.25 s, doubling, at most `backoff_max`); a HELLO arriving from it while
one of its handshakes still open waits for a check is refused at once. Timers only
(`loop.call_later`), nothing sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Protocol

from protocol import messages as m

from .ratelog import RateLimitedLog
from .tomlfile import read_toml

log = logging.getLogger("cc_server")
SCHEME = "scrypt"
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2**14, 8, 1      # 16 MiB and ~40 ms per check
SALT_BYTES, KEY_BYTES = 16, 32
MAX_N, MAX_R, MAX_P = 2**20, 32, 16
ROLES = frozenset({"charging", "admin"})
BACKOFF_FIRST = 0.25           # seconds; doubles with every further failure
MAX_TRACKED_PEERS = 10_000     # addresses whose failures are remembered (oldest dropped)

Roles = frozenset[str]


class UsersFileError(ValueError):
    """A users file that cannot be used (the server refuses to start)."""


# ---------------------------------------------------------------------------- hashes

@dataclass(frozen=True, slots=True)
class ScryptHash:
    """A parsed hash string."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def derive(self, password: str) -> bytes:
        """The key `password` gives with this hash's salt and parameters."""
        return _scrypt(password, self.salt, self.n, self.r, self.p, len(self.key))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=maxmem, dklen=size)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P,
                  salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$key` for `password`, with a fresh random salt."""
    if not password:
        raise ValueError("the password must not be empty")
    _check_params(n, r, p)
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = _scrypt(password, salt, n, r, p, KEY_BYTES)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(key)}"


def _check_params(n: int, r: int, p: int) -> None:
    if not (2 <= n <= MAX_N and n & (n - 1) == 0):
        raise ValueError(f"scrypt n must be a power of two in 2..{MAX_N}, not {n}")
    if not (1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise ValueError(f"scrypt r must be in 1..{MAX_R} and p in 1..{MAX_P}")


def parse_hash(stored: str) -> ScryptHash:
    """The parts of a hash string (ValueError if it is not one)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError(f"not a {SCHEME} hash: expected {SCHEME}$n$r$p$salt$key "
                         "(made by `cc-admin user add`)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        raise ValueError("malformed scrypt hash (bad number or base64)") from None
    _check_params(n, r, p)
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        raise ValueError("scrypt hash with a salt under 8 bytes or a key not of 16..64 bytes")
    return ScryptHash(n, r, p, salt, key)


def verify_password(password: str, stored: str | ScryptHash) -> bool:
    """True if `password` matches the hash (constant-time comparison)."""
    parsed = parse_hash(stored) if isinstance(stored, str) else stored
    return hmac.compare_digest(parsed.derive(password), parsed.key)


# ---------------------------------------------------------------------------- users file

@dataclass(frozen=True, slots=True)
class User:
    """One entry of the users file."""

    name: str
    password: str          # the hash string
    roles: Roles


def load_users(path: str | os.PathLike[str]) -> dict[str, User]:
    """Read and check a users file (UsersFileError on anything wrong)."""
    where = str(path)
    data = read_toml(path, "users file", UsersFileError)
    extra = set(data) - {"users"}
    if extra:
        raise UsersFileError(f"users file {where}: unknown key(s) {sorted(extra)}; "
                             "expected [users.NAME] tables")
    table = data.get("users", {})
    if not isinstance(table, dict):
        raise UsersFileError(f"users file {where}: 'users' must be a table")
    return {name: _user(name, spec, where) for name, spec in table.items()}


def _user(name: str, spec: Any, where: str) -> User:
    at = f"users file {where}, user {name!r}"
    if not name or len(name) > m.MAX_ID_LENGTH:
        raise UsersFileError(f"{at}: a user name has 1 to {m.MAX_ID_LENGTH} characters")
    if not isinstance(spec, dict):
        raise UsersFileError(f"{at}: expected a table with password and roles")
    extra = set(spec) - {"password", "roles"}
    if extra:
        raise UsersFileError(f"{at}: unknown key(s) {sorted(extra)}")
    password, roles = spec.get("password"), spec.get("roles")
    if not isinstance(password, str):
        raise UsersFileError(f"{at}: 'password' must be a hash string")
    try:
        parsed = parse_hash(password)
    except ValueError as exc:
        raise UsersFileError(f"{at}: {exc}") from None
    if parsed.n < DEFAULT_N or parsed.r < DEFAULT_R or parsed.p < DEFAULT_P:
        raise UsersFileError(
            f"{at}: scrypt n={parsed.n} r={parsed.r} p={parsed.p} is weaker than the "
            f"n={DEFAULT_N} r={DEFAULT_R} p={DEFAULT_P} that `cc-admin user add` writes; "
            "set the password again with it")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise UsersFileError(f"{at}: 'roles' must be a non-empty list of "
                             f"{sorted(ROLES)}")
    unknown = set(roles) - ROLES
    if unknown:
        raise UsersFileError(f"{at}: unknown role(s) {sorted(unknown)}; known: {sorted(ROLES)}")
    return User(name, password, frozenset(roles))


def exposure(path: str | os.PathLike[str]) -> str | None:
    """A warning when group or others may access the users file (as ssh says of keys):
    its hashes can then be guessed offline. None when it is private (or unreadable)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (f"users file {path} is open to group or others (mode {mode:04o}); anyone who "
            f"can read it can guess passwords offline: chmod 600 {path}")


# ---------------------------------------------------------------------------- handshake

class Peer(Protocol):
    """What the authenticator needs of a connection."""

    name: str
    peer_ip: str
    closed: bool

    def authenticated(self, roles: Roles | None, reason: str = "") -> None: ...


Hook = Callable[[str | None, str | None, Any], Roles | None]


class Later(Enum):
    """`begin`'s answer when the verdict comes later, through `peer.authenticated`."""

    PENDING = "pending"


PENDING = Later.PENDING
Verdict = Roles | Literal[Later.PENDING] | None


def _table(users: dict[str, User] | None) -> dict[str, tuple[ScryptHash, Roles]]:
    return {name: (parse_hash(u.password), u.roles) for name, u in (users or {}).items()}


class Authenticator:
    """Checks HELLO credentials off the event loop and backs off failing peer addresses."""

    def __init__(self, users: dict[str, User] | None, hook: Hook,
                 loop: asyncio.AbstractEventLoop, *, max_failures: int = 5,
                 window: float = 60.0, backoff_max: float = 5.0, workers: int = 2) -> None:
        self.users = users
        # one dict, swapped whole by `replace_users`: a check on the pool reads it once
        self._table = _table(users)
        # unknown users are checked against this, so both cost the same time
        self._decoy = parse_hash(hash_password(secrets.token_hex(8))) if users else None
        self.hook = hook
        self.loop = loop
        self.max_failures = max_failures
        self.window = window
        self.backoff_max = backoff_max
        self.counts: Counter[str] = Counter()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # address -> its handshakes: the one under way first, then those waiting
        self._lines: dict[str, deque[tuple[Peer, str | None, str | None]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._log = RateLimitedLog(log)

    def begin(self, peer: Peer, user: str | None, password: str | None) -> Verdict:
        """Roles now (or None: refused), or PENDING: `peer.authenticated` is called later.

        The handshake is in flight from here: the checks of one address run one at a
        time, in arrival order, so parallel guesses meet the back-off as serial ones do.
        """
        ip = peer.peer_ip
        attempt = (peer, user, password)
        line = self._lines.get(ip)
        if line is not None:                  # one of this address's is under way
            failures = self._recent(ip, self.loop.time())
            if failures >= self.max_failures and any(not p.closed for p, _, _ in line):
                self.counts["refused_backoff"] += 1
                self._log.info("auth_backoff_refused", "peer=%s failures=%d", peer.name,
                               failures)
                return None
            line.append(attempt)
            self.counts["queued"] += 1
            return PENDING
        self._lines[ip] = deque([attempt])
        verdict = self._start(peer, user, password)
        if verdict is not PENDING:
            del self._lines[ip]
        return verdict

    def _start(self, peer: Peer, user: str | None, password: str | None) -> Verdict:
        """The check of the handshake first in its address's line: delayed when the
        address is backed off, else run (off the loop with a users file)."""
        failures = self._recent(peer.peer_ip, self.loop.time())
        if failures < self.max_failures:
            return self._check_now(peer, user, password)
        delay = min(self.backoff_max, BACKOFF_FIRST * 2 ** min(failures - self.max_failures, 30))
        self.counts["delayed"] += 1
        self._log.info("auth_backoff", "peer=%s failures=%d delay=%.2f", peer.name, failures,
                       delay)
        self.loop.call_later(delay, self._after_delay, peer, user, password)
        return PENDING

    def _check_now(self, peer: Peer, user: str | None, password: str | None) -> Verdict:
        if self.users is None:
            try:
                roles = self.hook(user, password, peer)
            except Exception:                 # an embedder's bug: refuse, and say so
                log.exception("event=auth_hook_failed peer=%s", peer.name)
                roles = None
            self._record(peer, user, roles)
            return roles
        self._verify(peer, user, password)
        return PENDING

    def _after_delay(self, peer: Peer, user: str | None, password: str | None) -> None:
        if peer.closed:
            self._next(peer.peer_ip)
            return
        verdict = self._check_now(peer, user, password)
        if verdict is not PENDING:
            self._deliver(peer, verdict)

    def _deliver(self, peer: Peer, roles: Roles | None) -> None:
        """Tell `peer` its verdict, then start the next check of its address (whatever
        happens: a line that never moves would lock its address out)."""
        try:
            if not peer.closed:
                peer.authenticated(roles)
        finally:
            self._next(peer.peer_ip)

    def _next(self, ip: str) -> None:
        """The check of `ip` under way (first in its line) is over: start the next."""
        line = self._lines.get(ip)
        if line:
            line.popleft()
        while line:
            peer, user, password = line[0]
            if peer.closed:                   # gave up (or timed out) while queued
                line.popleft()
                continue
            verdict = self._start(peer, user, password)
            if verdict is not PENDING:        # first in line until it is told
                self.loop.call_soon(self._deliver, peer, verdict)
            return
        self._lines.pop(ip, None)

    def _verify(self, peer: Peer, user: str | None, password: str | None) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="cc-auth")
        future = self.loop.run_in_executor(self._pool, self._check, peer, user, password)

        def done(f: asyncio.Future[Roles | None]) -> None:
            if f.cancelled():                 # the server is shutting down
                return
            roles = None if f.exception() is not None else f.result()
            self._record(peer, user, roles)
            self._deliver(peer, roles)

        future.add_done_callback(done)

    def _check(self, peer: Peer, user: str | None, password: str | None) -> Roles | None:
        """Runs on the pool: the scrypt check."""
        if peer.closed or self.users is None or self._decoy is None:
            return None                       # gave up while queued: spare the CPU
        entry = self._table.get(user) if user is not None else None
        ok = verify_password(password or "", entry[0] if entry else self._decoy)
        if not ok or entry is None:
            return None
        return entry[1]

    def replace_users(self, users: dict[str, User]) -> None:
        """Use a newly read users file from now on (a server started with one only).
        Connections already authenticated keep their roles until they reconnect."""
        if self.users is None:
            raise ValueError("the server runs without a users file; restart to add one")
        self._table = _table(users)
        self.users = users

    def _recent(self, ip: str, now: float) -> int:
        stamps = self._failures.get(ip)
        if stamps is None:
            return 0
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[ip]
            return 0
        return len(stamps)

    def _record(self, peer: Peer, user: str | None, roles: Roles | None) -> None:
        if roles is not None:
            self.counts["ok"] += 1
            return
        self.counts["failed"] += 1
        ip = peer.peer_ip
        stamps = self._failures.get(ip)
        if stamps is None:
            stamps = self._failures[ip] = deque(maxlen=64)
            while len(self._failures) > MAX_TRACKED_PEERS:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(ip)
        stamps.append(self.loop.time())
        self._log.warning("auth_failed", "peer=%s user=%r failures=%d", peer.name,
                          (user or "")[:64], len(stamps))

    def stats(self) -> dict[str, int]:
        """Counts for admin.stats()."""
        return {**self.counts, "peers_backed_off": sum(
            1 for s in self._failures.values() if len(s) >= self.max_failures)}

    def close(self) -> None:
        """Stop the worker threads (queued checks are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
