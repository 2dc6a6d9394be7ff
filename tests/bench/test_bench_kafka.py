"""The Kafka benchmark's own producer: commands go out in producer batches, and the offset it
returns (what the bench waits for the workers to reach) is the one after the last record, also
when the records span several batches."""

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
