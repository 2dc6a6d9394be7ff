"""Records of the compiled modules whose ``__init__`` is written out (so it compiles: a
dataclass's generated one runs as Python) must build exactly what the dataclass would: the
same parameters in the order of the fields, the same defaults, every field set, and frozen
records still refusing assignment."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

from engine import compiled


def generated(init: object) -> bool:
    """A dataclass's own ``__init__`` (its code is exec'd from a string); a compiled one has
    no code object."""
    code = getattr(init, "__code__", None)
    return code is not None and code.co_filename == "<string>"


def written_out() -> list[type]:
    found = []
    for name in compiled.MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == name
                and dataclasses.is_dataclass(value)
                and "__init__" in vars(value)
                and not generated(vars(value)["__init__"])
            ):
                found.append(value)
    return found


def test_the_hot_records_write_their_constructors_out() -> None:
    names = {cls.__qualname__ for cls in written_out()}
    assert {"SetMembership", "Context", "Step", "ResponseDue", "Executed", "_Plan"} <= names


@pytest.mark.parametrize("cls", written_out(), ids=lambda cls: cls.__qualname__)
def test_a_written_constructor_matches_the_fields(cls: type) -> None:
    if not str(importlib.import_module(cls.__module__).__file__).endswith(".py"):
        pytest.skip("compiled: checked on the sources (a compiled __init__ checks types)")
    fields = dataclasses.fields(cls)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # no self
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        expected = (
            inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        )
        assert parameter.default == expected, field.name
        assert parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD

    # Distinct stand-ins for every field (types are not checked from source): each lands on
    # its own field, and equality and repr are the dataclass's.
    values = {f.name: object() for f in fields}
    record = cls(**values)
    assert {f.name: getattr(record, f.name) for f in fields} == values
    assert record == cls(*values.values())
    assert cls.__qualname__ in repr(record)
    if cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, fields[0].name, None)
