"""The utility's admin API: JSON over HTTP on its own listener, token-authenticated.

Every write becomes a command on the log (the same path as device writes), so the admin API
can do nothing the event log would not replay. Reads show the registry, the programs, and
what the engine decided for a device: its effective control (now, at a past instant from the
history, or projected to a future one) and the response lifecycle it expects per control.

OpenAPI documentation is served at /admin/docs. Health (/healthz, /readyz) and Prometheus
metrics (/metrics) are on this listener too, without a token.
"""

from __future__ import annotations

import hmac
import uuid
from hashlib import blake2b
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from engine.kernel import normalize_lfdi, sfdi_from_lfdi
from engine.kernel.modes import AUS_MODES, thaw
from engine.state import commands as c
from engine.state.errors import Rejected
from engine.state.registry import EndDeviceRecord
from gateway import uris
from gateway.context import GatewayContext
from gateway.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    NotServedHere,
    install_error_handlers,
)
from gateway.http import fastapi_options
from gateway.metrics import metrics_response
from gateway.views import ASGIApp, Front

PREFIX = "/admin"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ProgramBody(_Body):
    primacy: int = Field(ge=0, le=255)
    mRID: str | None = None
    description: str = ""


class DefaultBody(_Body):
    base: dict[str, Any] = Field(description="DERControlBase modes and default-only settings")
    mRID: str | None = None
    description: str = ""


class CurveBody(_Body):
    curveType: int
    points: list[list[int]]
    xMultiplier: int = 0
    yMultiplier: int = 0
    yRefType: int = 0
    description: str = ""


class ControlBody(_Body):
    program: str | None = Field(None, description="required in bulk creation")
    mRID: str | None = Field(None, description="32 hex digits; generated when absent")
    description: str = ""
    creationTime: int | None = None
    start: int
    duration: int = Field(ge=0)
    randomizeStart: int = 0
    randomizeDuration: int = 0
    responseRequired: str = "03"
    replyTo: bool = True
    deviceCategory: str | int | None = None
    base: dict[str, Any]


class BulkControls(_Body):
    controls: list[ControlBody]


class AggregatorBody(_Body):
    lfdi: str
    description: str = ""


class AuthorizationBody(_Body):
    aggregator: str | None = None
    pin: int | None = None


class ModeBody(_Body):
    mode: str


class DeviceBody(_Body):
    lfdi: str
    aggregator: str | None = None
    pin: int | None = None
    deviceCategory: int | None = None


class FsaBody(_Body):
    mRID: str | None = None
    description: str = ""
    programs: list[str]


BATCH_LIMIT = 10_000


class BatchDeviceBody(DeviceBody):
    fsas: list[FsaBody] | None = Field(None, description="replace the device's FSAs")


class DeviceBatch(_Body):
    devices: list[BatchDeviceBody] = Field(max_length=BATCH_LIMIT)


def made_up_mrid(pen: int | None, *parts: str) -> str:
    """A deterministic mRID (32 hex digits) for a resource the utility did not name. With a
    PEN (CSIP-AUS), the last 8 digits are the PEN in decimal, as CSIP-AUS asks of every mRID a
    server makes up."""
    digest = blake2b("/".join(parts).encode(), digest_size=16).hexdigest().upper()
    return digest if pen is None else f"{digest[:24]}{pen:08d}"


