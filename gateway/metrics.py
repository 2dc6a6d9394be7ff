"""Prometheus metrics of a gateway process, on its own registry (tests may build several)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine import compiled

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
        self.kernel = Gauge(
            "csip_kernel_compiled",
            "1 if the kernel and registry run compiled (engine/compiled.py), 0 if from source.",
            registry=self.registry,
        )
        self.cache = Gauge(
            "csip_render_cache", "Render cache hits and misses.", ["what"], registry=self.registry
        )
        self.views = Gauge(
            "csip_view_cache",
            "Polls answered from the view cache (hits), rendered (misses), entries found stale, "
            "and entries held.",
            ["what"],
            registry=self.registry,
        )


METRICS = Metrics()


def metrics_response(ctx: GatewayContext) -> Response:
    for what, value in ctx.backend.engine.stats().items():
        METRICS.engine.labels(what).set(value)
    METRICS.kernel.set(compiled.kernel() == "compiled")
    METRICS.cache.labels("hits").set(ctx.cache.hits)
    METRICS.cache.labels("misses").set(ctx.cache.misses)
    if ctx.views is not None:
        METRICS.views.labels("hits").set(ctx.views.hits)
        METRICS.views.labels("misses").set(ctx.views.misses)
        METRICS.views.labels("stale").set(ctx.views.stale)
        METRICS.views.labels("entries").set(len(ctx.views))
    return Response(generate_latest(METRICS.registry), media_type=CONTENT_TYPE_LATEST)
