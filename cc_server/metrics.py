"""Metrics: the Prometheus text format, and its HTTP endpoint.

`--metrics-port` serves `GET /metrics` (loopback by default) from a few lines of asyncio,
so scraping never blocks the event loop and needs no dependency.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("cc_server")

#: Every statistic as a metric: stats path -> (type, HELP). A gauge `a.b` is `cc_a_b`, a
#: counter `cc_a_b_total`. Paths ending in `*` are families labelled by the rest of the
#: key (LABELS); histograms (`latency.KIND`) are `cc_latency_KIND_seconds`.
METRICS: dict[str, tuple[str, str]] = {
    "engine.subscribers": ("gauge", "Subscribers the engine holds."),
    "engine.sessions": ("gauge", "Live charging sessions."),
    "engine.reservations": ("gauge", "Open reservations."),
    "engine.journal_entries": ("gauge", "Transaction journal entries kept in memory."),
    "engine.journal_next_id": ("gauge", "Id the next journal entry will get."),
    "engine.expiry_queue": ("gauge", "Reservations and sessions waiting for expiry."),
    "operations.*": ("counter", "Requests by kind and outcome (ok or an error code)."),
    "sub_requests.*": ("counter", "Sub-requests by action and outcome (ok or an error code)."),
    "dedup.entries": ("gauge", "Operation outcomes remembered for exactly-once."),
    "dedup.hits": ("counter", "Repeated operations answered from the stored outcome."),
    "dedup.max_entries": ("gauge", "Bound on the outcomes remembered (--dedup-max-entries)."),
    "dedup.refused_full": ("counter", "New operations refused (TOO_MANY_REQUESTS) while "
                           "the outcomes remembered were at their bound."),
    "renewal.listeners": ("gauge", "Registered renewal listeners."),
    "renewal.pending": ("gauge", "Renewal notifications waiting for an acknowledgement."),
    "renewal.created": ("counter", "Renewal notifications created."),
    "renewal.reused": ("counter", "Renewal requests that joined a pending notification."),
    "renewal.dropped_over_limit": ("counter",
                                   "Renewal notifications dropped over the per-listener cap."),
    "renewal.sent": ("counter", "First attempts of renewal notifications."),
    "renewal.resent": ("counter", "Repeated attempts of renewal notifications."),
    "renewal.undeliverable": ("counter", "Attempts with no listener connection to send on."),
    "renewal.acknowledged": ("counter", "Renewal notifications acknowledged."),
    "renewal.obsolete": ("counter", "Renewal notifications no longer needed."),
    "renewal.expired_unacknowledged": ("counter",
                                       "Renewal notifications given up unacknowledged."),
    "renewal.push_failed": ("counter", "Notification pushes that failed with an error "
                            "(counted as not sent)."),
    "timers.failures.*": ("counter", "Failed steps of timer runs, by step (each step runs "
                          "on its own)."),
    "timers.notify_failures": ("counter", "Errors handing renewals over after a change was "
                               "applied and logged (the renewals are kept)."),
    "server.uptime": ("gauge", "Seconds since the server started."),
    "connections.open": ("gauge", "Open connections."),
    "connections.handshaking": ("gauge", "Connections between accept and HELLO_OK."),
    "connections.accepted": ("counter", "Connections accepted."),
    "connections.refused_connections": ("counter", "Connections refused over the limit."),
    "connections.refused_per_address": ("counter", "Connections refused over the "
                                        "per-address limit (also in refused_connections)."),
    "connections.dead_peers": ("counter", "Connections dropped for missed heartbeats."),
    "connections.connection_error.*": ("counter", "Connections closed by an error, by code."),
    "security.auth.users": ("gauge", "Users in the users file (0: no users file)."),
    "security.auth.ok": ("counter", "Successful logins."),
    "security.auth.failed": ("counter", "Failed logins."),
    "security.auth.delayed": ("counter", "Handshakes delayed by the failed-login back-off."),
    "security.auth.refused_backoff": ("counter",
                                      "Handshakes refused while backed off."),
    "security.auth.peers_backed_off": ("gauge", "Addresses currently backed off."),
    "security.tls": ("gauge", "1 when the server speaks TLS."),
    "security.limits.*": ("counter", "Requests or connections refused for a limit, by code."),
    "durability.log_records": ("counter", "Records appended to the write-ahead log."),
    "durability.log_synced": ("counter", "Log records synced to disk."),
    "durability.log_syncs": ("counter", "fsync calls on the write-ahead log."),
    "durability.log_bytes": ("counter", "Bytes written to the write-ahead log."),
    "durability.snapshot": ("gauge", "Log index of the newest snapshot."),
    "gc.frozen": ("gauge", "Objects moved out of the garbage collector's view, as counted "
                  "after the last full garbage collection."),
    "gc.full_collections": ("counter", "Full garbage collections run by the server."),
    "gc.last_full_seconds": ("gauge", "Duration of the last full garbage collection."),
    "gc.last_full_collected": ("gauge", "Unreachable objects the last full collection found."),
    "gc.young_collected": ("counter",
                           "Unreachable objects found by the collections before each freeze."),
    "gc.full_interval": ("gauge", "Seconds from one full garbage collection to the next "
                         "(0: never)."),
    "gc.next_full_in": ("gauge", "Seconds until the next full garbage collection is due "
                        "(-1: never)."),
}
#: Label names of the labelled families (a missing last part is "ok").
LABELS: dict[str, tuple[str, ...]] = {
    "operations": ("kind", "outcome"), "sub_requests": ("action", "outcome"),
    "connections.connection_error": ("code",), "security.limits": ("code",),
    "timers.failures": ("step",)}
UNDOCUMENTED = "Undocumented statistic"


class _Family:
    __slots__ = ("help", "samples", "type")

    def __init__(self, kind: str, text: str) -> None:
        self.type, self.help = kind, text
        self.samples: list[str] = []


def _name(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if isinstance(value, bool) else repr(value)


def prometheus(stats: Mapping[str, Any]) -> str:
    """The stats tree as Prometheus text exposition (format 0.0.4): every statistic a
    family with HELP and TYPE (METRICS), outcomes by code as labelled counters,
    latency histograms as histograms."""
    families: dict[str, _Family] = {}

    def family(name: str, kind: str, text: str) -> _Family:
        if name not in families:
            families[name] = _Family(kind, text)
        return families[name]

    def leaf(parts: list[str], value: Any) -> None:
        for depth in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:depth])
            if prefix in LABELS:
                kind, text = METRICS[prefix + ".*"]
                names = LABELS[prefix]
                values = [*parts[depth:], "ok"][:len(names)]
                labels = ",".join(f'{n}="{_label(v)}"' for n, v in zip(names, values,
                                                                        strict=True))
                name = f"cc_{_name(prefix)}_total"
                family(name, kind, text).samples.append(f"{name}{{{labels}}} {value}")
                return
        path = ".".join(parts)
        kind, text = METRICS.get(path, ("gauge", f"{UNDOCUMENTED} {path} (cc-admin stats)."))
        name = f"cc_{_name(path)}" + ("_total" if kind == "counter" else "")
        family(name, kind, text).samples.append(f"{name} {_number(value)}")

    def walk(parts: list[str], value: Any) -> None:
        if isinstance(value, Mapping) and {"count", "sum", "buckets"} <= value.keys():
            name = f"cc_{_name('.'.join(parts))}_seconds"
            out = family(name, "histogram", f"Server-side latency of {parts[-1]} requests, "
                                            "seconds.").samples
            out += [f'{name}_bucket{{le="{bound}"}} {n}'
                    for bound, n in value["buckets"].items()]
            out += [f"{name}_sum {value['sum']!r}", f"{name}_count {value['count']}"]
        elif isinstance(value, Mapping):
            if ".".join(parts) in LABELS:     # declared even while it has no samples
                family(f"cc_{_name('.'.join(parts))}_total",
                       *METRICS[".".join(parts) + ".*"])
            for key, inner in value.items():
                walk([*parts, *str(key).split(".")], inner)
        elif isinstance(value, int | float):
            leaf(parts, value)

    for section, value in stats.items():
        walk([str(section)], value)
    lines = []
    for name, fam in families.items():
        lines += [f"# HELP {name} {fam.help}", f"# TYPE {name} {fam.type}", *fam.samples]
    return "\n".join(lines) + "\n"


class ListenError(OSError):
    """A listening socket that could not be opened; the text names the address, the
    settings that chose it, and the reason."""

    def __init__(self, host: str, port: int, settings: str, exc: OSError) -> None:
        reason = os.strerror(exc.errno).lower() if exc.errno and exc.errno > 0 \
            else str(exc.strerror or exc)
        super().__init__(exc.errno, f"cannot listen on {host}:{port} ({settings}): {reason}")


class MetricsEndpoint:
    """`GET /metrics` over HTTP/1.0-style one-shot connections."""

    def __init__(self, host: str, port: int, render: Callable[[], str]) -> None:
        self.host = host
        self.port = port
        self.render = render
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise ListenError(self.host, self.port, "--metrics-host/--metrics-port",
                              exc) from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("event=metrics_listening host=%s port=%d", self.host, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readuntil(b"\r\n\r\n")
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method not in ("GET", "HEAD") or path.split("?")[0] != "/metrics":
                status, body = "404 Not Found", b"only GET /metrics is served here\n"
            else:
                status, body = "200 OK", self.render().encode()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
