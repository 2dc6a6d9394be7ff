"""Standby shards (``csip worker --standby 1``): a worker keeps the other's shards warm, holds
back their outputs until the owner's csip.shard-progress covers them, and when the owner goes
takes its shards over without a rebuild, publishing what the owner never did."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.kernel import Input
from engine.replay import Scenario, run, to_lines
from engine.runtime.kafka.admin import ensure_topics
from engine.runtime.kafka.replay import collect, produce
from engine.runtime.kafka.worker import Worker, WorkerSettings
from tests.kafka.broker_fixtures import Broker

SHARDS = 4


def stepped_scenario() -> Scenario:
    """Two programs, 120 devices, controls starting, ending and cancelled and devices moving
    between programs at 12 instants: outputs on every shard all along."""
    devices = [f"{n * 7919 + 11:040X}" for n in range(120)]
    steps: list[dict[str, object]] = []
    for k in range(12):
        t = 60 * k
        steps.append(
            {
                "t": t,
                "control": {
                    "program": "P1" if k % 2 else "P2",
                    "mRID": f"C{k:02d}",
                    "creationTime": t,
                    "start": t + 10,
                    "duration": 90,
                    "responseRequired": "03",
                    "base": {"opModMaxLimW": 1000 + 100 * k},
                },
            }
        )
        for lfdi in devices[k * 10 : k * 10 + 10]:
            steps.append({"t": t + 5, "membership": {"lfdi": lfdi, "programs": ["P1"]}})
    raw = {
        "name": "standby take-over",
        "until": 900,
        "programs": [{"id": "P1", "primacy": 1}, {"id": "P2", "primacy": 2}],
        "devices": [{"lfdi": lfdi, "programs": ["P1", "P2"]} for lfdi in devices],
        "steps": steps,
    }
    return Scenario.parse(raw)


async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def on_the_log(
    broker: Broker, prefix: str, shards: int = SHARDS
) -> tuple[Scenario, list[tuple[int, list[Input]]], int]:
    """``stepped_scenario`` as batches on absolute instants, its end, and fresh topics."""
    scenario = stepped_scenario()
    batches = [(scenario.epoch + t, list(inputs)) for t, inputs in scenario.batches]
    ensure_topics(broker.url, prefix=prefix, shards=shards)
    return scenario, batches, scenario.epoch + scenario.until


def standby_settings(
    broker: Broker,
    prefix: str,
    name: str,
    *,
    shards: int = SHARDS,
    clock: str = "event",
    data: Path | None = None,
    standbys: int = 1,
    group: str = "workers",
) -> WorkerSettings:
    """An in-process worker of a test group: one standby per shard (unless ``standbys``),
    short timeouts, checkpoints in ``data`` if given."""
    return WorkerSettings(
        broker.url,
        prefix=prefix,
        shards=shards,
        clock=clock,
        group=prefix + group,
        session_timeout_ms=2000,  # Tansu: a join takes half of it
        heartbeat_interval_ms=500,
        idempotent=False,
        name=name,
        data=data,
        standbys=standbys,
        progress_interval=0.05,
    )


def held(worker: Worker, shards: tuple[int, ...]) -> int:
    return sum(len(worker._held.get(shard, ())) for shard in shards)


def test_a_standby_takes_over_without_a_rebuild_and_loses_nothing(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    scenario, batches, end = on_the_log(broker, topic_prefix)
    third = len(batches) // 3

    def settings(name: str) -> WorkerSettings:
        return standby_settings(broker, topic_prefix, name)

    async def scenario_run() -> tuple[Worker, list[dict[str, object]]]:
        a, b = Worker(settings("a")), Worker(settings("b"))
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop_a)), asyncio.create_task(b.run(stop_b))]
        try:
            await until(lambda: len(a.stats.standby) == len(b.stats.standby) == 2, "standbys")
            assert set(a.stats.shards) == set(b.stats.standby)
            assert set(b.stats.shards) == set(a.stats.standby)
            owned_by_a = a.stats.shards

            # 1. Both alive: b holds back the outputs of a's shards until a's notes cover them.
            n = await produce(broker.url, topic_prefix, batches[:third], None)
            await until(lambda: a.stats.position >= n and b.stats.position >= n, "first part")
            await until(lambda: held(b, owned_by_a) == 0, "a's notes to cover b's held outputs")
            await until(
                lambda: not b._unsure, "a's notes to cover the shards b built at the start", 10
            )

            # 2. a goes on folding but nothing leaves it any more (it dies before publishing).
            async def silent(*_: object, **__: object) -> None:
                return None

            a._publish = a._note_progress = a._mark = silent  # type: ignore[method-assign]
            n += await produce(broker.url, topic_prefix, batches[third : 2 * third], None)
            await until(lambda: a.stats.position >= n and b.stats.position >= n, "second part")
            assert held(b, owned_by_a) > 0  # what a never published, b still has

            # 3. a leaves; b owns everything, taking a's shards over warm.
            stop_a.set()
            await tasks[0]
            await until(lambda: len(b.stats.shards) == SHARDS, "b to own every shard")
            assert b.stats.promotions == len(owned_by_a)
            n += await produce(broker.url, topic_prefix, batches[2 * third :], end)
            records = await collect(broker.url, topic_prefix, SHARDS, n, tasks[1:])
            return b, records
        finally:
            stop_a.set()
            stop_b.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    b, records = asyncio.run(asyncio.wait_for(scenario_run(), 120))
    assert b.stats.rebuilds == 0  # nothing rebuilt from the log: b had a's shards warm
    assert b.stats.standby == ()
    assert to_lines(records, scenario.epoch, scenario.until) == run(scenario)


def worker_process(broker: Broker, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable, "-m", "csip", "worker", "--broker", broker.url,
                "--prefix", prefix, "--shards", str(SHARDS), "--clock", "event",
                "--group", f"{prefix}workers", "--session-timeout-ms", "2000",
                "--standby", "1", "--no-idempotence", "--metrics-port", "0",
                "--log-level", "info",
            ],
            stdout=out,
            stderr=out,
        )  # fmt: skip


def takes(log: Path) -> list[dict[str, Any]]:
    """The "shards taken" lines of a worker's log."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == "shards taken"]


