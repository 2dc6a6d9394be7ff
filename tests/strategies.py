"""Hypothesis strategies: random but valid scenarios in the format of tests/scenarios/FORMAT.md.

Scenarios are kept small (at most 4 programs, 3 devices, 12 steps, ``until`` <= 600) so that the
naive reference in ``tests/reference/naive.py`` replays each one quickly. The mode pool is tiny
on purpose, so that events often share modes and exercise conflicts, successive events and
server-side supersedes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import strategies as st

# Distinct, fixed LFDIs: SHA-1 of "dev1".."dev9", 40 upper-case hex digits.
LFDI_POOL: tuple[str, ...] = tuple(
    hashlib.sha1(f"dev{index}".encode()).hexdigest().upper() for index in range(1, 10)
)
CONTROL_MODES: tuple[str, ...] = ("opModMaxLimW", "opModConnect", "opModTargetW", "opModFixedW")
DEFAULT_MODES: tuple[str, ...] = (*CONTROL_MODES, "setGradW")
CURVE_MODES: tuple[str, ...] = ("opModVoltVar", "opModVoltWatt")
CURVE_IDS: tuple[str, ...] = ("C1", "C2", "C3")
CURVE_TYPES: tuple[int, ...] = (11, 12)  # VoltVar, VoltWatt
STEP_KINDS: tuple[str, ...] = (
    # Listed first shrinks first; controls and cancels are the interesting inputs.
    "control",
    "control",
    "control",
    "control",
    "cancel",
    "cancel",
    "default",
    "primacy",
    "membership",
    "curve",
)

Scenario = dict[str, Any]


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws; shrinks towards False."""
    return draw(st.integers(1, one_in)) == one_in


def mode_values(mode: str) -> st.SearchStrategy[Any]:
    if mode == "opModConnect":
        return st.booleans()
    if mode == "opModTargetW":
        return st.fixed_dictionaries(
            {"value": st.integers(-10000, 10000), "multiplier": st.integers(0, 2)}
        )
    if mode == "opModFixedW":
        return st.integers(-10000, 10000)
    if mode in ("opModMaxLimW", "setGradW"):
        return st.integers(0, 10000)
    raise ValueError(mode)


@st.composite
def default_bases(draw: st.DrawFn) -> dict[str, Any]:
    """A DefaultDERControl: a couple of modes and possibly a default-only setting."""
    modes = draw(st.lists(st.sampled_from(DEFAULT_MODES), min_size=1, max_size=3, unique=True))
    return {mode: draw(mode_values(mode)) for mode in modes}


@st.composite
def control_bases(draw: st.DrawFn) -> dict[str, Any]:
    """A DERControlBase: 1-3 modes, occasionally a curve link (maybe dangling or mistyped)
    and, rarely, rampTms (which is not a mode)."""
    modes = draw(st.lists(st.sampled_from(CONTROL_MODES), min_size=1, max_size=3, unique=True))
    base: dict[str, Any] = {mode: draw(mode_values(mode)) for mode in modes}
    if rarely(draw, 6):
        base[draw(st.sampled_from(CURVE_MODES))] = {"curve": draw(st.sampled_from(CURVE_IDS))}
    if rarely(draw, 10):
        base["rampTms"] = draw(st.integers(0, 600))
    return base


def curve(mrid: str, curve_type: int) -> dict[str, Any]:
    return {
        "mRID": mrid,
        "curveType": curve_type,
        "xMultiplier": 0,
        "yMultiplier": 0,
        "yRefType": 2,
        "points": [[9500, 3000], [10500, -3000]],
    }


@st.composite
def program_subsets(draw: st.DrawFn, program_ids: list[str]) -> list[str]:
    """Any subset of the programs, in random order, possibly empty."""
    order = draw(st.permutations(program_ids))
    return list(order[: draw(st.integers(0, len(order)))])


@st.composite
def randomize_bound(draw: st.DrawFn) -> int:
    return draw(st.integers(-60, 60)) if rarely(draw, 4) else 0


