"""Every scenario in tests/scenarios replays to its expected output, through the CLI too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csip.cli import main
from engine.replay import Scenario, compare, run

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.json"))


def test_the_shared_scenarios_are_here() -> None:
    assert len(SCENARIOS) >= 8


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_replays_to_its_expectation(path: Path) -> None:
    scenario = Scenario.load(path)
    assert compare(scenario, run(scenario)) == []


def test_replay_prints_json_lines_in_canonical_order(capsys: pytest.CaptureFixture[str]) -> None:
    path = SCENARIOS[0]
    assert main(["replay", str(path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    lines = [json.loads(line) for line in printed]
    assert lines == run(Scenario.load(path))
    assert printed[0].startswith('{"type": ')
    assert main(["replay", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == printed  # byte-identical on a second run


def test_check_fails_with_a_readable_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = json.loads(SCENARIOS[0].read_text())
    raw["expect"]["response"][1]["t"] = 101
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(raw))
    assert main(["replay", "--check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out
    assert '-{"type": "response", "t": 101' in out
    assert '+{"type": "response", "t": 100' in out


def test_check_passes_every_bundled_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--check", *map(str, SCENARIOS)]) == 0
    assert capsys.readouterr().out.count("ok ") == len(SCENARIOS)


def test_a_broken_scenario_is_refused_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = json.loads(SCENARIOS[0].read_text())
    raw["steps"].append({"t": 5, "cancel": {"program": "P1", "mRID": "NOPE"}})
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(raw))
    assert main(["replay", str(broken)]) == 2
    assert "unknown control 'NOPE'" in capsys.readouterr().err


def test_type_absent_from_expect_is_not_compared() -> None:
    raw = json.loads(SCENARIOS[0].read_text())
    del raw["expect"]["status"]
    scenario = Scenario.parse(raw)
    assert compare(scenario, run(scenario)) == []
