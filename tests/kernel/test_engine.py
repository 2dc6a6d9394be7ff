"""The Engine API: time as an argument, next change, atomic inputs, snapshots, cohorts."""

from __future__ import annotations

import json

import pytest

from engine.kernel import (
    AddControl,
    CancelControl,
    DefaultControl,
    DefineProgram,
    DERControl,
    Engine,
    Input,
    InvalidInput,
    Output,
    RemoveDevice,
    SetDefault,
    SetMembership,
    TimeWentBackwards,
    expand,
)
from tests.kernel.helpers import DEV, DEV2, control

T0 = 1_767_225_600


def lfdi(n: int) -> str:
    return f"{n:040X}"


def make_control(
    mrid: str, start: int, duration: int, program: str = "SYS", **extra: object
) -> AddControl:
    body = control(mrid, start, duration, program, creation=T0, **extra)  # type: ignore[arg-type]
    return AddControl(DERControl.from_json(body))


def records(outputs: list) -> list[dict]:  # type: ignore[type-arg]
    return list(expand(outputs))


def test_next_change_tells_when_to_call_again() -> None:
    engine = Engine()
    engine.apply(T0, [DefineProgram("SYS", 1), SetMembership(DEV, ("SYS",))])
    assert engine.next_change() is None
    engine.apply(T0 + 10, [make_control("A1", T0 + 100, 50, opModFixedW=1)])
    assert engine.next_change() == T0 + 100
    started = records(engine.advance(T0 + 100))
    assert {(r["type"], r.get("status")) for r in started} >= {("response", 2)}
    assert engine.next_change() == T0 + 150
    assert engine.advance(T0 + 149) == []
    assert [r["status"] for r in records(engine.advance(T0 + 150)) if r["type"] == "response"] == [
        3
    ]
    assert engine.next_change() is None


def test_time_cannot_go_backwards() -> None:
    engine = Engine()
    engine.apply(T0, [DefineProgram("SYS", 1)])
    with pytest.raises(TimeWentBackwards):
        engine.apply(T0 - 1, [])


def test_a_refused_batch_changes_nothing() -> None:
    engine = Engine()
    engine.apply(T0, [DefineProgram("SYS", 1), SetMembership(DEV, ("SYS",))])
    before = json.dumps(engine.snapshot(), sort_keys=True)
    with pytest.raises(InvalidInput):
        engine.apply(T0 + 1, [make_control("A1", T0, 10, opModFixedW=1), CancelControl("SYS", "B")])
    with pytest.raises(InvalidInput):
        engine.apply(T0 + 1, [SetMembership(DEV, ("NOPE",))])
    with pytest.raises(InvalidInput):
        engine.apply(T0 + 1, [SetMembership("not-an-lfdi", ("SYS",))])
    assert json.dumps(engine.snapshot(), sort_keys=True) == before


def test_a_batch_may_define_what_it_uses() -> None:
    engine = Engine()
    engine.apply(
        T0,
        [
            DefineProgram("SYS", 1),
            make_control("A1", T0 + 10, 10, opModFixedW=1),
            CancelControl("SYS", "A1"),
            SetMembership(DEV, ("SYS",)),
        ],
    )
    assert engine.state_of(DEV) is not None


def test_devices_with_the_same_state_share_one_cohort() -> None:
    engine = Engine()
    engine.apply(T0, [DefineProgram("SYS", 1), DefineProgram("F1", 2), DefineProgram("F2", 2)])
    members = [SetMembership(lfdi(i), ("SYS", "F1" if i % 2 else "F2")) for i in range(100)]
    engine.apply(T0, members)
    assert engine.stats()["cohorts"] == 2
    out = engine.apply(T0 + 1, [make_control("A1", T0 + 1, 100, opModFixedW=5)])
    changes = [o for o in out if getattr(o, "mode", None) == "opModFixedW"]
    assert sorted(len(o.lfdis) for o in changes) == [50, 50]  # one output per cohort
    assert engine.stats()["cohorts"] == 2


def test_randomized_devices_split_and_merge_back() -> None:
    engine = Engine()
    engine.apply(T0, [DefineProgram("SYS", 1)])
    engine.apply(T0, [SetMembership(lfdi(i), ("SYS",)) for i in range(200)])
    engine.apply(T0, [make_control("R1", T0 + 100, 100, randomizeStart=50, opModFixedW=5)])
    started = set()
    while (when := engine.next_change()) is not None and when < T0 + 160:
        for record in expand(engine.advance(when)):
            if record["type"] == "response" and record["status"] == 2:
                started.add(record["lfdi"])
        assert engine.stats()["cohorts"] <= 3  # scheduled / running / (done)
    assert len(started) == 200
    engine.advance(T0 + 400)
    assert engine.stats()["cohorts"] == 1


def test_shared_and_unshared_resolution_agree() -> None:
    def run(share: bool) -> list[dict]:  # type: ignore[type-arg]
        engine = Engine(share_cohorts=share)
        out = engine.apply(T0, [DefineProgram("SYS", 1), DefineProgram("F", 0)])
        out += engine.apply(
            T0, [SetMembership(lfdi(i), ("SYS", "F") if i % 3 else ("SYS",)) for i in range(30)]
        )
        out += engine.apply(
            T0 + 5, [make_control("A", T0 + 10, 100, randomizeStart=20, opModFixedW=1)]
        )
        out += engine.apply(T0 + 6, [make_control("B", T0 + 50, 100, "F", opModFixedW=2)])
        out += engine.apply(T0 + 70, [CancelControl("SYS", "A")])
        out += engine.advance(T0 + 500)
        return sorted(json.dumps(r, sort_keys=True) for r in expand(out))  # type: ignore[misc]

    assert run(True) == run(False)