@st.composite
def control_step(
    draw: st.DrawFn, t: int, program_ids: list[str], earlier: list[dict[str, Any]]
) -> dict[str, Any]:
    """A DERControl step: mostly a new mRID, sometimes the mRID of one of the ``earlier``
    controls again (immutability, §2.1); sometimes starting exactly at an earlier control's
    scheduled end (successive events, §2.5)."""
    reuse = bool(earlier) and rarely(draw, 6)
    if reuse:
        mrid = draw(st.sampled_from([control["mRID"] for control in earlier]))
    else:
        mrid = f"E{len(earlier) + 1}"
    duration = 0 if rarely(draw, 12) else draw(st.integers(1, 300))
    if earlier and rarely(draw, 3):
        predecessor = draw(st.sampled_from(earlier))
        start = predecessor["start"] + predecessor["duration"]
    else:
        start = draw(st.integers(max(-50, t - 200), t + 300))
    control: dict[str, Any] = {
        "program": draw(st.sampled_from(program_ids)),
        "mRID": mrid,
        "creationTime": draw(st.integers(0, t)),
        "start": start,
        "duration": duration,
    }
    for name in ("randomizeStart", "randomizeDuration"):
        bound = draw(randomize_bound())
        if bound != 0 or rarely(draw, 4):  # sometimes an explicit 0
            control[name] = bound
    if not rarely(draw, 8):  # absent means "00"
        control["responseRequired"] = draw(st.sampled_from(["03", "03", "00", "01", "02"]))
    reply_to = draw(st.sampled_from(["absent", "absent", "present", "null"]))
    if reply_to == "present":
        control["replyTo"] = "/rsps/1/rsp"
    elif reply_to == "null":
        control["replyTo"] = None
    if rarely(draw, 5):
        category = draw(st.integers(1, 7))
        control["deviceCategory"] = draw(st.sampled_from([category, f"{category:02X}"]))
    control["base"] = draw(control_bases())
    return {"t": t, "control": control}


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A random valid scenario: 1-4 programs, 1-3 devices, 0-12 steps, ``until`` 100-600."""
    program_ids = [f"P{index}" for index in range(1, draw(st.integers(1, 4)) + 1)]
    curves_by_program: dict[str, list[str]] = {}
    programs: list[dict[str, Any]] = []
    for program_id in program_ids:
        program: dict[str, Any] = {"id": program_id, "primacy": draw(st.integers(0, 5))}
        if draw(st.booleans()):
            program["default"] = draw(default_bases())
        curve_ids = draw(st.lists(st.sampled_from(CURVE_IDS), max_size=2, unique=True))
        if curve_ids:
            program["curves"] = [curve(c, draw(st.sampled_from(CURVE_TYPES))) for c in curve_ids]
        curves_by_program[program_id] = list(curve_ids)
        programs.append(program)

    lfdis = draw(st.lists(st.sampled_from(LFDI_POOL), min_size=1, max_size=3, unique=True))
    devices: list[dict[str, Any]] = []
    for lfdi in lfdis:
        device: dict[str, Any] = {"lfdi": lfdi, "programs": draw(program_subsets(program_ids))}
        if rarely(draw, 4):
            device["deviceCategory"] = draw(st.integers(1, 7))
        devices.append(device)

    until = draw(st.integers(100, 600))
    times = sorted(draw(st.lists(st.integers(0, until), max_size=12)))
    earlier: list[dict[str, Any]] = []  # the first content of every mRID, in step order
    steps: list[dict[str, Any]] = []
    for t in times:
        kind = draw(st.sampled_from(STEP_KINDS))
        program_id = draw(st.sampled_from(program_ids))
        missing_curves = [c for c in CURVE_IDS if c not in curves_by_program[program_id]]
        if kind == "cancel" and earlier:
            # Any earlier control: some are already cancelled, ended or superseded.
            target = draw(st.sampled_from(earlier))
            cancel = {"program": target["program"], "mRID": target["mRID"]}
            steps.append({"t": t, "cancel": cancel})
        elif kind == "default":
            base = None if rarely(draw, 3) else draw(default_bases())
            steps.append({"t": t, "default": {"program": program_id, "base": base}})
        elif kind == "primacy":
            primacy = draw(st.integers(0, 5))
            steps.append({"t": t, "primacy": {"program": program_id, "primacy": primacy}})
        elif kind == "membership":
            change = {"lfdi": draw(st.sampled_from(lfdis)), "programs": []}
            change["programs"] = draw(program_subsets(program_ids))
            steps.append({"t": t, "membership": change})
        elif kind == "curve" and missing_curves:
            mrid = missing_curves[0]
            curves_by_program[program_id].append(mrid)
            added = curve(mrid, draw(st.sampled_from(CURVE_TYPES)))
            steps.append({"t": t, "curve": {"program": program_id, "curve": added}})
        else:  # "control", or a cancel / curve step that had nothing to act on
            step = draw(control_step(t, program_ids, earlier))
            if all(control["mRID"] != step["control"]["mRID"] for control in earlier):
                earlier.append(step["control"])
            steps.append(step)

    scenario: Scenario = {"name": "generated", "until": until}
    profile = draw(st.sampled_from(["absent", "absent", "csip", "csip-aus"]))
    if profile != "absent":
        scenario["profile"] = profile
    if rarely(draw, 4):
        scenario["epoch"] = draw(st.sampled_from([1767225600, 1700000000]))
    scenario.update({"programs": programs, "devices": devices, "steps": steps})
    return scenario
