"""What a cc-bench run does: every setting, with its default."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

PLOT_SUFFIXES = (".svg", ".html", ".htm")   # what --plot can write

DEFAULT_CONCURRENCY_CLOSED = 256
DEFAULT_CONCURRENCY_OPEN = 10_000
DEFAULT_DURATION = 10.0
DEFAULT_SERVER = "127.0.0.1:9500"
DEFAULT_LIVE_TTL = 3600.0
CLEANUP_BUDGET = 120.0      # seconds --cleanup may take
LIVE_SETUP_RATE = 1_000     # live sessions per second the time limits assume, at worst


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Every option's help says its default (added where the text does not say it
    already); the description and examples keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


@dataclass(slots=True)
class Settings:
    """One run's settings (see `cc-bench --help`)."""

    op: str = "session"                     # session | ping | codec
    protocol: str = "msgpack"               # msgpack | diameter (Gy: gy_workload.py)
    diameter_server: str | None = None      # --protocol diameter with --server: its Gy port
    server: str | None = None               # host:port; None with spawn
    spawn: bool = False
    data_dir: str | None = None
    server_args: list[str] = field(default_factory=list)
    user: str | None = None
    password: str | None = None
    connections: int = 8
    concurrency: int | None = None          # closed loop: in flight; open loop: the cap
    rate: float | None = None               # open loop: sessions (or pings) per second
    sessions: int | None = None
    duration: float | None = None
    warmup: float = 0.0
    updates: int = 2
    reservations: int = 1
    users: int = 1000
    ttl: float = 60.0
    renewals: bool = False
    renewal_ratio: float = 0.1
    listener_id: int = 7
    notification_timeout: float = 5.0
    balance: Decimal = Decimal("1000000000")
    service: str = "DATA"
    item: str = "data"
    quantity_property: str | None = None    # None: the item's, from the server's catalog
    quantity: int = 100
    result_type: str | None = None          # all | master | none; None: server default
    request_timeout: float = 10.0
    timeout: float | None = None            # hard limit on the whole run, seconds
    interval: float = 1.0
    json: str | None = None
    plot: str | None = None
    quiet: bool = False
    loop: str = "auto"
    codec_seconds: float = 0.2
    live_sessions: int = 0                  # sessions held open during the measurement
    live_ttl: float = DEFAULT_LIVE_TTL
    cleanup: bool = False                   # with --server: remove the run's ids after it
    tls: bool = False                       # the TLS options, as cc-admin's
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def open_loop(self) -> bool:
        """True when a rate is offered (`--rate`)."""
        return self.rate is not None

    @property
    def in_flight(self) -> int:
        """Sessions in flight (closed loop) or the most allowed in flight (open loop)."""
        if self.concurrency is not None:
            return self.concurrency
        return DEFAULT_CONCURRENCY_OPEN if self.open_loop else DEFAULT_CONCURRENCY_CLOSED

    @property
    def run_duration(self) -> float | None:
        """Seconds of measurement; the default applies when neither limit was given."""
        if self.duration is None and self.sessions is None:
            return DEFAULT_DURATION
        return self.duration

    @property
    def hard_timeout(self) -> float:
        """Wall-clock bound of the whole run, set-up and drain included."""
        if self.timeout is not None:
            return self.timeout
        measured = self.run_duration
        if measured is not None:
            return self.warmup + measured + 120.0
        return self.warmup + 1800.0

    @property
    def live_budget(self) -> float:
        """Seconds allowed to open the live sessions (and again to close them)."""
        if not self.live_sessions:
            return 0.0
        return 30.0 + self.live_sessions / LIVE_SETUP_RATE

    @property
    def overall_timeout(self) -> float:
        """Bound of everything: set-up, live sessions, load, closing them, `--cleanup`."""
        cleanup = CLEANUP_BUDGET if self.cleanup else 0.0
        return self.hard_timeout + 180.0 + 2 * self.live_budget + cleanup

    def validate(self) -> None:
        """ValueError on an inconsistent combination."""
        if self.op not in ("session", "ping", "codec"):
            raise ValueError(f"unknown --op {self.op!r}")
        if self.op == "codec":
            return
        if self.spawn and self.server is not None:
            raise ValueError("give either --spawn or --server HOST:PORT, not both")
        if not self.spawn and self.server is None:
            self.server = DEFAULT_SERVER
        if self.data_dir and not self.spawn:
            raise ValueError("--data-dir only applies with --spawn")
        checks = [
            (self.connections >= 1, "--connections must be >= 1"),
            (self.in_flight >= 1, "--concurrency must be >= 1"),
            (self.rate is None or self.rate > 0, "--rate must be > 0"),
            (self.sessions is None or self.sessions >= 1, "--sessions must be >= 1"),
            (self.duration is None or self.duration > 0, "--duration must be > 0"),
            (self.warmup >= 0, "--warmup must be >= 0"),
            (self.updates >= 0, "--updates must be >= 0"),
            (1 <= self.reservations <= 64, "--reservations must be in 1..64"),
            (self.users >= 1, "--users must be >= 1"),
            (self.ttl > 0, "--ttl must be > 0"),
            (0 < self.renewal_ratio <= 1, "--renewal-ratio must be in (0, 1]"),
            (1 <= self.listener_id <= 127, "--listener-id must be in 1..127"),
            (self.quantity >= 1, "--quantity must be >= 1"),
            (self.request_timeout > 0, "--request-timeout must be > 0"),
            (self.interval > 0, "--interval must be > 0"),
            (self.timeout is None or self.timeout > 0, "--timeout must be > 0"),
            (self.live_sessions >= 0, "--live-sessions must be >= 0"),
            (self.live_ttl > 0, "--live-ttl must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.plot is not None and not self.plot.lower().endswith(PLOT_SUFFIXES):
            raise ValueError(f"--plot {self.plot}: the chart is SVG (or an HTML page); "
                             "give a file name ending in .svg (or .html)")
        if self.protocol not in ("msgpack", "diameter"):
            raise ValueError(f"unknown --protocol {self.protocol!r}")
        if self.protocol == "diameter":
            if self.op != "session":
                raise ValueError("--protocol diameter needs --op session")
            if not self.spawn and self.diameter_server is None:
                raise ValueError("--protocol diameter with --server needs --diameter-server "
                                 "HOST:PORT (the server's Gy port)")
            if self.reservations > 32:
                raise ValueError("--protocol diameter: --reservations must be in 1..32")
        elif self.diameter_server is not None:
            raise ValueError("--diameter-server only applies with --protocol diameter")
        if self.renewals and self.op != "session":
            raise ValueError("--renewals needs --op session")
        if self.live_sessions and self.op != "session":
            raise ValueError("--live-sessions needs --op session")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, with the effective values of the defaults."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["balance"] = str(self.balance)
        out["password"] = None if self.password is None else "***"
        out["load_model"] = "open" if self.open_loop else "closed"
        out["in_flight"] = self.in_flight
        out["run_duration"] = self.run_duration
        out["hard_timeout"] = self.hard_timeout
        out["live_budget"] = self.live_budget
        out["overall_timeout"] = self.overall_timeout
        return out
