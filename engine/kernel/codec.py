"""Kernel inputs as JSON, so a batch of inputs can travel on a log and be applied elsewhere
exactly as it was given (``input_to_json`` and ``input_from_json`` are inverses)."""

from __future__ import annotations

from typing import Any

from engine.kernel.catalog import check_primacy
from engine.kernel.errors import InvalidInput
from engine.kernel.inputs import (
    KEEP,
    AddControl,
    AddCurve,
    CancelControl,
    DefineProgram,
    Input,
    RemoveDevice,
    SetDefault,
    SetMembership,
    SetPrimacy,
)
from engine.kernel.model import Curve, DefaultControl, DERControl, text_field


def input_to_json(item: Input) -> dict[str, Any]:
    if isinstance(item, DefineProgram):
        return {"input": "define_program", "program": item.program, "primacy": item.primacy}
    if isinstance(item, SetPrimacy):
        return {"input": "set_primacy", "program": item.program, "primacy": item.primacy}
    if isinstance(item, SetDefault):
        default = None if item.default is None else item.default.to_json()
        return {"input": "set_default", "program": item.program, "default": default}
    if isinstance(item, AddCurve):
        return {"input": "add_curve", "program": item.program, "curve": item.curve.to_json()}
    if isinstance(item, AddControl):
        return {"input": "add_control", "control": item.control.to_json()}
    if isinstance(item, CancelControl):
        return {"input": "cancel_control", "program": item.program, "mrid": item.mrid}
    if isinstance(item, SetMembership):
        return {
            "input": "set_membership",
            "lfdi": item.lfdi,
            "programs": list(item.programs),
            "category": item.category,
        }
    if isinstance(item, RemoveDevice):
        return {"input": "remove_device", "lfdi": item.lfdi}
    raise InvalidInput(f"unknown input {item!r}")  # pragma: no cover - exhaustive


def input_from_json(raw: Any) -> Input:
    """The input a JSON object describes; ``InvalidInput`` for anything else.

    Every field's type is checked here, the same from source and compiled (where the input
    classes would refuse a wrong one with a TypeError, or turn a boolean primacy into 1): a
    malformed record on a log must be refused alike by every reader, never stop one."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"an input is a JSON object, not {raw!r}")
    kind = raw.get("input")
    try:
        if kind == "define_program":
            return DefineProgram(text_field(raw, "program"), _primacy(raw))
        if kind == "set_primacy":
            return SetPrimacy(text_field(raw, "program"), _primacy(raw))
        if kind == "set_default":
            default = raw["default"]
            return SetDefault(
                text_field(raw, "program"),
                None if default is None else DefaultControl.from_json(_object(raw, "default")),
            )
        if kind == "add_curve":
            return AddCurve(text_field(raw, "program"), Curve.from_json(_object(raw, "curve")))
        if kind == "add_control":
            return AddControl(DERControl.from_json(_object(raw, "control")))
        if kind == "cancel_control":
            return CancelControl(text_field(raw, "program"), text_field(raw, "mrid"))
        if kind == "set_membership":
            programs = raw["programs"]
            if not isinstance(programs, list) or not all(isinstance(p, str) for p in programs):
                raise InvalidInput(f"programs is a list of program ids, not {programs!r}")
            category = raw.get("category", KEEP)
            return SetMembership(text_field(raw, "lfdi"), tuple(programs), category)
        if kind == "remove_device":
            return RemoveDevice(text_field(raw, "lfdi"))
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"input {kind}: {exc}") from exc
    raise InvalidInput(f"unknown input kind {kind!r}")


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw[key]
    if not isinstance(value, dict):
        raise InvalidInput(f"input {raw.get('input')}: {key} is a JSON object, not {value!r}")
    return value


def _primacy(raw: dict[str, Any]) -> int:
    value = raw["primacy"]
    check_primacy(value)  # (here: compiled, DefineProgram would take true for 1)
    return int(value)


def is_device_input(item: Input) -> bool:
    """Inputs about one device (the rest are about programs and reach every device)."""
    # A tuple, not ``SetMembership | RemoveDevice``: compiled, that makes a union per call.
    return isinstance(item, (SetMembership, RemoveDevice))


def device_of(item: Input) -> str:
    assert isinstance(item, (SetMembership, RemoveDevice))
    return item.lfdi.upper()
