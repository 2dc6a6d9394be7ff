"""DeviceCapability (/dcap): the entry point a client discovers everything else from."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gateway import sep, uris
from gateway.context import Scope, client_scope, context
from gateway.http import xml_response

router = APIRouter()


@router.api_route(uris.DCAP, methods=["GET", "HEAD"])
def device_capability(request: Request, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    visible = ctx.registry.visible_devices(scope.requester)
    element = sep.device_capability(
        href=uris.DCAP,
        poll_rate=ctx.registry.poll_rates["dcap"],
        time_href=uris.TIME,
        end_device_list_href=uris.EDEV_LIST,
        end_device_list_all=len(visible),
    )
    return xml_response(request, element)
