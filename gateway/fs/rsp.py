"""Responses: devices POST DERControlResponses to a control's replyTo (/rsps/{program}/rsp).

A response is accepted only when its subject is a control of that program, its endDeviceLFDI
is the requester or a device the requester manages, that device belongs to the program, and
its status is a known code. Accepted responses are stored (the admin API shows them beside the
lifecycle the engine expects) and appended to the telemetry log.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from lxml import etree

from engine.state.registry import Requester
from gateway import sep_notify, uris
from gateway.context import GatewayContext, Scope, client_scope, context
from gateway.errors import BadRequest, NotFound
from gateway.fs.derp import check_program
from gateway.http import paging, read_xml, xml_response

router = APIRouter()

# CSIP response status codes a device may post (CSIP_RULES §4, IEEE 2030.5 Table 27).
KNOWN_STATUSES = frozenset(range(1, 15)) | {252, 253, 254}


def _responses(ctx: GatewayContext, requester: Requester, program: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for device in ctx.registry.visible_devices(requester):
        found.extend(
            r for r in ctx.backend.reporting.responses(device.lfdi) if r["program"] == program
        )
    return sorted(found, key=lambda r: r["id"])


def _response_element(program: str, stored: dict[str, Any]) -> etree._Element:
    return sep_notify.response(
        href=uris.response(program, stored["id"]),
        value=sep_notify.Response.from_json(stored["value"]),
    )


@router.api_route(uris.RESPONSE_SET_LIST, methods=["GET", "HEAD"])
async def response_set_list(request: Request, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    programs = sorted(
        p for p in ctx.visible_programs(scope.requester) if p in ctx.registry.programs
    )
    shown = page.page(programs)
    element = sep_notify.response_set_list(
        href=uris.RESPONSE_SET_LIST,
        all=len(programs),
        results=len(shown),
        items=[_response_set(ctx, scope.requester, p) for p in shown],
        poll_rate=ctx.registry.poll_rates["rsps"],
    )
    return xml_response(request, element)


def _response_set(ctx: GatewayContext, requester: Requester, program: str) -> etree._Element:
    return sep_notify.response_set(
        href=uris.response_set(program),
        mrid=ctx.registry.programs[program].mrid,
        description=ctx.registry.programs[program].description or None,
        response_list_href=uris.response_list(program),
        response_list_all=len(_responses(ctx, requester, program)),
    )


@router.api_route(uris.RESPONSE_SET, methods=["GET", "HEAD"])
async def response_set(
    request: Request, program: str, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    check_program(ctx, scope.requester, program)
    return xml_response(request, _response_set(ctx, scope.requester, program))


@router.api_route(uris.RESPONSE_LIST, methods=["GET", "HEAD"])
async def response_list(
    request: Request, program: str, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    check_program(ctx, scope.requester, program)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    found = _responses(ctx, scope.requester, program)
    shown = page.page(found)
    element = sep_notify.response_list(
        href=uris.response_list(program),
        all=len(found),
        results=len(shown),
        items=[_response_element(program, r) for r in shown],
    )
    return xml_response(request, element)


@router.post(uris.RESPONSE_LIST)
async def post_response(
    request: Request, program: str, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    check_program(ctx, scope.requester, program)
    element = await read_xml(
        request, expected_root={"DERControlResponse", "Response"}, max_bytes=ctx.settings.max_body
    )
    posted = sep_notify.parse_response(element)
    record = ctx.catalog.record(posted.subject)
    if record is None or record.control.program != program:
        raise BadRequest(f"subject {posted.subject} is not a control of program {program}")
    device = ctx.registry.devices.get(posted.end_device_lfdi)
    if device is None or not ctx.registry.may_see(scope.requester, device):
        raise BadRequest("endDeviceLFDI must be yours or a device you manage")
    if program not in device.programs():
        raise BadRequest(f"that device does not belong to program {program}")
    if posted.status is None or posted.status not in KNOWN_STATUSES:
        raise BadRequest(f"status {posted.status} is not a known response status")
    value = posted.to_json()
    value["subject"] = record.control.mrid.upper()
    number = await ctx.backend.reporting.post_response(device.lfdi, program, scope.now, value)
    return Response(status_code=201, headers={"Location": uris.response(program, number)})


@router.api_route(uris.RESPONSE, methods=["GET", "HEAD"])
async def get_response(
    request: Request, program: str, response: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    check_program(ctx, scope.requester, program)
    for stored in _responses(ctx, scope.requester, program):
        if stored["id"] == response:
            return xml_response(request, _response_element(program, stored))
    raise NotFound("no such Response")
