"""``csip worker``: the kernel over Kafka, for the device shards this worker owns.

Theory of operation
-------------------
Inputs: ``csip.commands``, one partition, read whole by every worker, in order. Each record is
folded into the registry (the same fold as the embedded runtime), which hands the kernel its
inputs; the kernel here is a ``ShardedKernel``: a program engine plus one engine per owned
shard. So a program change is one record that every worker applies to its own devices.

Ownership: the partitions of ``csip.shards`` are the shards; the ``csip-workers`` consumer group
assigns them with its own assignor (``assignor.py``: sticky and balanced), which also names up
to ``standbys`` other workers per shard to keep it warm. A standby engine folds the same log
and clock as the owner's, but its outputs are held back (``ShardedKernel.held``), each tagged
with the log position and instant it was made at, until the owner's note on
``csip.shard-progress`` (written once its outputs up to a position and instant are
acknowledged) covers them. When the owner goes, the standby takes the shard over as it is and
publishes what it still holds: whatever the owner had not published. A standby whose held
outputs are not complete (rebuilt or restored, until its owner's note covers that point, or
over ``held_limit``) is rebuilt instead, unless the owner's notes, read at the take-over,
cover it. New standby engines are built in the background (the
log folded from the start in small chunks between the worker's own steps, then put in place
once caught up), so neither a take-over nor the shards owned wait for them.

Warm-up: a shard the group would move from a live owner to this worker while this worker has
no complete engine of it comes first as a standby (``_warming``); once its engine is built, the
owner's note covers it and the worker has caught up with the log (within ``warmup_lag``), the
worker asks the group for a rebalance (its join metadata now says it could own the shard at
once), in which it takes the shard over like any standby.

A shard gained with no current engine is rebuilt by folding the log from the start into a
scratch registry and kernel, then taken live; what the rebuild produced is published again
(consumers drop duplicates by id), so a transition whose owner died before publishing it is not
lost. Engines of shards lost are set aside, and taken back if the group gives them back before
the log moves on.

Time: with ``clock="wall"`` the kernel advances to the wall clock whenever its next change is
due (commands apply at their instant, or at the kernel's current one if that is later). With
``clock="event"`` (replays) time moves only with the records' instants, so the outputs are
exactly the embedded runtime's.

Checkpoints: with a data directory, the worker writes its state (registry, program engine, the
engines of its owned and standby shards and the log offset they include) to a local rocksdict after
``checkpoint_every`` commands, at most once per ``checkpoint_interval`` seconds, and when it
stops. The catalog is written once (the shard engines hold equal ones), and the state is
serialized in a thread, so the event loop keeps the group's heartbeats going (at 100,000
devices a checkpoint takes seconds). On start it resumes from there, and takes the
checkpointed engines for the shards the group gives it back, instead of rebuilding them.

Outputs: effective-control changes and response lifecycles per device (keyed and partitioned by
LFDI, partition = shard), event status (from the owner of shard 0), produced in batches with
acks=all. In event-clock mode, after each batch of commands, a marker record on every output
partition this worker writes tells readers (the replay) how far it has got.

Heap: the garbage collector runs between steps, not inside them (its young passes once at a
step's end, a full pass when due), and what survives a full pass (the state, mostly) is frozen
out of later passes (``engine/runtime/heap.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from engine import compiled
from engine.kernel import Engine, EventStatusChange, Output
from engine.runtime.embedded.store import Store
from engine.runtime.heap import Survivors
from engine.runtime.kafka import assignor, encode
from engine.runtime.kafka.fold import fold_records
from engine.runtime.kafka.shards import ShardedKernel
from engine.state.errors import Rejected
from engine.state.registry import Registry
from topics import catalog

log = logging.getLogger("csip.worker")
SCHEMA = catalog.SCHEMA_VERSION
CHECKPOINT_KEY = b"Wcheckpoint"
STEP_RECORDS = 2000  # csip.commands records folded per step, at most (the loop's fetch)


@dataclass
class WorkerSettings:
    broker: str
    prefix: str = ""
    shards: int = catalog.DEFAULT_SHARDS
    profile: str = "csip"
    clock: str = "wall"  # "wall" or "event"
    group: str = catalog.WORKER_GROUP
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    idempotent: bool = True  # Apache Kafka: yes; Tansu (tests) cannot
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    data: Path | None = None  # local checkpoints (rocksdict); None: rebuild from the log
    checkpoint_every: int = 1000  # commands
    checkpoint_interval: float = 60.0  # seconds, at least, between two checkpoints
    standbys: int = 0  # other workers keeping each shard warm (the group uses the largest)
    # build a shard gained from a live owner before owning it (the group: if all members do)
    warmup: bool = True
    warmup_lag: int = 1000  # commands behind the log's end at which a warm-up counts as done
    warmup_retry: float = 30.0  # seconds, at least, between two asks for warmed-up shards
    progress_interval: float = 0.5  # seconds, at least, between two csip.shard-progress notes
    held_limit: int = 100_000  # outputs held back per standby shard before it needs a rebuild

    def topic(self, topic: catalog.Topic) -> str:
        return catalog.named(topic, self.prefix)


@dataclass
class WorkerStats:
    position: int = 0  # next csip.commands offset to apply
    applied: int = 0
    rejected: int = 0
    published: int = 0
    rebuilds: int = 0
    promotions: int = 0  # standby shards taken over without a rebuild
    warmups: int = 0  # times it asked for a rebalance once the shards it warmed up were built
    shards: tuple[int, ...] = ()
    standby: tuple[int, ...] = ()


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """The shards owned and kept warm, as one pair from each completed rebalance.

    Revocations are not acted on: the group's protocol is eager (everything is revoked, then
    everything assigned), and between the two the assignor already holds the next standby
    shards, so a worker acting on the gap would set aside all its engines. A worker keeps its
    engines until the next assignment says otherwise; two owners publishing for a moment
    publish the same records (consumers drop duplicates by id)."""

    def __init__(self, assignor: assignor.ShardAssignor) -> None:
        self._assignor = assignor
        self.shards: frozenset[int] = frozenset()
        self.standby: frozenset[int] = frozenset()
        self.warming: frozenset[int] = frozenset()  # standbys it is to own once built
        self.changed = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.shards = frozenset(tp.partition for tp in assigned)
        self.standby = self._assignor.standby  # set by the same assignment, just before
        self.warming = self._assignor.warming
        self.changed.set()


async def _send_now(
    producer: AIOKafkaProducer, batch: Any, topic: str, partition: int
) -> asyncio.Future[Any]:
    """Send a producer batch (aiokafka ``BatchBuilder``) as it is. Closed first: the producer
    drains a closed batch at once, where an open one waits out ``linger_ms`` (5 ms here) for
    records that will not come (``tests/kafka/test_worker_batches.py``), and a worker awaits its
    records' acknowledgements before it goes on (its outputs before its markers, its markers
    before the next fetch)."""
    batch.close()
    future: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
    return future


def _fold_quietly(registry: Registry, kernel: ShardedKernel, records: list[Any]) -> list[Output]:
    """``fold_records`` for a rebuild: the outputs only (the worker already counted and logged
    these records when it folded them live)."""
    outputs: list[Output] = []
    for verdict in fold_records(registry, kernel, [r.value for r in records]):
        if not isinstance(verdict, Rejected):
            outputs += verdict.outputs
    return outputs


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.registry = Registry()
        self.kernel = ShardedKernel(settings.shards, profile=settings.profile)
        self.stats = WorkerStats()
        self.ready = asyncio.Event()
        self.progress = asyncio.Condition()
        self._producer: AIOKafkaProducer | None = None
        self._log: AIOKafkaConsumer | None = None
        self._group: AIOKafkaConsumer | None = None
        self._commands_tp = TopicPartition(settings.topic(catalog.COMMANDS), 0)
        self._store: Store | None = None
        # Engines not owned now but current at ``_warm_offset`` (from the checkpoint, or just
        # revoked): taken back without a rebuild if the group gives the shard back before the
        # log moves on.
        self._warm: dict[int, Engine] = {}
        self._warm_offset = -1
        self._since_checkpoint = 0
        self._checkpointed_at = -math.inf  # time.monotonic() of the last checkpoint
        self._assignor, self._fallback = assignor.strategies(
            self._holding, settings.standbys, settings.warmup
        )
        self._assignment = _Assignment(self._assignor)
        # Standby shards: the outputs held back, as (position, instant, output) in the order
        # made, until the owner's progress covers them; and those whose held outputs are not
        # complete (rebuilt, restored, or over ``held_limit``) until the owner has published
        # up to the (position, instant) noted, so that taking them over needs a rebuild.
        self._held: dict[int, deque[tuple[int, int | None, Output]]] = {}
        self._unsure: dict[int, tuple[int, int | None]] = {}
        self._noted: dict[int, tuple[int, int | None]] = {}  # the last owner's note read
        self._progress: AIOKafkaConsumer | None = None
        self._progress_noted: tuple[int, int | None, tuple[int, ...]] | None = None
        self._progress_at = -math.inf
        self._building: asyncio.Task[None] | None = None  # standby engines being built
        self._writing = asyncio.Lock()  # held while a checkpoint is serialized in a thread
        self._restored_owned: set[int] = set()  # owned when the checkpoint was written
        self.heap = Survivors()  # freezes the state that survives full collections
        # Shards this worker is to own once their standby engines are built and complete (a
        # warm-up, assignor.py): it then asks the group for a rebalance.
        self._warming: frozenset[int] = frozenset()
        # When it last asked: a plan that did not give it the shards (the log moved on meanwhile)
        # makes it warm them up again, and it asks again no sooner than ``warmup_retry`` later.
        self._asked_at = -math.inf

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self.heap.own()  # full collections between steps only (engine/runtime/heap.py)
        if s.data is not None:
            self._store = Store(s.data)
            self._restore()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.broker,
            acks="all",
            enable_idempotence=s.idempotent,
            linger_ms=5,
            max_batch_size=1 << 20,
            client_id=f"csip-worker-{s.name}",
        )
        await self._producer.start()
        self._log = AIOKafkaConsumer(
            bootstrap_servers=s.broker,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"csip-worker-log-{s.name}",
            max_partition_fetch_bytes=8 << 20,
            # Tansu answers a fetch that found nothing only when this wait runs out (about
            # 200 ms with the default 500); Apache Kafka answers as soon as a record arrives.
            fetch_max_wait_ms=20,
        )
        await self._log.start()
        self._log.assign([self._commands_tp])
        if self.stats.position:
            self._log.seek(self._commands_tp, self.stats.position)
        else:
            await self._log.seek_to_beginning(self._commands_tp)
        self._group = AIOKafkaConsumer(
            bootstrap_servers=s.broker,
            group_id=s.group,
            enable_auto_commit=False,
            partition_assignment_strategy=(self._assignor, self._fallback),
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            client_id=f"csip-worker-group-{s.name}",
        )
        await self._group.start()
        self._group.subscribe([s.topic(catalog.SHARDS)], listener=self._assignment)
        self._progress = AIOKafkaConsumer(
            bootstrap_servers=s.broker,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"csip-worker-progress-{s.name}",
            fetch_max_wait_ms=20,
        )
        await self._progress.start()

    async def stop(self) -> None:
        self.heap.release()
        await self._stop_building()
        if self.ready.is_set():
            try:  # standbys then hold back no more than they must
                await self._note_progress(force=True)
            except Exception as exc:  # the broker may be what is going away
                log.warning("last progress note not written", extra={"error": repr(exc)})
        for client in (self._group, self._log, self._progress):
            if client is not None:
                await client.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._store is not None:
            await self._checkpoint()
            self._store.close()

    # -- checkpoints ------------------------------------------------------------------------

    def _restore(self) -> None:
        assert self._store is not None
        raw = self._store.get(CHECKPOINT_KEY)
        if raw is None:
            return
        saved = orjson.loads(raw)
        if saved["shards"] != self.settings.shards or saved["prefix"] != self.settings.prefix:
            log.warning("checkpoint of another layout ignored", extra={"shards": saved["shards"]})
            return
        self.registry = Registry.from_json(saved["registry"])
        memo, catalog = self.kernel.memo, saved["program"]["catalog"]
        self.kernel.program = Engine.restore(saved["program"], memo=memo)
        self._warm = {
            int(n): Engine.restore(e, memo=memo, catalog=catalog)
            for n, e in saved["engines"].items()
        }
        self.stats.position = self._warm_offset = int(saved["offset"])
        for shard in saved.get("standby", ()):  # what the owners published: not known here
            self._held[int(shard)] = deque()
            self._unsure[int(shard)] = (self.stats.position, self.kernel.program.now)
        # Claimed as owned at the first join, so that the group gives each back to its owner
        # (and a shard this worker kept warm to its keeper) instead of mixing them up.
        self._restored_owned = set(self._warm) - set(self._held)
        log.info("restored", extra={"offset": self.stats.position, "shards": sorted(self._warm)})

    async def _checkpoint(self) -> None:
        """Write a checkpoint. Nothing folds meanwhile (the loop awaits it), but the event
        loop runs: the state is serialized in a thread."""
        if self._store is None or not self.ready.is_set():
            return
        store = self._store
        started = time.perf_counter()
        async with self._writing:  # a standby build neither folds nor attaches meanwhile
            size = await asyncio.to_thread(self._write_checkpoint, store)
        self._since_checkpoint = 0
        self._checkpointed_at = time.monotonic()
        log.info(
            "checkpoint",
            extra={
                "offset": self.stats.position,
                "bytes": size,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def _write_checkpoint(self, store: Store) -> int:
        program = self.kernel.program
        engines = {
            # a shard engine's catalog is the program engine's (same digest): written once
            str(n): e.snapshot(catalog=e.catalog.digest != program.catalog.digest)
            for n, e in self.kernel.engines.items()
        }
        saved = {
            "offset": self.stats.position,
            "shards": self.settings.shards,
            "prefix": self.settings.prefix,
            "registry": self.registry.to_json(),
            "program": program.snapshot(),
            "engines": engines,
            "standby": sorted(self.kernel.standby & set(self.kernel.engines)),
        }
        raw = orjson.dumps(saved)
        store.write_views([(CHECKPOINT_KEY, raw)])
        return len(raw)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, resolve and publish until ``stop`` is set."""
        await self.start()
        try:
            while not stop.is_set():
                self.heap.pause()  # no collector passes inside a step (engine/runtime/heap.py)
                try:
                    await self._step()
                finally:
                    self.heap.step()  # after the step's records and outputs are gone
        finally:
            await self.stop()

    # -- the loop ---------------------------------------------------------------------------

    async def _step(self) -> None:
        assert self._group is not None and self._log is not None
        await self._group.getmany(timeout_ms=0)  # drives the group: heartbeats, rebalances
        if self._assignment.changed.is_set():
            self._assignment.changed.clear()
            got = self._assignment
            shards, standby, warming = set(got.shards), set(got.standby), got.warming
            await self._take_shards(shards, standby)
            self._warming = warming - shards
            self.ready.set()
        if not self.ready.is_set():
            await asyncio.sleep(0.05)
            return
        if self._building is not None and self._building.done():
            building, self._building = self._building, None
            building.result()  # raises what failed it
        batch = await self._log.getmany(self._commands_tp, timeout_ms=100, max_records=STEP_RECORDS)
        records = batch.get(self._commands_tp, [])
        outputs: list[Output] = []
        if records:
            outputs = self._fold(self.registry, self.kernel, records)
            self.stats.position = records[-1].offset + 1
            self._since_checkpoint += len(records)
        if self.settings.clock == "wall":
            outputs += self._advance_to_wall_clock()
        if self.kernel.held:
            self._hold(self.kernel.take_held())
        if outputs:
            await self._publish(outputs)
        await self._note_progress()
        if self.kernel.standby:
            await self._read_progress()
        if self._warming and self._may_ask() and self._warmed_up():
            self._ask_for_warmed_up_shards()
        if self._since_checkpoint >= self.settings.checkpoint_every and (
            time.monotonic() - self._checkpointed_at >= self.settings.checkpoint_interval
        ):
            await self._checkpoint()
        if batch or outputs:
            if self.settings.clock == "event":
                await self._mark(self.stats.position)
            async with self.progress:
                self.progress.notify_all()

    def _fold(self, registry: Registry, kernel: ShardedKernel, records: list[Any]) -> list[Output]:
        """Apply log records (engine/runtime/kafka/fold.py); their outputs, in order."""
        outputs: list[Output] = []
        rejected = 0
        for record, verdict in zip(
            records, fold_records(registry, kernel, [r.value for r in records]), strict=True
        ):
            if isinstance(verdict, Rejected):
                rejected += 1
                log.info("skipped", extra={"offset": record.offset, "reason": verdict.reason})
            else:
                outputs += verdict.outputs
        self.stats.rejected += rejected
        self.stats.applied += len(records) - rejected
        return outputs

    def _advance_to_wall_clock(self) -> list[Output]:
        now = int(time.time())
        upcoming = self.kernel.next_change()
        if upcoming is None or upcoming > now or self.kernel.program.now is None:
            return []
        return self.kernel.advance(max(now, self.kernel.program.now))

    # -- ownership --------------------------------------------------------------------------

    def _holding(self) -> tuple[set[int], set[int], set[int]]:
        """For the assignor: the shards owned; those with current engines (owned, standby, and
        kept from the checkpoint or a revocation while the log has not moved on); and of those
        the ones it could own at once (not the standbys that would need a rebuild)."""
        engines = set(self.kernel.engines)
        current = set(self._warm) if self._warm_offset == self.stats.position else set()
        owned = (engines - self.kernel.standby) | (self._restored_owned & current)
        warm = engines | current
        if not self._caught_up():  # far behind the log: no standby is ready to own yet
            return owned, warm, owned
        return owned, warm, warm - set(self._unsure)

    def _highwater(self) -> int | None:
        """csip.commands' end offset as the last fetch reported it (None: no fetch yet)."""
        if self._log is None or self._commands_tp not in self._log.assignment():
            return None
        end = self._log.highwater(self._commands_tp)
        return None if end is None else int(end)

    def _caught_up(self) -> bool:
        """This worker has folded csip.commands up to its end as the last fetch reported it,
        within ``warmup_lag`` commands (under a steady stream it is rarely exactly there)."""
        end = self._highwater()
        return end is not None and end - self.stats.position <= self.settings.warmup_lag

    def _may_ask(self) -> bool:
        return time.monotonic() - self._asked_at >= self.settings.warmup_retry

    def _warmed_up(self) -> bool:
        """Every shard this worker warms up has a complete standby engine, and the worker has
        caught up with the log (a worker that just started folds it from the start: its
        standby engines are built as it goes, and are current only at the end)."""
        engines, unsure = self.kernel.engines, self._unsure
        built = self._building is None and all(
            s in engines and s not in unsure for s in self._warming
        )
        return built and self._caught_up()

    def _ask_for_warmed_up_shards(self) -> None:
        """Ask the group for a rebalance, in which the leader gives this worker the shards it
        warmed up (its join metadata now says they are warm)."""
        assert self._group is not None
        log.info("warmed up", extra={"shards": sorted(self._warming)})
        self._warming = frozenset()
        self._asked_at = time.monotonic()
        self.stats.warmups += 1
        # aiokafka has no public call for this; its coordinator's own (used on metadata
        # changes) makes the next poll rejoin the group.
        self._group._coordinator.request_rejoin()

    async def _take_shards(self, wanted: set[int], standby: set[int]) -> None:
        """Own ``wanted`` and keep ``standby`` warm: set aside the other engines (taken back
        without a rebuild while the log has not moved on); take a standby engine over when its
        held outputs are complete, publishing them again; rebuild the rest from the log.

        A shard that has held outputs (in ``_held``) was last a standby here, whether its engine
        is in the kernel or set aside: taking it as owned is a take-over."""
        started = time.perf_counter()
        self._restored_owned = set()  # the first assignment has come
        await self._stop_building()  # the assignment it was for is gone
        kernel = self.kernel
        standby = standby - wanted
        position = self.stats.position
        if self._warm_offset != position:
            self._warm.clear()  # only good at the offset it was set aside at
        for shard in set(kernel.engines) - wanted - standby:
            self._warm[shard] = kernel.engines.pop(shard)
            self._warm_offset = position
        for shard in sorted((wanted | standby) & set(self._warm)):  # back, and still current
            kernel.engines[shard] = self._warm.pop(shard)
        for shard in (set(self._held) | set(self._unsure)) - set(kernel.engines) - set(self._warm):
            self._held.pop(shard, None)  # gone for good
            self._unsure.pop(shard, None)
        # Standbys taken over before this worker read their owners' notes (restored from the
        # checkpoint, just built): read them now, as the owner that left may have noted that it
        # published everything they lack (a clean stop notes last).
        unsure = wanted & set(kernel.engines) & set(self._held) & set(self._unsure)
        if unsure:
            await self._read_notes(unsure)
        republish: list[Output] = []
        promoted = []
        for shard in sorted(wanted & set(kernel.engines) & set(self._held)):
            held = self._held.pop(shard)
            if self._unsure.pop(shard, None) is not None:  # not all it held back: rebuilt
                del kernel.engines[shard]
                continue
            republish += [output for _, _, output in held]
            promoted.append(shard)
        for shard in standby & set(kernel.engines):
            self._held.setdefault(shard, deque())  # one this worker owned: it published all
        kernel.standby = set(standby)
        self._noted = {n: note for n, note in self._noted.items() if n in standby}
        gained = wanted - set(kernel.engines)
        building = standby - set(kernel.engines)
        await self._assign_progress(standby)
        await self._publish(republish)  # what the shards taken over held back, first
        replayed = await self._rebuild(gained) if gained else []
        await self._publish(replayed)
        if building:  # in the background: the shards owned go on meanwhile
            self._building = asyncio.create_task(self._build_standby(building))
        if self.settings.clock == "event" and position:
            await self._mark(position)  # readers of the partitions gained: caught up to here
        self.stats.shards = tuple(sorted(wanted))
        self.stats.standby = tuple(sorted(standby))
        self.stats.promotions += len(promoted)
        log.info(
            "shards taken",
            extra={
                "shards": self.stats.shards,
                "standby": self.stats.standby,
                "taken_over": promoted,  # standby engines now owned: no rebuild
                "republished": len(republish),  # what they had held back
                "rebuilt": sorted(gained),  # folded from the start of the log
                "building": sorted(building),  # standby engines built in the background
                "log_offset": position,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def _attach(self, scratch: ShardedKernel, shards: set[int], position: int) -> int | None:
        """Put the standby engines built in ``scratch`` (at the worker's ``position``) in place,
        brought to the worker's instant; that instant."""
        self._to_live_instant(scratch)
        scratch.take_held()
        live_now = self.kernel.program.now
        for shard in shards & self.kernel.standby:
            self.kernel.engines[shard] = scratch.engines[shard]
            self._held[shard] = deque()
            if not self._covered(shard, position, live_now):
                self._unsure[shard] = (position, live_now)
        return live_now

    def _scratch(self, shards: set[int]) -> tuple[Registry, ShardedKernel]:
        """An empty registry and a kernel with fresh engines for ``shards`` (sharing the
        worker's memo), to fold the log into from the start."""
        memo = self.kernel.memo
        scratch = ShardedKernel(self.settings.shards, profile=self.settings.profile, memo=memo)
        for shard in shards:
            scratch.engines[shard] = Engine(profile=self.settings.profile, memo=memo)
        return Registry(), scratch

    def _to_live_instant(self, scratch: ShardedKernel) -> list[Output]:
        """Advance a scratch kernel that folded the log as far as the worker to the worker's
        instant (on the wall clock the worker has advanced between records)."""
        live_now, now = self.kernel.program.now, scratch.program.now
        if live_now is None or now is None:
            return []
        return scratch.advance(max(live_now, now))

    async def _stop_building(self) -> None:
        if self._building is not None:
            self._building.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._building
            self._building = None

    async def _rebuild(self, gained: set[int]) -> list[Output]:
        """Rebuild the engines of owned shards ``gained`` from the log; what they produced."""
        registry, scratch = self._scratch(gained)
        replayed: list[Output] = []
        if self.stats.position:
            replayed = await self._replay_into(registry, scratch, self.stats.position)
        replayed += self._to_live_instant(scratch)
        for shard in gained:
            self.kernel.engines[shard] = scratch.engines[shard]
        if not self.kernel.publishes_status:
            replayed = [o for o in replayed if not isinstance(o, EventStatusChange)]
        if self.stats.position:
            self.stats.rebuilds += 1  # gained shards had to be rebuilt from the log
        return replayed

    # -- standby shards ---------------------------------------------------------------------

    def _hold(self, held: list[tuple[int, Output]]) -> None:
        """Keep the outputs of standby shards, tagged with how far this worker is."""
        tag = self.stats.position, self.kernel.program.now
        limit = self.settings.held_limit
        for shard, output in held:
            if self._covered(shard, *tag):  # this worker is behind the owner: published
                continue
            queue = self._held.setdefault(shard, deque())
            queue.append((*tag, output))
            if len(queue) > limit:  # the owner is far behind or gone: hold no more
                queue.clear()
                self._unsure[shard] = tag
                log.warning("standby shard over its held limit", extra={"shard": shard})

    async def _assign_progress(self, standby: set[int]) -> None:
        """Read csip.shard-progress for the standby shards (from the start of each: the
        latest note per shard is what matters, and Tansu's "latest" offsets are wrong)."""
        reader = self._progress
        if reader is None:
            return
        topic = self.settings.topic(catalog.PROGRESS)
        wanted = {TopicPartition(topic, shard) for shard in standby}
        if wanted == reader.assignment():
            return
        reader.assign(sorted(wanted))
        if wanted:
            await reader.seek_to_beginning(*wanted)

    async def _read_progress(self) -> None:
        """Drop held outputs the owners have published (their notes on csip.shard-progress)."""
        assert self._progress is not None
        self._take_notes(await self._progress.getmany(timeout_ms=0))

    def _take_notes(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Apply owners' notes read from csip.shard-progress (partition = shard)."""
        for tp, records in batch.items():
            for record in records:
                note = orjson.loads(record.value)
                self._published(tp.partition, int(note["position"]), note["now"])

    async def _read_notes(self, shards: set[int], timeout: float = 5.0) -> None:
        """Read csip.shard-progress of ``shards`` from the start to its end now (the end the
        fetches report: Tansu's "latest" offsets are wrong), with a consumer of its own;
        after ``timeout`` what was read is what counts."""
        topic = self.settings.topic(catalog.PROGRESS)
        partitions = [TopicPartition(topic, shard) for shard in sorted(shards)]
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.settings.broker,
            enable_auto_commit=False,
            client_id=f"csip-worker-notes-{self.settings.name}",
        )
        await reader.start()
        try:
            reader.assign(partitions)
            await reader.seek_to_beginning(*partitions)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._take_notes(await reader.getmany(*partitions, timeout_ms=100))
                if await self._at_end(reader, partitions):
                    break
        finally:
            await reader.stop()

    @staticmethod
    async def _at_end(reader: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
        for tp in partitions:
            end = reader.highwater(tp)
            if end is None or await reader.position(tp) < end:
                return False
        return True

    def _published(self, shard: int, position: int, now: int | None) -> None:
        """The owner of ``shard`` has published everything up to ``position`` and ``now``."""
        self._noted[shard] = (position, now)
        queue = self._held.get(shard)
        while queue and self._covered(shard, queue[0][0], queue[0][1]):
            queue.popleft()
        unsure = self._unsure.get(shard)
        if unsure is not None and self._covered(shard, *unsure):
            del self._unsure[shard]

    def _covered(self, shard: int, position: int, now: int | None) -> bool:
        """The last note read from the owner of ``shard`` covers (``position``, ``now``)."""
        note = self._noted.get(shard)
        if note is None or position > note[0]:
            return False
        return now is None or (note[1] is not None and now <= note[1])

    async def _note_progress(self, *, force: bool = False) -> None:
        """As owner: note on csip.shard-progress how far this worker has published (called
        once the outputs are acknowledged), when that moved, at most every
        ``progress_interval`` unless ``force``."""
        owned = tuple(sorted(set(self.kernel.engines) - self.kernel.standby))
        noted = (self.stats.position, self.kernel.program.now, owned)
        if not owned or noted == self._progress_noted:
            return
        if time.monotonic() - self._progress_at < self.settings.progress_interval and not force:
            return
        assert self._producer is not None
        s = self.settings
        topic = s.topic(catalog.PROGRESS)
        position, now, _ = noted
        sends = []
        for shard in owned:
            value = orjson.dumps(
                {"v": SCHEMA, "shard": shard, "worker": s.name, "position": position, "now": now}
            )
            sends.append(
                await self._producer.send(
                    topic, key=str(shard).encode(), value=value, partition=shard
                )
            )
        await asyncio.gather(*sends)
        self._progress_noted, self._progress_at = noted, time.monotonic()

    async def _replay_into(
        self, registry: Registry, kernel: ShardedKernel, until: int
    ) -> list[Output]:
        """Fold log offsets [0, until) into a scratch registry and kernel; their outputs."""
        outputs: list[Output] = []
        async with self._log_reader() as reader:
            await reader.seek_to_beginning(self._commands_tp)
            position = 0
            while position < until:
                batch = await reader.getmany(self._commands_tp, timeout_ms=500, max_records=5000)
                records = [r for r in batch.get(self._commands_tp, []) if r.offset < until]
                if records:
                    outputs += _fold_quietly(registry, kernel, records)
                    position = records[-1].offset + 1
        return outputs

    @contextlib.asynccontextmanager
    async def _log_reader(self) -> AsyncIterator[AIOKafkaConsumer]:
        """A consumer of csip.commands of its own (rebuilds read the log from the start)."""
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.settings.broker,
            enable_auto_commit=False,
            client_id=f"csip-worker-rebuild-{self.settings.name}",
            max_partition_fetch_bytes=8 << 20,
        )
        await reader.start()
        try:
            reader.assign([self._commands_tp])
            yield reader
        finally:
            await reader.stop()

    async def _build_standby(self, shards: set[int]) -> None:
        """Build standby engines for ``shards`` while the worker goes on: fold the log from the
        start in small chunks (the event loop runs the worker's own steps between them) until
        caught up with the worker, then put them in place, in one go with no wait between the
        check and the change. Cancelled when the assignment changes again."""
        started = time.perf_counter()
        registry, scratch = self._scratch(shards)
        scratch.standby = set(shards)
        position = 0
        async with self._log_reader() as reader:
            await reader.seek_to_beginning(self._commands_tp)
            while True:
                # Taking an unlocked asyncio.Lock does not yield: from the check to the change
                # nothing else runs, and no checkpoint is being written.
                async with self._writing:
                    if position >= self.stats.position:
                        live_now = self._attach(scratch, shards, position)
                        break
                until = self.stats.position
                batch = await reader.getmany(self._commands_tp, timeout_ms=500, max_records=200)
                records = [r for r in batch.get(self._commands_tp, []) if r.offset < until]
                if records:
                    async with self._writing:
                        _fold_quietly(registry, scratch, records)
                    scratch.take_held()  # its past: unsure until the owner's note covers it
                    position = records[-1].offset + 1
                if position < until:
                    reader.seek(self._commands_tp, position)  # read past ``until``: again
                await asyncio.sleep(0)  # the worker's own steps and heartbeats go first
        if position:
            self.stats.rebuilds += 1
        log.info(
            "standby shards built",
            extra={
                "standby": sorted(shards),
                "log_offset": position,
                "now": live_now,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    # -- outputs ----------------------------------------------------------------------------

    async def _publish(self, outputs: list[Output]) -> None:
        """Produce the outputs' records into one producer batch per (topic, partition) at a
        time, each sent as soon as it is full, instead of one ``send`` and one future per
        record; order within a partition is kept. The device records are encoded and routed
        by the compiled ``encode.by_partition``; this loop only appends them."""
        if not outputs:
            return
        producer = self._producer
        assert producer is not None
        s = self.settings
        status = s.topic(catalog.EVENT_STATUS)
        status_partitions = catalog.EVENT_STATUS.partition_count(s.shards)
        sent = []
        count = 0
        effective, lifecycle = encode.by_partition(encode.Encoder(SCHEMA), outputs, s.shards)
        routed: list[tuple[str, dict[int, encode.Records]]] = [
            (s.topic(catalog.EFFECTIVE), effective),
            (s.topic(catalog.LIFECYCLE), lifecycle),
        ]
        statuses: dict[int, encode.Records] = {}
        for output in outputs:
            if isinstance(output, EventStatusChange):
                for record in output.records():
                    mrid = record["mRID"]
                    partition = catalog.partition_for(mrid, status_partitions)
                    value = orjson.dumps({"v": SCHEMA, **record})
                    statuses.setdefault(partition, []).append((mrid.encode(), value))
        routed.append((status, statuses))
        for topic, partitions in routed:
            for partition, records in partitions.items():
                batch = producer.create_batch()
                for key, value in records:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        # Full: send it, open the next.
                        sent.append(await _send_now(producer, batch, topic, partition))
                        batch = producer.create_batch()
                        if batch.append(key=key, value=value, timestamp=None) is None:
                            raise ValueError(f"a record of {len(value)} bytes exceeds the batch")
                sent.append(await _send_now(producer, batch, topic, partition))
                count += len(records)
        await asyncio.gather(*sent)
        self.stats.published += count

    async def _mark(self, position: int) -> None:
        """Event-clock mode: tell readers of every partition this worker writes how far it is."""
        assert self._producer is not None
        s = self.settings
        marker = orjson.dumps({"v": SCHEMA, "type": "marker", "position": position})
        places = [
            (s.topic(topic), shard)
            for shard in set(self.kernel.engines) - self.kernel.standby
            for topic in (catalog.EFFECTIVE, catalog.LIFECYCLE)
        ]
        if self.kernel.publishes_status:
            status = s.topic(catalog.EVENT_STATUS)
            places += [(status, p) for p in range(catalog.EVENT_STATUS.partition_count(s.shards))]
        sends = []
        for topic, partition in places:
            batch = self._producer.create_batch()
            batch.append(key=b"marker", value=marker, timestamp=None)
            sends.append(await _send_now(self._producer, batch, topic, partition))
        await asyncio.gather(*sends)

    def log_end(self) -> int | None:
        """csip.commands' end offset as the last fetch reported it (None: not known yet, or 0)."""
        return self._highwater() or None

    def held_outputs(self) -> int:
        return sum(len(queue) for queue in self._held.values())

    def warming_shards(self) -> list[int]:
        return sorted(self._warming)

    def unsure_shards(self) -> list[int]:
        return sorted(set(self._unsure) & self.kernel.standby)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.settings.name,
            "kernel": compiled.kernel(),  # compiled (make compile, the image) or interpreted
            "position": self.stats.position,
            "applied": self.stats.applied,
            "rejected": self.stats.rejected,
            "published": self.stats.published,
            "rebuilds": self.stats.rebuilds,
            "promotions": self.stats.promotions,
            "warmups": self.stats.warmups,
            "warming": self.warming_shards(),  # to own once built (then it asks the group)
            "shards": list(self.stats.shards),
            "standby": list(self.stats.standby),
            "building": sorted(self.kernel.standby - set(self.kernel.engines)),
            "held": {shard: len(queue) for shard, queue in sorted(self._held.items())},
            "unsure": self.unsure_shards(),
            "now": self.kernel.program.now,
            "engine": {
                shard: engine.stats() for shard, engine in sorted(self.kernel.engines.items())
            },
        }
