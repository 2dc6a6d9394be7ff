"""Running a worker as a service: signals, health, readiness and Prometheus metrics.

``/healthz`` answers while the process runs; ``/readyz`` once the worker holds its shards and
has caught up with the command log it had seen at start; ``/metrics`` exposes the worker's
position, lag behind what it has read, shards and engine sizes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.runtime.kafka.worker import Worker, WorkerSettings

log = logging.getLogger("csip.worker")


def _metrics(worker: Worker) -> bytes:
    registry = CollectorRegistry()
    position = Gauge("csip_worker_position", "Next csip.commands offset.", registry=registry)
    position.set(worker.stats.position)
    applied = Gauge("csip_worker_applied", "Commands applied.", registry=registry)
    applied.set(worker.stats.applied)
    rejected = Gauge("csip_worker_rejected", "Commands skipped as refused.", registry=registry)
    rejected.set(worker.stats.rejected)
    published = Gauge("csip_worker_published", "Output records published.", registry=registry)
    published.set(worker.stats.published)
    shards = Gauge("csip_worker_shards", "Shards owned.", registry=registry)
    shards.set(len(worker.stats.shards))
    engine = Gauge(
        "csip_worker_engine", "Engine sizes by shard.", ["shard", "what"], registry=registry
    )
    for shard, kernel in worker.kernel.engines.items():
        for what, value in kernel.stats().items():
            engine.labels(str(shard), what).set(value)
    return generate_latest(registry)


def _app(worker: Worker) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        status, body, kind = 404, b"not found\n", b"text/plain"
        if path == "/healthz":
            status, body = 200, b"ok\n"
        elif path == "/readyz":
            ready = worker.ready.is_set()
            status, body = (200, b"ready\n") if ready else (503, b"joining\n")
        elif path == "/metrics":
            status, body, kind = 200, _metrics(worker), CONTENT_TYPE_LATEST.encode()
        elif path == "/status":
            status, body, kind = 200, orjson.dumps(worker.describe()), b"application/json"
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def serve_worker(settings: WorkerSettings, *, host: str, metrics_port: int) -> None:
    from gateway.tls import make_server, no_signal_capture  # plain HTTP here

    worker = Worker(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = make_server(
        _app(worker),
        host=host,
        port=metrics_port,
        ssl_context=None,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server.capture_signals = no_signal_capture  # type: ignore[method-assign]
    http = asyncio.create_task(server.serve())
    log.info("worker starting", extra={"broker": settings.broker, "prefix": settings.prefix})
    try:
        await worker.run(stop)
    finally:
        server.should_exit = True
        await http
        log.info("worker stopped", extra=worker.describe())
