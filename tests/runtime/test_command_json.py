"""Commands as JSON (the records of the command log): every kind round-trips; an unknown kind,
an unknown field or a missing one is refused with a 400 naming it."""

from __future__ import annotations

from dataclasses import fields

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


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (
            {"kind": "put_program", "program": "P1", "primacy": "2", "mrid": "A1"},
            "put_program: primacy must be int, not '2'",
        ),
        (
            {"kind": "authorize", "lfdi": "A" * 40, "allowed": 1},
            "authorize: allowed must be bool, not 1",
        ),
        ({"kind": "apply_inputs", "inputs": 5}, "apply_inputs: inputs must be list, not 5"),
        (
            {"kind": "set_default_control", "program": "P1", "base": []},
            "set_default_control: base must be dict or NoneType, not []",
        ),
        (
            {"kind": "put_program", "program": "P1", "primacy": True, "mrid": "A1"},
            "put_program: primacy must not be true or false",
        ),
        (
            {"kind": "register_device", "lfdi": "A" * 40, "sfdi": False},
            "register_device: sfdi must not be true or false",
        ),
        (
            {"kind": "register_device", "lfdi": "A" * 40, "sfdi": 1, "pin": "1234"},
            "register_device: pin must be int or NoneType, not '1234'",
        ),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_with_a_400(
    raw: dict[str, object], words: str
) -> None:
    """Refused from source (``from_json`` checks each field's outer type) and compiled (the
    class checks it: tests/kernel/test_compiled.py runs this file on the compiled module too),
    so every reader of the log refuses the same records."""
    with pytest.raises(Rejected) as refused:
        c.from_json(raw)
    assert refused.value.status == 400
    assert str(refused.value).startswith(f"{raw['kind']}: ")
    if str(c.__file__).endswith(".py"):
        assert str(refused.value) == words


def test_every_field_type_of_every_command_is_known() -> None:
    """From source, each kind's fields with the runtime types from_json checks: none left out."""
    if not str(c.__file__).endswith(".py"):
        pytest.skip("compiled: the classes check their fields' types themselves")
    for cls in c.COMMANDS.values():
        assert [name for name, _ in c._TYPES[cls]] == [f.name for f in fields(cls)]
        assert all(admitted for _, admitted in c._TYPES[cls])


def test_values_of_the_admitted_types_pass() -> None:
    assert c.from_json({"kind": "authorize", "lfdi": "A" * 40, "allowed": False}).allowed is False
    assert c.from_json({"kind": "set_default_control", "program": "P1", "base": None}) == (
        c.SetDefaultControl(program="P1", base=None)
    )
    assert c.from_json({"kind": "register_device", "lfdi": "A" * 40, "sfdi": 7, "pin": 1}).pin == 1
