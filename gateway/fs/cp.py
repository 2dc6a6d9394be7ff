"""CSIP-AUS ConnectionPoint: where an EndDevice is installed (its NMI), under the EndDevice.

Only under the ``csip-aus`` profile (404 otherwise, and no ConnectionPointLink on the
EndDevice). The device, or its aggregator, PUTs (or POSTs) the ConnectionPoint; a
connectionPointId that is not a valid NMI is refused with 400 (docs/profiles.md). GET answers
404 until one was set.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from engine.state import commands as c
from engine.state.registry import EndDeviceRecord
from gateway import sep_aus, uris
from gateway.context import GatewayContext, Scope, client_scope, context, device_for
from gateway.errors import BadRequest, NotFound
from gateway.http import read_xml, xml_response

router = APIRouter()


def _device(ctx: GatewayContext, scope: Scope, edev: int) -> EndDeviceRecord:
    if not ctx.settings.aus:
        raise NotFound("no such resource")
    return device_for(ctx, scope, edev)


@router.api_route(uris.CONNECTION_POINT, methods=["GET", "HEAD"])
async def get_connection_point(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = _device(ctx, scope, edev)
    if device.connection_point is None:
        raise NotFound("no ConnectionPoint has been set")
    element = sep_aus.connection_point(
        href=uris.connection_point(device.edev_id),
        connection_point_id=device.connection_point,
    )
    return xml_response(request, element)


async def _write(request: Request, edev: int, scope: Scope, status: int) -> Response:
    ctx = context(request)
    device = _device(ctx, scope, edev)
    element = await read_xml(
        request, expected_root=sep_aus.CONNECTION_POINT, max_bytes=ctx.settings.max_body
    )
    value = sep_aus.parse_connection_point(element)
    if not sep_aus.valid_nmi(value):
        raise BadRequest(f"connectionPointId {value!r:.40} is not a valid NMI")
    await ctx.backend.submit(
        c.SetConnectionPoint(lfdi=device.lfdi, connection_point_id=value, requested_by=scope.lfdi)
    )
    # Location on 204 too: CACTUS refetches the resource from it.
    return Response(status_code=status, headers={"Location": uris.connection_point(device.edev_id)})


@router.put(uris.CONNECTION_POINT)
async def put_connection_point(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    return await _write(request, edev, scope, 204)


@router.post(uris.CONNECTION_POINT)
async def post_connection_point(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    return await _write(request, edev, scope, 201)
