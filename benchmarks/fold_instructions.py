"""Instructions per command of the compiled fold, counted by valgrind: a measure this machine's
speed drift (up to 2x between runs, ``benchmarks/cpu_jitter.py``) does not move.

The fleet and events are ``bench_worker_fold``'s (``bench_kafka``'s ``csip.commands`` records):
N devices, one worker owning all 12 shards; the setup, then ``--events`` commands of the kind
asked folded once untimed (the first commands that meet new device states), then ``--events``
more, each through ``engine.runtime.kafka.fold.fold``. Only those last calls are counted
(callgrind's ``--toggle-collect`` on the compiled ``fold``'s entry point, which the setup and
the warm-up do not call), with ``PYTHONHASHSEED=0`` so that two runs of one tree count the
same. The garbage collector runs as in a worker (``engine/runtime/heap.py``): paused within
each chunk of 200 commands (a worker's step), its passes at the chunk's end, through
``gc.collect``, which is counted too (young passes each time, a full one when due).

``--kinds system`` counts one command instead: a system-wide control reaching every device,
after ``--events`` enrolments and as many feeder moves (``bench_kafka``'s order), the figure
being that command's total.

The count depends on the stream as well as the code: with ``--events`` at twice ``--devices``
(the defaults) the counted commands meet device states the uncounted ones resolved already at
that instant; with as many events as devices, most meet new ones (about 2.8x the instructions).
Compare trees with the same arguments.

Needs ``valgrind`` and the compiled kernel (``make compile``): a fold from source has no C entry
point to count from, and would count the interpreter instead. Instrumentation starts after the
warm-up (``callgrind_control``), so the setup runs about 5x slower, not 50x: about 3 minutes
per kind at the defaults.

    python -m benchmarks.fold_instructions                       # enrolments and feeder moves
    python -m benchmarks.fold_instructions --devices 1000 --events 2000 --kinds enroll
    python -m benchmarks.fold_instructions --devices 10000 --events 4000 --kinds system
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ENTRY = "CPyPy_fold___fold"  # the compiled fold(), as Python calls it
COLLECT = "gc_collect"  # gc.collect(), which the heap policy calls between steps
CHUNK = 200


def inner(devices: int, events: int, kind: str, *, under_valgrind: bool = False) -> None:
    """What valgrind runs: setup, warm-up, then the counted calls."""
    from benchmarks.bench_kafka import (
        SYSTEM_BASE,
        T_SYSTEM,
        Fleet,
        catalog_commands,
        command,
        member_commands,
    )
    from benchmarks.bench_kernel import control
    from benchmarks.bench_worker_fold import SCHEDULED, worker
    from engine.kernel.codec import input_to_json
    from engine.runtime.heap import Survivors
    from engine.runtime.kafka.fold import fold, fold_records
    from engine.state.errors import Rejected

    registry, kernel = worker(12)
    heap = Survivors()
    heap.own()  # as a worker: collections between steps (engine/runtime/heap.py)

    def steps(records: list[bytes]) -> None:
        for start in range(0, len(records), CHUNK):
            heap.pause()
            for record in records[start : start + CHUNK]:
                verdict = fold(registry, kernel, record)
                if isinstance(verdict, Rejected):
                    raise RuntimeError(f"refused: {verdict.reason}")
            heap.step()

    try:
        fold_records(registry, kernel, catalog_commands(SCHEDULED) + member_commands(devices))
        fleet = Fleet(devices)
        if kind == "system":  # bench_kafka's order: enrolments, feeder moves, the control
            warm = [fleet.enroll() for _ in range(events)] + [fleet.move() for _ in range(events)]
            system = control("SYSTEM-1", "SYS", T_SYSTEM, 900, **SYSTEM_BASE)
            counted = [command(T_SYSTEM, [input_to_json(system)])]
        else:
            make = getattr(fleet, kind)
            warm = [make() for _ in range(events)]
            counted = [make() for _ in range(events)]
        steps(warm)
        gc.collect()
        heap.step()
        if under_valgrind:  # instrument from here on: the setup ran some 5x slower, not 50x
            subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True)
        steps(counted)
    finally:
        heap.release()


def count(devices: int, events: int, kind: str) -> int:
    """Instructions of the counted calls, from a callgrind run of ``inner``."""
    with tempfile.TemporaryDirectory(prefix="fold-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--toggle-collect={ENTRY}",
            f"--toggle-collect={COLLECT}",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.fold_instructions",
            "--inner",
            "--devices",
            str(devices),
            "--events",
            str(events),
            "--kinds",
            kind,
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(command, check=True, env=env, capture_output=True)
        totals = re.search(rb"^summary:\s+(\d+)", out.read_bytes(), re.MULTILINE)
        if totals is None:
            raise RuntimeError(f"no summary line in {out}")
        return int(totals.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=2_000, help="counted commands per kind")
    parser.add_argument(
        "--kinds", default="enroll,move", help="enroll, move and/or system (comma-separated)"
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if args.inner:
        inner(args.devices, args.events, kinds[0], under_valgrind=True)
        return 0

    import engine.runtime.kafka.fold  # noqa: F401  (so that kernel() sees the fold loaded)
    from engine import compiled

    if compiled.kernel() != "compiled":
        print("the kernel runs from source: `make compile` first", file=sys.stderr)
        return 2
    if shutil.which("valgrind") is None:
        print("needs valgrind", file=sys.stderr)
        return 2
    print(
        f"{args.devices:,} devices, one worker owning all 12 shards, {args.events:,} commands "
        "counted per kind after as many uncounted (system: one command, after "
        f"{args.events:,} enrolments and {args.events:,} feeder moves; valgrind callgrind, "
        "PYTHONHASHSEED=0)"
    )
    print("| command | instructions per command |\n|---|---:|")
    for kind in kinds:
        total = count(args.devices, args.events, kind)
        per = 1 if kind == "system" else args.events
        print(f"| {kind} | {total / per:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
