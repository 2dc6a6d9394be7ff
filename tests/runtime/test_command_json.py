"""Commands as JSON (the records of the command log): every kind round-trips; an unknown kind,
an unknown field or a missing one is refused with a 400 naming it."""

from __future__ import annotations

import pytest

from engine.state import commands as c
from engine.state.errors import Rejected


def test_a_command_round_trips() -> None:
    command = c.PutProgram(program="P1", primacy=2, mrid="A1", description="feeder 1")
    assert c.from_json(command.to_json()) == command
    assert c.from_json({"kind": "tick"}) == c.Tick()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ([], "a command is a JSON object"),
        ({"kind": "launch"}, "unknown command kind 'launch'"),
        ({"kind": "tick", "when": 5}, "tick: unknown field(s) ['when']"),
        ({"kind": "put_program", "program": "P1"}, "put_program: "),
    ],
)
def test_a_malformed_command_is_refused_with_a_400(raw: object, words: str) -> None:
    with pytest.raises(Rejected) as refused:
        c.from_json(raw)
    assert refused.value.status == 400
    assert words in str(refused.value)
