"""DER reporting: a device's DER with its capability, settings, status and availability.

Devices PUT (or POST) each of the four resources; the server stores it as typed values (CSIP
Tables 12 and 13), answers GETs with what was stored, and appends a telemetry event. A resource
never posted is 404. Each EndDevice has one DER (``/edev/{id}/der/1``), as CSIP expects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from lxml import etree

from gateway import sep_report, uris
from gateway.context import Scope, client_scope, context, device_for
from gateway.errors import NotFound
from gateway.http import paging, read_xml, xml_response
from gateway.sep_record import without_extensions

router = APIRouter()

# kind -> (root element, parser, record type, builder)
KINDS: dict[
    str, tuple[str, Callable[[etree._Element], Any], Any, Callable[..., etree._Element]]
] = {
    "capability": (
        "DERCapability",
        sep_report.parse_der_capability,
        sep_report.DERCapability,
        sep_report.der_capability,
    ),
    "settings": (
        "DERSettings",
        sep_report.parse_der_settings,
        sep_report.DERSettings,
        sep_report.der_settings,
    ),
    "status": (
        "DERStatus",
        sep_report.parse_der_status,
        sep_report.DERStatus,
        sep_report.der_status,
    ),
    "availability": (
        "DERAvailability",
        sep_report.parse_der_availability,
        sep_report.DERAvailability,
        sep_report.der_availability,
    ),
}
SUFFIX = {"capability": "dercap", "settings": "derg", "status": "ders", "availability": "dera"}
DER_NUMBER = 1


def _der_element(edev_id: int, posted: set[str]) -> etree._Element:
    def link(kind: str) -> str:
        return uris.der_resource(edev_id, kind, DER_NUMBER)

    return sep_report.der(
        href=uris.der(edev_id, DER_NUMBER),
        capability_href=link("capability"),
        settings_href=link("settings"),
        status_href=link("status"),
        availability_href=link("availability"),
        current_program_href=None,
        associated_program_list_href=None,
        associated_program_list_all=None,
    )


def _check_der(der: int) -> None:
    if der != DER_NUMBER:
        raise NotFound("no such DER")


@router.api_route(uris.DER_LIST, methods=["GET", "HEAD"])
async def der_list(request: Request, edev: int, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    shown = page.page([DER_NUMBER])
    element = sep_report.der_list(
        href=uris.der_list(device.edev_id),
        all=1,
        results=len(shown),
        items=[_der_element(device.edev_id, set()) for _ in shown],
        poll_rate=ctx.registry.poll_rates["der"],
    )
    return xml_response(request, element)


@router.api_route(uris.DER, methods=["GET", "HEAD"])
async def der(
    request: Request, edev: int, der: int, scope: Scope = Depends(client_scope)
) -> Response:
    device = device_for(context(request), scope, edev)
    _check_der(der)
    return xml_response(request, _der_element(device.edev_id, set()))


def _kind_routes(kind: str) -> None:
    tag, parse, record_type, build = KINDS[kind]
    path = f"{uris.DER}/{SUFFIX[kind]}"

    @router.api_route(path, methods=["GET", "HEAD"], name=f"get_der_{kind}")
    async def read(
        request: Request, edev: int, der: int, scope: Scope = Depends(client_scope)
    ) -> Response:
        ctx = context(request)
        device = device_for(ctx, scope, edev)
        _check_der(der)
        stored = ctx.backend.reporting.der(device.lfdi, kind)
        if stored is None:
            raise NotFound(f"no {tag} has been posted")
        value = record_type.from_json(stored["value"])
        return xml_response(
            request, build(href=uris.der_resource(device.edev_id, kind, der), value=value)
        )

    async def write(request: Request, edev: int, der: int, scope: Scope, status: int) -> Response:
        ctx = context(request)
        device = device_for(ctx, scope, edev)
        _check_der(der)
        element = await read_xml(request, expected_root=tag, max_bytes=ctx.settings.max_body)
        value = parse(element)
        if not ctx.settings.aus:
            value = without_extensions(value)
        await ctx.backend.reporting.put_der(device.lfdi, kind, scope.now, value.to_json())
        href = uris.der_resource(device.edev_id, kind, der)
        return Response(status_code=status, headers={"Location": href} if status == 201 else {})

    @router.put(path, name=f"put_der_{kind}")
    async def put(
        request: Request, edev: int, der: int, scope: Scope = Depends(client_scope)
    ) -> Response:
        return await write(request, edev, der, scope, 204)

    @router.post(path, name=f"post_der_{kind}")
    async def post(
        request: Request, edev: int, der: int, scope: Scope = Depends(client_scope)
    ) -> Response:
        return await write(request, edev, der, scope, 201)


for _kind in KINDS:
    _kind_routes(_kind)
