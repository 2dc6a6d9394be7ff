"""create-der-control, create-default-der-control, clear-der-controls.

Controls go to the client's program (of the instruction's primacy, when it names one) through
``POST /admin/programs/{id}/controls``; defaults through ``PUT /admin/programs/{id}/default``;
cancellation through ``POST /admin/programs/{id}/controls/{mRID}/cancel``. Values are sent in
the JSON shapes of csipstream's admin API (engine/kernel/modes.py): ActivePower as
``{"value", "multiplier"}`` with an Int16 value, booleans as booleans, SignedPerCent and
rampTms as integers.

Timing, where the instruction leaves it open: "active" starts one second ago and lasts
``ACTIVE_DURATION``; "scheduled" without an offset starts ``SCHEDULED_OFFSET`` from now, or one
second after the latest end among the program's pending controls, so that successive scheduled
controls never overlap (as the instruction's definition asks), and lasts
``SCHEDULED_DURATION``.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Any

from csipstream_cactus.admin_api import AdminApi, segment
from csipstream_cactus.clients import CsipClient
from csipstream_cactus.programs import load, program_for
from csipstream_cactus.registration import InstructionFailed

ACTIVE_DURATION = 300
SCHEDULED_OFFSET = 10
SCHEDULED_DURATION = 30
ACTIVE_POWER_MODES = ("opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW")
BOOLEAN_MODES = ("opModConnect", "opModEnergize")
PENDING = (0, 1)  # EventStatus currentStatus: scheduled, active


def active_power(name: str, watts: float) -> dict[str, int]:
    """``watts`` as an ActivePower: value (Int16) x 10^multiplier, exactly, or refused."""
    for multiplier in range(-3, 10):
        scaled = watts / 10**multiplier
        value = round(scaled)
        if -32768 <= value <= 32767 and math.isclose(value * 10**multiplier, watts, abs_tol=1e-9):
            return {"value": value, "multiplier": multiplier}
    raise InstructionFailed(f"{name}={watts} W cannot be written as an ActivePower exactly")


def ordered_mrid() -> str:
    """An mRID that sorts after every earlier one (nanosecond clock, then random digits).

    Controls created in the same second tie on creationTime, and the ranking then prefers
    the greater mRID (CSIP_RULES §2.6): the procedures expect the later control to win.
    """
    return f"{time.time_ns():016X}{secrets.token_hex(8).upper()}"


def _integer(name: str, raw: Any) -> int:
    if isinstance(raw, bool) or not float(raw).is_integer():
        raise InstructionFailed(f"{name}={raw!r} is not an integer")
    return int(raw)


def control_base(params: dict[str, Any], *, default: bool) -> dict[str, Any]:
    """DERControlBase (and, for a default, setGradW) from the instruction's parameters."""
    base: dict[str, Any] = {}
    for name in ACTIVE_POWER_MODES:
        if params.get(name) is not None:
            base[name] = active_power(name, float(params[name]))
    if default:
        if params.get("setGradW") is not None:
            base["setGradW"] = _integer("setGradW", params["setGradW"])
        return base
    for name in BOOLEAN_MODES:
        if params.get(name) is not None:
            base[name] = bool(params[name])
    if params.get("opModFixedW") is not None:
        base["opModFixedW"] = _integer("opModFixedW", params["opModFixedW"])
    if params.get("rampTms") is not None:
        base["rampTms"] = _integer("rampTms", params["rampTms"])
    return base


async def _controls(api: AdminApi, program: str) -> list[dict[str, Any]]:
    found = await api.get(f"/programs/{segment(program)}")
    return list(found.get("controls", []))


async def create_der_control(api: AdminApi, client: CsipClient, params: dict[str, Any]) -> None:
    status = params["status"]
    if status not in ("active", "scheduled"):
        raise InstructionFailed(f"create-der-control status {status!r}: not active or scheduled")
    base = control_base(params, default=False)
    if not any(name != "rampTms" for name in base):
        raise InstructionFailed("create-der-control names no control mode")
    program = await program_for(api, client, params.get("primacy"))
    now = int(time.time())
    offset = params.get("start_offset_seconds")
    duration = params.get("duration_seconds")
    if status == "active":
        start = now - (1 if offset is None else int(offset))
        duration = ACTIVE_DURATION if duration is None else int(duration)
    else:
        if offset is not None:
            start = now + int(offset)
        else:
            ends = [
                c["start"] + c["duration"]
                for c in await _controls(api, program)
                if c.get("listed") and c.get("currentStatus") in PENDING
            ]
            start = max([now + SCHEDULED_OFFSET, *(end + 1 for end in ends)])
        duration = SCHEDULED_DURATION if duration is None else int(duration)
    body: dict[str, Any] = {
        "mRID": ordered_mrid(),
        "start": start,
        "duration": duration,
        "base": base,
        "description": f"cactus {status}",
    }
    if params.get("randomizeStart_seconds") is not None:
        body["randomizeStart"] = _integer(
            "randomizeStart_seconds", params["randomizeStart_seconds"]
        )
    await api.post(f"/programs/{segment(program)}/controls", body)


async def create_default_der_control(
    api: AdminApi, client: CsipClient, params: dict[str, Any]
) -> None:
    for name in ("opModConnect", "opModEnergize", "opModFixedW", "rampTms"):
        if params.get(name) is not None:
            raise InstructionFailed(f"create-default-der-control does not define {name}")
    base = control_base(params, default=True)
    if not base:
        raise InstructionFailed("create-default-der-control names no mode or setting")
    program = await program_for(api, client, params.get("primacy"))
    await api.put(f"/programs/{segment(program)}/default", {"base": base})


async def clear_der_controls(api: AdminApi, client: CsipClient, params: dict[str, Any]) -> None:
    """Cancel the client's scheduled and active controls (all of them, or the latest)."""
    state = await load(api, client)
    pending: list[tuple[int, str, str]] = []
    for program in state.all_programs():
        for control in await _controls(api, program):
            if control.get("listed") and control.get("currentStatus") in PENDING:
                pending.append((control["creationTime"], control["mRID"], program))
    if not pending:
        return
    pending.sort()
    chosen = pending if params.get("all") else pending[-1:]
    for _, mrid, program in chosen:
        await api.post(f"/programs/{segment(program)}/controls/{segment(mrid)}/cancel")
