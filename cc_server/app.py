"""cc-server: flags, start-up line, loop choice, signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from .config import ServerConfig
from .engine import CatalogError
from .server import ChargingServer
from .store import DataDirError

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
    p.add_argument("--heartbeat", type=float, default=d.heartbeat, metavar="SECONDS",
                   help="heartbeat interval; a peer silent for 3 intervals is dropped")
    p.add_argument("--max-frame", type=int, default=d.max_frame, metavar="BYTES")
    p.add_argument("--max-connections", type=int, default=d.max_connections)
    p.add_argument("--max-in-flight", type=int, default=d.max_in_flight)
    p.add_argument("--max-subrequests", type=int, default=d.max_subrequests)
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout, metavar="SECONDS",
                   help="close connections without a request for this long (0: never)")
    p.add_argument("--handshake-timeout", type=float, default=d.handshake_timeout,
                   metavar="SECONDS")
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
    args = build_parser().parse_args(argv)
    config = ServerConfig()
    for name, value in vars(args).items():
        setattr(config, name, value)
    return config


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
    print(f"listening on {host}:{port}", flush=True)
    log.info("event=started host=%s port=%d loop=%s catalog=%s auth=%s", host, port, loop_name,
             config.catalog or "built-in", "users-file" if config.users else "none")
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
    except CatalogError as exc:
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
