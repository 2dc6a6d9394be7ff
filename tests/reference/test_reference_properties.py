"""Properties of the naive reference itself, on random scenarios (tests/strategies.py).

They check the lifecycle (every response, before responseRequired/replyTo/profile gating), so
that gating cannot hide a violation.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given, settings

from tests.reference.naive import TERMINAL_RESPONSES, run_reference
from tests.strategies import scenarios

Line = dict[str, Any]
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
# Statuses that may share an instant with a terminal one, always before it: 1 then 253/254/6
# (late, invalid, seen already cancelled), 2 then 3 (empty effective period).
BEFORE_TERMINAL_SAME_INSTANT = frozenset({1, 2})


def responses_by_event(lines: list[Line]) -> dict[tuple[str, str], list[Line]]:
    grouped: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for line in lines:
        if line["type"] == "response":
            grouped[(line["lfdi"], line["mRID"])].append(line)
    return grouped


def membership_at(scenario: dict[str, Any], lfdi: str, t: int) -> list[str]:
    """A device's program set after all inputs of instant ``t`` (effective lines are settled
    after the inputs)."""
    programs: list[str] = []
    for device in scenario["devices"]:
        if device["lfdi"].upper() == lfdi:
            programs = list(device["programs"])
    for step in scenario["steps"]:
        change = step.get("membership")
        if step["t"] <= t and change is not None and change["lfdi"].upper() == lfdi:
            programs = list(change["programs"])
    return programs


@PROPERTY_SETTINGS
@given(scenarios())
def test_nothing_after_a_terminal_response(scenario: dict[str, Any]) -> None:
    for (lfdi, mrid), lines in responses_by_event(run_reference(scenario, lifecycle=True)).items():
        terminal = [line for line in lines if line["status"] in TERMINAL_RESPONSES]
        assert len(terminal) <= 1, (lfdi, mrid, lines)
        if terminal:
            end = terminal[0]["t"]
            for line in lines:
                assert line["t"] <= end, (lfdi, mrid, lines)
                if line["t"] == end and line is not terminal[0]:
                    assert line["status"] in BEFORE_TERMINAL_SAME_INSTANT, (lfdi, mrid, lines)


@PROPERTY_SETTINGS
@given(scenarios())
def test_each_device_event_status_at_most_once_and_received_first(
    scenario: dict[str, Any],
) -> None:
    for (lfdi, mrid), lines in responses_by_event(run_reference(scenario, lifecycle=True)).items():
        statuses = [line["status"] for line in lines]
        assert len(statuses) == len(set(statuses)), (lfdi, mrid, lines)
        assert statuses[0] == 1, (lfdi, mrid, lines)  # canonical order puts 1 first at its t
        assert lines[0]["t"] == min(line["t"] for line in lines)


@PROPERTY_SETTINGS
@given(scenarios())
def test_effective_program_is_in_membership_and_event_is_running(
    scenario: dict[str, Any],
) -> None:
    lines = run_reference(scenario, lifecycle=True)
    by_event = responses_by_event(lines)
    for line in lines:
        if line["type"] != "effective" or line["program"] is None:
            continue
        assert line["program"] in membership_at(scenario, line["lfdi"], line["t"]), line
        if line["event"] is None:
            continue
        history = [r for r in by_event[(line["lfdi"], line["event"])] if r["t"] <= line["t"]]
        assert any(r["status"] == 2 for r in history), line
        assert not any(r["status"] in TERMINAL_RESPONSES for r in history), line


@PROPERTY_SETTINGS
@given(scenarios())
def test_gated_responses_are_a_subset_of_the_lifecycle(scenario: dict[str, Any]) -> None:
    gated = run_reference(scenario)
    lifecycle = run_reference(scenario, lifecycle=True)
    assert [line for line in gated if line["type"] != "response"] == [
        line for line in lifecycle if line["type"] != "response"
    ]
    lifecycle_responses = [line for line in lifecycle if line["type"] == "response"]
    for line in gated:
        if line["type"] == "response":
            assert line in lifecycle_responses
