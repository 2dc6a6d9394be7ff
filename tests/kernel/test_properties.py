"""Invariants of ARCHITECTURE.md ("Invariants worth testing") on random scenarios."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.kernel import Engine, Output, expand
from engine.kernel.device import DeviceState, Phase
from engine.kernel.outputs import TERMINAL_RESPONSES
from engine.replay import Batch, Scenario, canonical, run, to_lines
from tests.reference.naive import run_reference
from tests.strategies import scenarios

PROPERTY = settings(
    max_examples=int(os.environ.get("CSIP_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def parse(raw: dict[str, Any]) -> Scenario:
    return Scenario.parse(raw)


def absolute(scenario: Scenario) -> list[Batch]:
    return [(scenario.epoch + t, inputs) for t, inputs in scenario.batches]


def drive(
    scenario: Scenario,
    engine: Engine | None = None,
    on_instant: Any = None,
) -> list[Output]:
    """Run a scenario instant by instant, calling ``on_instant(engine, t)`` after each."""
    engine = engine or Engine(profile=scenario.profile)
    until = scenario.epoch + scenario.until
    pending = [b for b in absolute(scenario) if b[0] <= until]
    outputs: list[Output] = []
    while True:
        upcoming = engine.next_change()
        next_input = pending[0][0] if pending else None
        if next_input is not None and (upcoming is None or next_input <= upcoming):
            t, inputs = pending.pop(0)
            outputs += engine.apply(t, inputs)
        elif upcoming is not None and upcoming <= until:
            t = upcoming
            outputs += engine.advance(t)
        else:
            break
        if on_instant is not None:
            on_instant(engine, t)
    return outputs


def lifecycle(scenario: Scenario, outputs: list[Output]) -> list[dict[str, Any]]:
    return [
        {**r, "t": r["t"] - scenario.epoch}
        for r in expand(outputs)
        if r["type"] == "response" and r["t"] - scenario.epoch <= scenario.until
    ]


@PROPERTY
@given(scenarios())
def test_replaying_the_same_inputs_gives_identical_outputs(raw: dict[str, Any]) -> None:
    first = run(parse(raw))
    second = run(parse(raw))
    assert orjson.dumps(first) == orjson.dumps(second)


@PROPERTY
@given(scenarios())
def test_at_most_one_event_holds_a_mode(raw: dict[str, Any]) -> None:
    scenario = parse(raw)

    def check(engine: Engine, t: int) -> None:
        for lfdi, state in engine.devices():
            holders: dict[str, list[str]] = defaultdict(list)
            for track in state.tracks:
                if track.phase is Phase.RUNNING:
                    control = engine.catalog.control(track.mrid)
                    assert control is not None
                    for mode in control.modes - track.lost:
                        holders[mode].append(track.mrid)
            assert all(len(h) <= 1 for h in holders.values()), (lfdi, t, holders)
            for mode, (_, _, event) in state.effective:
                if event is not None:
                    assert holders[mode] == [event], (lfdi, t, mode)

    drive(scenario, on_instant=check)


@PROPERTY
@given(scenarios())
def test_no_control_from_a_program_the_device_is_not_in(raw: dict[str, Any]) -> None:
    scenario = parse(raw)
    membership: dict[int, dict[str, tuple[str, ...]]] = {}

    def record(engine: Engine, t: int) -> None:
        membership[t - scenario.epoch] = {lfdi: state.programs for lfdi, state in engine.devices()}

    drive(scenario, on_instant=record)
    for line in run(scenario):
        if line["type"] == "effective" and line["program"] is not None:
            assert line["program"] in membership[line["t"]][line["lfdi"]], line


def _assert_lifecycle_is_well_formed(records: list[dict[str, Any]]) -> None:
    per_event: dict[tuple[str, str], list[int]] = defaultdict(list)
    for record in records:  # in emission order
        statuses = per_event[(record["lfdi"], record["mRID"])]
        assert not any(s in TERMINAL_RESPONSES for s in statuses), (record, statuses)
        assert record["status"] not in statuses, (record, statuses)
        statuses.append(record["status"])
    for (_, _), statuses in per_event.items():
        assert statuses[0] == 1, statuses  # received comes first


@PROPERTY
@given(scenarios())
def test_no_response_after_a_terminal_one_and_none_twice(raw: dict[str, Any]) -> None:
    scenario = parse(raw)
    _assert_lifecycle_is_well_formed(lifecycle(scenario, drive(scenario)))


@PROPERTY
@given(scenarios(), st.data())
def test_splitting_a_replay_with_a_snapshot_changes_nothing(
    raw: dict[str, Any], data: st.DataObject
) -> None:
    scenario = parse(raw)
    split = scenario.epoch + data.draw(st.integers(0, scenario.until), label="split")
    until = scenario.epoch + scenario.until
    whole = drive(scenario)

    first = Engine(profile=scenario.profile)
    outputs: list[Output] = []
    batches = absolute(scenario)
    for t, inputs in batches:
        if t < split:
            outputs += first.apply(t, inputs)
    outputs += first.advance(split - 1)
    snapshot = orjson.loads(orjson.dumps(first.snapshot()))
    second = Engine.restore(snapshot)
    for t, inputs in batches:
        if split <= t <= until:
            outputs += second.apply(t, inputs)
    outputs += second.advance(until)
    assert to_lines(expand(outputs), scenario.epoch, scenario.until) == to_lines(
        expand(whole), scenario.epoch, scenario.until
    )


@PROPERTY
@given(scenarios())
def test_shared_and_per_device_resolution_agree(raw: dict[str, Any]) -> None:
    scenario = parse(raw)
    shared = drive(scenario, Engine(profile=scenario.profile))
    alone = drive(scenario, Engine(profile=scenario.profile, share_cohorts=False))
    assert canonical(lifecycle(scenario, shared)) == canonical(lifecycle(scenario, alone))
    assert to_lines(expand(shared), scenario.epoch, scenario.until) == to_lines(
        expand(alone), scenario.epoch, scenario.until
    )


@PROPERTY
@given(scenarios())
def test_kernel_agrees_with_the_naive_reference(raw: dict[str, Any]) -> None:
    assert run(parse(raw)) == run_reference(raw)


@PROPERTY
@given(scenarios(), st.data())
def test_server_status_at_a_later_instant_is_what_time_will_bring(
    raw: dict[str, Any], data: st.DataObject
) -> None:
    """What a GET shows between the engine's instants (Catalog.status_at) is exact."""
    scenario = parse(raw)
    split = scenario.epoch + data.draw(st.integers(0, scenario.until), label="split")
    later = split + data.draw(st.integers(0, 400), label="later")
    engine = Engine(profile=scenario.profile)
    for t, inputs in absolute(scenario):
        if t <= split:
            engine.apply(t, inputs)
    engine.advance(split)
    predicted = {m: engine.catalog.status_at(m, later) for m in engine.catalog.controls}
    engine.advance(later)
    for mrid, (status, since) in predicted.items():
        record = engine.catalog.controls[mrid]
        assert (status, since) == (record.status, record.status_since), mrid


def test_device_state_round_trips_through_json() -> None:
    state = DeviceState(("P1",), 3, (), ())
    assert DeviceState.from_json(orjson.loads(orjson.dumps(state.to_json()))) == state
