"""Print the CACTUS server test procedures as JSON, each with the CSIP-AUS elements it uses.

Run with the Python 3.12 venv that holds cactus-client (run.py does). A procedure is
*core-only* when none of its steps uses an element of the CSIP-AUS namespace
(https://csipaus.org/ns): the DERControlBase limits, the EndDevice's ConnectionPoint, or the
doeModes fields that cactus-client always sends in DERCapability and DERSettings.
"""

from __future__ import annotations

import json
from typing import Any

from cactus_test_definitions.server.test_procedures import get_all_test_procedures

AUS_MODES = ("opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW", "opModStorageTargetW")
# Actions whose request bodies always carry CSIP-AUS elements (cactus_client/action/der.py,
# end_device.py).
AUS_ACTIONS = {
    "upsert-der-capability": ["DERCapability.doeModesSupported"],
    "upsert-der-settings": ["DERSettings.doeModesEnabled"],
    "send-malformed-der-settings": ["DERSettings.doeModesEnabled"],
    "upsert-connection-point": ["EndDevice.ConnectionPointLink", "ConnectionPoint"],
}


def _where(kind: str, name: str, params: dict[str, Any]) -> list[str]:
    found = [f"DERControlBase.{m} ({kind} {name})" for m in AUS_MODES if m in params]
    for key in ("resources", "links"):
        if "ConnectionPoint" in [str(r) for r in params.get(key) or []]:
            found.append(f"EndDevice.ConnectionPointLink ({kind} {name})")
    return found


def _aus_elements(procedure: Any) -> list[str]:
    found: list[str] = []
    for step in procedure.steps:
        found += _where("action", step.action.type, step.action.parameters)
        found += [f"{e} (action {step.action.type})" for e in AUS_ACTIONS.get(step.action.type, [])]
        for check in step.checks or []:
            found += _where("check", check.type, check.parameters)
        for instruction in step.admin_instructions or []:
            found += _where("admin", instruction.type.value, instruction.parameters)
    return sorted(set(found))


# cactus posts a series of readings one MirrorUsagePoint postRate apart; csipstream's default
# MUP postRate (engine/state/registry.py DEFAULT_POST_RATES) is 300 s.
MUP_POST_RATE = 300


def _waits(procedure: Any) -> int:
    """Seconds the procedure waits by design: wait actions, client simulations, and series of
    readings posted at the MirrorUsagePoint's postRate."""
    total = 0
    for step in procedure.steps:
        params = step.action.parameters
        if step.action.type == "wait":
            total += int(params["duration_seconds"])
        elif step.action.type == "simulate-client":
            total += int(params["frequency_seconds"]) * int(params["total_simulations"])
        elif step.action.type == "insert-readings":
            longest = max((len(v) for v in params["values"].values()), default=1)
            total += (longest - 1) * MUP_POST_RATE
    return total


def main() -> None:
    out = []
    for procedure_id, procedure in get_all_test_procedures().items():
        out.append(
            {
                "id": str(procedure_id),
                "title": procedure.description.strip(),
                "category": procedure.category,
                "clients": [
                    None if c.client_type is None else str(c.client_type)
                    for c in procedure.preconditions.required_clients
                ],
                "aus": _aus_elements(procedure),
                "waits": _waits(procedure),
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
