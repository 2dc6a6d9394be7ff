"""A worker killed mid-stream loses no transition: another worker takes its shards over,
rebuilds them from the command log, and publishes what the dead one may not have."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.replay import Scenario, run, to_lines
from engine.runtime.kafka.admin import ensure_topics
from engine.runtime.kafka.replay import collect, produce
from tests.kafka.broker_fixtures import Broker

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def worker(broker: Broker, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable, "-m", "csip", "worker", "--broker", broker.url,
                "--prefix", prefix, "--shards", "4", "--clock", "event",
                "--group", f"{prefix}workers", "--session-timeout-ms", "2000",
                "--no-idempotence", "--metrics-port", "0", "--log-level", "warning",
            ],
            stdout=out,
            stderr=out,
        )  # fmt: skip


def big_scenario() -> Scenario:
    raw: dict[str, Any] = json.loads((SCENARIOS / "05-successive-randomized.json").read_text())
    raw["devices"] += [{"lfdi": f"{n:040X}", "programs": ["P1"]} for n in range(1, 200)]
    raw.pop("expect")
    return Scenario.parse(raw)


def test_a_killed_worker_loses_nothing(broker: Broker, topic_prefix: str, tmp_path: Path) -> None:
    scenario = big_scenario()
    batches = [(scenario.epoch + t, inputs) for t, inputs in scenario.batches]
    until = scenario.epoch + scenario.until
    ensure_topics(broker.url, prefix=topic_prefix, shards=4)

    first = worker(broker, topic_prefix, tmp_path / "first.log")
    try:
        half = len(batches) // 2 or 1
        asyncio.run(produce(broker.url, topic_prefix, batches[:half], None))
        time.sleep(4)  # it joins, takes every shard and works through the first half
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    second = worker(broker, topic_prefix, tmp_path / "second.log")
    try:
        total = asyncio.run(produce(broker.url, topic_prefix, batches[half:], until))
        records = asyncio.run(collect(broker.url, topic_prefix, 4, half + total))
    finally:
        second.terminate()
        second.wait(10)
    assert to_lines(records, scenario.epoch, scenario.until) == run(scenario)


def test_a_restarted_worker_resumes_from_its_checkpoint(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    from engine.runtime.kafka.worker import Worker, WorkerSettings

    scenario = big_scenario()
    batches = [(scenario.epoch + t, inputs) for t, inputs in scenario.batches]
    until = scenario.epoch + scenario.until
    ensure_topics(broker.url, prefix=topic_prefix, shards=4)
    half = len(batches) // 2 or 1
    settings = WorkerSettings(
        broker.url,
        prefix=topic_prefix,
        shards=4,
        clock="event",
        group=f"{topic_prefix}workers",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        idempotent=False,
        data=tmp_path / "worker",
    )

    async def phase(batches_now: list[Any], tick: int | None, expect_total: int) -> Worker:
        worker = Worker(settings)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        produced = await produce(broker.url, topic_prefix, batches_now, tick)
        async with worker.progress:
            await asyncio.wait_for(
                worker.progress.wait_for(lambda: worker.stats.position >= expect_total), 30
            )
        assert produced
        stop.set()
        await task
        return worker

    first = asyncio.run(phase(batches[:half], None, half))
    assert first.stats.rebuilds == 0  # nothing to rebuild from: it started first
    second_half = len([b for b in batches[half:] if b[0] <= until]) + 1
    second = asyncio.run(phase(batches[half:], until, half + second_half))
    assert second.stats.rebuilds == 0  # took its shards back from the checkpoint
    records = asyncio.run(collect(broker.url, topic_prefix, 4, half + second_half))
    assert to_lines(records, scenario.epoch, scenario.until) == run(scenario)
