"""Mirror metering: devices (or their aggregator) mirror their meter readings to the server.

POST /mup creates a MirrorUsagePoint for a device (deviceLFDI), or updates the one it already
has with that mRID. POST /mup/{id} takes a MirrorMeterReading or a list of them, with a Reading
or MirrorReadingSets. Every reading becomes a normalized telemetry event (quantity from uom and
dataQualifier, value scaled by powerOfTenMultiplier, time and interval); the MUP keeps, per
MirrorMeterReading, its ReadingType and latest Reading, which GET /mup/{id} shows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from lxml import etree

from engine.state.registry import Requester
from gateway import sep_mirror, uris
from gateway.context import GatewayContext, Scope, client_scope, context
from gateway.errors import Conflict, Forbidden, NotFound
from gateway.http import paging, read_xml, xml_response

router = APIRouter()


def _may_use(ctx: GatewayContext, requester: Requester, lfdi: str) -> bool:
    device = ctx.registry.devices.get(lfdi.upper())
    return device is not None and ctx.registry.may_see(requester, device)


def _record(ctx: GatewayContext, scope: Scope, mup_id: int) -> dict[str, Any]:
    record = ctx.backend.reporting.mup(mup_id)
    if record is None or not _may_use(ctx, scope.requester, record["lfdi"]):
        raise NotFound("no such MirrorUsagePoint")
    return record


def _stored_reading(
    reading: sep_mirror.MirrorMeterReading, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """What the MUP keeps of a posted MirrorMeterReading: ReadingType and the latest Reading."""
    raw = reading.to_json()
    sets = raw.pop("MirrorReadingSet", [])
    if "Reading" not in raw and sets:
        last = sets[-1].get("Reading") or []
        if last:
            raw["Reading"] = last[-1]
    if "ReadingType" not in raw and previous is not None and "ReadingType" in previous:
        raw["ReadingType"] = previous["ReadingType"]
    return raw


def _mup_element(ctx: GatewayContext, record: dict[str, Any]) -> etree._Element:
    readings = tuple(
        sep_mirror.MirrorMeterReading.from_json(raw)
        for raw in ctx.backend.reporting.meter_readings(record["id"])
    )
    value = sep_mirror.MirrorUsagePoint.from_json(record["value"])
    value = replace(value, meter_readings=readings, post_rate=ctx.registry.post_rates["mup"])
    return sep_mirror.mirror_usage_point(href=uris.mup(record["id"]), value=value)


@router.api_route(uris.MUP_LIST, methods=["GET", "HEAD"])
async def mup_list(request: Request, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    visible = ctx.registry.visible_devices(scope.requester)
    mine = sorted(
        (m for device in visible for m in ctx.backend.reporting.mups_of(device.lfdi)),
        key=lambda m: m["id"],
    )
    shown = page.page(mine)
    element = sep_mirror.mirror_usage_point_list(
        href=uris.MUP_LIST,
        all=len(mine),
        results=len(shown),
        items=[_mup_element(ctx, m) for m in shown],
        poll_rate=ctx.registry.poll_rates["mup"],
    )
    return xml_response(request, element)


def _check_owners(ctx: GatewayContext, mup_id: int | None, readings: tuple[Any, ...]) -> None:
    """An mRID names one MirrorMeterReading: one already held by another MUP is refused (a
    client must not write into another device's mirror, CACTUS S-ALL-05)."""
    for reading in readings:
        owner = ctx.backend.reporting.meter_reading_owner(reading.mrid)
        if owner is not None and owner != mup_id:
            raise Conflict(f"MirrorMeterReading {reading.mrid} belongs to another MirrorUsagePoint")


async def _post_readings(
    ctx: GatewayContext, mup_id: int, lfdi: str, mrid: str, readings: tuple[Any, ...], now: int
) -> None:
    stored: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for reading in readings:
        previous = ctx.backend.reporting.meter_reading(mup_id, reading.mrid)
        remembered = (
            sep_mirror.ReadingType.from_json(previous["ReadingType"])
            if previous is not None and "ReadingType" in previous
            else None
        )
        records.extend(
            sep_mirror.normalize(
                lfdi=lfdi, mup=mrid, meter_reading=reading, reading_type=remembered
            )
        )
        stored.append(_stored_reading(reading, previous))
    await ctx.backend.reporting.post_readings(mup_id, lfdi, now, stored, records)


@router.post(uris.MUP_LIST)
async def post_mup(request: Request, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    element = await read_xml(
        request, expected_root="MirrorUsagePoint", max_bytes=ctx.settings.max_body
    )
    posted = sep_mirror.parse_mirror_usage_point(element)
    if not _may_use(ctx, scope.requester, posted.device_lfdi):
        raise Forbidden("a MirrorUsagePoint is for yourself or a device you manage")
    lfdi = posted.device_lfdi.upper()
    _check_owners(ctx, ctx.backend.reporting.mup_id(lfdi, posted.mrid), posted.meter_readings)
    value = replace(posted, meter_readings=()).to_json()
    mup_id, _ = await ctx.backend.reporting.put_mup(lfdi, posted.mrid, scope.now, value)
    if posted.meter_readings:
        await _post_readings(ctx, mup_id, lfdi, posted.mrid, posted.meter_readings, scope.now)
    return Response(status_code=201, headers={"Location": uris.mup(mup_id)})


@router.api_route(uris.MUP, methods=["GET", "HEAD"])
async def get_mup(request: Request, mup: int, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    return xml_response(request, _mup_element(ctx, _record(ctx, scope, mup)))


@router.post(uris.MUP)
async def post_readings(
    request: Request, mup: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    record = _record(ctx, scope, mup)
    element = await read_xml(
        request,
        expected_root={"MirrorMeterReading", "MirrorMeterReadingList"},
        max_bytes=ctx.settings.max_body,
    )
    readings = sep_mirror.parse_mirror_meter_readings(element)
    _check_owners(ctx, mup, readings)
    await _post_readings(ctx, mup, record["lfdi"], record["mRID"], readings, scope.now)
    return Response(status_code=201, headers={"Location": uris.mup(mup)})
