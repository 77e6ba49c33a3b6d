"""The command line of cc-bench (`cc-bench` and `python -m cc_bench`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import cc_client
from cc_client import parse_address
from protocol import buildinfo

from .cleanup import cleanup_main
from .settings import DEFAULT_SERVER, HelpFormatter, Settings
from .tls import add_tls_options, tls_context

EXAMPLES = """\
examples:
  cc-bench --spawn --sessions 100000                     the standard mix, server spawned
  cc-bench --server 127.0.0.1:9500 --rate 2000 --duration 30 --warmup 5
  cc-bench --spawn --op ping --duration 5                 bare round trip through the stack
  cc-bench --spawn --renewals --duration 10 --json out.json --plot latency.svg
  cc-bench --spawn --live-sessions 1000000 --sessions 100000   load with 1M sessions held open
  cc-bench --spawn --protocol diameter --duration 10    the same mix as CCRs over Diameter Gy
  cc-bench --op codec                                     codec micro-benchmark, no server
  cc-bench --server 127.0.0.1:9500 --service VOICE --item call --quantity 120
                                          another catalog item (its quantity property found)
  cc-bench --server cc.example:9500 --tls-ca ca.pem --duration 30 --cleanup
                                          over TLS; the run's subscribers removed after it
  cc-bench cleanup --server 127.0.0.1:9500 --prefix bench01234abcdef
                                          remove what an earlier run left (cleanup --help)

exit status: 0 run completed, 1 the run could not be carried out, 2 usage error."""


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal amount") from None


def version_text() -> str:
    """`cc-bench 0.1.0 (compiled build, Python 3.11.9)`: what --version prints."""
    python = ".".join(map(str, sys.version_info[:3]))
    return f"cc-bench {cc_client.__version__} ({buildinfo.build()} build, Python {python})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (`cc-bench cleanup` has its own: `cleanup.build_parser`)."""
    d = Settings()
    p = argparse.ArgumentParser(
        prog="cc-bench", formatter_class=HelpFormatter, epilog=EXAMPLES,
        usage="cc-bench [options]\n       cc-bench cleanup --prefix P [options]",
        description=textwrap.fill(
            "Load tester of the charging server: start/update/stop sessions (or pings) in a "
            "closed or open loop; latency percentiles from log-linear histograms, "
            "throughput, errors by code, CPU per operation. 'cc-bench cleanup --help': "
            "removing what runs left on a server.", 79))
    p.add_argument("--version", action="version", version=version_text(),
                   help="print the version and the build (pure or compiled), and exit")
    g = p.add_argument_group("target")
    g.add_argument("--server", metavar="HOST:PORT",
                   help=f"a running server (default: {DEFAULT_SERVER} unless --spawn)")
    g.add_argument("--spawn", action="store_true",
                   help="start a server subprocess on a free loopback port, stop it after")
    g.add_argument("--data-dir", metavar="DIR",
                   help="with --spawn: a durable server here (default: in memory)")
    g.add_argument("--server-arg", dest="server_args", action="append", default=[],
                   metavar="ARG", help="with --spawn: pass ARG to cc-server (repeatable; "
                   "use --server-arg=--flag) (default: none)")
    g.add_argument("--protocol", choices=["msgpack", "diameter"], default=d.protocol,
                   help="what the sessions speak: msgpack containers, or Diameter Gy CCRs "
                        "(CCR-I/U/T; with --spawn the server gets --diameter 127.0.0.1:0 and "
                        "a catalog mapping rating groups 10.. to --service/--item)")
    g.add_argument("--diameter-server", metavar="HOST:PORT",
                   help="--protocol diameter with --server: the server's Diameter port "
                        "(its catalog maps rating groups 10.. to --service/--item) "
                        "(default: none)")
    g.add_argument("--user", help="user name, when the server has a users file "
                                  "(default: none, no login)")
    g.add_argument("--password", help="its password (default: none)")
    g.add_argument("--cleanup", action="store_true",
                   help="with --server: after the run, remove its subscribers and cancel its "
                        "sessions still open (default: they stay; the report says how to "
                        "remove them)")
    add_tls_options(g)
    g = p.add_argument_group("load")
    g.add_argument("--op", choices=["session", "ping", "codec"], default=d.op,
                   help="what to measure")
    g.add_argument("--connections", type=int, default=d.connections, metavar="C",
                   help="client connections (default: %(default)s)")
    g.add_argument("--concurrency", type=int, metavar="N",
                   help="closed loop: sessions in flight (default 256); open loop: most "
                        "allowed in flight (default 10000)")
    g.add_argument("--rate", type=float, metavar="R",
                   help="open loop: R sessions (or pings) per second; latency from the "
                        "intended send time (default: none, a closed loop)")
    g.add_argument("--sessions", type=int, metavar="N",
                   help="measure N sessions (or pings) (default: no count, see --duration)")
    g.add_argument("--duration", type=float, metavar="S",
                   help="measure for S seconds (default 10 when --sessions is not given)")
    g.add_argument("--warmup", type=float, default=d.warmup, metavar="S",
                   help="run unmeasured for S seconds first (default: %(default)s)")
    g.add_argument("--timeout", type=float, metavar="S",
                   help="hard limit on the load phase (default: warm-up + duration + 120, "
                        "or 1800 with --sessions alone)")
    g = p.add_argument_group("sessions")
    g.add_argument("--updates", type=int, default=d.updates, metavar="U",
                   help="confirm-and-reserve updates per session (default: %(default)s)")
    g.add_argument("--reservations", type=int, default=d.reservations, metavar="M",
                   help="reservations per session (default: %(default)s)")
    g.add_argument("--users", type=int, default=d.users, metavar="K",
                   help="subscribers the sessions are spread over (default: %(default)s)")
    g.add_argument("--balance", type=_decimal, default=d.balance,
                   help="initial balance of each subscriber (default: %(default)s)")
    g.add_argument("--ttl", type=float, default=d.ttl, help="reservation TTL, seconds")
    g.add_argument("--service", default=d.service, help="service of the sessions")
    g.add_argument("--item", default=d.item, help="chargeable item reserved and confirmed")
    g.add_argument("--property", dest="quantity_property", default=d.quantity_property,
                   metavar="NAME",
                   help="the item's quantity property (default: the one the server's "
                        "catalog names for --item, e.g. volume for data, duration for call)")
    g.add_argument("--quantity", type=int, default=d.quantity,
                   help="quantity reserved (updates confirm 80 %%, stop 20 %%)")
    g.add_argument("--result-type", choices=["all", "master", "none"],
                   help="result type of the containers (default: the server's)")
    g.add_argument("--request-timeout", type=float, default=d.request_timeout, metavar="S",
                   help="seconds to wait for each reply")
    g = p.add_argument_group("live sessions")
    g.add_argument("--live-sessions", type=int, default=d.live_sessions, metavar="N",
                   help="first open N more sessions (one reservation each, not measured) and "
                        "hold them during the run; closed afterwards with --server "
                        "(default: %(default)s)")
    g.add_argument("--live-ttl", type=float, default=d.live_ttl, metavar="S",
                   help="TTL of their reservations, seconds (default: %(default)g)")
    g = p.add_argument_group("renewal notifications")
    g.add_argument("--renewals", action="store_true",
                   help="mix in sessions that starve, get a top-up and a renewal notification")
    g.add_argument("--renewal-ratio", type=float, default=d.renewal_ratio, metavar="F",
                   help="share of sessions that do so (default: %(default)s)")
    g.add_argument("--listener-id", type=int, default=d.listener_id,
                   help="renewal listener id of those sessions")
    g.add_argument("--notification-timeout", type=float, default=d.notification_timeout,
                   metavar="S", help="seconds to wait for each notification after the top-up")
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="FILE",
                   help="write everything, histograms included (default: none)")
    g.add_argument("--plot", metavar="FILE",
                   help="latency chart: FILE.svg (or an HTML page: FILE.html) (default: none)")
    g.add_argument("--interval", type=float, default=d.interval, metavar="S",
                   help="progress every S seconds (default: %(default)s)")
    g.add_argument("--quiet", action="store_true", help="no progress display")
    g.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default=d.loop,
                   help="the client's event loop (auto: uvloop where installed)")
    g.add_argument("--codec-seconds", type=float, default=d.codec_seconds, metavar="S",
                   help="--op codec: seconds per message kind and direction")
    return p


