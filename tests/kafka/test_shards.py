"""``ShardedKernel``: the engines of the shards a worker owns give each device what one engine
holding every device gives it, in the same order; the program engine gives the status."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engine.kernel import (
    AddControl,
    DefaultControl,
    DefineProgram,
    DERControl,
    EffectiveChange,
    Engine,
    EventStatusChange,
    Input,
    Output,
    RemoveDevice,
    ResponseDue,
    SetDefault,
    SetMembership,
)
from engine.runtime.kafka.shards import ShardedKernel
from topics.catalog import shard_of

SHARDS = 5
T0 = 1_800_000_000
PROGRAMS = ["SYS", "FDR0", "FDR1", "FDR2", "OPT"]


def lfdi(j: int) -> str:
    return f"{j * 104729 + 3:040X}"


def control(mrid: str, program: str, start: int, duration: int, **extra: Any) -> AddControl:
    raw = {
        "mRID": mrid,
        "program": program,
        "creationTime": T0,
        "start": start,
        "duration": duration,
        "responseRequired": "03",
        "base": {"opModMaxLimW": 4000 + len(mrid)},
        **extra,
    }
    return AddControl(DERControl.from_json(raw))


def batches(seed: int, devices: int = 40, steps: int = 300) -> list[tuple[int, list[Input]]]:
    """(instant, inputs): programs and controls, then membership changes, alone or several at
    once, with program inputs between them, at instants that move on now and then."""
    rng = random.Random(seed)
    head: list[Input] = [DefineProgram(p, 0 if p == "SYS" else 2) for p in PROGRAMS]
    default = DefaultControl.from_json({"opModExpLimW": {"value": 5, "multiplier": 3}})
    head.append(SetDefault("SYS", default))
    head += [control(f"C{k:02d}", f"FDR{k % 3}", T0 + 20 + 30 * k, 60) for k in range(6)]
    head.append(control("R00", "FDR1", T0 + 40, 50, randomizeStart=30))
    out = [(T0, head)]
    t = T0
    for n in range(steps):
        if rng.random() < 0.1:
            t += rng.choice([1, 15, 40])
        items: list[Input] = []
        for _ in range(rng.choice([1, 1, 1, 2, 4])):
            j = rng.randrange(devices)
            roll = rng.random()
            if roll < 0.1:
                items.append(control(f"X{n:03d}", rng.choice(PROGRAMS[1:4]), t + 5, 20))
            elif roll < 0.15:
                items.append(RemoveDevice(lfdi(j)))
            else:
                programs = ("SYS", f"FDR{rng.randrange(3)}") + (("OPT",) if roll < 0.5 else ())
                items.append(SetMembership(lfdi(j), programs))
        out.append((t, items))
    return out


def per_device(outputs: list[Output], owned: set[int]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for output in outputs:
        if isinstance(output, EffectiveChange | ResponseDue):
            for item in output.records():
                if shard_of(item["lfdi"], SHARDS) in owned:
                    found.setdefault(item["lfdi"], []).append(item)
    return found


def statuses(outputs: list[Output]) -> list[dict[str, Any]]:
    return [r for o in outputs if isinstance(o, EventStatusChange) for r in o.records()]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("owned", [set(range(SHARDS)), {0, 3}, {2}])
def test_shards_give_what_one_engine_gives(seed: int, owned: set[int]) -> None:
    whole, sharded = Engine(), ShardedKernel(SHARDS)
    for shard in owned:
        sharded.engines[shard] = Engine()
    expected: list[Output] = []
    got: list[Output] = []
    for t, items in batches(seed):
        expected += whole.apply(t, items)
        got += sharded.apply(t, items)
    end = T0 + 10_000
    expected += whole.advance(end)
    got += sharded.advance(end)
    assert per_device(got, owned) == per_device(expected, owned)
    assert len(per_device(got, owned)) > 3
    assert statuses(got) == (statuses(expected) if 0 in owned else [])


def test_an_engine_put_in_place_is_not_taken_for_idle() -> None:
    """An engine known idle at an instant stays so until applied; one that replaces it (a
    rebuilt or restored shard) is looked at afresh."""
    kernel = ShardedKernel(2)
    kernel.engines[0] = Engine()
    kernel.engines[1] = Engine()
    inputs: list[Input] = [DefineProgram("SYS", 0), control("C1", "SYS", T0 + 10, 60)]
    kernel.apply(T0, inputs)
    kernel.apply(T0, [])  # every engine idle at T0 now
    behind = Engine()
    behind.apply(T0 - 5, [DefineProgram("SYS", 0), control("C1", "SYS", T0 + 10, 60)])
    kernel.engines[1] = behind
    kernel.apply(T0, [])
    assert behind.now == T0  # brought to the instant, not skipped


@pytest.mark.parametrize("seed", range(3))
def test_standby_shards_hold_back_exactly_what_their_owner_publishes(seed: int) -> None:
    """A worker keeping shards 1 and 3 (and 0: the event status) warm gives their outputs to
    ``held``, not to the caller; an owner of them gives the same outputs."""
    owned, standby = {2, 4}, {0, 1, 3}
    owner, worker = ShardedKernel(SHARDS), ShardedKernel(SHARDS)
    for shard in range(SHARDS):
        owner.engines[shard] = Engine()
        worker.engines[shard] = Engine()
    worker.standby = set(standby)
    published: list[Output] = []
    kept_back: list[Output] = []
    expected: list[Output] = []
    for t, items in [*batches(seed), (T0 + 10_000, None)]:
        if items is None:
            expected += owner.advance(t)
            published += worker.advance(t)
        else:
            expected += owner.apply(t, items)
            published += worker.apply(t, items)
        for shard, output in worker.take_held():
            assert shard in standby
            kept_back.append(output)
    assert not worker.held
    assert per_device(published, owned) == per_device(expected, owned)
    assert per_device(published, standby) == {}
    assert per_device(kept_back, standby) == per_device(expected, standby)
    assert len(per_device(kept_back, standby)) > 3
    assert statuses(published) == [] and statuses(kept_back) == statuses(expected)
    assert owner.publishes_status and not worker.publishes_status
    for j in range(20):
        assert worker.owns(lfdi(j)) == (shard_of(lfdi(j), SHARDS) in owned)


def test_shard_engines_share_the_program_engines_uniform_periods() -> None:
    """A control's period that is the same for every device is computed once per worker: the
    shard engines whose catalogs equal the program engine's use its cache."""
    kernel = ShardedKernel(SHARDS)
    for shard in range(SHARDS):
        kernel.engines[shard] = Engine(memo=kernel.memo)
    for t, items in batches(7, steps=60):
        kernel.apply(t, items)
    shared = kernel.program.catalog.uniform_periods
    assert shared  # filled by the shard engines, which resolve the devices
    assert all(e.catalog.uniform_periods is shared for e in kernel.engines.values())


