"""Summary statistics: nearest-rank percentiles, the log histogram, request counters."""

from __future__ import annotations

import random

import pytest

from fleet.stats import Histogram, RequestStats, is_success, nearest_rank, percentiles


def test_nearest_rank() -> None:
    values = [15, 20, 35, 40, 50]
    assert nearest_rank(values, 5) == 15
    assert nearest_rank(values, 30) == 20
    assert nearest_rank(values, 40) == 20
    assert nearest_rank(values, 50) == 35
    assert nearest_rank(values, 100) == 50
    with pytest.raises(ValueError):
        nearest_rank([], 50)


def test_percentiles_of_values() -> None:
    result = percentiles(range(1, 101), scale=1.0)
    assert result == {"count": 100, "p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert percentiles([]) == {"count": 0}


def test_histogram_percentiles_are_within_one_percent_of_exact() -> None:
    rng = random.Random(5)
    values = [rng.lognormvariate(-4, 1.2) for _ in range(20_000)]
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for percent in (50, 90, 99, 99.9):
        exact = nearest_rank(ordered, percent)
        assert histogram.percentile(percent) == pytest.approx(exact, rel=0.01)
    assert histogram.percentile(100) == max(values)
    assert histogram.count == len(values)
    assert histogram.total == pytest.approx(sum(values))


def test_histogram_tiny_values_and_merge() -> None:
    a, b = Histogram(), Histogram()
    a.add(0.0)
    a.add(1e-7)
    b.add(2.0)
    a.merge(b)
    assert a.count == 3 and a.maximum == 2.0
    assert a.percentile(50) <= a.floor
    assert a.summary(scale=1.0)["max"] == 2.0
    with pytest.raises(ValueError):
        a.merge(Histogram(growth=1.1))
    with pytest.raises(ValueError):
        Histogram().percentile(50)


def test_request_stats_by_kind() -> None:
    stats = RequestStats()
    for _ in range(3):
        stats.record("GET DERControlList", "304", 0.002)
    stats.record("GET DERControlList", "200", 0.004)
    stats.record("GET DERControlList", "503", 0.1)
    stats.record("POST DERControlResponse", "201", 0.01)
    stats.record("POST DERControlResponse", "timeout", 30.0)
    report = stats.by_kind()
    gets = report["GET DERControlList"]
    assert (gets["count"], gets["full"], gets["not_modified"]) == (5, 1, 3)
    assert gets["errors"] == {"503": 1}
    posts = report["POST DERControlResponse"]
    assert posts["ok"] == 1 and posts["errors"] == {"timeout": 1}
    assert posts["latency_ms"]["max"] == 30000.0
    assert stats.total == 7 and stats.error_count() == 2
    assert stats.errors() == {"503": 1, "timeout": 1}
    assert stats.count("304") == 3
    assert stats.overall_latency().count == 7


def test_what_counts_as_success() -> None:
    assert is_success("200") and is_success("204") and is_success("304")
    assert not is_success("404") and not is_success("503") and not is_success("timeout")
