"""The naive reference reproduces every hand-checked scenario in tests/scenarios/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.reference.naive import canonical_sort, run_reference

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
SCENARIO_FILES = sorted(SCENARIO_DIR.glob("0*.json"))

# The keys FORMAT.md defines for each line type; anything else is ignored when comparing.
FORMAT_KEYS: dict[str, tuple[str, ...]] = {
    "effective": ("type", "t", "lfdi", "mode", "value", "program", "event"),
    "response": ("type", "t", "lfdi", "mRID", "status"),
    "status": ("type", "t", "program", "mRID", "currentStatus"),
}
# FORMAT.md's example spells the response list "responses"; the scenario files use "response".
EXPECT_ALIASES = {"responses": "response"}


def only_format_keys(line: dict[str, Any]) -> dict[str, Any]:
    return {key: line[key] for key in FORMAT_KEYS[line["type"]]}


def test_all_eight_scenarios_are_present() -> None:
    assert len(SCENARIO_FILES) == 8


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[path.stem for path in SCENARIO_FILES])
def test_reference_matches_expected_output(path: Path) -> None:
    scenario = json.loads(path.read_text())
    output = run_reference(scenario)
    for expect_key, expected_lines in scenario["expect"].items():
        line_type = EXPECT_ALIASES.get(expect_key, expect_key)
        got = [only_format_keys(line) for line in output if line["type"] == line_type]
        expected = canonical_sort([only_format_keys(line) for line in expected_lines])
        assert got == expected, f"{path.name}: {line_type} lines differ"
