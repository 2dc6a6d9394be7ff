"""``csip gateway``: the gateway's backend over Kafka. Stateless: everything it knows it reads
from topics into a local replica; any number of replicas answer the same.

Writes: a command goes on ``csip.commands`` with acks=all; the client gets its answer once the
broker acknowledged it *and* this replica folded it (so the answer is the fold's verdict, the
one every reader reaches: 201/204, or the 4xx of a refused command). A report goes on its
telemetry topic the same way. When the broker cannot take the write, ``Unavailable`` (503 with
Retry-After): nothing was written.

Reads: the replica folds ``csip.commands`` into a registry and a program engine (no devices:
those live in the workers), reads the telemetry topics into local views of what devices
reported, and the workers' output topics into the lifecycle and effective-control history
views; all in a rocksdict under the gateway's data directory, rebuilt from the topics on start.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from engine.kernel import Engine
from engine.runtime.embedded.store import HISTORY, LIFECYCLE, Store
from engine.runtime.kafka.fold import command_record, fold
from engine.runtime.kafka.reporting import KafkaReporting
from engine.runtime.kafka.shards import ShardedKernel
from engine.state import commands as c
from engine.state.errors import Rejected, Unavailable
from engine.state.registry import Executed, Registry
from topics import catalog

log = logging.getLogger("csip.gateway")


class KafkaBackend:
    """The gateway's ``Backend`` over Kafka (see module doc)."""

    def __init__(
        self,
        broker: str,
        data_dir: Path,
        *,
        prefix: str = "",
        shards: int = catalog.DEFAULT_SHARDS,
        profile: str = "csip",
        idempotent: bool = True,
        write_timeout: float = 10.0,
    ) -> None:
        self.broker = broker
        self.prefix = prefix
        self.shards = shards
        self.write_timeout = write_timeout
        self.idempotent = idempotent
        self.registry = Registry()
        self.kernel = ShardedKernel(shards, profile=profile)  # no shards: programs only
        self.store = Store(data_dir)
        self.reporting = KafkaReporting(self)
        self.ready = False
        self.recovery: dict[str, int] = {}
        self.on_change: list[Callable[[], None]] = []
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._folded = -1  # last csip.commands offset folded
        self._verdicts: dict[int, Executed | Rejected] = {}
        self._changed = asyncio.Event()
        self._seen: dict[tuple[str, int], int] = {}  # last offset read per topic partition
        self._progress = asyncio.Condition()

    @property
    def engine(self) -> Engine:
        return self.kernel.program

    def topic(self, topic: catalog.Topic) -> str:
        return catalog.named(topic, self.prefix)

    def now(self) -> int:
        current = self.kernel.program.now
        instant = int(time.time())
        return instant if current is None or instant > current else current

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.broker,
            acks="all",
            enable_idempotence=self.idempotent,
            linger_ms=2,
            request_timeout_ms=int(self.write_timeout * 1000),
        )
        await self._producer.start()
        # Reports change one device's views (the reporting hooks say whose); commands and
        # outputs may change anybody's (the change hooks).
        sources = [
            ([catalog.COMMANDS], self._apply_command, True),
            (catalog.TELEMETRY, self._apply_report, False),
            ([catalog.EFFECTIVE, catalog.LIFECYCLE], self._apply_output, True),
        ]
        caught_up = [asyncio.Event() for _ in sources]
        self._tasks = [
            asyncio.create_task(self._follow(topics, apply, done, changes=changes))
            for (topics, apply, changes), done in zip(sources, caught_up, strict=True)
        ]
        self._tasks.append(asyncio.create_task(self._tick()))
        await asyncio.gather(*(event.wait() for event in caught_up))
        self.recovery = {"checkpoint_seq": 0, "replayed": self._folded + 1}
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
        self.store.close()

    async def _follow(
        self,
        topics: list[catalog.Topic],
        apply: Callable[[str, int, int, bytes], None],
        caught_up: asyncio.Event,
        *,
        changes: bool,
    ) -> None:
        """Read topics from the start, forever; ``caught_up`` once a poll comes back empty
        (Tansu's end offsets cannot be trusted, so an empty poll is the sign)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.broker, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [
                TopicPartition(self.topic(topic), partition)
                for topic in topics
                for partition in range(topic.partition_count(self.shards))
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, messages in batch.items():
                    for message in messages:
                        apply(tp.topic, tp.partition, message.offset, message.value)
                        self._seen[(tp.topic, tp.partition)] = message.offset
                if batch:
                    async with self._progress:
                        self._progress.notify_all()
                    if changes:
                        self._notify_change()
                elif not caught_up.is_set():
                    caught_up.set()
        finally:
            await consumer.stop()

    async def _tick(self) -> None:
        """Let the program engine follow the wall clock (controls expire, statuses move)."""
        while True:
            await asyncio.sleep(1.0)
            upcoming = self.kernel.next_change()
            if upcoming is not None and upcoming <= time.time() and self.kernel.program.now:
                self.kernel.advance(max(int(time.time()), self.kernel.program.now))
                self._notify_change()

    def _notify_change(self) -> None:
        for hook in self.on_change:
            try:
                hook()
            except Exception:
                log.exception("change hook failed")

    # -- the replica ------------------------------------------------------------------------

    def _apply_command(self, topic: str, partition: int, offset: int, raw: bytes) -> None:
        verdict = fold(self.registry, self.kernel, raw)
        self._folded = offset
        if offset in self._verdicts or len(self._verdicts) < 10_000:
            self._verdicts[offset] = verdict

    def _apply_report(self, topic: str, partition: int, offset: int, raw: bytes) -> None:
        record = orjson.loads(raw)
        self.store.write_views(self.reporting.view_items(record, offset))
        for hook in self.reporting.on_write:
            try:
                hook(record["lfdi"])
            except Exception:
                log.exception("report hook failed")

    def _apply_output(self, topic: str, partition: int, offset: int, raw: bytes) -> None:
        record = orjson.loads(raw)
        if record.get("type") == "response":
            key = (
                LIFECYCLE
                + f"{record['lfdi']}/{record['mRID'].upper()}/{record['status']:03d}".encode()
            )
            body = {k: record[k] for k in ("mRID", "program", "status", "t", "posted")}
            self.store.write_views([(key, orjson.dumps(body))])
        elif record.get("type") == "effective":
            key = (
                HISTORY
                + record["lfdi"].encode()
                + b"/"
                + int(record["t"]).to_bytes(8, "big")
                + record["mode"].encode()
            )
            self.store.write_views(
                [(key, orjson.dumps({k: v for k, v in record.items() if k != "v"}))]
            )

    async def _wait_for(self, topic: str, partition: int, offset: int) -> None:
        async with self._progress:
            await asyncio.wait_for(
                self._progress.wait_for(lambda: self._seen.get((topic, partition), -1) >= offset),
                self.write_timeout,
            )

    # -- writes -----------------------------------------------------------------------------

    async def produce(self, topic: str, value: bytes, *, key: bytes, partition: int) -> int:
        """Write one record with acks=all; its offset. ``Unavailable`` if the broker can't."""
        assert self._producer is not None
        try:
            metadata = await asyncio.wait_for(
                self._producer.send_and_wait(topic, value, key=key, partition=partition),
                self.write_timeout,
            )
        except (KafkaError, TimeoutError, OSError) as exc:
            raise Unavailable(f"the event log is unavailable: {type(exc).__name__}") from exc
        await self._wait_for(topic, partition, metadata.offset)
        return int(metadata.offset)

    async def submit(self, command: c.Command) -> Executed:
        topic = self.topic(catalog.COMMANDS)
        raw = command_record(command, self.now(), uuid.uuid4().hex)
        offset = await self.produce(topic, raw, key=command.kind.encode(), partition=0)
        verdict = self._verdicts.pop(offset, None)
        if isinstance(verdict, Rejected):
            raise verdict
        if verdict is None:
            raise Unavailable("the write was made but its outcome is unknown here; read it back")
        return verdict

    async def submit_many(self, commands: list[c.Command]) -> list[Executed | Rejected]:
        """The commands produced concurrently (not ordered among themselves: pass only
        independent commands), each with its own verdict; ``Unavailable`` if the broker could
        not take one of them (others may have been written: read them back)."""
        results = await asyncio.gather(
            *(self.submit(command) for command in commands), return_exceptions=True
        )
        verdicts: list[Executed | Rejected] = []
        for result in results:
            if isinstance(result, Executed | Rejected):
                verdicts.append(result)
            else:
                raise result
        return verdicts

    # -- reads ------------------------------------------------------------------------------

    def lifecycle(self, lfdi: str, mrid: str | None = None) -> list[dict[str, Any]]:
        prefix = LIFECYCLE + lfdi.upper().encode() + b"/"
        if mrid is not None:
            prefix += mrid.upper().encode() + b"/"
        found = [orjson.loads(v) for _, v in self.store.scan(prefix)]
        return sorted(found, key=lambda r: (r["mRID"], r["t"], r["status"]))

    def effective_history(self, lfdi: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, v in self.store.scan(HISTORY + lfdi.upper().encode() + b"/")]
