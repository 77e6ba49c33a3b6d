"""cc-admin: the operator command line of the charging server.

    cc-admin [--server HOST:PORT] [--user U --password P] [--timeout S]
             [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] COMMAND ...

A plain user of the public client API (`cc_client.connect(...).admin`). The global options
are accepted before or after the command. Exit status: 0 success, 1 the server refused the
operation, 2 usage error, 3 the server could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import ssl
import sys
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, NoReturn, TextIO

import cc_client
from cc_client.admin_args import MAX_LIMIT, int_range
from cc_client.admin_format import (
    dumps,
    emit,
    flatten,
    session_text,
    sessions_text,
    subscriber_text,
    table,
    to_json,
    transactions_text,
)
from cc_client.admin_mock import add_test_control_commands
from cc_client.admin_plans import EXAMPLES as PLAN_EXAMPLES
from cc_client.admin_plans import CatalogCommandError, add_plan_commands
from cc_client.admin_subscribers import EXAMPLES as SUBSCRIBER_EXAMPLES
from cc_client.admin_subscribers import add_subscriber_commands
from cc_client.admin_users import UserCommandError, add_user_commands
from cc_client.operator import to_decimal
from cc_client.tlsfiles import TlsOptionError, client_context
from protocol import buildinfo
from protocol.money import EXACT, exact_sum, plain

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_SERVER = "127.0.0.1:9500"
DEFAULT_TIMEOUT = 10.0   # longer than a server's default login back-off (5 s)
PROG = "cc-admin"
TX_PAGE = 1000          # journal entries fetched per request when streaming JSON lines

Handler = Callable[[cc_client.Client, argparse.Namespace, TextIO], Awaitable[None]]


class UsageError(Exception):
    """A command line the tool cannot run (exit 2)."""


class BriefParser(argparse.ArgumentParser):
    """Usage errors print the error and a pointer to --help, not the whole usage
    first (exit status 2); sub-command parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        """Print `PROG: error: MESSAGE` and where to find the usage, then exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n"
                              f"Run '{self.prog} --help' for the usage.\n")


# ---------------------------------------------------------------------------- arguments

def parse_amount(text: str) -> Decimal:
    """An exact decimal amount from the command line (argparse type; never a float)."""
    try:
        value = to_decimal(text.strip(), "amount")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid amount {text!r}: {exc}") from None
    if value.as_tuple().exponent > 0:      # type: ignore[operator]  # "1e2" -> 100, exactly
        value = value.quantize(Decimal(1), context=EXACT)
    return value


def parse_counter(text: str) -> tuple[str, Decimal]:
    """NAME=UNITS (argparse type)."""
    name, sep, units = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"invalid counter {text!r}: expected NAME=UNITS")
    return name.strip(), parse_amount(units)


#: an integer in 1..MAX_LIMIT (argparse type: --limit)
parse_positive_int = int_range(1, MAX_LIMIT)


def parse_timeout(text: str) -> float:
    """Seconds > 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}") from None
    if not 0 < value < 86_400:
        raise argparse.ArgumentTypeError(f"timeout must be > 0 seconds, not {text}")
    return value


def version_text(prog: str) -> str:
    """`cc-admin 0.1.0 (compiled build, Python 3.11.9)`: what --version prints."""
    python = ".".join(map(str, sys.version_info[:3]))
    return f"{prog} {cc_client.__version__} ({buildinfo.build()} build, Python {python})"


def add_global_options(parser: argparse.ArgumentParser, *, user_flag: bool = True) -> None:
    """The connection options; defaults are resolved after parsing (see `resolve_globals`).

    Commands with their own `--user` filter take the login only as `--auth-user`.
    """
    group = parser.add_argument_group("connection options (before or after the command)")
    group.add_argument("--server", metavar="HOST:PORT", default=argparse.SUPPRESS,
                       help=f"server address; several, comma-separated, mean failover "
                            f"(default: $CC_SERVER or {DEFAULT_SERVER})")
    flags = ["--user", "--auth-user"] if user_flag else ["--auth-user"]
    group.add_argument(*flags, dest="auth_user", metavar="U", default=argparse.SUPPRESS,
                       help="log in as this operator (default: $CC_USER)")
    group.add_argument("--password", metavar="P", default=argparse.SUPPRESS,
                       help="password of the operator (default: $CC_PASSWORD)")
    group.add_argument("--timeout", metavar="S", type=parse_timeout, default=argparse.SUPPRESS,
                       help=f"seconds to wait for the server (default: {DEFAULT_TIMEOUT:g})")
    group.add_argument("--tls", action="store_true", default=argparse.SUPPRESS,
                       help="connect with TLS, checking the server against the system's CAs")
    group.add_argument("--tls-ca", metavar="FILE", default=argparse.SUPPRESS,
                       help="connect with TLS, checking the server against this CA (PEM)")
    group.add_argument("--tls-cert", metavar="FILE", default=argparse.SUPPRESS,
                       help="client certificate (PEM) for a server that asks for one")
    group.add_argument("--tls-key", metavar="FILE", default=argparse.SUPPRESS,
                       help="private key of --tls-cert")


