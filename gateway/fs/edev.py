"""EndDevice and Registration: who is registered, in-band registration, and deletion.

A device sees its own EndDevice; an aggregator its own and those of the devices it manages;
anybody else's is 404. In-band registration (POST /edev) is allowed for LFDIs on the
authorization list (or for everybody in ``open`` mode); a duplicate answers with the existing
EndDevice.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from lxml import etree

from engine.kernel import sfdi_from_lfdi
from engine.state import commands as c
from engine.state.registry import EndDeviceRecord, Requester
from gateway import sep, uris
from gateway.context import GatewayContext, Scope, client_scope, context, device_for
from gateway.errors import BadRequest, Conflict, Forbidden
from gateway.http import Paging, paging, read_xml, xml_response

router = APIRouter()


def end_device_element(
    ctx: GatewayContext, device: EndDeviceRecord, requester: Requester
) -> etree._Element:
    """An EndDevice as ``requester`` sees it. Only the requester's own EndDevice links a
    SubscriptionList: an aggregator subscribes under its own EndDevice, so it finds one list,
    not one per managed device (what CACTUS's aggregator procedures expect; docs/profiles.md).
    """
    own = device.lfdi == requester.lfdi
    return sep.end_device(
        href=uris.edev(device.edev_id),
        lfdi=device.lfdi,
        sfdi=device.sfdi,
        changed_time=device.changed_time,
        enabled=device.enabled,
        device_category=device.device_category,
        fsa_list_href=uris.fsa_list(device.edev_id),
        fsa_list_all=len(device.fsas),
        registration_href=uris.registration(device.edev_id),
        der_list_href=uris.der_list(device.edev_id),
        der_list_all=1,
        log_event_list_href=uris.log_event_list(device.edev_id),
        log_event_list_all=len(ctx.backend.reporting.log_events(device.lfdi)),
        post_rate=ctx.registry.post_rates["edev"],
        subscription_list_href=uris.subscription_list(device.edev_id) if own else None,
        subscription_list_all=sum(
            1 for s in ctx.registry.subscriptions.values() if s.lfdi == device.lfdi
        )
        if own
        else None,
        connection_point_href=uris.connection_point(device.edev_id) if ctx.settings.aus else None,
    )


def render_end_device_list(
    ctx: GatewayContext, requester: Requester, page: Paging
) -> etree._Element:
    devices = [d for d in ctx.registry.visible_devices(requester) if d.changed_time >= page.after]
    shown = page.page(devices)
    return sep.end_device_list(
        href=uris.EDEV_LIST,
        all=len(devices),
        results=len(shown),
        items=[end_device_element(ctx, d, requester) for d in shown],
        poll_rate=ctx.registry.poll_rates["edev"],
    )


@router.api_route(uris.EDEV_LIST, methods=["GET", "HEAD"])
async def end_device_list(request: Request, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    return xml_response(request, render_end_device_list(ctx, scope.requester, page))


@router.post(uris.EDEV_LIST)
async def register_end_device(request: Request, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    element = await read_xml(request, expected_root="EndDevice", max_bytes=ctx.settings.max_body)
    posted = sep.parse_end_device(element)
    lfdi = posted.lfdi or _lfdi_for(ctx, scope, posted.sfdi)
    if sfdi_from_lfdi(lfdi) != posted.sfdi:
        raise BadRequest(f"sFDI {posted.sfdi} does not belong to lFDI {lfdi}")
    executed = await ctx.backend.submit(
        c.RegisterDevice(
            lfdi=lfdi,
            sfdi=posted.sfdi,
            source="in-band",
            device_category=posted.device_category,
            requested_by=scope.lfdi,
        )
    )
    location = uris.edev(int(executed.result["edev_id"]))
    if not executed.result["created"]:
        # Registered already (in band or by the utility): refused, as the CACTUS procedures
        # S-ALL-51 and S-OPT-01 expect; the Location still names the existing EndDevice.
        raise Conflict("this EndDevice is registered already", headers={"Location": location})
    return Response(status_code=201, headers={"Location": location})


def _lfdi_for(ctx: GatewayContext, scope: Scope, sfdi: int) -> str:
    """The LFDI of a posted EndDevice that gives only its sFDI."""
    if scope.identity.sfdi == sfdi:
        return scope.lfdi
    if scope.requester.aggregator is not None:
        matches = [
            lfdi
            for lfdi, authorization in ctx.registry.authorizations.items()
            if sfdi_from_lfdi(lfdi) == sfdi
            and authorization.aggregator in (None, scope.requester.aggregator.id)
        ]
        if len(matches) == 1:
            return matches[0]
    raise BadRequest("lFDI is required to register a device other than yourself")


@router.api_route(uris.EDEV, methods=["GET", "HEAD"])
async def end_device(request: Request, edev: int, scope: Scope = Depends(client_scope)) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    return xml_response(request, end_device_element(ctx, device, scope.requester))


@router.delete(uris.EDEV)
async def delete_end_device(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    if scope.requester.aggregator is None or device.own_aggregator is not None:
        raise Forbidden("only the managing aggregator may delete this EndDevice")
    await ctx.backend.submit(c.DeleteDevice(lfdi=device.lfdi, requested_by=scope.lfdi))
    return Response(status_code=204)


@router.api_route(uris.REGISTRATION, methods=["GET", "HEAD"])
async def registration(
    request: Request, edev: int, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    device = device_for(ctx, scope, edev)
    element = sep.registration(
        href=uris.registration(device.edev_id),
        date_time_registered=device.registered_at,
        pin=device.pin,
        poll_rate=ctx.registry.poll_rates["registration"],
    )
    return xml_response(request, element)