def _lfdi(raw: str) -> str:
    try:
        return normalize_lfdi(raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def _fsas(lfdi: str, fsas: list[FsaBody], pen: int | None) -> list[dict[str, Any]]:
    return [
        {
            "mRID": f.mRID or made_up_mrid(pen, "fsa", lfdi, str(i)),
            "description": f.description,
            "programs": f.programs,
        }
        for i, f in enumerate(fsas, 1)
    ]


def _device_json(device: EndDeviceRecord) -> dict[str, Any]:
    return {
        "lfdi": device.lfdi,
        "sfdi": device.sfdi,
        "edevId": device.edev_id,
        "href": uris.edev(device.edev_id),
        "registeredAt": device.registered_at,
        "changedTime": device.changed_time,
        "source": device.source,
        "aggregator": device.aggregator,
        "ownAggregator": device.own_aggregator,
        "deviceCategory": device.device_category,
        "pin": device.pin,
        "fsas": [
            {"mRID": f.mrid, "description": f.description, "programs": list(f.programs)}
            for f in device.fsas
        ],
    }


def build_admin_app(ctx: GatewayContext) -> ASGIApp:
    app = FastAPI(
        title="csipstream admin API",
        version="1",
        docs_url=f"{PREFIX}/docs" if ctx.settings.admin_docs else None,
        openapi_url=f"{PREFIX}/openapi.json" if ctx.settings.admin_docs else None,
        redoc_url=None,
        **fastapi_options(),
    )
    app.state.context = ctx
    install_error_handlers(app)
    pen = ctx.settings.mrid_pen  # the tail of mRIDs made up here (CSIP-AUS)

    async def authorized(request: Request) -> None:
        token = ctx.settings.admin_token
        given = request.headers.get("authorization", "")
        if not token or not hmac.compare_digest(given, f"Bearer {token}"):
            raise Forbidden("a valid admin token is required (Authorization: Bearer ...)")

    api = APIRouter(prefix=PREFIX, dependencies=[Depends(authorized)])
    backend = ctx.backend

    async def submit(command: c.Command, status: int = 200) -> JSONResponse:
        executed = await backend.submit(command)
        return JSONResponse(executed.result, status_code=status)

    # -- programs ---------------------------------------------------------------------------

    @api.get("/programs")
    async def list_programs() -> list[dict[str, Any]]:
        return [_program_json(ctx, p) for p in sorted(ctx.registry.programs)]

    @api.get("/programs/{program}")
    async def get_program(program: str) -> dict[str, Any]:
        if program not in ctx.registry.programs:
            raise NotFound(f"no program {program!r}")
        return _program_json(ctx, program, controls=True)

    @api.put("/programs/{program}")
    async def put_program(program: str, body: ProgramBody) -> JSONResponse:
        existing = ctx.registry.programs.get(program)
        mrid = body.mRID or (
            existing.mrid if existing else made_up_mrid(ctx.settings.mrid_pen, "program", program)
        )
        return await submit(c.PutProgram(program, body.primacy, mrid, body.description))

    def check_profile(base: dict[str, Any], what: str) -> None:
        """CSIP-AUS modes only under the csip-aus profile (docs/profiles.md)."""
        used = sorted(set(base) & AUS_MODES)
        if used and not ctx.settings.aus:
            raise BadRequest(f"{what}: {', '.join(used)} need the csip-aus profile")

    @api.put("/programs/{program}/default")
    async def put_default(program: str, body: DefaultBody) -> JSONResponse:
        check_profile(body.base, "DefaultDERControl")
        mrid = body.mRID or made_up_mrid(pen, "default", program)
        return await submit(c.SetDefaultControl(program, body.base, mrid, body.description))

    @api.delete("/programs/{program}/default")
    async def delete_default(program: str) -> JSONResponse:
        return await submit(c.SetDefaultControl(program, None))

    @api.put("/programs/{program}/curves/{curve}")
    async def put_curve(program: str, curve: str, body: CurveBody) -> JSONResponse:
        raw = body.model_dump(exclude={"description"})
        return await submit(c.PutCurve(program, {"mRID": curve, **raw}, body.description))

    @api.post("/programs/{program}/controls", status_code=201)
    async def create_control(program: str, body: ControlBody) -> JSONResponse:
        check_profile(body.base, "control")
        return await submit(c.CreateControls([_control(body, program)]), 201)

    @api.post("/controls", status_code=201)
    async def create_controls(body: BulkControls) -> JSONResponse:
        controls = []
        for index, control in enumerate(body.controls):
            if not control.program:
                raise BadRequest(f"control {index}: program is required")
            check_profile(control.base, f"control {index}")
            controls.append(_control(control, control.program))
        return await submit(c.CreateControls(controls), 201)

    @api.post("/programs/{program}/controls/{mrid}/cancel")
    async def cancel_control(program: str, mrid: str) -> JSONResponse:
        return await submit(c.CancelControl(program, mrid))

    # -- aggregators, authorization, registration ---------------------------------------------

    @api.get("/aggregators")
    async def list_aggregators() -> list[dict[str, Any]]:
        return [
            {"aggregator": a.id, "lfdi": a.lfdi, "description": a.description}
            for a in ctx.registry.aggregators.values()
        ]

    @api.put("/aggregators/{aggregator}")
    async def put_aggregator(aggregator: str, body: AggregatorBody) -> JSONResponse:
        lfdi = _lfdi(body.lfdi)
        return await submit(
            c.PutAggregator(aggregator, lfdi, sfdi_from_lfdi(lfdi), body.description)
        )

    @api.get("/authorizations")
    async def list_authorizations() -> list[dict[str, Any]]:
        return [
            {"lfdi": a.lfdi, "aggregator": a.aggregator, "pin": a.pin}
            for a in ctx.registry.authorizations.values()
        ]

    @api.put("/authorizations/{lfdi}")
    async def authorize(lfdi: str, body: AuthorizationBody) -> JSONResponse:
        return await submit(c.Authorize(_lfdi(lfdi), True, body.aggregator, body.pin))

    @api.delete("/authorizations/{lfdi}")
    async def deauthorize(lfdi: str) -> JSONResponse:
        return await submit(c.Authorize(_lfdi(lfdi), False))

    @api.get("/registration-mode")
    async def registration_mode() -> dict[str, str]:
        return {"mode": ctx.registry.registration_mode}

    @api.put("/registration-mode")
    async def set_registration_mode(body: ModeBody) -> JSONResponse:
        return await submit(c.SetRegistrationMode(body.mode))

    @api.put("/poll-rates")
    async def set_poll_rates(rates: dict[str, int]) -> JSONResponse:
        return await submit(c.SetPollRates(rates))

    @api.get("/poll-rates")
    async def poll_rates() -> dict[str, int]:
        return dict(ctx.registry.poll_rates)

    @api.put("/post-rates")
    async def set_post_rates(rates: dict[str, int]) -> JSONResponse:
        return await submit(c.SetPostRates(rates))

    @api.get("/post-rates")
    async def post_rates() -> dict[str, int]:
        return dict(ctx.registry.post_rates)

    @api.put("/aggregators/{aggregator}/notification-hosts")
    async def set_notification_hosts(aggregator: str, hosts: list[str]) -> JSONResponse:
        return await submit(c.SetNotificationHosts(aggregator, hosts))

    @api.get("/subscriptions")
    async def list_subscriptions() -> list[dict[str, Any]]:
        return [
            {
                "id": s.id,
                "lfdi": s.lfdi,
                "subscriber": s.subscriber,
                "resource": s.resource,
                "notificationURI": s.notification_uri,
                "limit": s.limit,
                "created": s.created,
            }
            for s in ctx.registry.subscriptions.values()
        ]

    @api.get("/dead-letters")
    async def dead_letters(limit: int = 100) -> list[dict[str, Any]]:
        if ctx.notifier is None:
            return []
        return ctx.notifier.dead_letters(limit=limit)

    @api.delete("/dead-letters/{delivery}")
    async def drop_dead_letter(delivery: str) -> Response:
        if ctx.notifier is None or not ctx.notifier.drop_dead_letter(delivery):
            raise NotFound("no such dead letter")
        return Response(status_code=204)

    @api.get("/notifications")
    async def notification_stats() -> dict[str, Any]:
        return {} if ctx.notifier is None else dict(ctx.notifier.stats())

    @api.get("/telemetry")
    async def telemetry(after: int = 0, limit: int = 1000) -> dict[str, Any]:
        """The telemetry log from sequence number ``after`` (exclusive), for data teams."""
        events = backend.reporting.telemetry(after=after, limit=min(limit, 10_000))
        if events is None:
            raise NotServedHere(
                "the Kafka runtime keeps no telemetry log here: read the csip.telemetry.* "
                "topics (topics/README.md)"
            )
        return {"events": events, "next": events[-1]["seq"] if events else after}

    # -- devices ----------------------------------------------------------------------------

    @api.get("/devices")
    async def list_devices(aggregator: str | None = None) -> list[dict[str, Any]]:
        devices = sorted(ctx.registry.devices.values(), key=lambda d: d.edev_id)
        return [_device_json(d) for d in devices if aggregator in (None, d.aggregator)]

    @api.post("/devices", status_code=201)
    async def register_device(body: DeviceBody) -> JSONResponse:
        lfdi = _lfdi(body.lfdi)
        command = c.RegisterDevice(
            lfdi=lfdi,
            sfdi=sfdi_from_lfdi(lfdi),
            source="admin",
            aggregator=body.aggregator,
            pin=body.pin,
            device_category=body.deviceCategory,
        )
        executed = await backend.submit(command)
        return JSONResponse(
            _device_json(ctx.registry.devices[lfdi]),
            status_code=201 if executed.result.get("created") else 200,
        )

    @api.post("/devices/batch")
    async def register_devices(body: DeviceBatch) -> dict[str, Any]:
        """Register many devices (and set their FSAs) in one request: each device succeeds or
        fails on its own, all accepted writes share one durable write. For fleets and
        migrations; at most 10,000 devices per request."""
        results: list[dict[str, Any]] = []
        accepted: list[tuple[dict[str, Any], BatchDeviceBody]] = []
        for item in body.devices:
            try:
                lfdi = _lfdi(item.lfdi)
            except BadRequest as exc:
                results.append({"lfdi": item.lfdi, "status": 400, "error": exc.reason})
                continue
            result: dict[str, Any] = {"lfdi": lfdi, "status": 201}
            results.append(result)
            accepted.append((result, item))
        registrations: list[c.Command] = [
            c.RegisterDevice(
                lfdi=result["lfdi"],
                sfdi=sfdi_from_lfdi(result["lfdi"]),
                source="admin",
                aggregator=item.aggregator,
                pin=item.pin,
                device_category=item.deviceCategory,
            )
            for result, item in accepted
        ]
        with_fsas: list[tuple[dict[str, Any], c.Command]] = []
        verdicts = await backend.submit_many(registrations)
        for (result, item), verdict in zip(accepted, verdicts, strict=True):
            if isinstance(verdict, Rejected):
                result.update(status=verdict.status, error=verdict.reason)
                continue
            result["status"] = 201 if verdict.result.get("created") else 200
            if item.fsas is not None:
                lfdi = result["lfdi"]
                with_fsas.append((result, c.SetDeviceFSAs(lfdi, _fsas(lfdi, item.fsas, pen))))
        verdicts = await backend.submit_many([command for _, command in with_fsas])
        for (result, _), verdict in zip(with_fsas, verdicts, strict=True):
            if isinstance(verdict, Rejected):
                result.update(status=verdict.status, error=f"FSAs refused: {verdict.reason}")
        return {"results": results}

    def _device(lfdi: str) -> EndDeviceRecord:
        device = ctx.registry.devices.get(_lfdi(lfdi))
        if device is None:
            raise NotFound(f"no end device {lfdi}")
        return device

    @api.get("/devices/{lfdi}")
    async def get_device(lfdi: str) -> dict[str, Any]:
        return _device_json(_device(lfdi))

    @api.delete("/devices/{lfdi}")
    async def delete_device(lfdi: str) -> JSONResponse:
        return await submit(c.DeleteDevice(_lfdi(lfdi)))

    @api.put("/devices/{lfdi}/fsas")
    async def set_fsas(lfdi: str, fsas: list[FsaBody]) -> JSONResponse:
        device = _device(lfdi)
        return await submit(c.SetDeviceFSAs(device.lfdi, _fsas(device.lfdi, fsas, pen)))

    @api.get("/devices/{lfdi}/effective")
    async def effective(lfdi: str, at: int | None = None) -> dict[str, Any]:
        device = _device(lfdi)
        now = backend.now()
        when = now if at is None else at
        holders = None
        if when >= now:
            try:
                holders = backend.engine.project(device.lfdi, when)
            except KeyError:  # the Kafka runtime: devices live in the workers, not here
                when = now
        if holders is not None:
            modes = {
                mode: {"value": thaw(value), "program": program, "event": event}
                for mode, (value, program, event) in holders
            }
        else:
            modes = {}
            for record in backend.effective_history(device.lfdi):
                if record["t"] > when:
                    break
                if record["value"] is None:
                    modes.pop(record["mode"], None)
                else:
                    modes[record["mode"]] = {k: record[k] for k in ("value", "program", "event")}
        return {"lfdi": device.lfdi, "at": when, "projected": when > now, "modes": modes}

    @api.get("/devices/{lfdi}/responses")
    async def responses(lfdi: str, mRID: str | None = None) -> dict[str, Any]:
        """The lifecycle the engine expects of the device, beside what it posted."""
        device = _device(lfdi)
        posted = [
            {"t": r["t"], "program": r["program"], **r["value"]}
            for r in backend.reporting.responses(device.lfdi, mRID)
        ]
        return {"expected": backend.lifecycle(device.lfdi, mRID), "posted": posted}

    @api.get("/devices/{lfdi}/telemetry")
    async def device_telemetry(lfdi: str) -> dict[str, Any]:
        """Latest DER status, settings, capability and availability, and latest readings."""
        device = _device(lfdi)
        reporting = backend.reporting
        der = {
            kind: reporting.der(device.lfdi, kind)
            for kind in ("status", "settings", "capability", "availability")
        }
        mirrors = []
        for mup in reporting.mups_of(device.lfdi):
            if mup["lfdi"] == device.lfdi:
                mirrors.append(
                    {
                        "mup": mup["id"],
                        "mRID": mup["mRID"],
                        "readings": reporting.meter_readings(mup["id"]),
                    }
                )
        events = reporting.log_events(device.lfdi)[-20:]
        return {"lfdi": device.lfdi, "der": der, "mirrors": mirrors, "logEvents": events}

    @api.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            "now": backend.now(),
            "engine": backend.engine.stats(),
            "registry": {
                "devices": len(ctx.registry.devices),
                "aggregators": len(ctx.registry.aggregators),
                "programs": len(ctx.registry.programs),
                "version": ctx.registry.version,
            },
            "renderCache": {"hits": ctx.cache.hits, "misses": ctx.cache.misses},
            "recovery": backend.recovery,
        }

    app.include_router(api)
    add_ops_routes(app, ctx)
    return Front(app, ctx, None, listener="admin")