def resolve_globals(args: argparse.Namespace) -> None:
    """Fill the connection options not given with the environment or the defaults."""
    server = getattr(args, "server", None) or os.environ.get("CC_SERVER") or DEFAULT_SERVER
    args.addresses = [a.strip() for a in server.split(",") if a.strip()]
    if not args.addresses:
        raise UsageError(f"no server address in {server!r}")
    args.auth_user = getattr(args, "auth_user", None) or os.environ.get("CC_USER") or None
    args.password = getattr(args, "password", None) or os.environ.get("CC_PASSWORD") or None
    args.timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
    args.ssl = tls_context(getattr(args, "tls", False), getattr(args, "tls_ca", None),
                           getattr(args, "tls_cert", None), getattr(args, "tls_key", None))


def tls_context(tls: bool, ca: str | None, cert: str | None,
                key: str | None) -> ssl.SSLContext | None:
    """The client's TLS context from the --tls* options (None: plain TCP); a UsageError
    naming the option, the file and the problem."""
    try:
        return client_context(tls, ca, cert, key)
    except TlsOptionError as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------- commands

async def cmd_subscriber_create(client: cc_client.Client, args: argparse.Namespace,
                                out: TextIO) -> None:
    """subscriber create USER --balance AMOUNT [--currency C] [--counter NAME=UNITS ...]
    [--plan PLAN]"""
    counters = dict(args.counter or [])
    sub = await client.admin.create_subscriber(args.user_id, args.balance, args.currency,
                                               counters or None, args.plan)
    emit(out, dumps(sub) if args.json else subscriber_text(sub))


async def cmd_subscriber_show(client: cc_client.Client, args: argparse.Namespace,
                              out: TextIO) -> None:
    """subscriber show USER"""
    sub = await client.admin.get_subscriber(args.user_id)
    emit(out, dumps(sub) if args.json else subscriber_text(sub))


async def cmd_subscriber_top_up(client: cc_client.Client, args: argparse.Namespace,
                                out: TextIO) -> None:
    """subscriber top-up USER AMOUNT"""
    sub = await client.admin.top_up(args.user_id, args.amount)
    emit(out, dumps(sub) if args.json else subscriber_text(sub))


async def cmd_sessions_list(client: cc_client.Client, args: argparse.Namespace,
                            out: TextIO) -> None:
    """sessions list [--user USER] [--limit N]"""
    found = await client.admin.find_sessions(user_id=args.user_id, limit=args.limit)
    if args.json:
        for s in found:
            emit(out, dumps(s))
    elif found:
        emit(out, sessions_text(found))
    else:
        emit(out, "no sessions")


async def cmd_sessions_show(client: cc_client.Client, args: argparse.Namespace,
                            out: TextIO) -> None:
    """sessions show SESSION"""
    found = await client.admin.find_sessions(session_id=args.session_id)
    if not found:
        raise cc_client.SessionNotFound(f"no session {args.session_id!r}")
    emit(out, dumps(found[0]) if args.json else session_text(found[0]))


async def cmd_sessions_cancel(client: cc_client.Client, args: argparse.Namespace,
                              out: TextIO) -> None:
    """sessions cancel SESSION"""
    released = await client.admin.cancel_session(args.session_id)
    if args.json:
        for tx in released:
            emit(out, dumps(tx))
        return
    total = exact_sum(t.amount for t in released)
    currency = released[0].currency if released else ""
    emit(out, f"session {args.session_id} cancelled; released {plain(total)} {currency}".rstrip()
         + f" in {len(released)} transaction(s)")
    if released:
        emit(out, "\n" + transactions_text(released))


