"""DER programs and their controls, defaults and curves (the DER function set).

These resources are shared: one URI per program, the same body for every member device. They
are rendered once per state of the program and served from the render cache; only a change of
the program, of any control's status, or of the registry re-renders them. A requester may read
a program only if it (or a device it manages) belongs to it: otherwise 404.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from lxml import etree

from engine.kernel.catalog import ControlRecord
from engine.kernel.outputs import ACTIVE
from engine.state.registry import Requester
from gateway import sep, uris
from gateway.context import GatewayContext, Scope, client_scope, context
from gateway.errors import NotFound
from gateway.http import Paging, Rendered, paging, xml_response

router = APIRouter()


def check_program(ctx: GatewayContext, requester: Requester, program: str) -> None:
    """404 unless the requester (or a device it manages) belongs to the program."""
    if program not in ctx.visible_programs(requester) or program not in ctx.registry.programs:
        raise NotFound("no such DERProgram")


def _program(ctx: GatewayContext, scope: Scope, program: str) -> None:
    check_program(ctx, scope.requester, program)


def listed(ctx: GatewayContext, program: str, now: int) -> list[ControlRecord]:
    """Controls the program lists now (until their scheduled end), in 2030.5 event order:
    start ascending, then creationTime descending, then mRID descending."""
    records = [
        r
        for m in ctx.catalog.program(program).controls
        if (r := ctx.catalog.record(m)) is not None and r.control.scheduled_end > now
    ]
    records.sort(key=lambda r: r.control.mrid.upper(), reverse=True)
    records.sort(key=lambda r: (r.control.start, -r.control.creation_time))
    return records


def program_element(ctx: GatewayContext, program: str, now: int) -> etree._Element:
    meta = ctx.registry.programs[program]
    record = ctx.catalog.program(program)
    controls = listed(ctx, program, now)
    active = sum(1 for r in controls if ctx.catalog.status_at(r.control.mrid, now)[0] == ACTIVE)
    return sep.der_program(
        href=uris.derp(program),
        mrid=meta.mrid,
        description=meta.description or None,
        primacy=record.primacy,
        active_der_control_list_href=uris.active_derc_list(program),
        active_der_control_list_all=active,
        default_der_control_href=uris.default_derc(program)
        if record.default is not None or ctx.settings.aus
        else None,
        der_control_list_href=uris.derc_list(program),
        der_control_list_all=len(controls),
        der_curve_list_href=uris.curve_list(program),
        der_curve_list_all=len(record.curves),
    )


def _version(ctx: GatewayContext, program: str, now: int) -> tuple[object, ...]:
    """What a program's rendered resources depend on, cheap to compute per request."""
    statuses = tuple(
        (r.control.mrid, ctx.catalog.status_at(r.control.mrid, now))
        for r in listed(ctx, program, now)
    )
    return (ctx.registry.version, ctx.catalog.version, statuses)


def control_element(ctx: GatewayContext, record: ControlRecord, now: int) -> etree._Element:
    control = record.control
    program = control.program
    meta = ctx.registry.controls.get(control.mrid.upper())
    status, since = ctx.catalog.status_at(control.mrid, now)
    return sep.der_control(
        href=uris.derc(program, control.mrid),
        mrid=control.mrid,
        description=(meta.description if meta else "") or None,
        creation_time=control.creation_time,
        current_status=status,
        status_time=since,
        potentially_superseded=False,
        potentially_superseded_time=None,
        reason=None,
        start=control.start,
        duration=control.duration,
        randomize_start=control.randomize_start or None,
        randomize_duration=control.randomize_duration or None,
        reply_to=uris.response_list(program) if control.reply_to else None,
        response_required=control.response_required,
        device_category=control.device_category,
        base=control.base,
        ramp_tms=control.ramp_tms,
        curve_href=lambda curve: uris.curve(program, curve),
    )


def render_program(ctx: GatewayContext, requester: Requester, program: str, now: int) -> Rendered:
    check_program(ctx, requester, program)
    key = ("derp", program, _version(ctx, program, now))
    return ctx.cache.get(key, lambda: program_element(ctx, program, now))


