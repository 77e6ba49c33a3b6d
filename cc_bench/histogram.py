"""Log-linear latency histogram in the style of HdrHistogram (mergeable, fixed precision).

Values are integers (cc-bench records nanoseconds). Buckets double in width; each is split
into `2 * 10**digits` rounded up to a power of two linear sub-buckets, so every recorded
value is kept to `digits` significant decimal digits whatever its size: with 2 digits the
relative error is below 1 % from 1 microsecond to an hour, in a few thousand counters.
Recording is two shifts and a list increment; percentiles walk the counters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from operator import add, sub
from typing import Any

DEFAULT_DIGITS = 2
DEFAULT_LOWEST = 1_000                    # 1 microsecond, in nanoseconds
DEFAULT_HIGHEST = 3_600 * 1_000_000_000   # 1 hour, in nanoseconds
#: the percentiles of the report and of the JSON's percentile list
CURVE_PERCENTILES = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0,
                     85.0, 90.0, 92.5, 95.0, 96.25, 97.5, 98.0, 98.75, 99.0, 99.25, 99.5,
                     99.6, 99.7, 99.8, 99.9, 99.95, 99.99, 99.999, 100.0)


class Histogram:
    """Counts of values in log-linear buckets; `record`, `merge`, `percentile`."""

    __slots__ = ("_half", "_half_mag", "_mask", "_unit", "counts", "digits", "highest",
                 "lowest", "max", "min", "sum", "total")

    def __init__(self, digits: int = DEFAULT_DIGITS, lowest: int = DEFAULT_LOWEST,
                 highest: int = DEFAULT_HIGHEST) -> None:
        if not 1 <= digits <= 5 or lowest < 1 or highest < 2 * lowest:
            raise ValueError("need 1 <= digits <= 5 and 1 <= lowest, 2 * lowest <= highest")
        self.digits, self.lowest, self.highest = digits, lowest, highest
        sub_count_mag = math.ceil(math.log2(2 * 10 ** digits))
        self._half_mag = sub_count_mag - 1
        self._half = 1 << self._half_mag
        self._unit = math.floor(math.log2(lowest))
        self._mask = ((1 << sub_count_mag) - 1) << self._unit
        # buckets needed so that `highest` still has an index
        buckets, smallest_untrackable = 1, (1 << sub_count_mag) << self._unit
        while smallest_untrackable <= highest:
            smallest_untrackable <<= 1
            buckets += 1
        self.counts = [0] * ((buckets + 1) << self._half_mag)
        self.total = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    # ------------------------------------------------------------------ recording

    def index_of(self, value: int) -> int:
        """Counter index of a (clamped) value."""
        value = min(max(value, 0), self.highest)
        bucket = (value | self._mask).bit_length() - self._unit - self._half_mag - 1
        sub = value >> (bucket + self._unit)
        return ((bucket + 1) << self._half_mag) + sub - self._half

    def record(self, value: int) -> None:
        """Count one value (clamped to 0..highest)."""
        if value > self.highest:
            value = self.highest
        elif value < 0:
            value = 0
        bucket = (value | self._mask).bit_length() - self._unit - self._half_mag - 1
        self.counts[((bucket + 1) << self._half_mag) + (value >> (bucket + self._unit))
                    - self._half] += 1
        if self.total == 0 or value < self.min:
            self.min = value
        if value > self.max:  # noqa: PLR1730 (max() is slower on this hot path)
            self.max = value
        self.total += 1
        self.sum += value

    def merge(self, other: Histogram) -> None:
        """Add another histogram of the same shape into this one."""
        if (other.digits, other.lowest, len(other.counts)) != \
                (self.digits, self.lowest, len(self.counts)):
            raise ValueError("histograms of different shapes cannot be merged")
        if not other.total:
            return
        self.counts = list(map(add, self.counts, other.counts))   # same length: checked
        self.min = other.min if not self.total else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.total += other.total
        self.sum += other.sum

    def copy(self) -> Histogram:
        """An independent copy."""
        twin = Histogram(self.digits, self.lowest, self.highest)
        twin.counts = self.counts[:]
        twin.total, twin.sum, twin.min, twin.max = self.total, self.sum, self.min, self.max
        return twin

    def since(self, earlier: Histogram) -> Histogram:
        """What was recorded after `earlier` (a copy of this histogram) was taken."""
        delta = Histogram(self.digits, self.lowest, self.highest)
        delta.counts = list(map(sub, self.counts, earlier.counts))
        delta.total = self.total - earlier.total
        delta.sum = self.sum - earlier.sum
        if delta.total:   # exact extremes of the interval are unknown: use bucket bounds
            first = next(i for i, c in enumerate(delta.counts) if c)
            last = max(i for i, c in enumerate(delta.counts) if c)
            delta.min = self.lowest_equivalent(first)
            delta.max = min(self.highest_equivalent(last), self.max)
        return delta

    # ------------------------------------------------------------------ bucket geometry

    def _bucket_of_index(self, index: int) -> tuple[int, int]:
        bucket = (index >> self._half_mag) - 1
        sub = (index & (self._half - 1)) + self._half
        if bucket < 0:
            sub -= self._half
            bucket = 0
        return bucket, sub

    def lowest_equivalent(self, index: int) -> int:
        """Smallest value counted at `index`."""
        bucket, sub = self._bucket_of_index(index)
        return sub << (bucket + self._unit)

    def highest_equivalent(self, index: int) -> int:
        """Largest value counted at `index`."""
        bucket, _ = self._bucket_of_index(index)
        return self.lowest_equivalent(index) + (1 << (bucket + self._unit)) - 1

    # ------------------------------------------------------------------ reading

    @property
    def mean(self) -> float:
        """Exact mean of the recorded values (0 when empty)."""
        return self.sum / self.total if self.total else 0.0

    def percentile(self, pct: float) -> int:
        """The value at or below which `pct` % of the values lie (HdrHistogram rule:
        the highest value equivalent to the bucket reached, capped at the exact max)."""
        if not self.total:
            return 0
        if pct <= 0:
            return self.min
        wanted = max(1, math.ceil(min(pct, 100.0) / 100.0 * self.total))
        seen = 0
        for index, count in enumerate(self.counts):
            if count:
                seen += count
                if seen >= wanted:
                    return max(self.min, min(self.highest_equivalent(index), self.max))
        return self.max

    def percentiles(self, pcts: Iterable[float]) -> dict[float, int]:
        """Several percentiles in one walk of the counters."""
        wanted = sorted(set(pcts))
        out: dict[float, int] = {}
        if not self.total:
            return dict.fromkeys(wanted, 0)
        targets = iter(wanted)
        pct = next(targets, None)
        while pct is not None and pct <= 0:
            out[pct] = self.min
            pct = next(targets, None)
        seen = 0
        for index, count in enumerate(self.counts):
            if not count:
                continue
            seen += count
            while pct is not None and seen >= max(1, math.ceil(min(pct, 100) / 100 * self.total)):
                out[pct] = max(self.min, min(self.highest_equivalent(index), self.max))
                pct = next(targets, None)
            if pct is None:
                break
        while pct is not None:
            out[pct] = self.max
            pct = next(targets, None)
        return out

    def buckets(self) -> Iterator[tuple[int, int, int]]:
        """(lowest value, highest value, count) of every non-empty bucket, in order."""
        for index, count in enumerate(self.counts):
            if count:
                yield self.lowest_equivalent(index), self.highest_equivalent(index), count

    def to_dict(self, unit: str = "ns") -> dict[str, Any]:
        """JSON-ready: shape, exact min/max/mean, percentiles and the non-empty buckets."""
        return {
            "unit": unit, "significant_digits": self.digits,
            "lowest_discernible": self.lowest, "highest_trackable": self.highest,
            "total_count": self.total, "min": self.min, "max": self.max,
            "mean": round(self.mean, 1),
            "percentiles": [[p, v] for p, v in self.percentiles(CURVE_PERCENTILES).items()],
            "buckets": [list(b) for b in self.buckets()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        """Rebuild from `to_dict` output (bucket counts are exact; min/max/sum restored)."""
        hist = cls(int(data["significant_digits"]), int(data["lowest_discernible"]),
                   int(data["highest_trackable"]))
        for low, _high, count in data["buckets"]:
            hist.counts[hist.index_of(int(low))] += int(count)
        hist.total = int(data["total_count"])
        hist.min, hist.max = int(data["min"]), int(data["max"])
        hist.sum = round(float(data["mean"]) * hist.total)
        return hist
