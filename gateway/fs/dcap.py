"""DeviceCapability (/dcap): the entry point a client discovers everything else from."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gateway import sep, uris
from gateway.context import Scope, client_scope, context
from gateway.http import xml_response

router = APIRouter()


@router.api_route(uris.DCAP, methods=["GET", "HEAD"])
async def device_capability(request: Request, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    visible = ctx.registry.visible_devices(scope.requester)
    mirrors = sum(ctx.backend.reporting.mup_count(d.lfdi) for d in visible)
    programs = ctx.visible_programs(scope.requester)
    element = sep.device_capability(
        href=uris.DCAP,
        poll_rate=ctx.registry.poll_rates["dcap"],
        time_href=uris.TIME,
        end_device_list_href=uris.EDEV_LIST,
        end_device_list_all=len(visible),
        mirror_usage_point_list_href=uris.MUP_LIST,
        mirror_usage_point_list_all=mirrors,
        response_set_list_href=uris.RESPONSE_SET_LIST,
        response_set_list_all=len([p for p in programs if p in ctx.registry.programs]),
    )
    return xml_response(request, element)
