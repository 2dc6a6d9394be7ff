"""Is this machine's CPU steady? A probe for what a latency benchmark cannot control.

One process per core runs the same small piece of pure-Python work (about 50 µs) over and over
and records how long each run took. On a steady machine nearly every run takes the median
time. On a virtual machine whose host is busy, runs in some windows take several times longer:
whatever a server does in such a window, its requests take that much longer, and an open-loop
benchmark's p99 shows the machine rather than the server.

A *slow window* is a stretch of runs that took more than ``SLOW`` times the median, merged
when less than ``MERGE_S`` apart. Reported per core: the median run, the windows longer than
``REPORT_MS`` (how many, how long, how much slower inside them), the episodes they come in
(windows less than ``EPISODE_S`` apart) and how far apart those are, and the share of wall
time spent in windows; and how many windows started on every core at once (within
``TOGETHER_S``), which points at the host rather than at another process on one core.

    python -m benchmarks.cpu_jitter --seconds 20
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

SLOW = 4.0  # a run this many times the median is slow
MERGE_S = 0.005  # slow runs closer than this belong to one window
REPORT_MS = 5.0  # windows shorter than this are left out of the report
TOGETHER_S = 0.01  # windows on different cores starting this close are simultaneous
EPISODE_S = 0.5  # windows closer than this form one episode


def work(n: int) -> int:
    """Pure-Python work with dict and integer operations, about what request code does."""
    total = 0
    table: dict[int, int] = {}
    for i in range(n):
        total += i * i
        table[i & 255] = total
    return total


def calibrate(target_s: float = 50e-6) -> int:
    """The ``work`` size that takes about ``target_s`` on this machine."""
    n = 100
    while True:
        began = time.perf_counter()
        for _ in range(20):
            work(n)
        took = (time.perf_counter() - began) / 20
        if took >= target_s / 2 or n > 1_000_000:
            return max(1, int(n * target_s / took))
        n *= 2


def probe(seconds: float, n: int) -> list[tuple[float, float]]:
    """(start, duration) of each run of ``work(n)`` for ``seconds``, on ``time.perf_counter``
    (CLOCK_MONOTONIC on Linux: comparable between processes)."""
    runs: list[tuple[float, float]] = []
    end = time.perf_counter() + seconds
    while True:
        began = time.perf_counter()
        if began >= end:
            return runs
        work(n)
        runs.append((began, time.perf_counter() - began))


@dataclass
class Window:
    start: float
    end: float
    runs: int
    busy: float  # seconds of slow runs inside the window

    @property
    def length(self) -> float:
        return self.end - self.start


def slow_windows(runs: Sequence[tuple[float, float]], median: float) -> list[Window]:
    windows: list[Window] = []
    for began, took in runs:
        if took <= SLOW * median:
            continue
        if windows and began - windows[-1].end < MERGE_S:
            last = windows[-1]
            last.end, last.runs, last.busy = began + took, last.runs + 1, last.busy + took
        else:
            windows.append(Window(began, began + took, 1, took))
    return windows


@dataclass
class CoreReport:
    core: int | None
    seconds: float
    runs: int
    median_us: float
    windows: int  # slow windows longer than REPORT_MS
    window_ms: dict[str, float] = field(default_factory=dict)  # p50 and max length
    slowdown: float = 0.0  # a run inside a window against the median (mean over windows)
    episodes: int = 0  # runs of windows less than EPISODE_S apart
    apart_s: float | None = None  # median time between the starts of consecutive episodes
    share: float = 0.0  # of wall time inside windows
    starts: list[float] = field(default_factory=list)


def report(core: int | None, seconds: float, runs: Sequence[tuple[float, float]]) -> CoreReport:
    median = statistics.median(took for _, took in runs)
    windows = [w for w in slow_windows(runs, median) if w.length * 1000 > REPORT_MS]
    lengths = sorted(w.length * 1000 for w in windows)
    starts = [w.start for w in windows]
    episodes = [s for i, s in enumerate(starts) if i == 0 or s - windows[i - 1].end >= EPISODE_S]
    gaps = [b - a for a, b in pairwise(episodes)]
    slowdowns = [(w.busy / w.runs) / median for w in windows]
    return CoreReport(
        core=core,
        seconds=seconds,
        runs=len(runs),
        median_us=round(median * 1e6, 1),
        windows=len(windows),
        window_ms=(
            {"p50": round(lengths[len(lengths) // 2], 1), "max": round(lengths[-1], 1)}
            if lengths
            else {}
        ),
        slowdown=round(statistics.mean(slowdowns), 1) if slowdowns else 0.0,
        episodes=len(episodes),
        apart_s=round(statistics.median(gaps), 2) if gaps else None,
        share=round(sum(w.length for w in windows) / seconds, 4),
        starts=starts,
    )


def simultaneous(reports: Sequence[CoreReport]) -> int:
    """Windows of the first core that started, within TOGETHER_S, on every other core too."""
    if len(reports) < 2:
        return 0
    first, others = reports[0], reports[1:]
    return sum(
        all(any(abs(s - t) < TOGETHER_S for t in other.starts) for other in others)
        for s in first.starts
    )


def _on_core(core: int | None, seconds: float, n: int, out: Any) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    runs = probe(seconds, n)
    out.put((core, runs))


def measure(seconds: float = 5.0, cores: Sequence[int] | None = None) -> dict[str, Any]:
    """Probe every core (or ``cores``) at once for ``seconds``; a JSON-ready summary."""
    if cores is None:
        available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        cores = available or [0]
    n = calibrate()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_on_core, args=(core, seconds, n, queue)) for core in cores]
    for child in children:
        child.start()
    results = dict(queue.get(timeout=seconds + 60) for _ in children)
    for child in children:
        child.join()
    reports = [report(core, seconds, results[core]) for core in cores]
    together = simultaneous(reports)
    summary: dict[str, Any] = {
        "seconds": seconds,
        "work_n": n,
        "cores": [{k: v for k, v in asdict(r).items() if k != "starts"} for r in reports],
        "simultaneous_windows": together,
    }
    summary["text"] = describe(summary)
    return summary


def describe(summary: dict[str, Any]) -> str:
    """One sentence for a results file."""
    cores = summary["cores"]
    windows = sum(c["windows"] for c in cores)
    if windows == 0:
        return (
            f"CPU steady: over {summary['seconds']:.0f} s no run of a "
            f"{cores[0]['median_us']:.0f} µs piece of work took {SLOW:.0f}x its median for "
            f"more than {REPORT_MS:.0f} ms on any core."
        )
    worst = max(cores, key=lambda c: c["share"])
    apart = (
        f", in {worst['episodes']} episodes about {worst['apart_s']} s apart"
        if worst["apart_s"] is not None
        else ""
    )
    where = (
        f"; {summary['simultaneous_windows']} of core {cores[0]['core']}'s windows started on "
        f"every core at once (the host, not a process)"
        if len(cores) > 1
        else ""
    )
    return (
        f"CPU unsteady: over {summary['seconds']:.0f} s, core {worst['core']} ran "
        f"{worst['slowdown']}x slower than its median in {worst['windows']} windows of "
        f"{worst['window_ms'].get('p50')} ms (longest {worst['window_ms'].get('max')} ms)"
        f"{apart}: {100 * worst['share']:.1f}% of wall time{where}."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cores", help="comma-separated core numbers (default: all)")
    parser.add_argument("--json", action="store_true", help="the whole summary as JSON")
    args = parser.parse_args(argv)
    cores = [int(c) for c in args.cores.split(",")] if args.cores else None
    summary = measure(args.seconds, cores)
    print(json.dumps(summary, indent=2) if args.json else summary["text"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
