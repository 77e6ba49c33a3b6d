"""Server settings: one dataclass; defaults, then a TOML config file, then flags.

Every field is both a flag (`--resend-interval` style: underscores become dashes) and a
config-file key (either spelling), so the two can never drift apart; `--print-config`
prints the effective settings in the config-file format.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from protocol import messages as m
from protocol.frames import DEFAULT_MAX_FRAME

from .clock import MAX_SPEED
from .faults import FaultError, rule_from_map
from .gy_config import GyConfigError, GySettings, parse_listen
from .record import MAX_RECORD
from .tomlfile import read_toml


@dataclass(slots=True)
class ServerConfig:
    """Every setting of cc-server, with its default."""

    host: str = "127.0.0.1"
    port: int = 9500
    catalog: str | None = None
    data_dir: str | None = None
    users: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    loop: str = "auto"
    # transport
    heartbeat: float = 5.0
    handshake_timeout: float = 10.0
    idle_timeout: float = 600.0
    max_frame: int = DEFAULT_MAX_FRAME
    max_connections: int = 10_000
    max_connections_per_address: int = 1000
    max_handshakes: int = 1024
    max_in_flight: int = 1024
    write_buffer_high: int = 4 * 1024 * 1024
    # request limits (at most the wire format's own caps, protocol.messages.MAX_*)
    max_subrequests: int = 64
    max_external_data: int = m.MAX_EXTERNAL_DATA
    max_id_length: int = m.MAX_ID_LENGTH
    max_string_length: int = m.MAX_STRING_LENGTH
    max_properties: int = m.MAX_PROPERTIES
    # authentication back-off: failures per peer address within the window
    auth_max_failures: int = 5
    auth_failure_window: float = 60.0
    auth_backoff_max: float = 5.0
    # exactly once
    dedup_window: float = 600.0
    dedup_max_entries: int = 2_000_000
    # journal kept in memory
    journal_retain: int = 2_000_000
    # durability
    snapshot_every: int = 64 * 1024 * 1024
    recover_to_last_good: bool = False
    # renewal notifications
    renewal_send_timeout: float = 0.5
    renewal_resend_interval: float = 1.0
    renewal_resend_attempts: int = 10
    max_pending_notifications: int = 10_000
    # operations
    tick: float = 0.05
    gc_freeze_interval: float = 1.0
    gc_full_interval: float = 600.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_level: str = "info"
    log_format: str = "text"
    # test controls (README "Testing your client against cc-server")
    record: int = 0
    clock: str = "wall"
    clock_speed: float = 1.0
    test_controls: bool = True
    #: fault rules loaded at start: the `[[faults]]` tables of the config file (no flag)
    faults: tuple[dict[str, Any], ...] = ()
    # Diameter Gy front-end (DIAMETER.md): HOST:PORT, and the rest of the [diameter] table
    diameter: str | None = None
    diameter_table: dict[str, Any] | None = None

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty: nothing): every numeric setting
        against its range in RANGES, then the settings that go together."""
        found = []
        for name, (low, high, _) in RANGES.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:   # NaN fails too
                found.append(range_message(name, value))
        if self.metrics_port and self.metrics_port == self.port:
            found.append(f"--metrics-port must differ from --port ({self.port})")
        if bool(self.tls_cert) != bool(self.tls_key):
            found.append("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca and not self.tls_cert:
            found.append("--tls-client-ca needs --tls-cert and --tls-key")
        found += self._test_control_problems()
        if self.diameter is not None or self.diameter_table:
            try:
                if self.diameter is not None:
                    parse_listen(self.diameter)
                GySettings.from_table(self.diameter_table or {})
            except GyConfigError as exc:
                found.append(str(exc))
        return found

    def _test_control_problems(self) -> list[str]:
        found = []
        if self.clock == "manual" and self.clock_speed != 1.0:
            found.append("--clock manual and --clock-speed do not go together")
        if not self.test_controls and (self.record or self.clock == "manual" or self.faults):
            found.append("--record, --clock manual and [[faults]] need the test controls "
                         "(drop --no-test-controls)")
        for index, rule in enumerate(self.faults):
            try:
                rule_from_map(rule)
            except FaultError as exc:
                found.append(f"faults[{index}]: {exc}")
        return found


#: Limits that may only be tightened, with the wire format's cap.
FORMAT_CAPS = {"max_subrequests": m.MAX_SUBREQUESTS, "max_id_length": m.MAX_ID_LENGTH,
               "max_string_length": m.MAX_STRING_LENGTH, "max_properties": m.MAX_PROPERTIES,
               "max_external_data": m.MAX_EXTERNAL_DATA}

DAY = 86_400.0
YEAR = 365 * DAY
MAX_FRAME_CAP = 2**31        # PROTOCOL.md: a frame body is at most 2 GiB

#: The allowed range of every numeric setting: name -> (lowest, highest, why).
RANGES: dict[str, tuple[float, float, str]] = {
    "port": (0, 65535, "0 picks a free port"),
    "metrics_port": (0, 65535, "0 picks a free port"),
    "heartbeat": (0.001, DAY, ""),
    "handshake_timeout": (0.001, DAY, ""),
    "idle_timeout": (0.0, YEAR, "0: never"),
    "max_frame": (1024, MAX_FRAME_CAP, "the wire format's cap is 2 GiB"),
    "max_connections": (1, 1_000_000, ""),
    "max_connections_per_address": (0, 1_000_000, "0: no per-address limit"),
    "max_handshakes": (1, 1_000_000, ""),
    "max_in_flight": (1, 1_000_000, ""),
    "write_buffer_high": (1024, MAX_FRAME_CAP, ""),
    **{name: (1, cap, "the wire format's own cap") for name, cap in FORMAT_CAPS.items()},
    "auth_max_failures": (1, 1_000_000, ""),
    "auth_failure_window": (0.001, DAY, ""),
    "auth_backoff_max": (0.0, 3600.0, "0: no back-off"),
    "dedup_window": (0.1, YEAR, ""),
    "dedup_max_entries": (1, 100_000_000, ""),
    "journal_retain": (1, 100_000_000, ""),
    "snapshot_every": (1024, 2**40, ""),
    "renewal_send_timeout": (0.001, 3600.0, ""),
    "renewal_resend_interval": (0.001, DAY, ""),
    "renewal_resend_attempts": (0, 1000, "0: send once"),
    "max_pending_notifications": (1, 10_000_000, ""),
    "tick": (0.001, 60.0, ""),
    "gc_freeze_interval": (0.0, DAY, "0: Python's own collection"),
    "gc_full_interval": (0.0, YEAR, "0: never"),
    "record": (0, MAX_RECORD, "0: off"),
    "clock_speed": (0.001, MAX_SPEED, "times real time"),
}


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


#: float settings that are no durations
UNITLESS = frozenset({"clock_speed"})


def range_message(name: str, value: float) -> str:
    """`--port (config key port) must be in 0..65535 (...), not 70000`."""
    low, high, note = RANGES[name]
    kind, _ = field_types()[name]
    unit = " seconds" if kind is float and name not in UNITLESS else ""
    span = f"{_number(low)}..{_number(high)}{unit}"
    return (f"--{name.replace('_', '-')} (config key {name}) must be in {span}"
            f"{f' ({note})' if note else ''}, not {value!r}")


HELP: dict[str, str] = {
    "host": "address to listen on",
    "port": "port to listen on; 0 picks a free one and prints it",
    "catalog": "TOML price plans (default: the built-in catalog)",
    "data_dir": "keep state in this directory (write-ahead log + snapshots) "
                "(default: in memory)",
    "users": "TOML users file (password hashes, roles; re-read on SIGHUP) "
             "(default: every client trusted)",
    "tls_cert": "PEM certificate chain: serve TLS (default: plain TCP)",
    "tls_key": "PEM private key of --tls-cert",
    "tls_client_ca": "PEM CA bundle: require client certificates signed by it "
                     "(default: none asked for)",
    "loop": "event loop implementation",
    "heartbeat": "heartbeat interval, seconds; a peer silent for 3 of them is dropped",
    "handshake_timeout": "seconds from accept to finish TLS and HELLO, together",
    "idle_timeout": "close connections without a request for this many seconds (0: never)",
    "max_external_data": "session external data, bytes (at most 4096)",
    "max_id_length": "characters of an id: user, session, service, reservation, property",
    "max_string_length": "characters of any other string",
    "max_properties": "properties per chargeable item",
    "auth_max_failures": "failed logins from one address, within the window, before back-off",
    "auth_failure_window": "seconds over which failed logins are counted",
    "auth_backoff_max": "longest delay of a handshake from a backed-off address, seconds",
    "max_pending_notifications": "pending renewal notifications per listener id",
    "max_frame": "largest frame body accepted, bytes",
    "max_connections": "simultaneous connections (TLS handshakes in progress included)",
    "max_connections_per_address": "simultaneous connections from one IP address, counted as "
                                   "--max-connections (0: no per-address limit)",
    "max_handshakes": "connections between accept and HELLO_OK at once (TLS and HELLO)",
    "max_in_flight": "unanswered requests per connection (PINGs not counted); past it "
                     "each further request gets TOO_MANY_REQUESTS",
    "max_subrequests": "sub-requests per container",
    "write_buffer_high": "per-connection write buffer, bytes, before reading pauses",
    "dedup_window": "seconds an operation's outcome is remembered (exactly once)",
    "dedup_max_entries": "outcomes remembered at most (a memory bound; while that many are "
                         "held, new operations get TOO_MANY_REQUESTS)",
    "journal_retain": "journal entries kept in memory",
    "snapshot_every": "log bytes between background snapshots (with --data-dir)",
    "recover_to_last_good": "start even though the log is damaged: keep the records before "
                            "the damage, move the damaged file to corrupt/ and log what is "
                            "lost (a one-off, after `cc-admin verify`)",
    "renewal_send_timeout": "seconds before an unacknowledged notification goes to a backup",
    "renewal_resend_interval": "seconds between notification attempts",
    "renewal_resend_attempts": "resends after the first attempt (0: send once)",
    "tick": "timer period for expiry and resends, seconds",
    "gc_freeze_interval": "seconds between moves of surviving objects out of the garbage "
                          "collector's view (0: Python's own collection)",
    "gc_full_interval": "shortest seconds between full garbage collections; longer while "
                        "they find nothing or pause long (0: never)",
    "metrics_port": "serve Prometheus metrics over HTTP on this port (default: off)",
    "metrics_host": "address of the metrics endpoint",
    "log_level": "log level",
    "log_format": "log lines as key=value text or JSON",
    "record": "keep the last N frames in and out (test control; 0: off)",
    "clock": "wall, or manual: starts at the real time and moves only on "
             "`cc-admin clock advance|set` (test control)",
    "clock_speed": "run the clock K times faster than real time (TTL soak tests)",
    "diameter": "also serve Diameter Gy (credit control, DIAMETER.md) on HOST:PORT; port 0 "
                "picks a free one and prints it (default: off)",
    "test_controls": "fault rules, the request record and the manual clock over the "
                     "admin commands (on by default)",
}

CHOICES: dict[str, tuple[str, ...]] = {
    "loop": ("auto", "uvloop", "asyncio"),
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("text", "json"),
    "clock": ("wall", "manual"),
}


METAVAR: dict[str, str] = {
    "host": "HOST", "port": "PORT", "metrics_port": "PORT", "metrics_host": "HOST",
    "catalog": "FILE", "users": "FILE", "tls_cert": "FILE", "tls_key": "FILE",
    "tls_client_ca": "FILE", "data_dir": "DIR", "max_frame": "BYTES",
    "write_buffer_high": "BYTES", "snapshot_every": "BYTES", "max_external_data": "BYTES",
    "clock_speed": "K", "diameter": "HOST:PORT",
}
#: settings that are no flag (config file only)
FILE_ONLY = frozenset({"faults", "diameter_table"})


def metavar(name: str) -> str:
    """How --help names a setting's value."""
    kind, _ = field_types()[name]
    return METAVAR.get(name) or {float: "SECONDS", int: "N"}.get(kind, "VALUE")


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says which and why."""


def field_types() -> dict[str, tuple[type, bool]]:
    """name -> (value type, None allowed) of every setting."""
    out: dict[str, tuple[type, bool]] = {}
    for f in fields(ServerConfig):
        if f.name in FILE_ONLY:
            continue
        text = str(f.type)
        base = text.replace(" | None", "")
        out[f.name] = ({"str": str, "int": int, "float": float, "bool": bool}[base],
                       text.endswith("| None"))
    return out


def convert(name: str, value: Any) -> Any:
    """A value for setting `name`, checked and converted (ConfigError if it cannot be)."""
    if name == "faults":
        return fault_tables(value)
    if name == "diameter_table":
        if not isinstance(value, Mapping):
            raise ConfigError("diameter must be a table ([diameter])")
        return dict(value)
    kind, optional = field_types()[name]
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{name} must be {kind.__name__}, not {value!r}")
    if name in CHOICES and value not in CHOICES[name]:
        raise ConfigError(f"{name} must be one of {', '.join(CHOICES[name])}, not {value!r}")
    return value            # ranges: ServerConfig.problems()


#: Settings that name a file or directory: relative in a config file means relative to
#: the file's own folder (on the command line, to the current directory).
PATH_SETTINGS = frozenset(name for name, shown in METAVAR.items() if shown in ("FILE", "DIR"))


def load_file(path: str) -> dict[str, Any]:
    """Settings from a TOML file; keys as in `--print-config` (dashes also accepted).
    Relative paths in it are resolved against the file's folder."""
    raw = read_toml(path, "config", ConfigError)
    known = {**field_types(), "faults": (tuple, False)}
    raw = dict(raw)
    table = raw.get("diameter")
    if isinstance(table, Mapping):        # [diameter]: listen = "HOST:PORT", the rest
        table = dict(table)
        raw.pop("diameter")
        if "listen" in table:
            raw["diameter"] = table.pop("listen")
        raw["diameter_table"] = table
        known["diameter_table"] = (dict, False)
    folder = os.path.dirname(os.path.abspath(path))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}; see cc-server --print-config")
        values[name] = convert(name, value)
        if name in PATH_SETTINGS and values[name]:
            values[name] = os.path.join(folder, os.path.expanduser(values[name]))
    return values


