"""Kernel inputs as JSON, so a batch of inputs can travel on a log and be applied elsewhere
exactly as it was given (``input_to_json`` and ``input_from_json`` are inverses)."""

from __future__ import annotations

from typing import Any

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
from engine.kernel.model import Curve, DefaultControl, DERControl


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


def input_from_json(raw: dict[str, Any]) -> Input:
    kind = raw.get("input")
    try:
        if kind == "define_program":
            return DefineProgram(raw["program"], raw["primacy"])
        if kind == "set_primacy":
            return SetPrimacy(raw["program"], raw["primacy"])
        if kind == "set_default":
            default = raw["default"]
            return SetDefault(
                raw["program"], None if default is None else DefaultControl.from_json(default)
            )
        if kind == "add_curve":
            return AddCurve(raw["program"], Curve.from_json(raw["curve"]))
        if kind == "add_control":
            return AddControl(DERControl.from_json(raw["control"]))
        if kind == "cancel_control":
            return CancelControl(raw["program"], raw["mrid"])
        if kind == "set_membership":
            category = raw.get("category", KEEP)
            return SetMembership(raw["lfdi"], tuple(raw["programs"]), category)
        if kind == "remove_device":
            return RemoveDevice(raw["lfdi"])
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"input {kind}: {exc}") from exc
    raise InvalidInput(f"unknown input kind {kind!r}")


def is_device_input(item: Input) -> bool:
    """Inputs about one device (the rest are about programs and reach every device)."""
    # A tuple, not ``SetMembership | RemoveDevice``: compiled, that makes a union per call.
    return isinstance(item, (SetMembership, RemoveDevice))


def device_of(item: Input) -> str:
    assert isinstance(item, (SetMembership, RemoveDevice))
    return item.lfdi.upper()
