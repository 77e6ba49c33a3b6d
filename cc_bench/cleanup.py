"""Removing what runs left on a long-lived server: `--cleanup` after a run, and
`cc-bench cleanup --prefix P` at any time.

Every id a run creates starts with its run prefix (`bench` and 11 more characters, printed
at the end of each run): its subscribers `P-u<i>`, `P-n<i>` and `P-probe`, and its
sessions `P-s<i>`, `P-live<i>`, `P-probe`. Removing the run's subscribers with `force`
first cancels each session still open under them, releasing what it holds (the public
operator API: `list_subscribers`, `delete_subscriber`). The journal keeps their entries.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import cc_client
from cc_client import ChargingError, Client, UserUnknown

from .settings import DEFAULT_SERVER, HelpFormatter
from .tls import add_tls_options, tls_context

BATCH = 256                   # delete_subscriber calls in flight at once
RUN_PREFIX = "bench"          # how every run prefix begins (provision.run_prefix)


@dataclass(slots=True)
class Removed:
    """What a clean-up removed (or, dry, would remove)."""

    prefix: str
    subscribers: int = 0
    sessions: int = 0           # sessions cancelled because they still held reservations
    releases: int = 0           # reservations those cancellations released

    def text(self, dry_run: bool = False) -> str:
        """One line for the operator."""
        if dry_run:
            return f"would remove {self.subscribers:,} subscribers with prefix {self.prefix!r}"
        return (f"removed {self.subscribers:,} subscribers with prefix {self.prefix!r} and "
                f"cancelled {self.sessions:,} sessions still open ({self.releases:,} "
                f"reservations released)")

    def to_dict(self) -> dict[str, int | str]:
        """JSON-ready figures."""
        return {"prefix": self.prefix, "subscribers": self.subscribers,
                "sessions": self.sessions, "releases": self.releases}


async def remove_run(client: Client, prefix: str, dry_run: bool = False) -> Removed:
    """Delete every subscriber whose id starts with `prefix` (force: their open sessions
    are cancelled first). A subscriber removed meanwhile by someone else is skipped."""
    if not prefix.strip():
        raise ValueError("the prefix must not be empty")
    found = await client.admin.list_subscribers(prefix=prefix)
    out = Removed(prefix, subscribers=0 if not dry_run else len(found))
    if dry_run:
        return out
    sessions: set[str] = set()

    async def remove(user_id: str) -> None:
        try:
            releases = await client.admin.delete_subscriber(user_id, force=True)
        except UserUnknown:
            return
        out.subscribers += 1
        out.releases += len(releases)
        sessions.update(tx.session_id for tx in releases if tx.session_id)

    for first in range(0, len(found), BATCH):
        await asyncio.gather(*(remove(sub.user_id) for sub in found[first:first + BATCH]))
    out.sessions = len(sessions)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The parser of `cc-bench cleanup`."""
    p = argparse.ArgumentParser(
        prog="cc-bench cleanup", formatter_class=HelpFormatter,
        description=textwrap.fill(
            "Remove what cc-bench runs left on a server: every subscriber whose id starts "
            "with PREFIX, after cancelling its open sessions. Each run prints its prefix; "
            f"'--prefix {RUN_PREFIX}' removes what every run left.", 79))
    p.add_argument("--prefix", required=True,
                   help="a run's id prefix (from its report), or any start of one "
                        "(required, no default)")
    p.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT",
                   help="the server")
    p.add_argument("--user", help="user name, when the server has a users file "
                                  "(default: none, no login)")
    p.add_argument("--password", help="its password (default: none)")
    p.add_argument("--request-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for each reply")
    p.add_argument("--dry-run", action="store_true",
                   help="only count the subscribers that would be removed")
    add_tls_options(p.add_argument_group("TLS"))
    return p


async def _cleanup(args: argparse.Namespace) -> Removed:
    ssl = tls_context(args.tls, args.tls_ca, args.tls_cert, args.tls_key)
    async with cc_client.connect(args.server, user=args.user, password=args.password,
                                       request_timeout=args.request_timeout, ssl=ssl,
                                       client_name="cc-bench") as client:
        return await remove_run(client, args.prefix, args.dry_run)


def cleanup_main(argv: Sequence[str]) -> int:
    """`cc-bench cleanup ...`; the exit status (0 done, 1 failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.prefix.strip():
        parser.error("--prefix must not be empty")
    if not args.request_timeout > 0:
        parser.error("--request-timeout must be > 0")
    try:
        tls_context(args.tls, args.tls_ca, args.tls_cert, args.tls_key)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        removed = asyncio.run(_cleanup(args))
    except ChargingError as exc:
        print(f"cc-bench cleanup: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    print(f"cc-bench cleanup: {removed.text(args.dry_run)}", flush=True)
    return 0
