"""`cc-admin fault | record | clock`: a server's test controls (role `admin`).

    cc-admin fault add --user 'alice*' --kind update --action drop-reply --times 1
    cc-admin fault list --json
    cc-admin record --session s-1 --json
    cc-admin clock advance 1800

A server started with `--no-test-controls` refuses all of them (FORBIDDEN, exit 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import cc_client
from cc_client.admin_args import (
    CLOCK_SECONDS,
    COUNT,
    COUNT0,
    LIMIT,
    LISTENER,
    PROBABILITY,
    RATING_GROUP,
    RESULT_CODE,
    RULE_ID,
    RULE_SECONDS,
)
from cc_client.admin_format import emit, table

Handler = Callable[[cc_client.Client, argparse.Namespace, TextIO], Awaitable[None]]
Command = Callable[..., argparse.ArgumentParser]

#: `fault add` options: (flag, rule field, type, help)
RULE_OPTIONS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("--action", "action", str, "error, delay, drop-reply, drop-request, close-before, "
                                "close-after, busy, pause, drop-notify, delay-notify, "
                                "duplicate-notify"),
    ("--user", "user", str, "match: subscriber id (glob, e.g. 'alice*')"),
    ("--service", "service", str, "match: service id"),
    ("--session", "session", str, "match: session id (glob)"),
    ("--kind", "kind", str, "match: container kind start, update or stop"),
    ("--sub-action", "sub_action", str,
     "match: a sub-request action reserve, confirm, cancel, confirm_and_reserve"),
    ("--type", "type", str, "match: message type EXECUTE, ADMIN, LISTEN, ACK, NOTIFY"),
    ("--listener", "listener", LISTENER, "match: renewal listener id"),
    ("--conn-user", "conn_user", str, "match: the connection's authenticated user (glob)"),
    ("--diameter-command", "diameter_command", str, "match (Diameter): CCR, RAR, CER, DWR or DPR"),
    ("--request-type", "request_type", str,
     "match (Diameter): CC-Request-Type INITIAL, UPDATE, TERMINATION or EVENT"),
    ("--rating-group", "rating_group", RATING_GROUP, "match (Diameter): a CCR's Rating-Group"),
    ("--origin-host", "origin_host", str,
     "match (Diameter): the CCR's Origin-Host, a RAR's peer (glob)"),
    ("--times", "times", COUNT, "schedule: fire at most N times"),
    ("--every", "every", COUNT, "schedule: fire on every K-th match"),
    ("--probability", "probability", PROBABILITY, "schedule: fire with probability P"),
    ("--seed", "seed", COUNT0, "schedule: seed of the random generator of --probability"),
    ("--after", "after", COUNT0, "schedule: only after M matches"),
    ("--code", "code", str, "error: the error code (PROTOCOL.md section 7)"),
    ("--result-code", "result_code", RESULT_CODE,
     "error (Diameter): answer this Result-Code instead of a --code"),
    ("--scope", "scope", str, "error: container (default), subrequest, or mscc "
                              "(with --result-code)"),
    ("--seconds", "seconds", RULE_SECONDS, "delay, pause, delay-notify: seconds"),
    ("--jitter", "jitter", RULE_SECONDS, "delay, delay-notify: up to this many seconds more"),
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def cmd_fault_add(client: cc_client.Client, args: argparse.Namespace,
                        out: TextIO) -> None:
    """fault add --action A [match] [schedule]: prints the rule id."""
    fields = {name: getattr(args, name) for _, name, _, _ in RULE_OPTIONS[1:]}
    rule = await client.admin.faults.add(args.action, **fields)
    emit(out, json.dumps(_jsonable(rule.fields), sort_keys=True) if args.json else str(rule))


async def cmd_fault_list(client: cc_client.Client, args: argparse.Namespace,
                         out: TextIO) -> None:
    """fault list [--json]"""
    rules = await client.admin.faults.list()
    if args.json:
        for rule in rules:
            out.write(json.dumps(_jsonable(rule), sort_keys=True) + "\n")
        return
    rows = [(str(r["id"]), r["action"], rule_scope(r), str(r.get("matched", 0)),
             str(r.get("fired", 0)),
             " ".join(f"{k}={v}" for k, v in sorted(r.items())
                      if k not in ("id", "action", "matched", "fired", "after", "scope",
                                   "seconds", "jitter") or (k in ("after", "seconds",
                                                                  "jitter") and v)))
            for r in rules]
    emit(out, table(("ID", "ACTION", "SCOPE", "MATCHED", "FIRED", "RULE"), rows,
                    right=(3, 4)) if rows else "no fault rules")


def rule_scope(rule: dict[str, Any]) -> str:
    """What a rule acts on: container or subrequest (error), connection (close-*, pause:
    every connection), notification, else request."""
    action = rule["action"]
    if action == "error":
        return str(rule.get("scope", "container"))
    if action.endswith("-notify"):
        return "notification"
    if action.startswith("close-"):
        return "connection"
    return "server" if action == "pause" else "request"


async def cmd_fault_remove(client: cc_client.Client, args: argparse.Namespace,
                           out: TextIO) -> None:
    """fault remove ID"""
    if not await client.admin.faults.remove(args.rule_id):
        raise cc_client.InvalidRequest(f"no fault rule {args.rule_id}")
    emit(out, json.dumps({"id": args.rule_id, "removed": True}) if args.json
         else f"removed fault rule {args.rule_id}")


async def cmd_fault_clear(client: cc_client.Client, args: argparse.Namespace,
                          out: TextIO) -> None:
    """fault clear"""
    count = await client.admin.faults.clear()
    emit(out, json.dumps({"removed": count}) if args.json
         else f"removed {count} fault rule(s)")


async def cmd_record(client: cc_client.Client, args: argparse.Namespace,
                     out: TextIO) -> None:
    """record [filters] [--json]"""
    entries = await client.admin.record(args.user_id, args.session_id, args.kind, args.type,
                                        args.direction, limit=args.limit)
    if args.json:
        for entry in entries:
            out.write(json.dumps(_jsonable(entry)) + "\n")
        return
    rows = []
    for e in entries:
        when = dt.datetime.fromtimestamp(e["time"], dt.UTC).isoformat(timespec="milliseconds")
        body = e.get("body")
        what = " ".join(f"{k}={body[k]}" for k in ("user", "session", "kind", "cmd", "code",
                                                   "result")
                        if isinstance(body, dict) and k in body)
        rows.append((str(e["seq"]), when.replace("+00:00", "Z"), e["conn"],
                     e.get("conn_user") or "-", e["direction"], e["type"], what))
    emit(out, table(("SEQ", "TIME", "CONNECTION", "CONN USER", "DIR", "TYPE", "WHAT"), rows,
                    right=(0,)) if rows else "nothing recorded")


def clock_text(shown: dict[str, Any]) -> str:
    """`TIME (wall clock)`, `TIME (manual clock)` or `TIME (clock at K times real time)`."""
    mode = shown.get("mode") or ("manual" if shown.get("manual") else "wall")
    what = (f"clock at {shown.get('speed', 1.0):g} times real time" if mode == "scaled"
            else f"{mode} clock")
    return f"{_jsonable(shown['time'])} ({what})"


async def cmd_clock(client: cc_client.Client, args: argparse.Namespace, out: TextIO) -> None:
    """clock advance SECONDS | set ISO-TIME | show  [--json]"""
    if args.clock_action == "advance":
        shown = {"time": await client.admin.clock_advance(args.seconds), "manual": True}
    elif args.clock_action == "set":
        shown = {"time": await client.admin.clock_set(args.time), "manual": True}
    else:
        shown = await client.admin.clock_get()
    if args.json:
        emit(out, json.dumps(_jsonable(shown), sort_keys=True))
    elif args.clock_action == "show":
        emit(out, clock_text(shown))
    else:
        emit(out, str(_jsonable(shown["time"])))


def add_test_control_commands(commands: Any, command: Command) -> None:
    """Add `fault`, `record` and `clock` to cc-admin's sub-commands; `command` is
    cc-admin's own helper that adds one with the connection options."""
    fault = commands.add_parser("fault", help="fault rules of the server (test controls)",
                                description="Add, list, remove or clear fault rules: make "
                                            "the server misbehave on cue.")
    actions = fault.add_subparsers(title="fault commands", dest="action_name",
                                   metavar="ACTION", required=True)
    p = command(actions, "add", "fault add", cmd_fault_add, "add a rule; prints its id",
                "Add a fault rule; prints its id. Every match and schedule option is "
                "optional. Here --user matches the subscriber; log in with --auth-user.",
                user_flag=False)
    for flag, name, kind, help_text in RULE_OPTIONS:
        p.add_argument(flag, dest=name, type=kind, help=help_text,
                       required=name == "action")
    p.add_argument("--json", action="store_true", help="the rule as one JSON object")
    p = command(actions, "list", "fault list", cmd_fault_list, "list rules with their counts",
                "List the fault rules with how often each matched and fired.")
    p.add_argument("--json", action="store_true", help="JSON lines, one rule each")
    p = command(actions, "remove", "fault remove", cmd_fault_remove, "remove one rule",
                "Remove one fault rule.")
    p.add_argument("rule_id", metavar="ID", type=RULE_ID, help="the rule id")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p = command(actions, "clear", "fault clear", cmd_fault_clear, "remove every rule",
                "Remove every fault rule.")
    p.add_argument("--json", action="store_true", help="one JSON object")

    p = command(commands, "record", "record", cmd_record, "frames the server recorded",
                "Frames of the request record (cc-server --record N), oldest first. Here "
                "--user filters by subscriber; log in with --auth-user.", user_flag=False)
    p.add_argument("--user", dest="user_id", metavar="USER", help="only this subscriber's")
    p.add_argument("--session", dest="session_id", metavar="S", help="only this session's")
    p.add_argument("--kind", help="only containers of this kind (start, update, stop)")
    p.add_argument("--type", help="only this message type (EXECUTE, NOTIFY, ...)")
    p.add_argument("--direction", choices=("in", "out"), help="only requests or replies")
    p.add_argument("--limit", metavar="N", type=LIMIT, help="at most N frames")
    p.add_argument("--json", "--jsonl", action="store_true",
                   help="JSON lines, one frame each (--jsonl: the same)")

    clock = commands.add_parser("clock", help="the server's manual clock (test controls)",
                                description="Show or move a manual server clock "
                                            "(cc-server --clock manual).")
    moves = clock.add_subparsers(title="clock commands", dest="clock_action",
                                 metavar="ACTION", required=True)
    p = command(moves, "advance", "clock advance", cmd_clock, "move the clock forward",
                "Move the clock forward; expiry and renewal timers run at once.")
    p.add_argument("seconds", metavar="SECONDS", type=CLOCK_SECONDS, help="seconds to move")
    p.add_argument("--json", action="store_true", help="one JSON object: time, manual")
    p = command(moves, "set", "clock set", cmd_clock, "move the clock to a time",
                "Move the clock to a time (never backwards).")
    p.add_argument("time", metavar="ISO-TIME", help="e.g. 2026-11-28T10:00:00Z")
    p.add_argument("--json", action="store_true", help="one JSON object: time, manual")
    p = command(moves, "show", "clock show", cmd_clock, "show the server's time",
                "Show the server's time and its clock: wall, manual, or running K times "
                "real time (cc-server --clock-speed K).")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: time, manual, mode (wall, manual, scaled), speed")
