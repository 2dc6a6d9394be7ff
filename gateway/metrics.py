"""Prometheus metrics of a gateway process, on its own registry (tests may build several)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

if TYPE_CHECKING:
    from gateway.context import GatewayContext


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "csip_http_requests_total",
            "HTTP requests served, by listener, method, route and status.",
            ["listener", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "csip_http_request_seconds",
            "HTTP request latency, by listener and route.",
            ["listener", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.engine = Gauge(
            "csip_engine",
            "Engine sizes (devices, cohorts, controls, timers ...).",
            ["what"],
            registry=self.registry,
        )
        self.cache = Gauge(
            "csip_render_cache", "Render cache hits and misses.", ["what"], registry=self.registry
        )


METRICS = Metrics()


def metrics_response(ctx: GatewayContext) -> Response:
    for what, value in ctx.backend.engine.stats().items():
        METRICS.engine.labels(what).set(value)
    METRICS.cache.labels("hits").set(ctx.cache.hits)
    METRICS.cache.labels("misses").set(ctx.cache.misses)
    return Response(generate_latest(METRICS.registry), media_type=CONTENT_TYPE_LATEST)


def install_request_metrics(app: FastAPI, listener: str) -> None:
    """Count and time every request, and log it (one structured line per request)."""
    import logging

    access = logging.getLogger("csip.access")

    class Measure(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            started = time.perf_counter()
            response = await call_next(request)
            elapsed = time.perf_counter() - started
            route = request.scope.get("route")
            name = getattr(route, "path", "unmatched")
            METRICS.requests.labels(listener, request.method, name, str(response.status_code)).inc()
            METRICS.latency.labels(listener, name).observe(elapsed)
            access.info(
                "request",
                extra={
                    "listener": listener,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "ms": round(elapsed * 1000, 2),
                    "lfdi": getattr(request.state, "lfdi", None),
                },
            )
            return response

    app.add_middleware(Measure)
