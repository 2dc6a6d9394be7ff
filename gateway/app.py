"""The device-facing 2030.5 application: every function set's routes, one error handler."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from gateway.context import GatewayContext
from gateway.errors import install_error_handlers
from gateway.fs import cp, dcap, der, derp, edev, fsa, lel, mup, rsp, sub, time
from gateway.http import fastapi_options
from gateway.views import ASGIApp, Front


def build_device_app(
    ctx: GatewayContext,
    watcher: sub.SubscriptionWatcher | None = None,
    *,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
) -> ASGIApp:
    """The routes behind the ``Front``: repeated polls answered from ``ctx.views`` when it is
    set, every request counted, timed and logged. ``wrap`` puts a layer between the two (a
    replica's ``Forward``)."""
    app = FastAPI(
        title="csipstream IEEE 2030.5 server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **fastapi_options(),
    )
    app.state.context = ctx
    app.state.watcher = watcher
    install_error_handlers(app, sep_errors=True)
    for module in (dcap, time, edev, cp, fsa, derp, der, mup, lel, rsp, sub):
        app.include_router(module.router)
    routes: ASGIApp = app if wrap is None else wrap(app)
    return Front(routes, ctx, ctx.views, listener="device")
