"""Running a worker as a service: signals, health, readiness and Prometheus metrics.

``/healthz`` answers while the process runs; ``/readyz`` once the worker has taken the shards
the group gave it; ``/metrics`` exposes the worker's position, what it applied and published,
the shards it owns and keeps warm (standby), rebuilds and take-overs, the outputs it holds back
for standby shards, and engine sizes by shard and role; ``/status`` the same as JSON.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine import compiled
from engine.runtime.kafka.worker import Worker, WorkerSettings

log = logging.getLogger("csip.worker")


# A worker's plain gauges: (name, help, value of the worker). deploy/alerts.yml names some.
GAUGES: tuple[tuple[str, str, Callable[[Worker], float]], ...] = (
    ("csip_worker_applied", "Commands applied.", lambda w: w.stats.applied),
    ("csip_worker_rejected", "Commands skipped as refused.", lambda w: w.stats.rejected),
    ("csip_worker_published", "Output records published.", lambda w: w.stats.published),
    ("csip_worker_shards", "Shards owned.", lambda w: len(w.stats.shards)),
    ("csip_worker_standby_shards", "Shards kept warm.", lambda w: len(w.stats.standby)),
    (
        "csip_worker_rebuilds",
        "Times shards were rebuilt from the log.",
        lambda w: w.stats.rebuilds,
    ),
    (
        "csip_worker_promotions",
        "Standby shards taken over warm.",
        lambda w: w.stats.promotions,
    ),
    (
        "csip_worker_warmups",
        "Times this worker asked for the shards it had warmed up (built beside their owners).",
        lambda w: w.stats.warmups,
    ),
    (
        "csip_worker_warming_shards",
        "Shards this worker is to own once it has built them and caught up with the log.",
        lambda w: len(w.warming_shards()),
    ),
    (
        "csip_worker_kernel_compiled",
        "1 if the fold's hot modules run compiled (engine/compiled.py), 0 if from source.",
        lambda w: compiled.kernel() == "compiled",
    ),
    (
        "csip_worker_held_outputs",
        "Outputs of standby shards held back until their owner has published them.",
        lambda w: w.held_outputs(),
    ),
    (
        "csip_worker_unsure_shards",
        "Standby shards that would need a rebuild if taken over now.",
        lambda w: len(w.unsure_shards()),
    ),
    (
        "csip_worker_heap_frozen_objects",
        "Objects moved out of the garbage collector's passes by freezes, summed (those freed "
        "since are not subtracted; engine/runtime/heap.py).",
        lambda w: w.heap.frozen(),
    ),
    (
        "csip_worker_heap_freezes",
        "Times what survived a full garbage collection was frozen.",
        lambda w: w.heap.freezes,
    ),
)


def _metrics(worker: Worker) -> bytes:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU seconds, ...
    position = Gauge("csip_worker_position", "Next csip.commands offset.", registry=registry)
    position.set(worker.stats.position)
    end = worker.log_end()
    if end is not None:  # known once a fetch answered (Tansu reports 0: left out then)
        log_end = Gauge(
            "csip_worker_log_end",
            "csip.commands end offset as last fetched: the lag is this minus the position.",
            registry=registry,
        )
        log_end.set(end)
    for name, description, read in GAUGES:
        Gauge(name, description, registry=registry).set(read(worker))
    engine = Gauge(
        "csip_worker_engine",
        "Engine sizes by shard and role (owned, standby).",
        ["shard", "role", "what"],
        registry=registry,
    )
    for shard, kernel in worker.kernel.engines.items():
        role = "standby" if shard in worker.kernel.standby else "owned"
        for what, value in kernel.stats().items():
            engine.labels(str(shard), role, what).set(value)
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
            described = orjson.dumps(worker.describe(), option=orjson.OPT_NON_STR_KEYS)
            status, body, kind = 200, described, b"application/json"
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
    log.info(
        "worker starting",
        extra={"broker": settings.broker, "prefix": settings.prefix, "kernel": compiled.kernel()},
    )
    try:
        await worker.run(stop)
    finally:
        server.should_exit = True
        await http
        log.info("worker stopped", extra={"worker": worker.describe()})
