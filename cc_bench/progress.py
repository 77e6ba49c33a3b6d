"""Progress while the load runs: one live line on a terminal, plain lines otherwise.

Every interval it takes the difference of the cumulative histograms, so the figures are
those of the last interval (throughput, p99, errors) at the cost of one copy of the
counters per second, nothing per request. Each interval is also kept for the JSON report.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

from .histogram import Histogram
from .workload import Workload


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms" if ns < 10e9 else f"{ns / 1e9:.1f} s"


class Progress:
    """Samples a workload every `interval` seconds; `timeline` holds the samples."""

    def __init__(self, workload: Workload, interval: float = 1.0, stream: TextIO | None = None,
                 quiet: bool = False) -> None:
        self.w = workload
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.timeline: list[dict[str, Any]] = []
        self._previous: dict[str, Histogram] = {}
        self._errors = 0
        self._completed = 0
        self._t = 0.0
        self._drawn = False

    def restart(self) -> None:
        """The measured period begins: forget the warm-up's counts."""
        self._previous = {k: s.hist.copy() for k, s in self.w.stats.items()}
        self._errors = 0
        self._completed = 0
        self._t = 0.0

    async def run(self) -> None:
        """Sample until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.interval
            self.sample()

    def sample(self) -> None:
        """Take one sample and show it."""
        w = self.w
        if not w.measuring:
            if not w.measure_start:
                self._show("warming up ...")
            return
        t = w.elapsed
        span = max(t - self._t, 1e-9)
        merged: Histogram | None = None
        ops = 0
        # This runs on the load's own event loop: every millisecond here delays the
        # requests due meanwhile (in the open loop, counted as latency), so skip what
        # did not change and what is not shown.
        for name, stats in w.stats.items():
            before = self._previous.get(name)
            if before is not None and before.total == stats.hist.total:
                continue
            if name in ("top_up", "notification"):
                continue
            delta = stats.hist.since(before) if before is not None else stats.hist.copy()
            self._previous[name] = stats.hist.copy()
            ops += delta.total
            if merged is None:
                merged = delta
            else:
                merged.merge(delta)
        errors = sum(s.error_count for s in w.stats.values())
        p99 = merged.percentile(99.0) if merged is not None else 0
        sample = {"t": round(t, 3), "ops": ops, "ops_per_s": round(ops / span, 1),
                  "sessions_per_s": round((w.completed - self._completed) / span, 1),
                  "p50_ms": round(merged.percentile(50.0) / 1e6, 3) if merged else 0.0,
                  "p99_ms": round(p99 / 1e6, 3), "errors": errors - self._errors}
        self.timeline.append(sample)
        self._t, self._errors, self._completed = t, errors, w.completed
        total = w.s.sessions
        done = f"{w.completed:,}" + (f"/{total:,}" if total else "")
        unit = "pings" if w.s.op == "ping" else "sessions"
        self._show(f"{t:6.1f}s  {ops / span:>10,.0f} ops/s  p99 {_ms(p99):>9}  "
                   f"errors {errors:,}  {unit} {done}")

    def _show(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write("[cc-bench] " + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the live line."""
        if self.live and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
