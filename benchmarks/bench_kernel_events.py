"""Kernel cost of device-level input events and of a system-wide control, with the fleet split
over S engines the way a Kafka worker splits it over its shard engines.

The fleet and the events are ``bench_kafka``'s, without Kafka: N devices in 1,000 program sets,
24 controls scheduled per feeder; every engine holds the whole catalog and the devices of its
shard (CRC-32 of the LFDI modulo S). Measured:

- *enrolment*: a device joins or leaves a program without controls (one ``SetMembership``, one
  ``Engine.apply`` per event, all at one instant);
- *feeder move*: a device moves to the next program set (24 controls lost, 24 seen);
- *system control*: one control for every device, applied to every engine, and the expansion
  of the outputs into per-device records; then the values a worker publishes for its device
  records, made two ways: a dict and an ``orjson.dumps`` per record (*dumps*), and the worker's
  ``engine/runtime/kafka/encode.py`` (*encode*: each change's JSON once, each LFDI joined in);
- *its end*: every engine applied (no input) 100 s after the control ended, so each passes two
  instants, the end and then that one, one engine after another: what a worker's engines do
  when time moves past several changes at once. With one memo per instant, the engines after
  the first found none of the first instant's results (they had gone to the next).

With S > 1 engines, each configuration runs twice: one memo per engine, and one ``Memo`` shared
by all of them (what ``ShardedKernel`` does). Events are timed in chunks of 50; a figure is the
median chunk (this machine's CPU has slow windows, see ``benchmarks/cpu_jitter.py``), the best
of ``--repeats`` fresh fleets.

    python -m benchmarks.bench_kernel_events --devices 10000 --shards 1,12
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

from benchmarks.bench_kafka import OPTIONAL, SYSTEM_BASE, T_EVENTS, T_SYSTEM
from benchmarks.bench_kernel import SETS, T0, control, lfdi, program_sets
from engine.kernel import (
    DefaultControl,
    DefineProgram,
    EffectiveChange,
    Engine,
    Input,
    ResponseDue,
    SetDefault,
    SetMembership,
)
from engine.kernel.engine import Memo, expand
from engine.runtime.kafka.encode import Encoder
from topics.catalog import SCHEMA_VERSION

SCHEDULED = 24
CHUNK = 50


def shard(device: str, shards: int) -> int:
    return zlib.crc32(device.encode()) % shards


def fleet(n: int, shards: int, shared: bool) -> list[Engine]:
    sets = program_sets()
    programs = sorted({p for s in sets for p in s})
    catalog: list[Input] = [
        DefineProgram(p, 0 if p == "SYS" else 1 if p.startswith("SUB") else 2) for p in programs
    ]
    default = DefaultControl.from_json({"opModExpLimW": {"value": 5, "multiplier": 3}})
    catalog += [SetDefault("SYS", default), DefineProgram(OPTIONAL, 2)]
    catalog += [
        control(f"F{i:04d}E{k:02d}", f"FDR{i}", T0 + 3600 * (k + 1), 1800, opModMaxLimW=5000 + k)
        for i in range(SETS)
        for k in range(SCHEDULED)
    ]
    memo = Memo() if shared else None
    engines = [Engine(memo=memo) for _ in range(shards)]
    members: list[list[Input]] = [[] for _ in range(shards)]
    for j in range(n):
        device = lfdi(j)
        members[shard(device, shards)].append(SetMembership(device, sets[j % SETS]))
    for engine, mine in zip(engines, members, strict=True):
        engine.apply(T0, catalog)
        for start in range(0, len(mine), 1000):
            engine.apply(T0, mine[start : start + 1000])
    return engines


class Events:
    """bench_kafka's input events: device ``(k * 7919) mod N``, enrolled or moved."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sets = program_sets()
        self.of = [j % SETS for j in range(n)]
        self.enrolled = [False] * n

    def make(self, kind: str, count: int) -> list[SetMembership]:
        out = []
        for k in range(count):
            j = (k * 7919) % self.n
            if kind == "enrolment":
                self.enrolled[j] = not self.enrolled[j]
            else:
                self.of[j] = (self.of[j] + 1) % SETS
            extra = (OPTIONAL,) if self.enrolled[j] else ()
            out.append(SetMembership(lfdi(j), self.sets[self.of[j]] + extra))
        return out


def per_event_us(engines: list[Engine], events: list[SetMembership]) -> float:
    chunks = []
    for start in range(0, len(events), CHUNK):
        part = events[start : start + CHUNK]
        began = time.perf_counter()
        for event in part:
            engines[shard(event.lfdi, len(engines))].apply(T_EVENTS, [event])
        chunks.append((time.perf_counter() - began) / len(part) * 1e6)
    return statistics.median(chunks)


def measure(n: int, shards: int, events: int, shared: bool = False) -> dict[str, float]:
    engines = fleet(n, shards, shared)
    stream = Events(n)
    gc.collect()
    out = {
        "enrolment_us": per_event_us(engines, stream.make("enrolment", events)),
        "move_us": per_event_us(engines, stream.make("move", events)),
    }
    system = control("SYSTEM-1", "SYS", T_SYSTEM, 900, **SYSTEM_BASE)
    gc.collect()
    began = time.perf_counter()
    outputs = [o for engine in engines for o in engine.apply(T_SYSTEM, [system])]
    out["system_s"] = time.perf_counter() - began
    began = time.perf_counter()
    out["records"] = sum(1 for _ in expand(outputs))
    out["expand_s"] = time.perf_counter() - began
    device = [o for o in outputs if isinstance(o, EffectiveChange | ResponseDue)]
    began = time.perf_counter()
    dumped = [orjson.dumps({"v": SCHEMA_VERSION, **r}) for o in device for r in o.records()]
    out["dumps_s"] = time.perf_counter() - began
    encoder = Encoder(SCHEMA_VERSION)
    began = time.perf_counter()
    encoded = [value for o in device for _, value in encoder.values(o)]
    out["encode_s"] = time.perf_counter() - began
    if encoded != dumped:
        raise RuntimeError("the worker's encoder and orjson.dumps made different values")
    gc.collect()
    began = time.perf_counter()
    ended = [o for engine in engines for o in engine.apply(T_SYSTEM + 1000, [])]
    out["end_s"] = time.perf_counter() - began
    out["end_records"] = sum(1 for _ in expand(ended))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--shards", default="1,12", help="comma-separated engine counts")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"{args.devices:,} devices, {args.events:,} events of each kind, best of {args.repeats}")
    print(
        "| engines | memo | enrolment µs | feeder move µs | system control s | records "
        "| expand s | dumps s | encode s | its end s |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for shards in (int(s) for s in args.shards.split(",")):
        for shared in (False, True) if shards > 1 else (False,):
            runs: list[dict[str, Any]] = [
                measure(args.devices, shards, args.events, shared) for _ in range(args.repeats)
            ]
            best = {key: min(run[key] for run in runs) for key in runs[0]}
            memo = "shared" if shared else "per engine"
            print(
                f"| {shards} | {memo} | {best['enrolment_us']:.0f} | {best['move_us']:.0f} | "
                f"{best['system_s']:.2f} | {best['records']:,} | {best['expand_s']:.3f} | "
                f"{best['dumps_s']:.3f} | {best['encode_s']:.3f} | {best['end_s']:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
