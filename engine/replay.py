"""Scenario replay: run a scenario file through the engine on a simulated clock.

The file format and the output lines are specified in ``tests/scenarios/FORMAT.md``. Outputs are
printed as JSON Lines in canonical order (t, then type, then lfdi, then mRID or mode, then
status), so two runs, or two runtimes, can be compared byte for byte.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.kernel import (
    AddControl,
    AddCurve,
    CancelControl,
    Curve,
    DefaultControl,
    DefineProgram,
    DERControl,
    Engine,
    Input,
    InvalidInput,
    Output,
    SetDefault,
    SetMembership,
    SetPrimacy,
    expand,
)

DEFAULT_EPOCH = 1767225600
TYPE_ORDER = {"status": 0, "response": 1, "effective": 2}
LINE_KEYS = {
    "effective": ("type", "t", "lfdi", "mode", "value", "program", "event"),
    "response": ("type", "t", "lfdi", "mRID", "status"),
    "status": ("type", "t", "program", "mRID", "currentStatus"),
}


class ScenarioError(ValueError):
    """A scenario file that cannot be replayed (the message says where and why)."""


Batch = tuple[int, list[Input]]


@dataclass(frozen=True)
class Scenario:
    name: str
    profile: str
    epoch: int
    until: int
    batches: list[Batch]  # (instant relative to epoch, inputs), in time order
    expect: Mapping[str, list[dict[str, Any]]] | None

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScenarioError(f"{path}: {exc}") from exc
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str = "scenario") -> Scenario:
        if not isinstance(raw, Mapping):
            raise ScenarioError(f"{where}: a scenario is a JSON object")
        try:
            return cls._parse(raw)
        except (InvalidInput, KeyError, TypeError, ValueError) as exc:
            raise ScenarioError(f"{where}: {exc}") from exc

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> Scenario:
        initial: list[Input] = []
        for program in raw.get("programs", []):
            pid = program["id"]
            initial.append(DefineProgram(pid, program.get("primacy", 0)))
            for curve in program.get("curves", []):
                initial.append(AddCurve(pid, Curve.from_json(curve)))
            if program.get("default") is not None:
                initial.append(SetDefault(pid, DefaultControl.from_json(program["default"])))
        for device in raw.get("devices", []):
            initial.append(
                SetMembership(
                    device["lfdi"], tuple(device.get("programs", [])), device.get("deviceCategory")
                )
            )
        epoch = raw.get("epoch", DEFAULT_EPOCH)
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise ScenarioError("epoch must be an integer")
        by_instant: dict[int, list[Input]] = {0: initial}
        steps = raw.get("steps", [])
        for index, step in enumerate(sorted(steps, key=lambda s: s["t"])):
            try:
                t = step["t"]
                if not isinstance(t, int) or isinstance(t, bool):
                    raise InvalidInput(f"t must be an integer, not {t!r}")
                by_instant.setdefault(t, []).append(_step_input(step, t, epoch))
            except (InvalidInput, KeyError, TypeError) as exc:
                raise ScenarioError(f"step {index} ({json.dumps(step)[:80]}): {exc}") from exc
        profile = raw.get("profile", "csip")
        if profile not in ("csip", "csip-aus"):
            raise ScenarioError(f"unknown profile {profile!r}")
        until = raw.get("until")
        if not isinstance(until, int) or until < 0:
            raise ScenarioError("until must be a non-negative integer")
        expect = raw.get("expect")
        return cls(
            name=str(raw.get("name", "")),
            profile=profile,
            epoch=epoch,
            until=until,
            batches=sorted(by_instant.items()),
            expect=expect,
        )


def _step_input(step: Mapping[str, Any], t: int, epoch: int) -> Input:
    kinds = [k for k in step if k != "t"]
    if len(kinds) != 1:
        raise InvalidInput(f"a step has exactly one kind besides t, not {kinds}")
    kind = kinds[0]
    body = step[kind]
    if kind == "control":
        # The server stamps creationTime when it creates a control: default to the instant.
        control = DERControl.from_json({"creationTime": t, **body})
        # Scenario times are relative to the epoch; the kernel works in Unix seconds.
        return AddControl(
            replace(
                control,
                start=control.start + epoch,
                creation_time=control.creation_time + epoch,
            )
        )
    if kind == "cancel":
        return CancelControl(body["program"], body["mRID"])
    if kind == "default":
        base = body.get("base")
        return SetDefault(body["program"], None if base is None else DefaultControl.from_json(base))
    if kind == "primacy":
        return SetPrimacy(body["program"], body["primacy"])
    if kind == "membership":
        return SetMembership(body["lfdi"], tuple(body["programs"]), body.get("deviceCategory", -1))
    if kind == "curve":
        return AddCurve(body["program"], Curve.from_json(body["curve"]))
    raise InvalidInput(f"unknown step kind {kind!r}")


# A driver runs (absolute instant, inputs) batches up to an absolute instant and returns the
# per-device output records (``Output.records()``) it produced.
Driver = Callable[[Sequence[Batch], int, str], Iterable[Mapping[str, Any]]]


def kernel_driver(batches: Sequence[Batch], until: int, profile: str) -> list[dict[str, Any]]:
    """Drive the kernel directly, in this process."""
    engine = Engine(profile=profile)
    outputs: list[Output] = []
    for t, inputs in batches:
        if t > until:
            break
        outputs.extend(engine.apply(t, inputs))
    outputs.extend(engine.advance(until))
    return list(expand(outputs))


def run(scenario: Scenario, driver: Driver = kernel_driver) -> list[dict[str, Any]]:
    """Replay a scenario and return its output lines in canonical order."""
    absolute = [(scenario.epoch + t, inputs) for t, inputs in scenario.batches]
    try:
        records = driver(absolute, scenario.epoch + scenario.until, scenario.profile)
    except InvalidInput as exc:
        raise ScenarioError(f"{scenario.name or 'scenario'}: {exc}") from exc
    return to_lines(records, scenario.epoch, scenario.until)


def to_lines(records: Iterable[Mapping[str, Any]], epoch: int, until: int) -> list[dict[str, Any]]:
    """FORMAT.md lines from per-device records: posted responses only, t relative, sorted."""
    lines = []
    for record in records:
        if record["type"] == "response" and not record["posted"]:
            continue
        line = {key: record[key] for key in LINE_KEYS[record["type"]]}
        line["t"] = record["t"] - epoch
        if line["t"] <= until:
            lines.append(line)
    return canonical(lines)


def _sort_key(line: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        line["t"],
        TYPE_ORDER[line["type"]],
        line.get("lfdi") or "",
        line.get("mRID") or line.get("mode") or "",
        line.get("status", line.get("currentStatus", 0)),
        dumps(line),
    )


def canonical(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted((dict(line) for line in lines), key=_sort_key)


def dumps(line: Mapping[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False)


def compare(scenario: Scenario, lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """A readable diff between the replay and the scenario's ``expect``; empty when they agree.

    Types absent from ``expect`` are not compared; fields of an output line that the expected
    lines do not have are ignored.
    """
    if scenario.expect is None:
        return ["the scenario has no 'expect' to check against"]
    problems: list[str] = []
    for kind in ("status", "response", "effective"):
        # FORMAT.md's example spells the key "responses"; the scenario files say "response".
        names = [name for name in (kind, f"{kind}s") if name in scenario.expect]
        if not names:
            continue
        expected = canonical(scenario.expect[names[0]])
        keys = set(LINE_KEYS[kind])
        for line in expected:
            keys |= set(line)
        actual = canonical(
            {k: v for k, v in line.items() if k in keys} for line in lines if line["type"] == kind
        )
        if actual == expected:
            continue
        diff = difflib.unified_diff(
            [dumps(line) for line in expected],
            [dumps(line) for line in actual],
            fromfile=f"expected {kind} lines",
            tofile=f"replayed {kind} lines",
            lineterm="",
            n=2,
        )
        problems.extend(diff)
    return problems
