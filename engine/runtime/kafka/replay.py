"""Scenario replay through Kafka: the inputs go on ``csip.commands``, workers resolve them on
event time, and the outputs are read back from the output topics.

It prints exactly what the embedded runtime prints for the same scenario (the workers fold the
same log with the same kernel); the replay starts its own workers, on a fresh topic prefix,
against the given broker: in this process, or (``processes``) as ``csip worker`` processes.
With ``kill_at`` it kills the first worker process (SIGKILL) once the workers have applied that
many of the scenario's input batches, then sends the rest: the others take its shards over
(from a standby with ``standby``, else by a rebuild from the log) once its session lapses, and
the output is still exactly the embedded runtime's.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.kernel.codec import input_to_json
from engine.replay import Batch, Driver
from engine.runtime.kafka.admin import ensure_topics
from engine.runtime.kafka.worker import Worker, WorkerSettings
from engine.state import commands as c
from topics import catalog

OUTPUT_TOPICS = (catalog.EFFECTIVE, catalog.LIFECYCLE, catalog.EVENT_STATUS)


@dataclass(frozen=True)
class ReplayWorkers:
    """How a replay runs its workers."""

    count: int = 1
    shards: int = 4
    idempotent: bool = False
    processes: bool = False  # ``csip worker`` processes instead of workers in this process
    standby: int = 0
    kill_at: int | None = None  # input batches applied before the first process is killed


def kafka_driver(
    broker: str,
    *,
    workers: int = 1,
    shards: int = 4,
    idempotent: bool = False,
    timeout: float = 120,
    processes: bool = False,
    standby: int = 0,
    kill_at: int | None = None,
) -> Driver:
    if kill_at is not None and not (processes and workers >= 2 and kill_at >= 1):
        raise ValueError("killing a worker needs two worker processes or more, after a batch")
    how = ReplayWorkers(workers, shards, idempotent, processes, standby, kill_at)

    def drive(batches: Sequence[Batch], until: int, profile: str) -> list[dict[str, Any]]:
        if how.processes:
            work = _drive_processes(batches, until, profile, broker, how)
        else:
            work = _drive(batches, until, profile, broker, how)
        return asyncio.run(asyncio.wait_for(work, timeout))

    return drive


async def _drive(
    batches: Sequence[Batch], until: int, profile: str, broker: str, how: ReplayWorkers
) -> list[dict[str, Any]]:
    prefix = f"replay-{uuid.uuid4().hex[:10]}."
    shards = how.shards
    await asyncio.to_thread(ensure_topics, broker, prefix=prefix, shards=shards)
    total = await produce(broker, prefix, batches, until)
    stop = asyncio.Event()
    running = [
        Worker(
            WorkerSettings(
                broker,
                prefix=prefix,
                shards=shards,
                profile=profile,
                clock="event",
                group=f"{prefix}workers",
                session_timeout_ms=2000,  # Tansu: joining takes half of it
                heartbeat_interval_ms=500,
                idempotent=how.idempotent,
                name=f"replay-{n}",
                standbys=how.standby,
            )
        )
        for n in range(how.count)
    ]
    tasks = [asyncio.create_task(worker.run(stop)) for worker in running]
    try:
        records = await collect(broker, prefix, shards, total, tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return records


async def _drive_processes(
    batches: Sequence[Batch], until: int, profile: str, broker: str, how: ReplayWorkers
) -> list[dict[str, Any]]:
    prefix = f"replay-{uuid.uuid4().hex[:10]}."
    await asyncio.to_thread(ensure_topics, broker, prefix=prefix, shards=how.shards)
    due = [(t, inputs) for t, inputs in batches if t <= until]
    logs = Path(tempfile.mkdtemp(prefix="csip-replay-"))
    running = [
        _start_worker(broker, prefix, profile, how, logs / f"worker-{n}.log")
        for n in range(how.count)
    ]
    killed: set[int] = set()
    watch = asyncio.create_task(_watch(running, killed))
    try:
        total = 0
        if how.kill_at is not None:
            total = await produce(broker, prefix, due[: how.kill_at], None)
            await collect(broker, prefix, how.shards, total, [watch])  # applied and published
            killed.add(running[0].pid)
            running[0].kill()
            await asyncio.to_thread(running[0].wait)
            due = due[how.kill_at :]
        total += await produce(broker, prefix, due, until)
        return await collect(broker, prefix, how.shards, total, [watch])
    except BaseException:
        for log in sorted(logs.iterdir()):
            tail = log.read_text(errors="replace").splitlines()[-20:]
            print(f"--- {log.name}", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        watch.cancel()
        for process in running:
            if process.poll() is None:
                process.terminate()
        for process in running:
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(logs, ignore_errors=True)


def _start_worker(
    broker: str, prefix: str, profile: str, how: ReplayWorkers, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "csip", "worker", "--broker", broker, "--prefix", prefix,
        "--shards", str(how.shards), "--profile", profile, "--clock", "event",
        "--group", f"{prefix}workers", "--session-timeout-ms", "2000",  # Tansu: joins take half
        "--standby", str(how.standby), "--metrics-port", "0", "--log-level", "warning",
    ]  # fmt: skip
    if not how.idempotent:
        command.append("--no-idempotence")
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=out)


async def _watch(running: list[subprocess.Popen[bytes]], killed: set[int]) -> None:
    """Fail (so that ``collect`` stops waiting) when a worker process exits unasked."""
    while True:
        for process in running:
            if process.pid not in killed and process.poll() is not None:
                raise RuntimeError(f"worker process {process.pid} exited ({process.returncode})")
        await asyncio.sleep(0.2)


async def produce(broker: str, prefix: str, batches: Sequence[Batch], until: int | None) -> int:
    """Put a scenario's input batches on the command log, then (with ``until``) a tick to it;
    returns how many records were written."""
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=5)
    await producer.start()
    topic = catalog.named(catalog.COMMANDS, prefix)
    commands: list[tuple[int, c.Command]] = [
        (t, c.ApplyInputs([input_to_json(i) for i in inputs]))
        for t, inputs in batches
        if until is None or t <= until
    ]
    if until is not None:
        commands.append((until, c.Tick()))
    try:
        for t, command in commands:
            value = {"v": 1, "id": uuid.uuid4().hex, "t": t, "command": command.to_json()}
            await producer.send_and_wait(topic, orjson.dumps(value), key=command.kind.encode())
    finally:
        await producer.stop()
    return len(commands)


async def collect(
    broker: str, prefix: str, shards: int, total: int, tasks: Sequence[asyncio.Task[None]] = ()
) -> list[dict[str, Any]]:
    """Read every output partition until its marker says the workers applied all ``total``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await consumer.start()
    partitions = [
        TopicPartition(catalog.named(topic, prefix), p)
        for topic in OUTPUT_TOPICS
        for p in range(topic.partition_count(shards))
    ]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    waiting = set(partitions)
    by_id: dict[str, dict[str, Any]] = {}
    try:
        while waiting:
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise RuntimeError("a replay worker failed") from failed[0].exception()
            batch = await consumer.getmany(timeout_ms=200)
            for tp, messages in batch.items():
                for message in messages:
                    record = orjson.loads(message.value)
                    if record.get("type") == "marker":
                        if record["position"] >= total:
                            waiting.discard(tp)
                        continue
                    record.pop("v", None)
                    by_id[record["id"]] = record  # a record published twice is one record
    finally:
        await consumer.stop()
    return list(by_id.values())
