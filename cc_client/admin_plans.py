"""cc-admin `subscriber set-plan` (on the server) and `catalog show` (a catalog file, local).

Registered by cc_client/admin.py, whose `_command` helper is passed in (this module does
not import admin.py). `catalog show` reads the file with the server package's own parser,
imported only when the command runs, as `verify` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
from collections.abc import Callable
from typing import Any, TextIO

import cc_client
from cc_client.admin_format import dumps, emit, subscriber_text, table

EXAMPLES = {
    "subscriber set-plan": "cc-admin subscriber set-plan alice premium "
                           "--from 2026-12-01T00:00:00+01:00",
    "catalog show": "cc-admin catalog show examples/plans.toml --at 2026-12-07T18:50",
}


class CatalogCommandError(Exception):
    """A catalog file or a time that cannot be used (exit status 2)."""


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time (`2026-12-01T00:00:00+01:00`, `...Z`; no zone: naive)."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (2026-12-01T00:00:00+01:00)") from None


async def cmd_set_plan(client: cc_client.Client, args: argparse.Namespace,
                       out: TextIO) -> None:
    """subscriber set-plan USER PLAN [--from TIME]"""
    start = args.start
    if start is not None and start.tzinfo is None:
        raise cc_client.InvalidArgument("--from needs a time zone (+01:00 or Z)")
    sub = await client.admin.set_plan(args.user_id, args.plan, start)
    emit(out, dumps(sub) if args.json else subscriber_text(sub))


def _price(prices: dict[str, Any]) -> str:
    return ", ".join(f"{price} {cur}" for cur, price in sorted(prices.items()))


def _local(catalog: Any, at: dt.datetime) -> dt.datetime:
    return at.astimezone(catalog.zone) if at.tzinfo else at.replace(tzinfo=catalog.zone)


def catalog_plans(catalog: Any, at: dt.datetime | None) -> list[dict[str, Any]]:
    """Every plan of a catalog as a map: name, whether it is the default, its items (each
    with how it is priced; with `at`, the price per step in force then in place of the
    list of periods) and its allowances."""
    plans_module = importlib.import_module("cc_server.engine.plans")
    local = _local(catalog, at) if at is not None else None
    out = []
    for name, plan in catalog.named.items():
        items = []
        for (service, item), rating in plan.items.items():
            if rating.tiers:
                rule = "; ".join(f"{t.label}: {_price(t.prices)}" for t in rating.tiers)
                rule = f"tiers ({rating.usage_counter or 'per rating'}): {rule}"
            elif rating.rates and local is not None:
                found = [(cur, *plans_module.period_price(rating.rates, rating.prices.get(cur),
                                                          cur, local))
                         for cur in sorted(rating.prices)]
                rule = "; ".join(f"{why} = {price} {cur}" for cur, price, why in found)
            elif rating.rates:
                rule = "; ".join(f"{p.label}: {_price(p.prices)}" for p in rating.rates)
                rule = f"{_price(rating.prices)}, periods {rule}"
            else:
                rule = _price(rating.prices)
            items.append({"service": service, "item": item, "quantity": rating.quantity,
                          "step": str(rating.step), "allowance": rating.allowance,
                          "price": rule})
        out.append({"plan": name, "default": name == catalog.default_plan, "items": items,
                    "allowances": [{"counter": a.counter, "units": str(a.units),
                                    "every": a.every} for a in plan.allowances]})
    return out


def catalog_text(catalog: Any, at: dt.datetime | None) -> str:
    """Every plan of a catalog: items with their rating, allowances; with `at`, the price
    per step in force at that time (periods) in place of the list of periods."""
    plans_module = importlib.import_module("cc_server.engine.plans")
    head = f"timezone {catalog.timezone}, default plan {catalog.default_plan}"
    if at is not None:
        local = _local(catalog, at)
        head += f", prices at {local.isoformat(timespec='minutes')} " \
                f"({plans_module.DAYS[local.weekday()]})"
    blocks = [head]
    for plan in catalog_plans(catalog, at):
        rows = [(i["service"], i["item"], i["quantity"], i["step"], i["allowance"] or "-",
                 i["price"]) for i in plan["items"]]
        marker = " (default)" if plan["default"] else ""
        text = f"plan {plan['plan']}{marker}\n" + table(
            ("SERVICE", "ITEM", "QUANTITY", "STEP", "ALLOWANCE", "PRICE PER STEP"), rows)
        if plan["allowances"]:
            text += "\n" + "\n".join(f"  allowance {a['counter']}: {a['units']} every "
                                      f"{a['every']}" for a in plan["allowances"])
        blocks.append(text)
    return "\n\n".join(blocks)


def cmd_catalog_show(args: argparse.Namespace, out: TextIO) -> None:
    """catalog show FILE [--at TIME] [--json]: local, no server."""
    loader = importlib.import_module("cc_server.catalogfile")
    try:
        catalog = loader.load_catalog(args.file)
    except ValueError as exc:        # CatalogError
        raise CatalogCommandError(str(exc)) from None
    if args.json:                    # JSON lines: one plan a line
        for plan in catalog_plans(catalog, args.at):
            emit(out, dumps(plan))
    else:
        emit(out, catalog_text(catalog, args.at))


def add_plan_commands(subscriber_actions: Any, commands: Any,
                      command: Callable[..., argparse.ArgumentParser]) -> None:
    """`subscriber set-plan` and `catalog show`."""
    p = command(subscriber_actions, "set-plan", "subscriber set-plan", cmd_set_plan,
                "rate a subscriber by another price plan",
                "Rate a subscriber by price plan PLAN from now, or from --from (UNKNOWN_PLAN, "
                "exit 1, for a plan the catalog does not have). Reservations held keep "
                "their amounts; what is rated after the change is rated by PLAN.")
    p.add_argument("user_id", metavar="USER", help="the subscriber id")
    p.add_argument("plan", metavar="PLAN", help="a plan of the server's catalog")
    p.add_argument("--from", dest="start", metavar="TIME", type=parse_time,
                   help="when the change takes effect, ISO 8601 with a zone (default: now)")
    p.add_argument("--json", action="store_true", help="print the subscriber as JSON")

    cat = commands.add_parser(
        "catalog", help="show a catalog file's price plans, offline",
        description="Show the price plans of a catalog file (the server's --catalog), "
                    "without a server.",
        epilog=f"example:\n  {EXAMPLES['catalog show']}\n\nexit status: 0 success, "
               "2 usage error or invalid catalog",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = cat.add_subparsers(title="catalog commands", dest="catalog_action",
                                 metavar="ACTION", required=True)
    p = actions.add_parser("show", help="print every plan, item, price and allowance",
                           description="Print every plan of FILE: items, how each is priced "
                                       "(periods, tiers), allowances. --at TIME shows the "
                                       "price in force at that time (no zone: the "
                                       "catalog's).",
                           epilog=f"example:\n  {EXAMPLES['catalog show']}")
    p.add_argument("file", metavar="FILE", help="a TOML catalog file")
    p.add_argument("--at", metavar="TIME", type=parse_time,
                   help="ISO 8601 time whose prices to show")
    p.add_argument("--json", action="store_true", help="JSON lines, one plan each")
    p.set_defaults(local=cmd_catalog_show)