@router.api_route(uris.DERP, methods=["GET", "HEAD"])
async def der_program(
    request: Request, program: str, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    return xml_response(request, render_program(ctx, scope.requester, program, scope.now))


def render_control_list(
    ctx: GatewayContext,
    requester: Requester,
    program: str,
    page: Paging,
    now: int,
    *,
    active_only: bool,
) -> Rendered:
    check_program(ctx, requester, program)
    records = [r for r in listed(ctx, program, now) if r.control.start >= page.after]
    if active_only:
        records = [r for r in records if ctx.catalog.status_at(r.control.mrid, now)[0] == ACTIVE]
    shown = page.page(records)
    builder = sep.active_der_control_list if active_only else sep.der_control_list
    href = uris.active_derc_list(program) if active_only else uris.derc_list(program)
    key = (href, page, _version(ctx, program, now))

    def render() -> etree._Element:
        return builder(
            href=href,
            all=len(records),
            results=len(shown),
            items=[control_element(ctx, r, now) for r in shown],
        )

    return ctx.cache.get(key, render)


def _control_list(request: Request, scope: Scope, program: str, *, active_only: bool) -> Response:
    ctx = context(request)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    rendered = render_control_list(
        ctx, scope.requester, program, page, scope.now, active_only=active_only
    )
    return xml_response(request, rendered)


@router.api_route(uris.DERC_LIST, methods=["GET", "HEAD"])
async def der_control_list(
    request: Request, program: str, scope: Scope = Depends(client_scope)
) -> Response:
    return _control_list(request, scope, program, active_only=False)


@router.api_route(uris.ACTIVE_DERC_LIST, methods=["GET", "HEAD"])
async def active_der_control_list(
    request: Request, program: str, scope: Scope = Depends(client_scope)
) -> Response:
    return _control_list(request, scope, program, active_only=True)


@router.api_route(uris.DERC, methods=["GET", "HEAD"])
async def der_control(
    request: Request, program: str, mrid: str, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    _program(ctx, scope, program)
    record = ctx.catalog.record(mrid)
    if record is None or record.control.program != program:
        raise NotFound("no such DERControl")
    return xml_response(request, control_element(ctx, record, scope.now))


def render_default(ctx: GatewayContext, requester: Requester, program: str) -> Rendered:
    check_program(ctx, requester, program)
    default = ctx.catalog.program(program).default
    if default is None and not ctx.settings.aus:
        raise NotFound("this DERProgram has no DefaultDERControl")
    meta = ctx.registry.programs[program]

    def render() -> etree._Element:
        # csip-aus: a program without a default still shows one, with no modes, so that a
        # client can subscribe to it before the utility sets it (docs/profiles.md).
        return sep.default_der_control(
            href=uris.default_derc(program),
            mrid=meta.default_mrid or meta.mrid,
            description=meta.default_description or None,
            items=default.items if default is not None else (),
            ramp_tms=default.ramp_tms if default is not None else None,
            curve_href=lambda curve: uris.curve(program, curve),
        )

    key = ("dderc", program, ctx.registry.version, ctx.catalog.version)
    return ctx.cache.get(key, render)


@router.api_route(uris.DEFAULT_DERC, methods=["GET", "HEAD"])
async def default_der_control(
    request: Request, program: str, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    return xml_response(request, render_default(ctx, scope.requester, program))


def _curve_element(ctx: GatewayContext, program: str, mrid: str) -> etree._Element:
    curve = ctx.catalog.program(program).curves[mrid]
    meta = ctx.registry.curves.get((program, mrid))
    return sep.der_curve(
        href=uris.curve(program, mrid),
        mrid=meta.mrid if meta else mrid.upper(),
        description=(meta.description if meta else "") or None,
        creation_time=meta.created if meta else 0,
        curve=curve,
    )


@router.api_route(uris.CURVE_LIST, methods=["GET", "HEAD"])
async def der_curve_list(
    request: Request, program: str, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    _program(ctx, scope, program)
    page = paging(
        request, default_limit=ctx.settings.default_limit, max_limit=ctx.settings.max_limit
    )
    curves = sorted(ctx.catalog.program(program).curves)
    shown = page.page(curves)

    def render() -> etree._Element:
        return sep.der_curve_list(
            href=uris.curve_list(program),
            all=len(curves),
            results=len(shown),
            items=[_curve_element(ctx, program, m) for m in shown],
        )

    key = ("dc", program, page, ctx.registry.version, ctx.catalog.version)
    return xml_response(request, ctx.cache.get(key, render))


@router.api_route(uris.CURVE, methods=["GET", "HEAD"])
async def der_curve(
    request: Request, program: str, curve: str, scope: Scope = Depends(client_scope)
) -> Response:
    ctx = context(request)
    _program(ctx, scope, program)
    if curve not in ctx.catalog.program(program).curves:
        raise NotFound("no such DERCurve")
    return xml_response(request, _curve_element(ctx, program, curve))
