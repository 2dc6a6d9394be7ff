"""The reference follows the explicit consequences listed in docs/semantics.md.

One small scenario per rule; each asserts only the lines the rule is about.
"""

from __future__ import annotations

from typing import Any

from tests.reference.naive import draw, run_reference

LFDI = "D1D907752314F590E9DFC8A604E3339D662D719F"


def scenario(steps: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "until": 400,
        "programs": [{"id": "P1", "primacy": 1}],
        "devices": [{"lfdi": LFDI, "programs": ["P1"]}],
        "steps": steps,
    }
    base.update(overrides)
    return base


def control(t: int, mrid: str, start: int, duration: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "program": "P1",
        "mRID": mrid,
        "creationTime": t,
        "start": start,
        "duration": duration,
        "responseRequired": "03",
        "base": {"opModMaxLimW": 1},
    }
    body.update(fields)
    return {"t": t, "control": body}


def cancel(t: int, mrid: str) -> dict[str, Any]:
    return {"t": t, "cancel": {"program": "P1", "mRID": mrid}}


def responses(lines: list[dict[str, Any]], mrid: str) -> list[tuple[int, int]]:
    return [(x["t"], x["status"]) for x in lines if x["type"] == "response" and x["mRID"] == mrid]


def statuses(lines: list[dict[str, Any]], mrid: str) -> list[tuple[int, int]]:
    return [
        (x["t"], x["currentStatus"]) for x in lines if x["type"] == "status" and x["mRID"] == mrid
    ]


def test_cancel_at_the_effective_end_finds_the_event_completed() -> None:
    lines = run_reference(scenario([control(0, "A", 10, 50), cancel(60, "A")]))
    assert responses(lines, "A") == [(0, 1), (10, 2), (60, 3)]


def test_cancel_at_the_start_instant_stops_it_before_it_starts() -> None:
    lines = run_reference(scenario([control(0, "A", 10, 50), cancel(10, "A")]))
    assert responses(lines, "A") == [(0, 1), (10, 6)]


def test_created_and_cancelled_in_one_instant_reports_both_server_statuses() -> None:
    lines = run_reference(scenario([control(5, "A", 0, 50), cancel(5, "A")]))
    assert statuses(lines, "A") == [(5, 1), (5, 2)]
    assert responses(lines, "A") == [(5, 1), (5, 6)]


def test_empty_effective_period_starts_and_completes_at_once() -> None:
    assert draw(LFDI, "A", "duration", -60) <= -5  # the draw makes the period empty
    lines = run_reference(scenario([control(0, "A", 10, 5, randomizeDuration=-60)]))
    assert responses(lines, "A") == [(0, 1), (10, 2), (10, 3)]
    assert not [x for x in lines if x["type"] == "effective"]


def test_randomized_cancel_stops_at_the_drawn_time() -> None:
    stop = 50 + draw(LFDI, "A", "cancel", 30)
    lines = run_reference(
        scenario([control(0, "A", 10, 200, randomizeDuration=30), cancel(50, "A")])
    )
    assert statuses(lines, "A")[-1] == (50, 3)
    assert responses(lines, "A") == [(0, 1), (10, 2), (stop, 6)]


def test_joining_sees_a_cancelled_event_as_received_then_cancelled() -> None:
    other = "12A4A4B406AD102E7421019135FFA2805235A21C"
    steps = [
        control(0, "A", 100, 100),
        cancel(10, "A"),
        {"t": 20, "membership": {"lfdi": other, "programs": ["P1"]}},
    ]
    devices = [{"lfdi": LFDI, "programs": ["P1"]}, {"lfdi": other, "programs": []}]
    lines = run_reference(scenario(steps, devices=devices))
    joined = [
        (x["t"], x["status"]) for x in lines if x["type"] == "response" and x["lfdi"] == other
    ]
    assert joined == [(20, 1), (20, 6)]


def test_rejoining_a_program_does_not_see_its_events_again() -> None:
    steps = [
        control(0, "A", 100, 100),
        {"t": 10, "membership": {"lfdi": LFDI, "programs": []}},
        {"t": 20, "membership": {"lfdi": LFDI, "programs": ["P1"]}},
    ]
    assert responses(run_reference(scenario(steps)), "A") == [(0, 1), (10, 14)]


def test_a_running_event_takes_a_mode_it_lost_earlier_and_the_mode_falls_to_default() -> None:
    programs = [
        {"id": "P0", "primacy": 0},
        {"id": "P1", "primacy": 1},
        {"id": "P2", "primacy": 2, "default": {"opModMaxLimW": 99}},
    ]
    steps = [
        control(0, "U", 0, 50, program="P0"),
        control(0, "W", 10, 300, program="P1", base={"opModMaxLimW": 2, "opModConnect": True}),
        control(0, "X", 100, 50, program="P2", base={"opModMaxLimW": 3, "opModFixedW": 4}),
    ]
    devices = [{"lfdi": LFDI, "programs": ["P0", "P1", "P2"]}]
    lines = run_reference(scenario(steps, programs=programs, devices=devices))
    max_lim = [(x["t"], x["value"], x["event"]) for x in lines if x.get("mode") == "opModMaxLimW"]
    assert max_lim == [(0, 1, "U"), (50, 99, None)]
    assert responses(lines, "X") == [(0, 1), (100, 2), (150, 3)]


def test_server_supersede_of_an_older_event_arriving_later() -> None:
    steps = [control(0, "Y", 50, 100, creationTime=10), control(80, "X", 60, 100, creationTime=5)]
    lines = run_reference(scenario(steps))
    assert statuses(lines, "X") == [(80, 1), (80, 4)]
    assert responses(lines, "X") == [(80, 1), (80, 7)]


def test_duplicate_mrid_keeps_the_first_content() -> None:
    steps = [control(0, "A", 10, 50), control(5, "A", 10, 50, base={"opModMaxLimW": 7})]
    lines = run_reference(scenario(steps))
    values = [x["value"] for x in lines if x["type"] == "effective" and x["value"] is not None]
    assert values == [1]
    assert statuses(lines, "A") == [(0, 0), (10, 1)]
