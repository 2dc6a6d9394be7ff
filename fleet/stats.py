"""What the fleet measures: requests by kind and outcome, latency distributions, percentiles.

Pure and cheap per sample: a run of 100k devices makes millions of requests, so latencies go
into a log-bucketed histogram (``Histogram``: each bucket 1 % wider than the one before, so any
percentile is within 1 % of the exact one, in constant memory) rather than a list. Small sets
(one value per device, for an issued control) use exact nearest-rank percentiles
(``percentiles``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0)


def nearest_rank(ordered: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of ascending ``ordered`` (not empty): the smallest value
    with at least ``percent`` % of the values at or below it."""
    if not ordered:
        raise ValueError("no values")
    if not 0 < percent <= 100:
        raise ValueError("a percentile is in (0, 100]")
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def percentiles(values: Iterable[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    """count, p50, p90, p99, max (exact) of ``values`` times ``scale``, rounded."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    out: dict[str, Any] = {"count": len(ordered)}
    for percent in PERCENTILES:
        out[f"p{percent:g}"] = round(nearest_rank(ordered, percent) * scale, digits)
    out["max"] = round(ordered[-1] * scale, digits)
    return out


class Histogram:
    """Positive durations in log buckets: bucket ``i`` holds [floor*g^i, floor*g^(i+1)).

    Values below ``floor`` share bucket 0. A percentile is reported as the geometric middle
    of its bucket, so its relative error is at most about half of ``growth - 1``; count, sum
    and max are exact.
    """

    __slots__ = ("_buckets", "_log_growth", "count", "floor", "growth", "maximum", "total")

    def __init__(self, floor: float = 1e-5, growth: float = 1.01) -> None:
        if floor <= 0 or growth <= 1:
            raise ValueError("floor must be positive and growth greater than 1")
        self.floor = floor
        self.growth = growth
        self._log_growth = math.log(growth)
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0

    def add(self, value: float) -> None:
        index = 0 if value <= self.floor else int(math.log(value / self.floor) / self._log_growth)
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value > self.maximum:
            self.maximum = value

    def merge(self, other: Histogram) -> None:
        if (other.floor, other.growth) != (self.floor, self.growth):
            raise ValueError("histograms with different buckets")
        for index, count in other._buckets.items():
            self._buckets[index] = self._buckets.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)

    def percentile(self, percent: float) -> float:
        """Nearest-rank percentile, to within the bucket width (the exact max for 100)."""
        if not self.count:
            raise ValueError("no values")
        if not 0 < percent <= 100:
            raise ValueError("a percentile is in (0, 100]")
        if percent == 100:
            return self.maximum
        rank = max(math.ceil(percent / 100 * self.count), 1)
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                if index == 0:
                    return min(self.floor, self.maximum)
                middle: float = self.floor * self.growth ** (index + 0.5)
                return min(middle, self.maximum)
        return self.maximum  # pragma: no cover - ranks never exceed count

    def summary(self, scale: float = 1000.0, digits: int = 2) -> dict[str, Any]:
        """count, p50, p90, p99, max and mean, times ``scale`` (milliseconds by default)."""
        if not self.count:
            return {"count": 0}
        out: dict[str, Any] = {"count": self.count}
        for percent in PERCENTILES:
            out[f"p{percent:g}"] = round(self.percentile(percent) * scale, digits)
        out["max"] = round(self.maximum * scale, digits)
        out["mean"] = round(self.total / self.count * scale, digits)
        return out


@dataclass
class KindStats:
    """One kind of request (``GET DERControlList``, ``POST DERControlResponse``...)."""

    outcomes: Counter[str] = field(default_factory=Counter)  # "200", "304", "timeout"...
    latency: Histogram = field(default_factory=Histogram)

    @property
    def count(self) -> int:
        return sum(self.outcomes.values())

    def errors(self) -> dict[str, int]:
        return {k: v for k, v in sorted(self.outcomes.items()) if not is_success(k)}


def is_success(outcome: str) -> bool:
    """2xx and 304 are what a device expects; anything else (4xx, 5xx, a transport failure
    named by its kind) is an error."""
    return outcome.isdigit() and (outcome.startswith("2") or outcome == "304")


class RequestStats:
    """Every request the fleet made, by kind and outcome, with latencies."""

    def __init__(self) -> None:
        self.kinds: dict[str, KindStats] = {}
        self.total = 0

    def record(self, kind: str, outcome: str, seconds: float) -> None:
        stats = self.kinds.get(kind)
        if stats is None:
            stats = self.kinds[kind] = KindStats()
        stats.outcomes[outcome] += 1
        stats.latency.add(seconds)
        self.total += 1

    def count(self, outcome: str | None = None) -> int:
        if outcome is None:
            return self.total
        return sum(s.outcomes.get(outcome, 0) for s in self.kinds.values())

    def error_count(self) -> int:
        return sum(sum(s.errors().values()) for s in self.kinds.values())

    def errors(self) -> dict[str, int]:
        """Errors of every kind together, by status code or failure."""
        total: Counter[str] = Counter()
        for stats in self.kinds.values():
            total.update(stats.errors())
        return dict(sorted(total.items()))

    def by_kind(self) -> dict[str, Any]:
        """Per kind: how many, how many full (200) and not modified (304) for GETs, errors by
        status code, and latency percentiles in milliseconds."""
        out: dict[str, Any] = {}
        for kind in sorted(self.kinds):
            stats = self.kinds[kind]
            entry: dict[str, Any] = {"count": stats.count}
            if kind.startswith("GET "):
                entry["full"] = stats.outcomes.get("200", 0)
                entry["not_modified"] = stats.outcomes.get("304", 0)
            else:
                entry["ok"] = sum(v for k, v in stats.outcomes.items() if k.startswith("2"))
            entry["errors"] = stats.errors()
            entry["latency_ms"] = stats.latency.summary()
            out[kind] = entry
        return out

    def overall_latency(self) -> Histogram:
        merged = Histogram()
        for stats in self.kinds.values():
            merged.merge(stats.latency)
        return merged
