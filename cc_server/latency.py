"""Latency histograms: one observation per request, so this module is compiled (HOT_MODULES).

`metrics.py` turns them into the Prometheus text format; `Dispatcher` keeps one per kind
of request.
"""

from __future__ import annotations

from typing import Any, Final

# seconds; Prometheus-style upper bounds (the last bucket is +Inf). Typed `tuple[float, ...]`:
# a fixed-length tuple type is kept unboxed when compiled, and boxed anew for every loop.
BUCKETS: Final[tuple[float, ...]] = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                     0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Histogram:
    """Counts of observations per bucket, their sum and number."""

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        # bisect_left's index, by a scan: compiled, it compares C doubles with no float
        # object made, and most requests stop in the first few buckets
        index = 0
        for bound in BUCKETS:
            if seconds <= bound:
                break
            index += 1
        self.counts[index] += 1
        self.count += 1
        self.total += seconds

    def to_dict(self) -> dict[str, Any]:
        """count, sum, and cumulative counts by upper bound (as in Prometheus)."""
        cumulative, running = {}, 0
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], self.counts, strict=True):
            running += n
            cumulative[bound] = running
        return {"count": self.count, "sum": self.total, "buckets": cumulative}
