"""cc-admin `subscriber list | delete | adjust | counter set | counter reset`.

Registered on the `subscriber` command by cc_client/admin.py, whose `_command` helper
(passed in, so that this module does not import admin.py) adds the connection options,
the example and the exit-status text to each.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TextIO

import cc_client
from cc_client.admin_format import (
    dumps,
    emit,
    subscriber_text,
    subscribers_text,
    transactions_text,
)

PAGE = 1000        # subscribers fetched per request when listing

EXAMPLES = {
    "subscriber list": "cc-admin subscriber list --prefix gw- --currency EUR --limit 50",
    "subscriber adjust": "cc-admin subscriber adjust alice -2.50 --reason \"refund reversed\"",
    "subscriber delete": "cc-admin subscriber delete alice --force",
    "subscriber counter set": "cc-admin subscriber counter set alice free_data 100 "
                              "--reason \"monthly allowance\"",
    "subscriber counter reset": "cc-admin subscriber counter reset alice free_data",
}


async def cmd_list(client: cc_client.Client, args: argparse.Namespace, out: TextIO) -> None:
    """subscriber list [--prefix P] [--currency C] [--after USER] [--limit N] [--json]"""
    after: str | None = args.after
    remaining: int | None = args.limit
    shown = 0
    while remaining is None or remaining > 0:      # page by page: `| head` is quick
        want = PAGE if remaining is None else min(PAGE, remaining)
        page = await client.admin.list_subscribers(prefix=args.prefix, currency=args.currency,
                                                   after=after, limit=want)
        if args.json:
            for sub in page:
                out.write(dumps(sub) + "\n")
        elif page:
            text = subscribers_text(page)
            emit(out, text if shown == 0 else text.split("\n", 1)[1])  # one header line
        out.flush()
        shown += len(page)
        if len(page) < want:
            break
        after = page[-1].user_id
        if remaining is not None:
            remaining -= len(page)
    if shown == 0 and not args.json:
        emit(out, "no subscribers")


async def cmd_delete(client: cc_client.Client, args: argparse.Namespace, out: TextIO) -> None:
    """subscriber delete USER [--force]"""
    released = await client.admin.delete_subscriber(args.user_id, force=args.force)
    if args.json:
        for tx in released:
            emit(out, dumps(tx))
        return
    total = sum((t.amount for t in released), Decimal(0))
    sessions = len({t.session_id for t in released})
    emit(out, f"subscriber {args.user_id} deleted" + (
        f"; released {total} {released[0].currency} of {sessions} session(s)"
        if released else ""))
    if released:
        emit(out, "\n" + transactions_text(released))


async def cmd_adjust(client: cc_client.Client, args: argparse.Namespace, out: TextIO) -> None:
    """subscriber adjust USER AMOUNT --reason TEXT"""
    sub = await client.admin.adjust(args.user_id, args.amount, args.reason)
    emit(out, dumps(sub) if args.json else subscriber_text(sub))


async def cmd_counter_set(client: cc_client.Client, args: argparse.Namespace,
                          out: TextIO) -> None:
    """subscriber counter set USER COUNTER UNITS [--reason TEXT]"""
    sub = await client.admin.set_counter(args.user_id, args.counter, args.units, args.reason)
    emit(out, dumps(sub) if args.json else subscriber_text(sub))


async def cmd_counter_reset(client: cc_client.Client, args: argparse.Namespace,
                            out: TextIO) -> None:
    """subscriber counter reset USER COUNTER [--reason TEXT]"""
    sub = await client.admin.reset_counter(args.user_id, args.counter, args.reason)
    emit(out, dumps(sub) if args.json else subscriber_text(sub))


def add_subscriber_commands(actions: Any, command: Callable[..., argparse.ArgumentParser],
                            global_options: Callable[[argparse.ArgumentParser], None],
                            parse_amount: Callable[[str], Decimal],
                            parse_positive_int: Callable[[str], int]) -> None:
    """`list`, `delete`, `adjust` and `counter set|reset` on the subscriber sub-parsers
    (cc-admin's `_command`, `add_global_options` and argument types passed in)."""
    p = command(actions, "list", "subscriber list", cmd_list, "list subscribers",
                "List subscribers ordered by user id: balance, reserved, available and "
                "counters. Filter by id prefix and currency; page with --after (the last "
                "user id seen).")
    p.add_argument("--prefix", metavar="P", help="only user ids starting with P")
    p.add_argument("--currency", metavar="C", help="only subscribers in currency C")
    p.add_argument("--after", metavar="USER", help="start after this user id")
    p.add_argument("--limit", metavar="N", type=parse_positive_int,
                   help="at most N subscribers (default: all)")
    p.add_argument("--json", action="store_true", help="JSON lines, one subscriber per line")

    p = command(actions, "delete", "subscriber delete", cmd_delete, "delete a subscriber",
                "Delete a subscriber. Refused (SESSION_EXISTS, exit 1) while it has live "
                "sessions, unless --force: each session is then cancelled first, every "
                "reservation released whatever its default resolution (journaled, reason "
                "admin). Its journal entries are kept.")
    p.add_argument("user_id", metavar="USER", help="the subscriber id")
    p.add_argument("--force", action="store_true",
                   help="cancel the subscriber's live sessions first")
    p.add_argument("--json", action="store_true",
                   help="print the releases as JSON lines (none: no output)")

    p = command(actions, "adjust", "subscriber adjust", cmd_adjust,
                "credit or debit a balance, with a reason",
                "Credit (AMOUNT > 0) or debit (AMOUNT < 0) a subscriber's balance. A debit "
                "may take the balance below zero. Journaled as a top_up or confirm with "
                "reason admin and the reason text in the entry's reservation field; prints "
                "the subscriber afterwards.")
    p.add_argument("user_id", metavar="USER", help="the subscriber id")
    p.add_argument("amount", metavar="AMOUNT", type=parse_amount,
                   help="an exact decimal, not 0; negative debits")
    p.add_argument("--reason", required=True, help="why (kept in the journal)")
    p.add_argument("--json", action="store_true", help="print the subscriber as JSON")

    counter = actions.add_parser(
        "counter", help="set or reset an allowance counter",
        description="Set or reset a subscriber's allowance counter (journaled as a "
                    "zero-amount top_up or confirm of the units that changed).",
        epilog="examples:\n  " + EXAMPLES["subscriber counter set"] + "\n  "
               + EXAMPLES["subscriber counter reset"],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    global_options(counter)
    counter_actions = counter.add_subparsers(title="counter commands", dest="counter_action",
                                             metavar="ACTION", required=True)
    p = command(counter_actions, "set", "subscriber counter set", cmd_counter_set,
                "set a counter's units",
                "Set an allowance counter to UNITS (>= 0, and at least what reservations "
                "hold of it); prints the subscriber afterwards.")
    _counter_arguments(p)
    p.add_argument("units", metavar="UNITS", type=parse_amount, help="the new units, >= 0")
    p = command(counter_actions, "reset", "subscriber counter reset", cmd_counter_reset,
                "take a counter to zero and remove it",
                "Take an allowance counter to zero and remove it from the subscriber "
                "(refused while reservations hold units of it); prints the subscriber.")
    _counter_arguments(p)


def _counter_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("user_id", metavar="USER", help="the subscriber id")
    p.add_argument("counter", metavar="COUNTER", help="the counter name, e.g. free_data")
    p.add_argument("--reason", help="why (kept in the journal)")
    p.add_argument("--json", action="store_true", help="print the subscriber as JSON")
