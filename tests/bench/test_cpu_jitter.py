"""The CPU-steadiness probe: slow windows found in synthetic runs, and a real short probe."""

from __future__ import annotations

import pytest

from benchmarks import cpu_jitter as cj

MEDIAN = 50e-6


def steady(start: float, seconds: float) -> list[tuple[float, float]]:
    count = int(seconds / MEDIAN)
    return [(start + i * MEDIAN, MEDIAN) for i in range(count)]


def slowed(start: float, seconds: float, factor: float) -> list[tuple[float, float]]:
    took = MEDIAN * factor
    return [(start + i * took, took) for i in range(int(seconds / took))]


def machine(windows_at: list[float], length: float = 0.02, total: float = 4.0):
    """Runs over ``total`` seconds with an 8x slower window of ``length`` at each start."""
    runs: list[tuple[float, float]] = []
    t = 0.0
    for at in sorted(windows_at):
        runs += steady(t, at - t)
        runs += slowed(at, length, 8.0)
        t = at + length
    runs += steady(t, total - t)
    return runs


def test_a_steady_machine_has_no_slow_windows() -> None:
    core = cj.report(0, 2.0, steady(0.0, 2.0))
    assert core.windows == 0 and core.share == 0.0 and core.slowdown == 0.0
    summary = {"seconds": 2.0, "cores": [vars(core)], "simultaneous_windows": 0}
    assert cj.describe(summary).startswith("CPU steady")


def test_slow_windows_are_found_measured_and_grouped_into_episodes() -> None:
    # two episodes 1.5 s apart; the second has two windows 0.1 s apart
    core = cj.report(0, 4.0, machine([1.0, 2.5, 2.6]))
    assert core.windows == 3
    assert core.slowdown == pytest.approx(8.0, rel=0.01)
    assert core.window_ms["max"] == pytest.approx(20.0, abs=0.5)
    assert core.episodes == 2 and core.apart_s == pytest.approx(1.5, abs=0.05)
    assert core.share == pytest.approx(0.06 / 4.0, abs=0.001)


def test_a_short_blip_is_not_a_window() -> None:
    core = cj.report(0, 4.0, machine([1.0], length=0.002))
    assert core.windows == 0


def test_windows_on_every_core_at_once_point_at_the_host() -> None:
    a = cj.report(0, 4.0, machine([1.0, 2.5]))
    b = cj.report(1, 4.0, machine([1.001, 3.2]))
    assert cj.simultaneous([a, b]) == 1
    summary = {
        "seconds": 4.0,
        "cores": [vars(a), vars(b)],
        "simultaneous_windows": cj.simultaneous([a, b]),
    }
    text = cj.describe(summary)
    assert text.startswith("CPU unsteady") and "1 of core 0's windows" in text


def test_a_real_probe_reports_every_core_it_ran_on() -> None:
    summary = cj.measure(0.5, cores=[0])
    (core,) = summary["cores"]
    assert core["core"] == 0 and core["runs"] > 1000 and core["median_us"] > 0
    assert summary["text"].startswith("CPU")
