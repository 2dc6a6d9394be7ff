"""Kernel benchmark: one system-wide DERControl reaching N devices.

Fleet: N devices over 1,000 distinct program sets of 5-7 programs (system, substation, feeder
and 2-4 more), each set with 24 controls already scheduled (hourly, on its feeder program), and
a system default. Measured, per N:

- resolve: ``Engine.apply`` of the system-wide control that starts at once, returning the
  outputs (one output per cohort of devices that share a resolution);
- emit: expanding those outputs to one record per device and effective-control change (the
  records a runtime publishes, with their deterministic ids), and serializing them (orjson);
- a feeder-only control (touches N/1000 devices), to show the cost follows the devices touched;
- peak resident memory of the process.

The baseline is the same engine with ``share_cohorts=False``: every device resolved on its own,
from scratch (no cohorts, no memo). It starts from the same state (restored from a snapshot).

Each (N, engine) pair runs in its own process so peak memory is its own.

    python -m benchmarks.bench_kernel                      # 10k, 100k, 1M; baseline up to 1M
    python -m benchmarks.bench_kernel --sizes 10000 --baseline-max 0
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

import orjson

from engine.kernel import (
    AddControl,
    DefaultControl,
    DefineProgram,
    DERControl,
    EffectiveChange,
    Engine,
    Input,
    ResponseDue,
    SetDefault,
    SetMembership,
    expand,
)

T0 = 1_767_225_600
SETS = 1000
EVENTS_PER_SET = 24


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def lfdi(j: int) -> str:
    """A realistic LFDI: the head of a SHA-256 digest (as of a certificate)."""
    return hashlib.sha256(j.to_bytes(8, "big")).hexdigest()[:40].upper()


def program_sets() -> list[tuple[str, ...]]:
    """1,000 distinct sets of 5-7 programs: system, substation, feeder, 2-4 others."""
    sets = []
    for i in range(SETS):
        extra = 2 + i % 3
        others = tuple(f"DR{(i * 7 + k * 13) % 40}" for k in range(extra))
        sets.append(("SYS", f"SUB{i % 50}", f"FDR{i}", *dict.fromkeys(others)))
    return sets


def control(mrid: str, program: str, start: int, duration: int, **base: Any) -> AddControl:
    return AddControl(
        DERControl.from_json(
            {
                "mRID": mrid,
                "program": program,
                "creationTime": T0,
                "start": start,
                "duration": duration,
                "responseRequired": "03",
                "base": base,
            }
        )
    )


def build(n: int) -> Engine:
    engine = Engine()
    sets = program_sets()
    programs = sorted({p for s in sets for p in s})
    setup: list[Input] = []
    for program in programs:
        primacy = 0 if program == "SYS" else 1 if program.startswith("SUB") else 2
        setup.append(DefineProgram(program, primacy))
    setup.append(
        SetDefault("SYS", DefaultControl.from_json({"opModExpLimW": {"value": 5, "multiplier": 3}}))
    )
    for i in range(SETS):
        for k in range(EVENTS_PER_SET):
            start = T0 + 3600 * (k + 1)
            setup.append(
                control(f"F{i:04d}E{k:02d}", f"FDR{i}", start, 1800, opModMaxLimW=5000 + k)
            )
    engine.apply(T0, setup)
    batch: list[Input] = []
    for j in range(n):
        batch.append(SetMembership(lfdi(j), sets[j % SETS]))
        if len(batch) == 50_000:
            engine.apply(T0, batch)
            batch = []
    engine.apply(T0, batch)
    return engine


def measure(n: int, baseline: bool) -> dict[str, Any]:
    started = time.perf_counter()
    engine = build(n)
    if baseline:
        snapshot = engine.snapshot()
        del engine
        gc.collect()
        engine = Engine.restore({**snapshot, "share_cohorts": False})
        del snapshot
    gc.collect()
    setup_s = time.perf_counter() - started
    rss_setup = rss_mb()
    stats = engine.stats()

    # The system-wide control: starts at once, export limit for every device.
    gc.disable()
    t = T0 + 60
    began = time.perf_counter()
    outputs = engine.apply(
        t, [control("SYSTEM-1", "SYS", t, 900, opModExpLimW={"value": 0, "multiplier": 0})]
    )
    resolve_s = time.perf_counter() - began
    # Emit: one record per device and change, as a runtime publishes them, streamed.
    changes = sum(len(o.lfdis) for o in outputs if isinstance(o, EffectiveChange))
    began = time.perf_counter()
    emitted_bytes = 0
    for output in outputs:
        if isinstance(output, EffectiveChange):
            for record in output.records():
                emitted_bytes += len(orjson.dumps(record))
    serialize_s = time.perf_counter() - began
    responses = sum(len(o.lfdis) for o in outputs if isinstance(o, ResponseDue))
    gc.enable()
    rss_after = rss_mb()

    # A feeder-only control: N/1000 devices touched.
    t2 = T0 + 120
    began = time.perf_counter()
    feeder_out = engine.apply(t2, [control("FEEDER-1", "FDR7", t2, 600, opModFixedW=1000)])
    feeder_records = sum(1 for _ in expand(feeder_out))
    feeder_s = time.perf_counter() - began
    return {
        "n": n,
        "engine": "baseline" if baseline else "cohorts",
        "setup_s": round(setup_s, 2),
        "cohorts": stats["cohorts"],
        "effective_changes": changes,
        "responses": responses,
        "resolve_s": round(resolve_s, 3),
        "emit_s": round(serialize_s, 3),
        "emitted_mb": round(emitted_bytes / 2**20, 1),
        "total_s": round(resolve_s + serialize_s, 3),
        "feeder_s": round(feeder_s, 4),
        "feeder_records": feeder_records,
        "rss_setup_mb": round(rss_setup),
        "rss_after_mb": round(rss_after),
        "peak_rss_mb": round(peak_mb()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--baseline-max", type=int, default=1_000_000, help="largest N for the baseline"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.baseline)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s]
    runs = [(n, False) for n in sizes] + [(n, True) for n in sizes if n <= args.baseline_max]
    results = []
    for n, baseline in runs:
        label = f"{'baseline' if baseline else 'cohorts'} N={n:,}"
        print(f"running {label} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "benchmarks.bench_kernel", "--one", str(n)]
        if baseline:
            cmd.append("--baseline")
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {result}", file=sys.stderr, flush=True)
        results.append(result)

    cores = os.cpu_count()
    print(f"\nMachine: {cores} cores, Python {platform.python_version()}, {platform.machine()}\n")
    print(
        "| N | engine | cohorts | effective changes | resolve s | emit s | resolve + emit s "
        "| feeder control s | peak RSS MB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['n']:,} | {r['engine']} | {r['cohorts']:,} | {r['effective_changes']:,} | "
            f"{r['resolve_s']} | {r['emit_s']} | {r['total_s']} | {r['feeder_s']} | "
            f"{r['peak_rss_mb']:,} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
