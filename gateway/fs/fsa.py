"""FunctionSetAssignments: the programs each device is assigned, per FSA (up to 15)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from lxml import etree

from engine.state.registry import EndDeviceRecord
from gateway import sep, uris
from gateway.context import GatewayContext, Scope, client_scope, context, device_for
from gateway.errors import NotFound
from gateway.fs.derp import program_element
from gateway.http import Paging, paging, xml_response

router = APIRouter()


def _fsa_element(device: EndDeviceRecord, index: int) -> etree._Element:
    fsa = device.fsas[index - 1]
    return sep.function_set_assignments(
        href=uris.fsa(device.edev_id, index),
        mrid=fsa.mrid,
        description=fsa.description or None,
        der_program_list_href=uris.fsa_derp_list(device.edev_id, index),
        der_program_list_all=len(fsa.programs),
        time_href=uris.TIME,
    )


def fsa_index(device: EndDeviceRecord, fsa: int) -> int:
    if not 1 <= fsa <= len(device.fsas):
        raise NotFound("no such FunctionSetAssignments")
    return fsa


def render_fsa_list(ctx: GatewayContext, device: EndDeviceRecord, page: Paging) -> etree._Element:
    indexes = list(range(1, len(device.fsas) + 1))
    shown = page.page(indexes)
    return sep.function_set_assignments_list(
        href=uris.fsa_list(device.edev_id),
        all=len(indexes),
        results=len(shown),
        items=[_fsa_element(device, i) for i in shown],
        poll_rate=ctx.registry.poll_rates["fsa"],
    )


@router.api_route(uris.FSA_LIST, methods=["GET", "HEAD"])
async def fsa_list(request: Request, edev: int, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    return xml_response(request, render_fsa_list(ctx, device, page))


@router.api_route(uris.FSA, methods=["GET", "HEAD"])
async def fsa(
    request: Request, edev: int, fsa: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    return xml_response(request, _fsa_element(device, fsa_index(device, fsa)))


def render_program_list(
    ctx: GatewayContext, device: EndDeviceRecord, fsa: int, page: Paging, now: int
) -> etree._Element:
    index = fsa_index(device, fsa)
    programs = [p for p in device.fsas[index - 1].programs if p in ctx.registry.programs]
    shown = page.page(programs)
    return sep.der_program_list(
        href=uris.fsa_derp_list(device.edev_id, index),
        all=len(programs),
        results=len(shown),
        items=[program_element(ctx, p, now) for p in shown],
        poll_rate=ctx.registry.poll_rates["derp"],
    )


@router.api_route(uris.FSA_DERP_LIST, methods=["GET", "HEAD"])
async def fsa_program_list(
    request: Request, edev: int, fsa: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    return xml_response(request, render_program_list(ctx, device, fsa, page, scope.now))