def _plan() -> list[tuple[int, list[Input]]]:
    default = DefaultControl.from_json({"opModMaxLimW": 9})
    randomized = make_control(
        "A", T0 + 10, 100, randomizeStart=30, randomizeDuration=30, opModMaxLimW=1
    )
    return [
        (T0, [DefineProgram("SYS", 1), SetDefault("SYS", default)]),
        (T0, [SetMembership(DEV, ("SYS",)), SetMembership(DEV2, ("SYS",))]),
        (T0 + 5, [randomized, make_control("B", T0 + 60, 100, opModFixedW=2)]),
        (T0 + 40, [CancelControl("SYS", "A")]),
        (T0 + 200, [RemoveDevice(DEV2)]),
    ]


def _lines(outputs: list[Output]) -> list[str]:
    return [json.dumps(r, sort_keys=True) for r in expand(outputs)]


@pytest.mark.parametrize("split", [T0 + 5, T0 + 20, T0 + 40, T0 + 41, T0 + 100, T0 + 300])
def test_snapshot_restore_continues_identically(split: int) -> None:
    whole = Engine()
    expected: list[Output] = []
    for t, inputs in _plan():
        expected += whole.apply(t, inputs)
    expected += whole.advance(T0 + 1000)

    first = Engine()
    got: list[Output] = []
    for t, inputs in _plan():
        if t < split:
            got += first.apply(t, inputs)
    got += first.advance(split - 1)
    if split % 2:  # the catalog apart, as a worker writes its shard engines
        bare = json.loads(json.dumps(first.snapshot(catalog=False)))
        assert bare["catalog"] is None
        with pytest.raises(ValueError):
            Engine.restore(bare)
        catalog = json.loads(json.dumps(first.catalog.to_json()))
        restored = Engine.restore(bare, catalog=catalog)
    else:
        restored = Engine.restore(json.loads(json.dumps(first.snapshot())))
    for t, inputs in _plan():
        if t >= split:
            got += restored.apply(t, inputs)
    got += restored.advance(T0 + 1000)
    assert sorted(_lines(got)) == sorted(_lines(expected))


def test_a_restored_engine_visits_a_programs_cohorts_in_the_same_order() -> None:
    """Not only the same records: the same order, where a program's change reaches several
    cohorts. Here a larger cohort merges into a smaller one's state (taking its place among
    the cohorts) before the snapshot, and a control of their program comes after it."""
    devices = [f"{n:040X}" for n in range(1, 7)]
    before: list[tuple[int, list[Input]]] = [
        (T0, [DefineProgram("SYS", 1), DefineProgram("A", 2), DefineProgram("B", 2)]),
        (T0, [SetMembership(lfdi, ("SYS", "A")) for lfdi in devices[:3]]),
        (T0, [SetMembership(devices[3], ("SYS",)), SetMembership(devices[4], ("SYS", "B"))]),
        (T0 + 1, [SetMembership(lfdi, ("SYS",)) for lfdi in devices[:3]]),  # the merge
        (T0 + 2, [SetMembership(devices[5], ("B", "SYS"))]),
    ]
    after = [make_control("C", T0 + 10, 100, opModFixedW=3), make_control("D", T0 + 5, 20)]
    live = Engine()
    for t, inputs in before:
        live.apply(t, inputs)
    restored = Engine.restore(json.loads(json.dumps(live.snapshot())))
    expected = _lines(live.apply(T0 + 3, after) + live.advance(T0 + 200))
    got = _lines(restored.apply(T0 + 3, after) + restored.advance(T0 + 200))
    assert {json.loads(line).get("lfdi") for line in expected} - {None} == set(devices)
    assert got == expected  # as listed, not sorted


def test_remove_device_aborts_and_clears_its_controls() -> None:
    engine = Engine()
    engine.apply(
        T0,
        [DefineProgram("SYS", 1), SetDefault("SYS", DefaultControl.from_json({"opModMaxLimW": 9}))],
    )
    engine.apply(T0, [SetMembership(DEV, ("SYS",))])
    engine.apply(T0, [make_control("A", T0, 100, opModFixedW=1)])
    out = records(engine.apply(T0 + 10, [RemoveDevice(DEV)]))
    assert {(r["type"], r.get("status"), r.get("mode"), r.get("value")) for r in out} == {
        ("response", 14, None, None),
        ("effective", None, "opModFixedW", None),
        ("effective", None, "opModMaxLimW", None),
    }
    assert engine.state_of(DEV) is None
    assert engine.stats()["devices"] == 0


def test_a_cohort_says_what_it_holds() -> None:
    engine = Engine()
    engine.apply(0, [DefineProgram("P1", 1), SetMembership(DEV, ("P1",))])
    (cohort,) = engine._cohorts.values()
    assert repr(cohort) == "Cohort(1 devices, personal=False)"
