"""The worker's HTTP endpoints: health, readiness, Prometheus metrics and JSON status (the
ASGI app itself, on a worker that has not connected to any broker)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import orjson

from engine import compiled
from engine.kernel import DefineProgram, Engine
from engine.runtime.kafka.service import _app
from engine.runtime.kafka.worker import Worker, WorkerSettings


def get(worker: Worker, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(_app(worker)({"type": "http", "path": path}, receive, send))
    return sent[0]["status"], sent[1]["body"]


def worker_with_engines() -> Worker:
    worker = Worker(WorkerSettings("127.0.0.1:1", shards=4))
    for shard in (0, 1, 3):
        worker.kernel.engines[shard] = Engine(memo=worker.kernel.memo)
        worker.kernel.engines[shard].apply(1_800_000_000, [DefineProgram("SYS", 0)])
    worker.kernel.standby = {3}
    worker.stats.shards, worker.stats.standby = (0, 1), (3,)
    return worker


def test_health_and_readiness() -> None:
    worker = worker_with_engines()
    assert get(worker, "/healthz")[0] == 200
    assert get(worker, "/readyz")[0] == 503  # not ready before it has taken its shards
    worker.ready.set()
    assert get(worker, "/readyz")[0] == 200
    assert get(worker, "/nothing")[0] == 404


def test_status_is_json_with_shard_numbers_as_keys() -> None:
    status, body = get(worker_with_engines(), "/status")
    assert status == 200
    described = orjson.loads(body)
    assert described["shards"] == [0, 1] and described["standby"] == [3]
    assert set(described["engine"]) == {"0", "1", "3"}
    assert described["kernel"] == ("compiled" if compiled.built() else "interpreted")


def test_metrics_tell_owned_from_standby_engines() -> None:
    status, body = get(worker_with_engines(), "/metrics")
    text = body.decode()
    assert status == 200
    assert "csip_worker_shards 2.0" in text
    assert "csip_worker_standby_shards 1.0" in text
    assert "csip_worker_promotions 0.0" in text and "csip_worker_held_outputs 0.0" in text
    assert 'csip_worker_engine{role="owned",shard="0",what="programs"} 1.0' in text
    assert 'csip_worker_engine{role="standby",shard="3",what="programs"} 1.0' in text
    assert f"csip_worker_kernel_compiled {1.0 if compiled.built() else 0.0}" in text


def test_metrics_count_the_heap_frozen_after_full_collections() -> None:
    worker = worker_with_engines()
    try:
        gc.collect()
        assert worker.heap.step()  # the worker's loop calls it after each step
        text = get(worker, "/metrics")[1].decode()
        assert "csip_worker_heap_freezes 1.0" in text
        (line,) = [x for x in text.splitlines() if x.startswith("csip_worker_heap_frozen_objects ")]
        frozen = float(line.split()[1])
        assert frozen > 1000  # this process's whole heap, at least the modules it imported
        # Memory itself: the process's resident size (the frozen count only grows).
        (rss,) = [x for x in text.splitlines() if x.startswith("process_resident_memory_bytes ")]
        assert float(rss.split()[1]) > 10 * 2**20
    finally:
        gc.unfreeze()
