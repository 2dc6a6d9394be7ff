"""What losing a worker costs, with and without standby shards (``csip worker --standby``).

For each fleet size N and each standby count S (0 and 1 by default): a Tansu broker of its own
(127.0.0.1, a free port), 12 shards, and W ``csip worker`` processes (``--workers``, 2 by
default; event clock, session timeout ``--session-timeout-ms``) started on the empty log. Then:

- **setup**: bench_kafka's catalog (programs, a system default, ``--scheduled`` controls per
  feeder) and N devices, paced to the workers' markers. "setup CPU" is each worker's CPU for it
  and "RSS" its resident memory after it: what keeping the other's shards warm costs while all
  is well. With S = 1 the bench then waits until neither worker keeps a shard it could not take
  over (``csip_worker_unsure_shards`` 0: the owners' notes on csip.shard-progress covered it).
- **the failure**: worker 1 is killed (SIGKILL). "to own all" is the time from the kill until the
  survivor owns every shard (its ``/metrics``): the group notices the lapsed session, the
  survivor joins again (Tansu: half the session timeout) and takes the shards. "take" is the
  survivor's own time for taking them (its "shards taken" log line): a rebuild from the start of
  csip.commands without standbys, the take-over of warm engines with them; "take CPU" the
  survivor's CPU from the kill until it owns all. With three workers or more, the shards left
  without a standby get new ones, built in the background: "standbys back" is the time from
  the kill until every shard has a standby engine again.

``--join`` measures the other way a shard moves, a worker joining (a scale-up), with and
without warm-up (``csip worker --no-warmup``) instead of with and without standbys: after the
setup one more worker starts (and folds the log from the start); "to balance" is the time
until it owns its share, "caught up" until it has folded the whole log, "moved shards
unpublished" how long the shards it gained were published by nobody: without a warm-up from
the rebalance that gave them to it until it has caught up (plus its take), with a warm-up only
its take (it builds them beforehand, beside their owners, and takes them over warm once caught
up). "join CPU" is its CPU until then, "warm-ups" how often it asked for shards it had built.

    python -m benchmarks.bench_takeover                        # 10k and 50k devices, S = 0, 1
    python -m benchmarks.bench_takeover --sizes 2000 --scheduled 2
    python -m benchmarks.bench_takeover --workers 3 --standby 1   # new standbys built aside
    python -m benchmarks.bench_takeover --join --sizes 10000,50000   # a third worker joins
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.bench_kafka import (
    GAUGE,
    PHASE_TIMEOUT,
    SHARDS,
    Reader,
    WorkerProcess,
    catalog_commands,
    cpu_of,
    find_port,
    member_commands,
    paced,
    producer_for,
    send_all,
    start_worker,
)
from benchmarks.bench_kernel import T0
from engine.runtime.kafka.admin import ensure_topics
from tests.kafka.broker_fixtures import Broker
from topics import catalog

ENGINE = re.compile(r'^csip_worker_engine\{role="(\w+)",shard="(\d+)"', re.M)


@dataclass
class Options:
    scheduled: int = 4
    session_ms: int = 10_000
    step: float = 1.0
    timeout: float = 600.0
    workers: int = 2


@dataclass
class Worker(WorkerProcess):
    """bench_kafka's worker process, with what this bench reads of it."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as got:
            return str(got.read().decode())

    def gauges(self) -> dict[str, float]:
        return {m[1]: float(m[2]) for m in GAUGE.finditer(self.metrics())}

    def standby_engines(self) -> set[int]:
        return {int(m[2]) for m in ENGINE.finditer(self.metrics()) if m[1] == "standby"}

    def taken(self) -> list[dict[str, Any]]:
        lines = (orjson.loads(x) for x in self.log.read_bytes().splitlines() if x[:1] == b"{")
        return [line for line in lines if line.get("msg") == "shards taken"]

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return 0.0


def start(broker: str, prefix: str, log: Path, standbys: int, o: Options, *extra: str) -> Worker:
    started = start_worker(broker, prefix, log, o.session_ms, "--standby", str(standbys), *extra)
    return Worker(started.process, started.log)


async def until(what: str, check: Any, timeout: float, every: float = 0.05) -> float:
    """Poll ``check()`` (in a thread) until true; the monotonic time it was seen true."""
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(check):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


async def measure(n: int, standbys: int, o: Options) -> dict[str, Any]:
    """The failure: the last worker killed, the others take its shards."""
    return await _run(n, standbys, o, _kill)


async def measure_join(n: int, warmup: bool, o: Options) -> dict[str, Any]:
    """A scale-up: one more worker joins, with warm-up or without."""
    return await _run(n, 0, o, lambda *a: _join(*a, warmup=warmup))


