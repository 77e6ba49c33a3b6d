"""cc-server: flags, start-up line, loop choice, signals."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from protocol import buildinfo

from . import logs
from .auth import UsersFileError
from .config import (
    CHOICES,
    HELP,
    ConfigError,
    ServerConfig,
    build,
    field_types,
    load_file,
    metavar,
    to_toml,
)
from .engine import CatalogError
from .gcpolicy import GcPolicy
from .metrics import ListenError
from .server import VERSION, ChargingServer
from .store import DataDirError
from .tls import TlsError

log = logging.getLogger("cc_server")


class BriefParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are the error and a pointer to --help,
    not the whole usage first (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print `PROG: error: MESSAGE` and where to find the usage, then exit 2."""
        self.exit(2, f"{self.prog}: error: {message}\n"
                     f"Run '{self.prog} --help' for the usage.\n")


def help_text(name: str, default: object) -> str:
    """A setting's --help text, its default said once (unset optional ones say it in HELP)."""
    text = HELP.get(name, name)
    if default is None or "default:" in text:
        return text
    return f"{text} (default: {default})"


def build_parser() -> argparse.ArgumentParser:
    """The command line of cc-server: one flag per ServerConfig field, plus --config."""
    defaults = ServerConfig()
    p = BriefParser(
        prog="cc-server", description="Session-based online charging server. Every flag "
        "is also a key of the --config file; flags win. Relative paths in a --config file "
        "are relative to the file's folder.")
    p.add_argument("--config", metavar="FILE",
                   help="TOML file of settings; relative paths in it are relative to its "
                        "folder")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective settings as a config file and exit")
    p.add_argument("--version", action="version", version=version_text("cc-server"),
                   help="print the version and the build (pure or compiled), and exit")
    for name, (kind, _) in field_types().items():
        default = getattr(defaults, name)
        if kind is bool and default:    # on by default: the flag turns it off
            p.add_argument(f"--no-{name.replace('_', '-')}", dest=name,
                           default=argparse.SUPPRESS, action="store_false",
                           help=f"turn off: {HELP.get(name, name)}")
            continue
        if kind is bool:
            p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS,
                           action="store_true", help=HELP.get(name, name))
            continue
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS,
                       type=kind, choices=CHOICES.get(name),
                       metavar=None if name in CHOICES else metavar(name),
                       help=help_text(name, default))
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[ServerConfig, bool]:
    """(settings from defaults, --config file and flags; whether to just print them).
    Exits 2 on a usage error."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    config_file, print_only = args.pop("config"), args.pop("print_config")
    try:
        config = build(load_file(config_file) if config_file else {}, args)
    except ConfigError as exc:
        parser.error(str(exc))
    problems = config.problems()
    if problems:
        parser.error("; ".join(problems))
    return config, print_only


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def version_text(prog: str) -> str:
    """`cc-server 0.1.0 (compiled build, Python 3.11.9)`: what --version prints."""
    python = ".".join(map(str, sys.version_info[:3]))
    return f"{prog} {VERSION} ({buildinfo.build()} build, Python {python})"


def test_controls_text(server: ChargingServer) -> str:
    """The test controls in force, for the start-up line: a manual or fast clock, the
    request record, fault rules loaded ("" when none)."""
    parts = []
    clock = server.controls.clock
    if server.controls.manual_clock is not None:
        parts.append("manual clock")
    elif getattr(clock, "speed", 1.0) != 1.0:
        parts.append(f"clock at {getattr(clock, 'speed', 1.0):g} times real time")
    if server.record is not None:
        parts.append(f"request record of {server.record.size} frames")
    rules = len(list(server.controls.faults))
    if rules:
        parts.append(f"{rules} fault rule(s) loaded")
    return "; ".join(parts)


def startup_line(host: str, port: int, server: ChargingServer) -> str:
    """`listening on HOST:PORT (who may connect, and how; test controls in force)`: the
    first line of stdout."""
    users = server.users
    auth = "no users file, every client is trusted with every role" if users is None \
        else f"{len(users)} user(s), passwords required"
    tls = "plain TCP"
    if server.ssl_context is not None:
        tls = "TLS with client certificates" if server.config.tls_client_ca else "TLS"
    controls = "" if server.config.test_controls else "; test controls off"
    in_force = test_controls_text(server)
    if in_force:
        controls += "; " + in_force
    return f"listening on {host}:{port} ({auth}; {tls}{controls})"


def startup_warnings(server: ChargingServer) -> list[str]:
    """Dangerous settings, said on stderr after the start-up line."""
    config = server.config
    warnings = []
    if not is_loopback(config.host) and server.users is not None and config.test_controls:
        warnings.append(
            f"cc-server: WARNING: test controls are on and --host {config.host} is not a "
            "loopback address: any admin user can inject faults, read the request record "
            "and move the clock. Start a production server with --no-test-controls.")
    if server.diameter is not None and not is_loopback(server.diameter.host) \
            and not server.diameter.settings.peers:
        warnings.append(
            f"cc-server: WARNING: --diameter {config.diameter} is not a loopback address and "
            "the [diameter] table names no peers: any Diameter peer that can reach this port "
            "can charge every subscriber. Set [diameter] peers, or bind it to 127.0.0.1.")
    if not is_loopback(config.host):
        if server.users is None:
            warnings.append(
                f"cc-server: WARNING: no --users file and --host {config.host} is not a "
                "loopback address: anyone who can reach this port can create subscribers and "
                "move money. Use --users (and --tls-cert/--tls-key), or --host 127.0.0.1.")
        elif server.ssl_context is None:
            warnings.append(
                f"cc-server: WARNING: --host {config.host} without TLS: passwords and "
                "charging data cross the network in clear. Use --tls-cert/--tls-key.")
    return warnings


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """uvloop when asked or available (auto), else the default asyncio loop."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise SystemExit("cc-server: --loop uvloop, but uvloop is not installed") \
                    from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


