"""Scenario replay through Kafka: the inputs go on ``csip.commands``, workers resolve them on
event time, and the outputs are read back from the output topics.

It prints exactly what the embedded runtime prints for the same scenario (the workers fold the
same log with the same kernel); the replay starts its own workers in this process, on a fresh
topic prefix, against the given broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
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


def kafka_driver(
    broker: str,
    *,
    workers: int = 1,
    shards: int = 4,
    idempotent: bool = False,
    timeout: float = 120,
) -> Driver:
    def drive(batches: Sequence[Batch], until: int, profile: str) -> list[dict[str, Any]]:
        return asyncio.run(
            asyncio.wait_for(
                _drive(batches, until, profile, broker, workers, shards, idempotent), timeout
            )
        )

    return drive


async def _drive(
    batches: Sequence[Batch],
    until: int,
    profile: str,
    broker: str,
    workers: int,
    shards: int,
    idempotent: bool,
) -> list[dict[str, Any]]:
    prefix = f"replay-{uuid.uuid4().hex[:10]}."
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
                idempotent=idempotent,
                name=f"replay-{n}",
            )
        )
        for n in range(workers)
    ]
    tasks = [asyncio.create_task(worker.run(stop)) for worker in running]
    try:
        records = await collect(broker, prefix, shards, total, tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return records


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