def test_a_killed_worker_is_replaced_by_its_standby(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    """SIGKILL, mid-stream: the survivor takes the dead worker's shards over warm (its session
    lapses after 2 s), and the outputs are exactly the embedded runtime's."""
    scenario, batches, end = on_the_log(broker, topic_prefix)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first, second = (worker_process(broker, topic_prefix, log) for log in logs)
    try:
        deadline = time.monotonic() + 30
        while not all(t and t[-1]["standby"] for t in map(takes, logs)):
            assert time.monotonic() < deadline, "the two workers never shared the shards"
            time.sleep(0.1)
        half = len(batches) // 2
        n = asyncio.run(produce(broker.url, topic_prefix, batches[:half], None))
        time.sleep(1)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        n += asyncio.run(produce(broker.url, topic_prefix, batches[half:], end))
        records = asyncio.run(collect(broker.url, topic_prefix, SHARDS, n))
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
                process.wait(10)
    assert to_lines(records, scenario.epoch, scenario.until) == run(scenario)
    last = takes(logs[1])[-1]
    assert last["shards"] == list(range(SHARDS)) and last["standby"] == []
    assert last["taken_over"] and not last["rebuilt"]  # warm: nothing folded from the start


def test_on_the_wall_clock_a_standby_publishes_the_start_its_owner_never_did(
    broker: Broker, topic_prefix: str
) -> None:
    """Wall clock: a control starts while its owner has gone silent; when the owner leaves,
    the standby publishes the start for the owner's devices (it had held it back)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from engine.kernel import DefineProgram, SetMembership
    from tests.kafka.test_shards import control
    from topics import catalog

    ensure_topics(broker.url, prefix=topic_prefix, shards=SHARDS)
    devices = [f"{n * 7919 + 11:040X}" for n in range(40)]

    def settings(name: str) -> WorkerSettings:
        return standby_settings(broker, topic_prefix, name, clock="wall")

    async def effective(expected: int) -> dict[str, dict[str, Any]]:
        """The "W1" effective-control record of each device, once all ``expected`` are in."""
        reader = AIOKafkaConsumer(bootstrap_servers=broker.url, enable_auto_commit=False)
        await reader.start()
        topic = catalog.named(catalog.EFFECTIVE, topic_prefix)
        partitions = [TopicPartition(topic, p) for p in range(SHARDS)]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        found: dict[str, dict[str, Any]] = {}
        try:
            while len(found) < expected:
                for records in (await reader.getmany(timeout_ms=200)).values():
                    for record in records:
                        value = json.loads(record.value)
                        if value.get("event") == "W1":
                            found[value["lfdi"]] = value
        finally:
            await reader.stop()
        return found

    async def scenario_run() -> tuple[Worker, dict[str, dict[str, Any]], int]:
        a, b = Worker(settings("a")), Worker(settings("b"))
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop_a)), asyncio.create_task(b.run(stop_b))]
        try:
            await until(lambda: len(a.stats.standby) == len(b.stats.standby) == 2, "standbys")
            now = int(time.time())
            inputs: list[Input] = [DefineProgram("P", 1)]
            inputs += [SetMembership(lfdi, ("P",)) for lfdi in devices]
            inputs.append(control("W1", "P", now + 3, 600))
            n = await produce(broker.url, topic_prefix, [(now, inputs)], None)
            await until(lambda: a.stats.position >= n and b.stats.position >= n, "the control")

            async def silent(*_: object, **__: object) -> None:
                return None

            a._publish = a._note_progress = silent  # type: ignore[method-assign]
            held_before = held(b, a.stats.shards)
            await until(lambda: held(b, a.stats.shards) > held_before, "b to hold the start")
            stop_a.set()
            await tasks[0]
            await until(lambda: len(b.stats.shards) == SHARDS, "b to own every shard")
            return b, await effective(len(devices)), now
        finally:
            stop_a.set()
            stop_b.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    b, found, now = asyncio.run(asyncio.wait_for(scenario_run(), 60))
    assert b.stats.promotions == 2 and b.stats.rebuilds == 0
    assert sorted(found) == sorted(devices)  # a's devices too: b published their start
    assert {record["t"] for record in found.values()} == {now + 3}


def test_with_three_workers_the_survivors_take_over_and_rebuild_standbys_aside(
    broker: Broker, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Three workers, one standby per shard: when one leaves, the others take its shards over
    warm and build standbys for the shards left without one in the background (their own
    shards go on meanwhile); the outputs are the embedded runtime's."""
    shards = 6
    scenario, batches, end = on_the_log(broker, topic_prefix, shards)
    half = len(batches) // 2

    def settings(name: str) -> WorkerSettings:
        return standby_settings(broker, topic_prefix, name, shards=shards)

    async def scenario_run() -> tuple[list[Worker], tuple[int, ...], list[dict[str, object]]]:
        workers = [Worker(settings(name)) for name in "abc"]
        stops = [asyncio.Event() for _ in workers]
        tasks = [asyncio.create_task(w.run(stop)) for w, stop in zip(workers, stops, strict=True)]
        a, rest = workers[0], workers[1:]
        try:
            await until(lambda: all(len(w.stats.standby) == 2 for w in workers), "standbys")
            n = await produce(broker.url, topic_prefix, batches[:half], None)
            await until(lambda: all(w.stats.position >= n for w in workers), "first half")
            owned_by_a = a.stats.shards
            stops[0].set()
            await tasks[0]
            await until(lambda: sum(len(w.stats.shards) for w in rest) == shards, "take-over")

            def built() -> bool:  # every shard has a standby engine again
                return all(set(w.stats.standby) <= set(w.kernel.engines) for w in rest) and {
                    s for w in rest for s in w.stats.standby
                } == set(range(shards))

            await until(built, "standbys built again")
            n += await produce(broker.url, topic_prefix, batches[half:], end)
            records = await collect(broker.url, topic_prefix, shards, n, tasks[1:])
            return rest, owned_by_a, records
        finally:
            for stop in stops:
                stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    caplog.set_level(logging.INFO, logger="csip.worker")
    rest, owned_by_a, records = asyncio.run(asyncio.wait_for(scenario_run(), 120))
    assert sum(w.stats.promotions for w in rest) == len(owned_by_a)  # all taken over warm
    takes = [r.__dict__ for r in caplog.records if r.getMessage() == "shards taken"]
    take_overs = [t for t in takes if t["taken_over"]]
    assert take_overs and all(t["rebuilt"] == [] for t in take_overs)  # nothing in the way
    assert any(t["building"] for t in take_overs)  # new standbys: built aside
    assert to_lines(records, scenario.epoch, scenario.until) == run(scenario)


def test_restarted_workers_get_their_own_shards_back_from_their_checkpoints(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    """Two workers with standbys and checkpoints stop and start again: each gets back the
    shards it owned and those it kept warm, and nothing is rebuilt from the log."""
    scenario, batches, end = on_the_log(broker, topic_prefix)
    half = len(batches) // 2

    def settings(name: str, group: str) -> WorkerSettings:
        return standby_settings(broker, topic_prefix, name, data=tmp_path / name, group=group)

    async def phase(part: list[Any], tick: int | None, done: int) -> list[Worker]:
        # A group of its own per phase (the workers keep nothing in it: positions and shards
        # come from their checkpoints). Tansu 0.6, when both members of a group left it and
        # two new ones join it at once, can answer every join with the same generation and no
        # leader among them, for good (seen under load: 30 s of rejoins); Apache Kafka elects
        # one of the joiners.
        group = f"workers-{done}"
        workers = [Worker(settings(name, group)) for name in "ab"]
        stops = [asyncio.Event() for _ in workers]
        tasks = [asyncio.create_task(workers[0].run(stops[0]))]
        try:
            if done == 0:  # a alone first, then b: shards 0, 1 stay with a (not every other)
                await until(lambda: len(workers[0].stats.shards) == SHARDS, "a to own all")
            tasks.append(asyncio.create_task(workers[1].run(stops[1])))
            await until(lambda: all(len(w.stats.standby) == 2 for w in workers), "standbys")
            n = done + await produce(broker.url, topic_prefix, part, tick)
            await until(lambda: all(w.stats.position >= n for w in workers), "the log")
            await until(lambda: not any(w.unsure_shards() for w in workers), "sure standbys")
        finally:
            for stop in stops:
                stop.set()
            await asyncio.gather(*tasks)
        return workers

    first = asyncio.run(asyncio.wait_for(phase(batches[:half], None, 0), 60))
    second = asyncio.run(asyncio.wait_for(phase(batches[half:], end, half), 60))
    for before, after in zip(first, second, strict=True):
        assert after.stats.shards == before.stats.shards
        assert after.stats.standby == before.stats.standby
        assert after.stats.rebuilds == 0
    total = half + len(batches[half:]) + 1
    records = asyncio.run(collect(broker.url, topic_prefix, SHARDS, total))
    assert to_lines(records, scenario.epoch, scenario.until) == run(scenario)


def test_a_joining_worker_builds_its_shards_before_it_takes_them(
    broker: Broker, topic_prefix: str
) -> None:
    """Warm-up: a worker that joins a running group does not take shards from their live owner
    at once (to rebuild them from the log while nobody publishes them): it builds them as
    standbys in the background while the owner goes on, then asks the group for them and
    takes them over warm. The outputs are exactly the embedded runtime's."""
    scenario, batches, end = on_the_log(broker, topic_prefix)
    half = len(batches) // 2

    def settings(name: str) -> WorkerSettings:
        return standby_settings(broker, topic_prefix, name, standbys=0)  # warm-ups need none

    async def scenario_run() -> tuple[Worker, Worker, list[dict[str, object]]]:
        a, b = Worker(settings("a")), Worker(settings("b"))
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop_a))]
        try:
            await until(lambda: len(a.stats.shards) == SHARDS, "a to own every shard")
            n = await produce(broker.url, topic_prefix, batches[:half], None)
            await until(lambda: a.stats.position >= n, "a to fold the first half")
            tasks.append(asyncio.create_task(b.run(stop_b)))
            await until(lambda: bool(b.stats.standby), "b to warm shards up")
            warming = set(b.stats.standby)
            assert len(warming) == SHARDS // 2 and not b.stats.shards
            assert len(a.stats.shards) == SHARDS  # a publishes them meanwhile
            await until(lambda: bool(b.stats.shards), "b to take the shards it warmed up")
            assert set(b.stats.shards) == warming and not b.stats.standby
            assert set(a.stats.shards) == set(range(SHARDS)) - warming
            n += await produce(broker.url, topic_prefix, batches[half:], end)
            records = await collect(broker.url, topic_prefix, SHARDS, n, tasks)
            return a, b, records
        finally:
            stop_a.set()
            stop_b.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    a, b, records = asyncio.run(asyncio.wait_for(scenario_run(), 120))
    assert b.stats.warmups == 1
    assert b.stats.promotions == SHARDS // 2  # taken over warm
    assert b.stats.rebuilds == 1  # the one background build, nothing folded at the take
    assert a.stats.rebuilds == 0
    assert to_lines(records, scenario.epoch, scenario.until) == run(scenario)