async def serve(config: ServerConfig) -> None:
    """Run the server until SIGTERM or SIGINT, then drain and return; SIGHUP re-reads
    the users file and the catalog file."""
    server = ChargingServer(config)
    try:
        await server.start()
    except OSError:         # a port in use: close what did start (the log, the main port)
        await server.shutdown()
        raise
    latency = server.dispatcher.latency      # its counts move with every request served
    server.gc_policy = GcPolicy(
        config.gc_freeze_interval, config.gc_full_interval,
        activity=lambda: latency["execute"].count + latency["admin"].count)
    server.gc_policy.start()
    host, port = server.address
    # signals are handled before the first line: whoever reads it may stop us at once
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.hangup)
    loop_name = type(loop).__module__.split(".")[0]
    print(startup_line(host, port, server), flush=True)
    if server.diameter is not None:
        d_host, d_port = server.diameter.address
        print(f"diameter listening on {d_host}:{d_port}", flush=True)
    log.info("event=started host=%s port=%d loop=%s catalog=%s auth=%s tls=%s build=%s", host,
             port, loop_name, config.catalog or "built-in",
             "users-file" if config.users else "none", server.ssl_context is not None,
             buildinfo.build())
    if buildinfo.fell_back():
        log.warning("event=build_fallback build=pure reason=%r", buildinfo.pure_reason())
    for warning in startup_warnings(server):
        print(warning, file=sys.stderr, flush=True)
    await stop.wait()
    log.info("event=stopping connections=%d", len(server.connections))
    await server.shutdown()
    log.info("event=stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cc-server` and `python -m cc_server`."""
    config, print_only = config_from_args(argv)
    if print_only:
        print(to_toml(config), end="")
        return 0
    logs.setup(config.log_level, config.log_format)
    loop = new_event_loop(config.loop)
    try:
        loop.run_until_complete(serve(config))
    except (CatalogError, UsersFileError, TlsError) as exc:
        print(f"cc-server: {exc}", file=sys.stderr)
        return 2
    except DataDirError as exc:
        print(f"cc-server: {exc}", file=sys.stderr)
        return 1
    except ListenError as exc:
        print(f"cc-server: {exc.strerror}", file=sys.stderr)
        return 1
    except OSError as exc:
        error = ListenError(config.host, config.port, "--host/--port", exc)
        print(f"cc-server: {error.strerror}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