def parse(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the command line (exits 2 on a usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings(**vars(args))
    try:
        settings.validate()
        tls_context(settings.tls, settings.tls_ca, settings.tls_cert, settings.tls_key)
    except ValueError as exc:
        parser.error(str(exc))
    if settings.server is not None:     # a scheme or a bad port: one line, exit 2
        try:
            parse_address(settings.server)
        except ValueError as exc:
            print(f"cc-bench: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return settings


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """uvloop when available (auto) or asked for, else asyncio's loop."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise SystemExit("cc-bench: --loop uvloop, but uvloop is not installed") \
                    from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def _codec(s: Settings) -> int:
    from .codec_bench import format_codec, run_codec_bench

    rows = run_codec_bench(s.codec_seconds)
    print(format_codec(rows))
    if s.json:
        with open(s.json, "w", encoding="utf-8") as f:
            json.dump({"schema": "cc-bench-codec/1", "messages": rows}, f, indent=1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["cleanup"]:
        return cleanup_main(args[1:])
    s = parse(args)
    if s.op == "codec":
        return _codec(s)
    from .plot import write_plot
    from .provision import BenchError
    from .report import format_header, format_text, write_json
    from .runner import execute

    print(format_header(s) + "\n", flush=True)
    loop = new_loop(s.loop)
    result: dict[str, Any]
    try:   # the load phase has its own limit; this one bounds set-up and clean-up too
        result = loop.run_until_complete(asyncio.wait_for(execute(s), s.overall_timeout))
    except BenchError as exc:
        print(f"cc-bench: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print("cc-bench: the run did not end within its overall time limit", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("cc-bench: interrupted", file=sys.stderr)
        return 130
    finally:
        loop.close()
    print(format_text(result, s), flush=True)
    if s.json:
        write_json(result, s.json)
    if s.plot:
        write_plot(result, s.plot)
    summary = result["summary"]
    return 1 if summary["timed_out"] or summary["aborted"] else 0
