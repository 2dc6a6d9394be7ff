"""A worker's CPU per command by the share of the shards it owns: the fold alone, no broker.

Every ``csip worker`` folds every record of ``csip.commands`` (the registry, validation, the
program engine), and resolves only the devices of the shards it owns. So a worker's cost per
command is a part every worker pays plus a part that shrinks as workers are added, and the
command rate a fleet of W workers can take (each on its own core) is what one worker owning
``shards / W`` shards can fold. ``bench_kafka`` measures workers on a broker, but on a 2-core
machine its workers share the cores with the broker and with each other, so W > 2 cannot be
measured there; this measures the worker's own part, in-process, for any share.

The fleet and the events are ``bench_kafka``'s, as the same ``csip.commands`` record bytes: N
devices in 1,000 program sets with 24 controls scheduled per feeder, then single-device
commands at one instant, *enrolments* (a device joins or leaves a program without controls)
and *feeder moves* (24 controls lost, 24 seen). For each number of owned shards (of 12): a
fresh registry and ``ShardedKernel`` fold the setup, then the events through
``fold_records`` (what ``Worker._fold`` calls), timed in chunks of 200 by CPU time, with the
worker's heap policy between chunks (``engine/runtime/heap.py``: what survives a full garbage
collection is frozen, the setup first); a figure is
the median chunk (this machine's CPU has slow windows, ``benchmarks/cpu_jitter.py``), the best
of ``--repeats`` fresh folds; in brackets the mean over all chunks, which includes the first
commands of a stream, those that meet device states no engine has resolved yet at that
instant (each enrolment's new program set, once per program set). Outputs are made but not
published (publishing is ``bench_kafka``'s part).

"commands/s per core" is 1 / (CPU per command): what one worker with a core to itself folds.
The Kafka consumer adds about 5 µs per record (measured here with aiokafka on Tansu).

    python -m benchmarks.bench_worker_fold --devices 10000 --owned 12,6,4,3,2,1,0
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.bench_kafka import SHARDS, Fleet, catalog_commands, member_commands
from engine import compiled
from engine.kernel import Engine
from engine.runtime.heap import Survivors
from engine.runtime.kafka.fold import fold_records
from engine.runtime.kafka.shards import ShardedKernel
from engine.state.errors import Rejected
from engine.state.registry import Registry

CHUNK = 200
SCHEDULED = 24


def worker(owned: int) -> tuple[Registry, ShardedKernel]:
    """A worker's registry and kernel owning shards 0 .. owned-1 of ``SHARDS``."""
    kernel = ShardedKernel(SHARDS)
    for shard in range(owned):
        kernel.engines[shard] = Engine(memo=kernel.memo)
    return Registry(), kernel


def cpu_us_per_command(
    registry: Registry, kernel: ShardedKernel, records: list[bytes], heap: Survivors
) -> tuple[float, float]:
    """CPU per command: the median chunk, and the mean over all (with the first commands,
    which meet new device states). Between chunks, ``heap.step()``, as a worker between steps."""
    chunks = []
    for start in range(0, len(records), CHUNK):
        part = records[start : start + CHUNK]
        began = time.process_time()
        verdicts = fold_records(registry, kernel, part)
        heap.step()
        chunks.append((time.process_time() - began) / len(part) * 1e6)
        refused = [v for v in verdicts if isinstance(v, Rejected)]
        if refused:
            raise RuntimeError(f"refused: {refused[0].reason}")
    return statistics.median(chunks), statistics.mean(chunks)


def measure(n: int, owned: int, events: int) -> dict[str, float]:
    registry, kernel = worker(owned)
    heap = Survivors()
    fold_records(registry, kernel, catalog_commands(SCHEDULED) + member_commands(n))
    fleet = Fleet(n)
    enrolments = [fleet.enroll() for _ in range(events)]
    moves = [fleet.move() for _ in range(events)]
    try:
        gc.collect()
        heap.step()  # the setup, frozen (a worker's first step after a full collection)
        out: dict[str, float] = {}
        out["enrolment_us"], out["enrolment_mean_us"] = cpu_us_per_command(
            registry, kernel, enrolments, heap
        )
        out["move_us"], out["move_mean_us"] = cpu_us_per_command(registry, kernel, moves, heap)
        out["devices_resolved"] = sum(e.stats()["devices"] for e in kernel.engines.values())
        return out
    finally:
        gc.unfreeze()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--owned", default="12,6,4,3,2,1,0", help="shards owned (of 12)")
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(
        f"{args.devices:,} devices, {args.events:,} commands of each kind, "
        f"CPU per command (median of chunks of {CHUNK}), best of {args.repeats}, "
        f"kernel {compiled.kernel()} (engine/compiled.py)"
    )
    print(
        "| shards owned (workers sharing 12) | devices resolved | enrolment µs (mean) "
        "| commands/s per core | feeder move µs (mean) | moves/s per core |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for owned in (int(s) for s in args.owned.split(",")):
        runs: list[dict[str, Any]] = [
            measure(args.devices, owned, args.events) for _ in range(args.repeats)
        ]
        best = {key: min(run[key] for run in runs) for key in runs[0]}
        workers = f" ({SHARDS // owned})" if owned and SHARDS % owned == 0 else ""
        print(
            f"| {owned}{workers} | {best['devices_resolved']:,.0f} | "
            f"{best['enrolment_us']:.0f} ({best['enrolment_mean_us']:.0f}) | "
            f"{1e6 / best['enrolment_us']:,.0f} | "
            f"{best['move_us']:.0f} ({best['move_mean_us']:.0f}) | {1e6 / best['move_us']:,.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