async def cmd_transactions(client: cc_client.Client, args: argparse.Namespace,
                           out: TextIO) -> None:
    """transactions [--user USER] [--session SESSION] [--limit N] [--json]"""
    if not args.json:
        txs = await client.admin.transactions(user_id=args.user_id, session_id=args.session_id,
                                              limit=args.limit)
        emit(out, transactions_text(txs) if txs else "no transactions")
        return
    # JSON lines are streamed page by page, so `| head` on a long journal is quick.
    after: int | None = None
    remaining = args.limit
    while remaining is None or remaining > 0:
        want = TX_PAGE if remaining is None else min(TX_PAGE, remaining)
        page = await client.admin.transactions(user_id=args.user_id,
                                               session_id=args.session_id, after=after,
                                               limit=want)
        for tx in page:
            out.write(dumps(tx) + "\n")
        out.flush()
        if len(page) < want:
            break
        after = page[-1].transaction_id
        if remaining is not None:
            remaining -= len(page)


async def cmd_stats(client: cc_client.Client, args: argparse.Namespace, out: TextIO) -> None:
    """stats [--json]"""
    stats = await client.admin.stats()
    if args.json:
        emit(out, json.dumps(to_json(stats), sort_keys=True))
    else:
        pairs = flatten(stats)
        emit(out, table(("STATISTIC", "VALUE"), pairs, right=(1,)) if pairs else "no statistics")


async def cmd_request_renewal(client: cc_client.Client, args: argparse.Namespace,
                              out: TextIO) -> None:
    """request-renewal SESSION RESERVATION"""
    await client.admin.request_renewal(args.session_id, args.reservation_id)
    if args.json:
        emit(out, dumps({"session": args.session_id, "rid": args.reservation_id,
                         "requested": True}))
        return
    emit(out, f"renewal requested for session {args.session_id}, "
              f"reservation {args.reservation_id}")


# ---------------------------------------------------------------------------- parser

EXAMPLES = {
    "subscriber create": "cc-admin subscriber create alice --balance 10.00 --currency EUR "
                         "--counter free_data=30",
    "subscriber show": "cc-admin subscriber show alice",
    "subscriber top-up": "cc-admin subscriber top-up alice 5.50",
    **SUBSCRIBER_EXAMPLES,
    **PLAN_EXAMPLES,
    "sessions list": "cc-admin sessions list --user alice --limit 20",
    "sessions show": "cc-admin sessions show s-1",
    "sessions cancel": "cc-admin sessions cancel s-1",
    "transactions": "cc-admin transactions --session s-1 --json",
    "stats": "cc-admin stats --json",
    "request-renewal": "cc-admin request-renewal s-1 r-1",
    "user add": "cc-admin user add gw1 --roles charging --users-file users.toml",
    "fault add": "cc-admin fault add --user 'alice*' --kind update --action drop-reply "
                 "--times 1",
    "fault list": "cc-admin fault list --json",
    "fault remove": "cc-admin fault remove 1",
    "fault clear": "cc-admin fault clear",
    "record": "cc-admin record --session s-1 --json",
    "clock advance": "cc-admin clock advance 1800",
    "clock set": "cc-admin clock set 2026-11-28T10:00:00Z",
    "clock show": "cc-admin clock show",
}
EXIT_TEXT = ("exit status: 0 success, 1 refused by the server (\"error: CODE: message\" on "
             "stderr),\n2 usage error, 3 server unreachable")


def _epilog(*commands: str) -> str:
    lines = "\n".join(f"  {EXAMPLES[c]}" for c in commands)
    return f"example{'s' if len(commands) > 1 else ''}:\n{lines}\n\n{EXIT_TEXT}"