@pytest.mark.parametrize("seed", range(3))
def test_shared_periods_stay_right_when_controls_are_forgotten_and_mrids_come_back(
    seed: int,
) -> None:
    """Catalogs that share the cache forget controls (a short retention) one after another,
    and a forgotten mRID comes back with other times: every device still gets what one engine
    gives it. A catalog that forgets takes a new cache; the one it shared is left whole for
    the catalogs that have not forgotten yet."""
    retention = 30
    whole = Engine(retention=retention)
    kernel = ShardedKernel(SHARDS)
    kernel.program = Engine(retention=retention, memo=kernel.memo)
    for shard in range(SHARDS):
        kernel.engines[shard] = Engine(retention=retention, memo=kernel.memo)
    expected: list[Output] = []
    got: list[Output] = []
    steps = batches(seed)
    last = steps[-1][0]
    for round_ in range(3):  # the same mRIDs again, later and with other periods
        shift = round_ * (last - T0 + 1000) + 1
        for t, items in steps:
            again = [
                control(i.control.mrid, i.control.program, i.control.start + shift + 7 * round_,
                        i.control.duration + 11 * round_)
                if isinstance(i, AddControl) else i
                for i in items
            ]  # fmt: skip
            expected += whole.apply(t + shift, again)
            got += kernel.apply(t + shift, again)
    expected += whole.advance(last + 5000 * 4)
    got += kernel.advance(last + 5000 * 4)
    everyone = set(range(SHARDS))
    assert per_device(got, everyone) == per_device(expected, everyone)
    assert len(per_device(got, everyone)) > 3
