"""What the worker's ``_send_now`` relies on in aiokafka: a batch is drained without waiting out
``linger_ms`` once its builder is closed (aiokafka's own ``BatchBuilder.close`` docstring says
closing has no effect on when a batch is sent; its accumulator does otherwise, and the worker
awaits every step's acknowledgements, so 5 ms of linger was 5 ms of each step)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.producer.message_accumulator import MessageBatch


def test_a_closed_batch_does_not_linger() -> None:
    async def lingers() -> tuple[float | None, float | None]:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", linger_ms=5_000)
        builder = producer.create_batch()
        builder.append(key=b"marker", value=b"{}", timestamp=None)
        batch = MessageBatch(TopicPartition("csip.effective-control", 0), builder, 30, 5.0)
        before = batch.remaining_linger()
        builder.close()
        return before, batch.remaining_linger()

    before, after = asyncio.run(lingers())
    assert before is not None and before > 4  # open: waits out the linger (5 s here)
    assert after is None  # closed: drained on the sender's next pass