def _command(subparsers: Any, name: str, key: str, handler: Handler, help_text: str,
             description: str, *, user_flag: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=textwrap.fill(description, 88), epilog=_epilog(key),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=handler, command_name=key)
    add_global_options(parser, user_flag=user_flag)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    top = BriefParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Operator tool of the charging server: subscribers, sessions, the "
                    "transaction journal and statistics.\nRun `cc-admin COMMAND --help` for "
                    "the options of a command.",
        epilog=_epilog(*EXAMPLES))
    top.add_argument("--version", action="version", version=version_text(PROG),
                     help="print the version and the build (pure or compiled), and exit")
    add_global_options(top)
    commands = top.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                  required=True)

    # subscriber ...
    sub = commands.add_parser("subscriber", help="create, show, list, top up, adjust or "
                                                 "delete subscribers; set counters",
                              description="Create, show, list, top up, adjust or delete "
                                          "subscribers; set or reset allowance counters.",
                              epilog=_epilog("subscriber create", "subscriber show",
                                             "subscriber top-up", *SUBSCRIBER_EXAMPLES),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_options(sub)
    sub_commands = sub.add_subparsers(title="subscriber commands", dest="action",
                                      metavar="ACTION", required=True)
    p = _command(sub_commands, "create", "subscriber create", cmd_subscriber_create,
                 "create a subscriber",
                 "Create a subscriber with an initial balance and allowance counters; "
                 "prints it.")
    p.add_argument("user_id", metavar="USER", help="the subscriber id")
    p.add_argument("--balance", metavar="AMOUNT", type=parse_amount, required=True,
                   help="initial balance, an exact decimal (e.g. 10.00)")
    p.add_argument("--currency", default="EUR", help="ISO currency code (default: EUR)")
    p.add_argument("--counter", metavar="NAME=UNITS", type=parse_counter, action="append",
                   help="an allowance counter and its units; repeat for several")
    p.add_argument("--plan", metavar="PLAN",
                   help="the price plan rating it (omitted: the catalog's default_plan)")
    p.add_argument("--json", action="store_true", help="print the subscriber as JSON")
    p = _command(sub_commands, "show", "subscriber show", cmd_subscriber_show,
                 "show balance, reserved, available and counters",
                 "Show a subscriber: balance, reserved, available, and each allowance "
                 "counter's units (left, reserved, available).")
    p.add_argument("user_id", metavar="USER", help="the subscriber id")
    p.add_argument("--json", action="store_true", help="print the subscriber as JSON")
    p = _command(sub_commands, "top-up", "subscriber top-up", cmd_subscriber_top_up,
                 "credit a subscriber's balance",
                 "Credit AMOUNT to a subscriber's balance (journaled as a top_up); prints "
                 "the subscriber afterwards.")
    p.add_argument("user_id", metavar="USER", help="the subscriber id")
    p.add_argument("amount", metavar="AMOUNT", type=parse_amount,
                   help="amount to credit, an exact decimal > 0")
    p.add_argument("--json", action="store_true", help="print the subscriber as JSON")
    add_subscriber_commands(sub_commands, _command, add_global_options, parse_amount,
                            parse_positive_int)
    add_plan_commands(sub_commands, commands, _command)   # set-plan; catalog show (local)

    # sessions ...
    ses = commands.add_parser("sessions", help="list, show or cancel live sessions",
                              description="List, show or cancel live charging sessions.",
                              epilog=_epilog("sessions list", "sessions show",
                                             "sessions cancel"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_options(ses)
    ses_commands = ses.add_subparsers(title="sessions commands", dest="action",
                                      metavar="ACTION", required=True)
    p = _command(ses_commands, "list", "sessions list", cmd_sessions_list,
                 "list live sessions",
                 "List live sessions: open/all reservations, the amount they hold and the "
                 "next expiry. Here --user filters by subscriber; log in with --auth-user.",
                 user_flag=False)
    p.add_argument("--user", dest="user_id", metavar="USER", help="only this subscriber's")
    p.add_argument("--limit", metavar="N", type=parse_positive_int,
                   help="at most N sessions (server default 1000, at most 5000)")
    p.add_argument("--json", action="store_true", help="JSON lines, one session per line")
    p = _command(ses_commands, "show", "sessions show", cmd_sessions_show,
                 "show one session and its reservations",
                 "Show one session and each of its charging sessions (reservations).")
    p.add_argument("session_id", metavar="SESSION", help="the session id")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p = _command(ses_commands, "cancel", "sessions cancel", cmd_sessions_cancel,
                 "release every reservation of a session and remove it",
                 "Release every reservation of a session, whatever its default resolution, "
                 "and remove the session; prints the journaled releases.")
    p.add_argument("session_id", metavar="SESSION", help="the session id")
    p.add_argument("--json", action="store_true",
                   help="JSON lines, one release each (none: no output)")

    # transactions
    p = _command(commands, "transactions", "transactions", cmd_transactions,
                 "list journal entries",
                 "List transaction journal entries, oldest first. Here --user filters by "
                 "subscriber; log in with --auth-user. With --json: JSON lines, one object "
                 "per entry, amounts as strings, times ISO 8601 UTC.", user_flag=False)
    p.add_argument("--user", dest="user_id", metavar="USER", help="only this subscriber's")
    p.add_argument("--session", dest="session_id", metavar="SESSION",
                   help="only this session's")
    p.add_argument("--limit", metavar="N", type=parse_positive_int, help="at most N entries")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    # stats
    p = _command(commands, "stats", "stats", cmd_stats, "server statistics",
                 "Server statistics: state sizes and operation counts.")
    p.add_argument("--json", action="store_true", help="one JSON object")

    # request-renewal
    p = _command(commands, "request-renewal", "request-renewal", cmd_request_renewal,
                 "send a renewal notification for a reservation",
                 "Have the server send a \"renew reservation\" notification (reason "
                 "operator) to the session's listener.")
    p.add_argument("session_id", metavar="SESSION", help="the session id")
    p.add_argument("reservation_id", metavar="RESERVATION", help="the reservation id")
    p.add_argument("--json", action="store_true", help="one JSON object")

    add_user_commands(commands)    # user add | remove | list: local, no server
    add_test_control_commands(commands, _command)   # fault ... | record | clock ...

    # verify: local, on a data directory
    p = commands.add_parser(
        "verify", help="check a data directory's snapshots and log, offline",
        description="Check every snapshot and write-ahead log segment of a cc-server data "
                    "directory (checksums, gaps), without a server and without changing "
                    "anything.",
        epilog="example:\n  cc-admin verify ./data\n\nexit status: 0 no damage, 1 damage "
               "found, 2 not a data directory",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", metavar="DIR", help="the --data-dir of a cc-server")
    p.add_argument("--json", action="store_true",
                   help="JSON lines, one object per file checked")
    p.set_defaults(local=cmd_verify)
    return top


def cmd_verify(args: argparse.Namespace, out: TextIO) -> None:
    """Run the server package's checker (imported here, so the client never loads the
    server package unless this command runs; both ship in one distribution)."""
    checker = importlib.import_module("cc_server.verify")
    code = checker.run(args.directory, out, json_lines=args.json)
    if code:
        raise UserCommandError(f"{args.directory}: " + (
            "damage found" if code == checker.DAMAGED else "not a data directory"),
            usage=code != checker.DAMAGED)


# ---------------------------------------------------------------------------- main

async def run(args: argparse.Namespace, out: TextIO) -> None:
    """Connect, run the command's handler, close."""
    try:
        client = await cc_client.connect(*args.addresses, user=args.auth_user,
                                         password=args.password, request_timeout=args.timeout,
                                         client_name=PROG, ssl=args.ssl)
    except ValueError as exc:       # a malformed address
        raise UsageError(str(exc)) from None
    try:
        handler: Handler = args.handler
        await handler(client, args, out)
    finally:
        await client.close()


def report(err: TextIO, code: str, message: str) -> None:
    """The one error line: `error: CODE: message`."""
    err.write(f"error: {code}: {message}\n" if message and message != code
              else f"error: {code}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run cc-admin; returns the exit status."""
    out, err = sys.stdout, sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # --help (0) or argparse's usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    local = getattr(args, "local", None)
    if local is not None:           # user ...: edits a file, no server involved
        try:
            local(args, out)
        except UserCommandError as exc:
            err.write(f"{PROG}: error: {exc}\n")
            return EXIT_USAGE if exc.usage else EXIT_REFUSED
        except CatalogCommandError as exc:
            err.write(f"{PROG}: error: {exc}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:
            return 130
        return EXIT_OK
    try:
        resolve_globals(args)
        asyncio.run(run(args, out))
    except UsageError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except cc_client.CommunicationFailure as exc:
        report(err, exc.code, exc.message)
        return EXIT_UNREACHABLE
    except cc_client.ChargingError as exc:  # OperationFailure, ServerFailure, AuthenticationFailed
        report(err, exc.code, exc.message)
        return EXIT_REFUSED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


def _silence_stdout() -> None:
    """After the reader of a pipe went away, keep Python from complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
