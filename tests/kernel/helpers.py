"""Compact scenario building for rule tests: one scenario per rule, read like the rule."""

from __future__ import annotations

from typing import Any

from engine.replay import Scenario, run

DEV = "D1D907752314F590E9DFC8A604E3339D662D719F"
DEV2 = "12A4A4B406AD102E7421019135FFA2805235A21C"


def control(
    mrid: str,
    start: int,
    duration: int,
    program: str = "P1",
    *,
    creation: int = 0,
    rr: str = "03",
    **extra: Any,
) -> dict[str, Any]:
    """A control step body; modes are keyword arguments (opModMaxLimW=5000)."""
    base = {k: v for k, v in extra.items() if k.startswith("opMod") or k == "rampTms"}
    rest = {k: v for k, v in extra.items() if k not in base}
    return {
        "program": program,
        "mRID": mrid,
        "creationTime": creation,
        "start": start,
        "duration": duration,
        "responseRequired": rr,
        "base": base,
        **rest,
    }


def replay(
    steps: list[dict[str, Any]],
    *,
    programs: list[dict[str, Any]] | None = None,
    devices: list[dict[str, Any]] | None = None,
    until: int = 1000,
    profile: str = "csip",
) -> list[dict[str, Any]]:
    scenario = {
        "name": "test",
        "profile": profile,
        "until": until,
        "programs": programs if programs is not None else [{"id": "P1", "primacy": 1}],
        "devices": devices if devices is not None else [{"lfdi": DEV, "programs": ["P1"]}],
        "steps": steps,
    }
    return run(Scenario.parse(scenario))


def responses(lines: list[dict[str, Any]], lfdi: str = DEV) -> list[tuple[int, str, int]]:
    return [
        (x["t"], x["mRID"], x["status"])
        for x in lines
        if x["type"] == "response" and x["lfdi"] == lfdi
    ]


def effective(
    lines: list[dict[str, Any]], mode: str, lfdi: str = DEV
) -> list[tuple[int, Any, str | None, str | None]]:
    return [
        (x["t"], x["value"], x["program"], x["event"])
        for x in lines
        if x["type"] == "effective" and x["lfdi"] == lfdi and x["mode"] == mode
    ]


def statuses(lines: list[dict[str, Any]]) -> list[tuple[int, str, int]]:
    return [(x["t"], x["mRID"], x["currentStatus"]) for x in lines if x["type"] == "status"]
