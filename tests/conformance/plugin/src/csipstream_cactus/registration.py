"""ensure-end-device, set-client-access, ensure-mup-list-empty: registration and access.

csipstream registers devices out of band with ``POST /admin/devices`` and lets a device (or its
aggregator) register in band only when its LFDI is on the authorization list
(``PUT /admin/authorizations/{lfdi}``, registration mode ``allowlist``). So "not registered"
means: no EndDevice, but authorized, so that the procedure's own in-band registration can
succeed; and revoking a client's access means removing both its EndDevice and its
authorization (csipstream has no separate switch that disables a certificate).
"""

from __future__ import annotations

from typing import Any

from cactus_test_definitions.server.test_procedures import ClientType

from csipstream_cactus.admin_api import AdminApi, segment
from csipstream_cactus.clients import CsipClient

MAX_PIN = 999_999  # csipstream stores a Registration PIN of at most 6 digits


class InstructionFailed(Exception):
    """The instruction cannot be carried out on csipstream; ``str()`` says precisely why."""


async def ensure_aggregator(
    api: AdminApi, client: CsipClient, notification_host: str | None
) -> None:
    """The aggregator (and its own EndDevice) exist, and may be notified at the sink's host."""
    aggregator = client.aggregator
    assert aggregator is not None
    await api.put(
        f"/aggregators/{segment(aggregator)}",
        {"lfdi": client.certificate_lfdi, "description": f"cactus {client.alias}"},
    )
    if notification_host:
        await api.put(f"/aggregators/{segment(aggregator)}/notification-hosts", [notification_host])


def _pin(client: CsipClient) -> int:
    if not 0 <= client.pin <= MAX_PIN:
        raise InstructionFailed(
            f"client {client.alias} has PIN {client.pin}; csipstream keeps a Registration PIN "
            f"of at most 6 digits"
        )
    return client.pin


async def device(api: AdminApi, client: CsipClient) -> dict[str, Any] | None:
    found = await api.get_or_none(f"/devices/{segment(client.lfdi)}")
    return found if isinstance(found, dict) else None


async def ensure_end_device(api: AdminApi, client: CsipClient, params: dict[str, Any]) -> None:
    wanted_type = params.get("client_type")
    if wanted_type is not None and ClientType(wanted_type) != client.kind:
        raise InstructionFailed(
            f"ensure-end-device asks for a {wanted_type} client but {client.alias} is a "
            f"{client.kind.value} client"
        )
    if params.get("has_registration_link") is False:
        raise InstructionFailed(
            "ensure-end-device has_registration_link=false: every csipstream EndDevice links its "
            "Registration (/edev/{id}/rg); there is no way to register one without it"
        )
    if params.get("has_der_list") is False:
        raise InstructionFailed(
            "ensure-end-device has_der_list=false: every csipstream EndDevice links its DERList "
            "(/edev/{id}/der with DERCapability, DERSettings, DERStatus and DERAvailability)"
        )
    existing = await device(api, client)
    if params["registered"]:
        if existing is None:
            body: dict[str, Any] = {"lfdi": client.lfdi, "pin": _pin(client)}
            if client.aggregator is not None:
                body["aggregator"] = client.aggregator
            await api.post("/devices", body)
        elif existing.get("aggregator") != client.aggregator:
            raise InstructionFailed(
                f"EndDevice {client.lfdi} is registered under aggregator "
                f"{existing.get('aggregator')!r}, not {client.aggregator!r}"
            )
        # has_der_list / has_registration_link: always true at csipstream (see above).
        return
    if existing is not None:
        await api.delete(f"/devices/{segment(client.lfdi)}")
    # Not registered, but allowed to register itself in band (registration mode allowlist).
    authorization: dict[str, Any] = {"pin": _pin(client)}
    if client.aggregator is not None:
        authorization["aggregator"] = client.aggregator
    await api.put(f"/authorizations/{segment(client.lfdi)}", authorization)


async def set_client_access(
    api: AdminApi, client: CsipClient, params: dict[str, Any], notification_host: str | None
) -> None:
    granted = bool(params["granted"])
    if client.aggregator is not None:
        if granted:
            await ensure_aggregator(api, client, notification_host)
            return
        raise InstructionFailed(
            f"set-client-access granted=false for aggregator client {client.alias}: csipstream's "
            "admin API cannot remove an aggregator or revoke its certificate (there is PUT "
            "/admin/aggregators/{id} but no DELETE)"
        )
    if granted:
        await api.put(f"/authorizations/{segment(client.lfdi)}", {"pin": _pin(client)})
        return
    # Revoke: the EndDevice and the authorization go; the certificate then maps to nobody.
    if await device(api, client) is not None:
        await api.delete(f"/devices/{segment(client.lfdi)}")
    authorizations = await api.get("/authorizations")
    if any(a.get("lfdi") == client.lfdi for a in authorizations):
        await api.delete(f"/authorizations/{segment(client.lfdi)}")


async def ensure_mup_list_empty(api: AdminApi, client: CsipClient) -> None:
    """csipstream cannot delete a MirrorUsagePoint; this holds only if none exists yet."""
    telemetry = await api.get_or_none(f"/devices/{segment(client.lfdi)}/telemetry")
    mirrors = [] if telemetry is None else telemetry.get("mirrors", [])
    if mirrors:
        listed = ", ".join(str(m.get("mup")) for m in mirrors)
        raise InstructionFailed(
            f"ensure-mup-list-empty: {len(mirrors)} MirrorUsagePoint(s) exist for {client.lfdi} "
            f"({listed}) and csipstream has no way to delete one (no admin endpoint, no DELETE "
            "/mup/{id})"
        )
