"""Metrics: latency histograms, the Prometheus text format, and its HTTP endpoint.

`--metrics-port` serves `GET /metrics` (loopback by default) from a few lines of asyncio,
so scraping never blocks the event loop and needs no dependency.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("cc_server")

# seconds; Prometheus-style upper bounds (the last bucket is +Inf)
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
           0.25, 0.5, 1.0)


class Histogram:
    """Counts of observations per bucket, their sum and number."""

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def to_dict(self) -> dict[str, Any]:
        """count, sum, and cumulative counts by upper bound (as in Prometheus)."""
        cumulative, running = {}, 0
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], self.counts, strict=True):
            running += n
            cumulative[bound] = running
        return {"count": self.count, "sum": self.total, "buckets": cumulative}


def _name(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def prometheus(stats: Mapping[str, Any]) -> str:
    """The stats tree as Prometheus text exposition: every number becomes a gauge named
    after its path (`cc_engine_sessions`), histograms become histograms, and counters
    of outcomes become one series with labels."""
    lines: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and {"count", "sum", "buckets"} <= value.keys():
            name = f"cc_{prefix}_seconds"
            lines.append(f"# TYPE {name} histogram")
            for bound, n in value["buckets"].items():
                lines.append(f'{name}_bucket{{le="{bound}"}} {n}')
            lines.append(f"{name}_sum {value['sum']}")
            lines.append(f"{name}_count {value['count']}")
        elif isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}_{_name(str(key))}" if prefix else _name(str(key)), inner)
        elif isinstance(value, bool):
            lines.append(f"cc_{prefix} {int(value)}")
        elif isinstance(value, int | float):
            lines.append(f"cc_{prefix} {value}")

    for section, value in stats.items():
        if section in ("operations", "sub_requests") and isinstance(value, Mapping):
            _labelled(lines, f"cc_{section}_total", value.items())
        else:
            walk(_name(section), value)
    return "\n".join(lines) + "\n"


def _labelled(lines: list[str], name: str, items: Iterable[tuple[str, Any]]) -> None:
    lines.append(f"# TYPE {name} counter")
    for key, count in sorted(items):
        kind, _, outcome = str(key).partition(".")
        lines.append(f'{name}{{kind="{kind}",outcome="{outcome or "ok"}"}} {count}')


class MetricsEndpoint:
    """`GET /metrics` over HTTP/1.0-style one-shot connections."""

    def __init__(self, host: str, port: int, render: Callable[[], str]) -> None:
        self.host = host
        self.port = port
        self.render = render
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
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
