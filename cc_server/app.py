"""cc-server: flags, start-up line, loop choice, signals."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from collections.abc import Sequence

from .auth import UsersFileError
from .config import ServerConfig
from .engine import CatalogError
from .server import ChargingServer
from .store import DataDirError
from .tls import TlsError

log = logging.getLogger("cc_server")


def build_parser() -> argparse.ArgumentParser:
    """The command line of cc-server."""
    d = ServerConfig()
    p = argparse.ArgumentParser(
        prog="cc-server", description="Session-based online charging server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default=d.host, help="address to listen on")
    p.add_argument("--port", type=int, default=d.port, help="port (0 picks a free one)")
    p.add_argument("--catalog", metavar="FILE", help="TOML price plans (default: built-in)")
    p.add_argument("--data-dir", metavar="DIR", help="persist state here (default: memory)")
    p.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default=d.loop)
    sec = p.add_argument_group("security (README, section Security)")
    sec.add_argument("--users", metavar="FILE",
                     help="users file (TOML; `cc-admin user add`): passwords and roles are "
                          "required; without it every client gets every role")
    sec.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate (PEM)")
    sec.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    sec.add_argument("--tls-client-ca", metavar="FILE",
                     help="require client certificates signed by this CA (PEM)")
    sec.add_argument("--auth-max-failures", type=int, default=d.auth_max_failures, metavar="N",
                     help="failed handshakes from one address before it is backed off")
    sec.add_argument("--auth-failure-window", type=float, default=d.auth_failure_window,
                     metavar="SECONDS", help="how long a failed handshake counts")
    sec.add_argument("--auth-backoff-max", type=float, default=d.auth_backoff_max,
                     metavar="SECONDS", help="longest delay of a backed-off handshake")
    lim = p.add_argument_group("limits (PROTOCOL.md section 5)")
    lim.add_argument("--max-frame", type=int, default=d.max_frame, metavar="BYTES",
                     help="largest frame body (FRAME_TOO_LARGE)")
    lim.add_argument("--max-connections", type=int, default=d.max_connections, metavar="N",
                     help="open connections (TOO_MANY_CONNECTIONS)")
    lim.add_argument("--max-in-flight", type=int, default=d.max_in_flight, metavar="N",
                     help="unanswered requests per connection (TOO_MANY_REQUESTS)")
    lim.add_argument("--max-subrequests", type=int, default=d.max_subrequests, metavar="N",
                     help="sub-requests per container (CONTAINER_TOO_LARGE; at most 1024)")
    lim.add_argument("--max-external-data", type=int, default=d.max_external_data,
                     metavar="BYTES",
                     help="session external data (EXTERNAL_DATA_TOO_LARGE; at most 4096)")
    lim.add_argument("--max-id-length", type=int, default=d.max_id_length, metavar="CHARS",
                     help="user, session, service, reservation ids and property names "
                          "(STRING_TOO_LONG; at most 256)")
    lim.add_argument("--max-string-length", type=int, default=d.max_string_length,
                     metavar="CHARS", help="other strings (STRING_TOO_LONG; at most 4096)")
    lim.add_argument("--max-properties", type=int, default=d.max_properties, metavar="N",
                     help="properties per chargeable item (TOO_MANY_PROPERTIES; at most 64)")
    lim.add_argument("--max-pending-notifications", type=int,
                     default=d.max_pending_notifications, metavar="N",
                     help="pending renewal notifications per listener id; more are dropped")
    lim.add_argument("--handshake-timeout", type=float, default=d.handshake_timeout,
                     metavar="SECONDS", help="time to complete TLS and HELLO "
                                             "(HANDSHAKE_TIMEOUT)")
    lim.add_argument("--idle-timeout", type=float, default=d.idle_timeout, metavar="SECONDS",
                     help="close connections without a request for this long (IDLE_TIMEOUT; "
                          "0: never)")
    p.add_argument("--heartbeat", type=float, default=d.heartbeat, metavar="SECONDS",
                   help="heartbeat interval; a peer silent for 3 intervals is dropped")
    p.add_argument("--dedup-window", type=float, default=d.dedup_window, metavar="SECONDS",
                   help="how long operation outcomes are remembered (exactly once)")
    p.add_argument("--journal-retain", type=int, default=d.journal_retain, metavar="N",
                   help="journal entries kept in memory")
    p.add_argument("--renewal-send-timeout", type=float, default=d.renewal_send_timeout,
                   metavar="SECONDS")
    p.add_argument("--renewal-resend-interval", type=float,
                   default=d.renewal_resend_interval, metavar="SECONDS")
    p.add_argument("--renewal-resend-attempts", type=int, default=d.renewal_resend_attempts,
                   metavar="N")
    p.add_argument("--log-level", default=d.log_level,
                   choices=["debug", "info", "warning", "error"])
    return p


def config_from_args(argv: Sequence[str] | None = None) -> ServerConfig:
    """Parse flags into a `ServerConfig` (exits 2 on a usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = ServerConfig()
    for name, value in vars(args).items():
        setattr(config, name, value)
    problems = config.problems()
    if problems:
        parser.error("; ".join(problems))
    return config


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_line(host: str, port: int, server: ChargingServer) -> str:
    """`listening on HOST:PORT (who may connect, and how)`: the first line of stdout."""
    users = server.users
    auth = "no users file, every client is trusted with every role" if users is None \
        else f"{len(users)} user(s), passwords required"
    tls = "plain TCP"
    if server.ssl_context is not None:
        tls = "TLS with client certificates" if server.config.tls_client_ca else "TLS"
    return f"listening on {host}:{port} ({auth}; {tls})"


def startup_warnings(server: ChargingServer) -> list[str]:
    """Dangerous settings, said on stderr after the start-up line."""
    config = server.config
    warnings = []
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
    """Run the server until SIGTERM or SIGINT, then drain and return."""
    server = ChargingServer(config)
    await server.start()
    host, port = server.address
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(startup_line(host, port, server), flush=True)
    log.info("event=started host=%s port=%d loop=%s catalog=%s auth=%s tls=%s", host, port,
             loop_name, config.catalog or "built-in",
             "users-file" if config.users else "none", server.ssl_context is not None)
    for warning in startup_warnings(server):
        print(warning, file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("event=stopping connections=%d", len(server.connections))
    await server.shutdown()
    log.info("event=stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cc-server` and `python -m cc_server`."""
    config = config_from_args(argv)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    loop = new_event_loop(config.loop)
    try:
        loop.run_until_complete(serve(config))
    except (CatalogError, UsersFileError, TlsError) as exc:
        print(f"cc-server: {exc}", file=sys.stderr)
        return 2
    except DataDirError as exc:
        print(f"cc-server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cc-server: cannot listen on {config.host}:{config.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