async def _run(n: int, standbys: int, o: Options, then: Any) -> dict[str, Any]:
    """Workers set up with the fleet, then ``then(workers, result, broker, prefix, logs, o)``."""
    logs = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    broker = Broker(logs).start()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    workers: list[Worker] = []
    reader = Reader(broker.url, prefix)
    producer = producer_for(broker.url)
    result: dict[str, Any] = {
        "n": n,
        "workers": o.workers,
        "standby": standbys,
        "scheduled": o.scheduled,
    }
    try:
        await asyncio.to_thread(ensure_topics, broker.url, prefix=prefix, shards=SHARDS)
        await reader.start()
        await producer.start()
        topic = catalog.named(catalog.COMMANDS, prefix)
        for i in range(o.workers):
            workers.append(start(broker.url, prefix, logs / f"w{i}.log", standbys, o))
        for worker in workers:
            await find_port(worker)

        def settled() -> bool:
            found = [w.gauges() for w in workers]
            share = SHARDS // o.workers
            return all(
                g["csip_worker_shards"] == share
                and g["csip_worker_standby_shards"] == (share * min(standbys, o.workers - 1))
                for g in found
            )

        await until("the group to settle", settled, 3 * o.session_ms / 1000 + 30)
        tick = orjson.dumps({"v": 1, "id": uuid.uuid4().hex, "t": T0, "command": {"kind": "tick"}})
        await reader.wait(await send_all(producer, topic, [tick]), PHASE_TIMEOUT)

        cpu = [cpu_of(w.pid) for w in workers]
        began = time.monotonic()
        pids = [w.pid for w in workers]
        await paced(producer, reader, catalog_commands(o.scheduled), pids, step=o.step)
        setup = await paced(producer, reader, member_commands(n), pids, step=o.step)
        result["setup_s"] = round(time.monotonic() - began, 1)
        spent = [cpu_of(w.pid) - c for w, c in zip(workers, cpu, strict=True)]
        result["setup_cpu_s"] = [round(x, 1) for x in spent]
        result["rss_mb"] = [w.rss_mb() for w in workers]
        result["log_offset"] = setup.goal
        if standbys:
            await until(
                "the standbys to be complete",
                lambda: all(w.gauges()["csip_worker_unsure_shards"] == 0 for w in workers),
                o.timeout,
            )
        print(f"  N={n:,} S={standbys}: set up {result}", file=sys.stderr, flush=True)
        await then(workers, result, broker.url, prefix, logs, o)
        return result
    finally:
        for worker in workers:
            worker.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
        with contextlib.suppress(Exception):
            await reader.stop()
        broker.stop()
        shutil.rmtree(logs, ignore_errors=True)


async def _kill(
    workers: list[Worker], result: dict[str, Any], broker: str, prefix: str, logs: Path, o: Options
) -> None:
    standbys = result["standby"]
    victim, survivors = workers[-1], workers[:-1]
    before = [cpu_of(w.pid) for w in survivors]
    killed = time.monotonic()
    victim.process.kill()
    victim.process.wait()
    owned = await until(
        "the survivors to own every shard",
        lambda: sum(w.gauges()["csip_worker_shards"] for w in survivors) == SHARDS,
        o.timeout + 3 * o.session_ms / 1000,
    )
    takes = [w.taken()[-1] for w in survivors]
    result["to_own_all_s"] = round(owned - killed, 2)
    result["take_s"] = max(t["seconds"] for t in takes)
    result["take_cpu_s"] = [
        round(cpu_of(w.pid) - c, 2) for w, c in zip(survivors, before, strict=True)
    ]
    result["rebuilt"] = sum(len(t["rebuilt"]) for t in takes)
    result["taken_over"] = sum(len(t["taken_over"]) for t in takes)
    result["republished"] = sum(t["republished"] for t in takes)
    if standbys and len(survivors) >= 2:
        back = await until(
            "every shard to have a standby engine again",
            lambda: set().union(*(w.standby_engines() for w in survivors)) == set(range(SHARDS)),
            o.timeout,
            every=0.2,
        )
        result["standbys_back_s"] = round(back - killed, 2)


async def _join(
    workers: list[Worker],
    result: dict[str, Any],
    broker: str,
    prefix: str,
    logs: Path,
    o: Options,
    *,
    warmup: bool,
) -> None:
    extra = () if warmup else ("--no-warmup",)
    joined = time.monotonic()
    joiner = start(broker, prefix, logs / "joiner.log", 0, o, *extra)
    workers.append(joiner)  # stopped with the others
    await find_port(joiner)
    share = SHARDS // len(workers)
    seen: dict[str, float] = {}

    def look() -> bool:
        """Note when the new worker first owned its share and first reached the log's end."""
        gauges, now = joiner.gauges(), time.monotonic()
        if gauges.get("csip_worker_shards") == share:
            seen.setdefault("owned", now)
        if gauges.get("csip_worker_position", 0) >= result["log_offset"]:
            seen.setdefault("caught_up", now)
        return len(seen) == 2

    await until("the new worker to own its share", look, o.timeout + 3 * o.session_ms / 1000, 0.1)
    take = joiner.taken()[-1]
    result["warmup"] = warmup
    result["to_balance_s"] = round(seen["owned"] - joined, 2)
    result["caught_up_s"] = round(seen["caught_up"] - joined, 2)
    # The moved shards are published by nobody from the take until the new worker has folded
    # the log up to its end (it joins at once and folds from the start) and taken them.
    behind = max(0.0, seen["caught_up"] - seen["owned"])
    result["unpublished_s"] = round(behind + take["seconds"], 2)
    result["take_s"] = take["seconds"]
    result["join_cpu_s"] = round(cpu_of(joiner.pid), 2)
    result["rebuilt"] = len(take["rebuilt"])
    result["taken_over"] = len(take["taken_over"])
    result["warmups"] = int(joiner.gauges()["csip_worker_warmups"])


