"""The worker's heap policy (engine/runtime/heap.py): what survives a full collection is frozen
at the next step, and folding commands makes no reference cycles, so nothing frozen is kept
past its last reference."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench_kafka import Fleet, catalog_commands, member_commands
from benchmarks.bench_worker_fold import worker
from engine.kernel.codec import input_to_json
from engine.kernel.identity import sfdi_from_lfdi
from engine.replay import Scenario
from engine.runtime.heap import Survivors, full_collections
from engine.runtime.kafka.fold import command_record, fold_records
from engine.state import commands as c
from engine.state.registry import Executed

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.json"))


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes is given back to the collector after it."""
    try:
        yield
    finally:
        gc.unfreeze()


def test_survivors_are_frozen_once_after_each_full_collection(unfrozen: None) -> None:
    gc.collect()  # the collector's counts from zero: no full pass due in the next few lines
    heap = Survivors()
    assert heap.step() is False  # no full collection since it was made
    before = full_collections()
    kept = [[i] for i in range(1000)]  # tracked objects alive at the next full collection
    gc.collect()
    assert full_collections() == before + 1
    assert heap.step() is True and heap.freezes == 1
    # What the freeze moved (give or take objects freed between the count and the freeze).
    assert abs(heap.frozen() - gc.get_freeze_count()) <= 10 and heap.frozen() >= len(kept)
    assert heap.step() is False  # until the next one
    # Counted at the freeze, not at each call (a count walks every frozen object).
    more = [[i] for i in range(1000)]  # tracked, alive at the next freeze
    gc.freeze()
    assert heap.frozen() + len(more) // 2 < gc.get_freeze_count()
    # Each freeze adds what it moved; objects freed since are not subtracted.
    counted = heap.frozen()
    newer = [[i] for i in range(2000)]
    gc.collect()
    assert heap.step() is True and heap.freezes == 2
    assert counted + len(newer) <= heap.frozen() < gc.get_freeze_count()  # not ``more``
    before_free = gc.get_freeze_count()
    del newer
    assert gc.get_freeze_count() <= before_free - 2000 and heap.frozen() >= counted + 2000


def test_an_owner_runs_full_collections_between_steps_only(unfrozen: None) -> None:
    threshold = gc.get_threshold()
    heap, other = Survivors(every=2), Survivors()
    heap.own()
    other.own()
    try:
        before = full_collections()
        # A large step: objects alive across many passes of generation 1 (a step's outputs).
        step = [[i] for i in range(300_000)]
        assert gc.get_count()[2] >= 2  # passes of generation 1 since the last full one
        assert full_collections() == before  # none ran inside the step
        del step
        assert heap.step() is True  # between steps: the one due, then the freeze
        assert full_collections() == before + 1 and heap.freezes == 1
        assert heap.step() is False  # not due again yet
        heap.release()
        assert gc.get_threshold() == (threshold[0], threshold[1], gc.get_threshold()[2])
        assert gc.get_threshold()[2] > 1_000_000  # ``other`` still owns them
    finally:
        heap.release()
        other.release()
    assert gc.get_threshold() == threshold


def test_a_paused_step_runs_no_collection_until_it_ends(unfrozen: None) -> None:
    threshold = gc.get_threshold()
    heap = Survivors()
    heap.pause()
    assert gc.isenabled()  # only an owner pauses the collector
    heap.own()
    try:
        gc.collect()
        young = gc.get_stats()[0]["collections"]
        heap.pause()
        step = [[i] for i in range(50_000)]  # some 70 passes of generation 0, unpaused
        assert gc.get_stats()[0]["collections"] == young
        assert gc.get_count()[0] >= len(step)
        heap.step()  # the young generations' pass held back, once
        assert gc.isenabled()
        assert gc.get_stats()[0]["collections"] + gc.get_stats()[1]["collections"] > young
        assert gc.get_count()[0] < threshold[0]
        heap.pause()
    finally:
        heap.release()  # also ends a pause
    assert gc.isenabled() and gc.get_threshold() == threshold


def _streams() -> list[list[bytes]]:
    """Command streams, each folded by a worker of its own: commands of the kinds the gateway
    writes, each scenario's inputs, and the Kafka benchmark's fleet and events."""
    lfdis = [f"{n:040X}" for n in range(1, 6)]
    admin: list[c.Command] = [c.PutProgram("P-HEAP", 5, "AB" * 16)]
    admin += [c.RegisterDevice(lfdi, sfdi_from_lfdi(lfdi)) for lfdi in lfdis]
    admin += [
        c.SetDeviceFSAs(lfdi, [{"mRID": "CD" * 16, "programs": ["P-HEAP"]}]) for lfdi in lfdis
    ]
    admin += [c.DeleteDevice(lfdis[0])]
    streams = [[command_record(command, 1_000, f"admin-{i}") for i, command in enumerate(admin)]]
    for path in SCENARIOS:
        batches = Scenario.load(path).batches
        streams.append(
            [
                command_record(c.ApplyInputs([input_to_json(i) for i in inputs]), t, f"{t}")
                for t, inputs in batches
            ]
        )
    fleet = Fleet(2_000)
    bench = catalog_commands(2) + member_commands(2_000)
    streams.append(
        bench + [fleet.enroll() for _ in range(300)] + [fleet.move() for _ in range(300)]
    )
    return streams


def test_folding_commands_makes_no_reference_cycles(unfrozen: None) -> None:
    streams = _streams()
    assert len(streams) == len(SCENARIOS) + 2 and SCENARIOS
    gc.collect()
    gc.freeze()  # what exists now is not this test's
    for records in streams:
        registry, kernel = worker(12)  # owning every shard
        verdicts = fold_records(registry, kernel, records)
        assert all(isinstance(v, Executed) for v in verdicts), [
            v for v in verdicts if not isinstance(v, Executed)
        ][:1]
    del registry, kernel, verdicts
    gc.unfreeze()
    assert gc.collect() == 0  # nothing the fold dropped was held by a cycle