def test_a_worker_restarted_alone_takes_its_peers_shards_from_its_checkpoint(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    """Two workers with standbys and checkpoints stop cleanly (each notes its progress last);
    only a comes back. It owns every shard: its own from its checkpoint, and b's from the
    standby engines in its checkpoint, once b's last notes (read at the take-over) say b
    published all they lack: nothing is rebuilt, and the outputs are exactly the embedded
    runtime's."""
    scenario, batches, end = on_the_log(broker, topic_prefix)
    half = len(batches) // 2

    def settings(name: str) -> WorkerSettings:
        return standby_settings(broker, topic_prefix, name, data=tmp_path / name)

    async def first_part() -> None:
        a, b = Worker(settings("a")), Worker(settings("b"))
        stops = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(w.run(stop)) for w, stop in zip((a, b), stops, strict=True)]
        try:
            await until(lambda: len(a.stats.standby) == len(b.stats.standby) == 2, "standbys")
            n = await produce(broker.url, topic_prefix, batches[:half], None)
            await until(lambda: a.stats.position >= n and b.stats.position >= n, "the log")
        finally:
            for stop in stops:
                stop.set()
            await asyncio.gather(*tasks)

    async def a_alone() -> tuple[Worker, list[dict[str, object]]]:
        a = Worker(settings("a"))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop))]
        try:
            await until(lambda: len(a.stats.shards) == SHARDS, "a to own every shard")
            n = half + await produce(broker.url, topic_prefix, batches[half:], end)
            records = await collect(broker.url, topic_prefix, SHARDS, n, tasks)
            return a, records
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    asyncio.run(asyncio.wait_for(first_part(), 60))
    a, records = asyncio.run(asyncio.wait_for(a_alone(), 60))
    assert a.stats.rebuilds == 0 and a.stats.promotions == SHARDS // 2
    assert to_lines(records, scenario.epoch, scenario.until) == run(scenario)