def fault_tables(value: Any) -> tuple[dict[str, Any], ...]:
    """The `[[faults]]` array of a config file, each rule checked."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
        raise ConfigError("faults must be an array of tables ([[faults]])")
    for index, rule in enumerate(value):
        try:
            rule_from_map(rule)
        except FaultError as exc:
            raise ConfigError(f"faults[{index}]: {exc}") from None
    return tuple(dict(rule) for rule in value)


def build(file_values: Mapping[str, Any], flag_values: Mapping[str, Any]) -> ServerConfig:
    """Defaults, overridden by the file, overridden by flags."""
    config = ServerConfig()
    for name, value in {**file_values, **flag_values}.items():
        setattr(config, name, convert(name, value))
    return config


def to_toml(config: ServerConfig) -> str:
    """The settings as a config file (unset optional ones commented out)."""
    lines = ["# cc-server configuration (cc-server --config FILE); flags override it"]
    for f in fields(ServerConfig):
        value = getattr(config, f.name)
        if f.name in FILE_ONLY or (f.name == "diameter" and config.diameter_table):
            continue
        if value is None:
            lines.append(f"# {f.name} =")
        elif isinstance(value, bool):
            lines.append(f"{f.name} = {str(value).lower()}")
        elif isinstance(value, str):
            lines.append(f"{f.name} = {value!r}".replace("'", '"'))
        else:
            lines.append(f"{f.name} = {value}")
    if config.diameter_table:     # the listen address goes in the table, not beside it
        table = {**({"listen": config.diameter} if config.diameter else {}),
                 **config.diameter_table}
        lines += ["", "[diameter]"] + [f"{key} = {_toml_value(v)}" for key, v in table.items()]
    for rule in config.faults:
        lines += ["", "[[faults]]"] + [f"{key} = {_toml_value(v)}" for key, v in rule.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