def add_ops_routes(app: FastAPI, ctx: GatewayContext) -> None:
    """/healthz (the process is up), /readyz (recovered, serving) and /metrics (Prometheus)."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> PlainTextResponse:
        if not ctx.backend.ready:
            return PlainTextResponse("recovering\n", status_code=503)
        return PlainTextResponse("ready\n")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return metrics_response(ctx)


def build_ops_app(ctx: GatewayContext) -> ASGIApp:
    """Health, readiness and metrics only: the listener of processes without an admin API."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **fastapi_options())
    app.state.context = ctx
    add_ops_routes(app, ctx)
    return Front(app, ctx, None, listener="ops")


def _control(body: ControlBody, program: str) -> dict[str, Any]:
    raw = body.model_dump(exclude_none=True)
    raw["program"] = program
    raw["mRID"] = body.mRID or uuid.uuid4().hex.upper()
    raw["replyTo"] = True if body.replyTo else None
    return raw


def _program_json(ctx: GatewayContext, program: str, *, controls: bool = False) -> dict[str, Any]:
    meta = ctx.registry.programs[program]
    record = ctx.catalog.program(program)
    out: dict[str, Any] = {
        "program": program,
        "mRID": meta.mrid,
        "description": meta.description,
        "primacy": record.primacy,
        "href": uris.derp(program),
        "default": None if record.default is None else record.default.to_json(),
        "curves": [curve.to_json() for curve in record.curves.values()],
    }
    if controls:
        now = ctx.backend.now()
        listed = []
        for mrid in record.controls:
            control_record = ctx.catalog.record(mrid)
            if control_record is None:
                continue
            status, since = ctx.catalog.status_at(mrid, now)
            meta_c = ctx.registry.controls.get(mrid.upper())
            listed.append(
                {
                    **control_record.control.to_json(),
                    "description": meta_c.description if meta_c else "",
                    "currentStatus": status,
                    "statusSince": since,
                    "listed": control_record.control.scheduled_end > now,
                    "href": uris.derc(program, control_record.control.mrid),
                }
            )
        out["controls"] = listed
    return out
