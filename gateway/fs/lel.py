"""LogEvents per EndDevice: alarms and their returns to normal (CSIP Table 14), posted by devices.

Each post is stored and appended to the telemetry log with the alarm decoded (function set 11:
DER alarms). The list is newest first, as 2030.5 orders LogEventLists (createdDateTime, then
logEventID, descending).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from engine.telemetry import alarms
from gateway import sep_report, uris
from gateway.context import Scope, client_scope, context, device_for
from gateway.errors import NotFound
from gateway.http import paging, read_xml, xml_response

router = APIRouter()


@router.api_route(uris.LOG_EVENT_LIST, methods=["GET", "HEAD"])
async def log_event_list(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    events = ctx.backend.reporting.log_events(device.lfdi)
    events.sort(
        key=lambda e: (e["value"]["createdDateTime"], e["value"]["logEventID"], e["id"]),
        reverse=True,
    )
    events = [e for e in events if e["value"]["createdDateTime"] >= page.after]
    shown = page.page(events)
    element = sep_report.log_event_list(
        href=uris.log_event_list(device.edev_id),
        all=len(events),
        results=len(shown),
        items=[
            sep_report.log_event(
                href=uris.log_event(device.edev_id, e["id"]),
                value=sep_report.LogEvent.from_json(e["value"]),
            )
            for e in shown
        ],
        poll_rate=ctx.registry.poll_rates["lel"],
    )
    return xml_response(request, element)


@router.post(uris.LOG_EVENT_LIST)
async def post_log_event(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    element = await read_xml(request, expected_root="LogEvent", max_bytes=ctx.settings.max_body)
    event = sep_report.parse_log_event(element)
    value = event.to_json()
    described = alarms.describe(event.function_set, event.log_event_code)
    telemetry = dict(value)
    if described is not None:
        telemetry["alarm"] = {
            "name": described.name,
            "returnToNormal": alarms.is_return_to_normal(event.log_event_code),
        }
    number = await ctx.backend.reporting.post_log_event(device.lfdi, scope.now, value, telemetry)
    return Response(status_code=201, headers={"Location": uris.log_event(device.edev_id, number)})


@router.api_route(uris.LOG_EVENT, methods=["GET", "HEAD"])
async def log_event(
    request: Request, edev: int, event: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    for stored in ctx.backend.reporting.log_events(device.lfdi):
        if stored["id"] == event:
            value = sep_report.LogEvent.from_json(stored["value"])
            return xml_response(
                request,
                sep_report.log_event(href=uris.log_event(device.edev_id, event), value=value),
            )
    raise NotFound("no such LogEvent")
