"""The Kafka benchmark's own producer: commands go out in producer batches, and the offset it
returns (what the bench waits for the workers to reach) is the one after the last record, also
when the records span several batches. Each configuration's table row says how fast the machine
was."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks import bench_kafka as bk
from engine.runtime.kafka.admin import ensure_topics
from tests.kafka.broker_fixtures import Broker
from topics import catalog


def test_send_all_returns_the_offset_after_the_last_record(
    broker: Broker, topic_prefix: str
) -> None:
    ensure_topics(broker.url, prefix=topic_prefix, shards=bk.SHARDS)
    topic = catalog.named(catalog.COMMANDS, topic_prefix)
    values = [f'{{"n":{i},"pad":"{"x" * 100}"}}'.encode() for i in range(50)]

    async def run() -> tuple[int, int, list[bytes]]:
        # Batches of 1 KiB: the 50 records of ~110 bytes need several.
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.url, acks="all", max_batch_size=1024, linger_ms=5
        )
        await producer.start()
        try:
            first = await bk.send_all(producer, topic, values)
            second = await bk.send_all(producer, topic, values[:3])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.url, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            read: list[bytes] = []
            for _ in range(200):
                batch = await consumer.getmany(tp, timeout_ms=200)
                read += [r.value for r in batch.get(tp, [])]
                if len(read) >= 53:
                    break
        finally:
            await consumer.stop()
        return first, second, read

    first, second, read = asyncio.run(run())
    assert (first, second) == (50, 53)
    assert read == values + values[:3]


def test_each_configuration_records_the_machines_speed() -> None:
    report = bk.Load().report([])
    start, end = report["probe_us_start"], report["probe_us_end"]
    assert start > 0 and end > 0
    phase = {"per_s": 1, "events": 1, "cpu_ms_per_event": [0.1], "records_per_event": 0.0}
    result = {
        "n": 10,
        "w": 1,
        "setup": {"seconds": 1.0, "per_s": 1},
        "inputs": phase,
        "moves": phase,
        "system": {"per_s": 1, "per_worker": [1], "all_per_s": 3},
        "latency": {"p50_ms": 1.0, "p99_ms": 2.0},
        "incidents": 0,
        "load": report,
    }
    header, _, row = bk.table([result]).splitlines()
    assert header.endswith("| CPU probe µs (start-end) |")
    assert row.endswith(f"| {start}-{end} |")
