"""Instructions per command of the compiled fold, counted by valgrind: a measure this machine's
speed drift (up to 2x between runs, ``benchmarks/cpu_jitter.py``) does not move.

The fleet and events are ``bench_worker_fold``'s (``bench_kafka``'s ``csip.commands`` records):
N devices, one worker owning all 12 shards; the setup, then ``--events`` commands of the kind
asked folded once untimed (the first commands that meet new device states), then ``--events``
more, each through ``engine.runtime.kafka.fold.fold``. Only those last calls are counted
(callgrind's ``--toggle-collect`` on the compiled ``fold``'s entry point, which the setup and
the warm-up do not call), with ``PYTHONHASHSEED=0`` so that two runs of one tree count the
same. The garbage collector runs as in a worker, with the worker's heap policy between chunks
of 200 (``engine/runtime/heap.py``); its young passes are counted, full ones (rare over a few
thousand commands) when they happen.

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
CHUNK = 200


def inner(devices: int, events: int, kind: str, *, under_valgrind: bool = False) -> None:
    """What valgrind runs: setup, warm-up, then the counted calls."""
    from benchmarks.bench_kafka import Fleet, catalog_commands, member_commands
    from benchmarks.bench_worker_fold import SCHEDULED, worker
    from engine.runtime.heap import Survivors
    from engine.runtime.kafka.fold import fold, fold_records
    from engine.state.errors import Rejected

    registry, kernel = worker(12)
    heap = Survivors()
    fold_records(registry, kernel, catalog_commands(SCHEDULED) + member_commands(devices))
    fleet = Fleet(devices)
    make = getattr(fleet, kind)
    warm = [make() for _ in range(events)]
    counted = [make() for _ in range(events)]
    fold_records(registry, kernel, warm)
    gc.collect()
    heap.step()
    if under_valgrind:  # instrument from here on: the setup ran some 5x slower, not 50x
        subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True)
    for start in range(0, len(counted), CHUNK):
        for record in counted[start : start + CHUNK]:
            verdict = fold(registry, kernel, record)
            if isinstance(verdict, Rejected):
                raise RuntimeError(f"refused: {verdict.reason}")
        heap.step()


def count(devices: int, events: int, kind: str) -> int:
    """Instructions of the counted calls, from a callgrind run of ``inner``."""
    with tempfile.TemporaryDirectory(prefix="fold-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--toggle-collect={ENTRY}",
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
    parser.add_argument("--kinds", default="enroll,move", help="enroll and/or move")
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
        "counted per kind after as many uncounted (valgrind callgrind, PYTHONHASHSEED=0)"
    )
    print("| command | instructions per command |\n|---|---:|")
    for kind in kinds:
        total = count(args.devices, args.events, kind)
        print(f"| {kind} | {total / args.events:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
