"""set-poll-rate and set-post-rate: csipstream's poll and post rates (``PUT /admin/poll-rates``,
``PUT /admin/post-rates``) are server-wide, one per resource kind."""

from __future__ import annotations

from typing import Any

from csipstream_cactus.admin_api import AdminApi
from csipstream_cactus.registration import InstructionFailed

# CSIPAusResource -> the key of the resource's pollRate at csipstream (engine/state/registry.py)
POLL_RATE_KEYS = {
    "DeviceCapability": "dcap",
    "Time": "time",
    "EndDeviceList": "edev",
    "Registration": "registration",
    "FunctionSetAssignmentsList": "fsa",
    "DERProgramList": "derp",
    "DERList": "der",
    "MirrorUsagePointList": "mup",
    "SubscriptionList": "sub",
}
# CSIPAusResource -> the key of its postRate (EndDevice.postRate, MirrorUsagePoint.postRate)
POST_RATE_KEYS = {"EndDevice": "edev", "MirrorUsagePoint": "mup"}


def _key(kind: str, keys: dict[str, str], resource: str) -> str:
    key = keys.get(str(resource))
    if key is None:
        raise InstructionFailed(
            f"{resource}: csipstream has no {kind}Rate for it "
            f"(it has one for {', '.join(sorted(keys))})"
        )
    return key


async def set_poll_rate(api: AdminApi, params: dict[str, Any]) -> None:
    key = _key("poll", POLL_RATE_KEYS, params["resource"])
    await api.put("/poll-rates", {key: int(params["rate_seconds"])})


async def set_post_rate(api: AdminApi, params: dict[str, Any]) -> None:
    key = _key("post", POST_RATE_KEYS, params["resource"])
    await api.put("/post-rates", {key: int(params["rate_seconds"])})