def _markdown(columns: list[tuple[str, str]], rows: list[list[str]]) -> str:
    """A markdown table: ``columns`` as (title, alignment: "---:" or "---")."""
    lines = ["| " + " | ".join(title for title, _ in columns) + " |"]
    lines.append("| " + " | ".join(align for _, align in columns) + " |")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _per_worker(values: list[float], digits: int) -> str:
    return " / ".join(f"{x:.{digits}f}" for x in values)


def table(results: list[dict[str, Any]]) -> str:
    n, t = "---:", "---"
    columns = [
        ("devices", n), ("workers", n), ("standby", n), ("setup CPU s (per worker)", t),
        ("RSS MB (per worker)", t), ("to own all s", n), ("take s", n),
        ("take CPU s (per survivor)", t), ("shards rebuilt / taken over warm", t),
        ("standbys back s", n),
    ]  # fmt: skip
    rows = [
        [
            f"{r['n']:,}",
            str(r["workers"]),
            str(r["standby"]),
            _per_worker(r["setup_cpu_s"], 1),
            _per_worker(r["rss_mb"], 0),
            f"{r['to_own_all_s']:.1f}",
            f"{r['take_s']:.2f}",
            _per_worker(r["take_cpu_s"], 2),
            f"{r['rebuilt']} / {r['taken_over']}",
            f"{r['standbys_back_s']:.1f}" if "standbys_back_s" in r else "-",
        ]
        for r in results
    ]
    return _markdown(columns, rows)


def join_table(results: list[dict[str, Any]]) -> str:
    n, t = "---:", "---"
    columns = [
        ("devices", n), ("workers, then", n), ("warm-up", t), ("setup CPU s (per worker)", t),
        ("to balance s", n), ("caught up s", n), ("moved shards unpublished s", n),
        ("join CPU s", n), ("shards rebuilt / taken over warm", t), ("warm-ups", n),
    ]  # fmt: skip
    rows = [
        [
            f"{r['n']:,}",
            f"{r['workers']}, {r['workers'] + 1}",
            "yes" if r["warmup"] else "no",
            _per_worker(r["setup_cpu_s"], 1),
            f"{r['to_balance_s']:.1f}",
            f"{r['caught_up_s']:.1f}",
            f"{r['unpublished_s']:.2f}",
            f"{r['join_cpu_s']:.2f}",
            f"{r['rebuilt']} / {r['taken_over']}",
            str(r["warmups"]),
        ]
        for r in results
    ]
    return _markdown(columns, rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = Options()
    parser.add_argument("--sizes", default="10000,50000", help="fleet sizes N")
    parser.add_argument("--standby", default="0,1", help="standby counts S")
    parser.add_argument("--workers", type=int, default=d.workers, help="workers W (>= 2)")
    parser.add_argument("--scheduled", type=int, default=d.scheduled, help="controls per feeder")
    parser.add_argument("--session-timeout-ms", type=int, default=d.session_ms)
    parser.add_argument("--step", type=float, default=d.step, help="seconds of work per chunk")
    parser.add_argument(
        "--join", action="store_true", help="a worker joins (with and without warm-up) instead"
    )
    args = parser.parse_args()
    o = Options(
        scheduled=args.scheduled,
        session_ms=args.session_timeout_ms,
        step=args.step,
        workers=args.workers,
    )
    # SIGTERM as SIGINT: the finally blocks stop the workers and the broker.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    results = []
    began = time.monotonic()
    for n in (int(s) for s in args.sizes.split(",") if s):
        if args.join:
            for warmup in (False, True):
                print(f"running N={n:,} join, warm-up {warmup} ...", file=sys.stderr, flush=True)
                results.append(asyncio.run(measure_join(n, warmup, o)))
            continue
        for standbys in (int(s) for s in args.standby.split(",") if s):
            print(f"running N={n:,} S={standbys} ...", file=sys.stderr, flush=True)
            results.append(asyncio.run(measure(n, standbys, o)))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"\nMachine: {os.cpu_count()} cores, Python {platform.python_version()}; {when}; "
        f"run {time.monotonic() - began:.0f} s"
    )
    print(f"Options: {o}\n")
    print(join_table(results) if args.join else table(results))
    print(f"\nCommand: python -m benchmarks.bench_takeover {' '.join(sys.argv[1:])}".rstrip())
    print("\n" + json.dumps(results, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
