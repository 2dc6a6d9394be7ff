"""Notifier benchmark: N notifications over K subscriptions to a fast local receiver.

The receiver (the "sink") is a plain ASGI app under uvicorn in a separate process, on
127.0.0.1, answering 204 to every POST and noting which notification arrived when (on
``time.monotonic``, which is the same clock in both processes on Linux). The benchmark queues
the notifications in batches (each batch one synced write, as the server does), from the same
event loop the notifier runs on, and measures:

- delivered/s: notifications the sink received per second, from the first enqueue to the last
  delivery (sustained: the whole run, not a peak);
- latency: from the enqueue call to the sink receiving it, p50 and p99;
- correctness: every notification arrives exactly once, in order within its subscription.

``--rate 0`` (the default) offers everything as fast as it can be queued, so the figure is the
notifier's capacity and the latency is mostly time spent waiting in the queue; ``--rate R``
paces the offer at R notifications/s, for the latency of a notifier that keeps up.

    python -m benchmarks.bench_notify                       # 20,000 over 500 keys, flat out
    python -m benchmarks.bench_notify --rate 1000           # the same, offered at 1,000/s
    python -m benchmarks.bench_notify --profile             # cProfile of the notifier side
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from engine.notify import Delivery, Notifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

MARK = b"<!--n:"
PADDING = b"<DERControl><mRID>" + b"0" * 32 + b"</mRID>" + b"<description>x</description>" * 12


# -- the sink (its own process) ---------------------------------------------------------------


def sink_app() -> Callable[[Scope, Callable[[], Awaitable[Message]], Any], Awaitable[None]]:
    """POST: note (id, monotonic time), answer 204. GET /tally: everything noted, as JSON."""
    received: list[tuple[str, float]] = []

    async def app(scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        for _ in range(10_000):  # bounded: a body arrives in a few chunks
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            body = json.dumps(received).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        body = b"".join(chunks)
        start = body.find(MARK) + len(MARK)
        received.append((body[start : body.find(b"-->", start)].decode(), time.monotonic()))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def run_sink() -> None:
    """Serve the sink on an ephemeral port; print the port once listening."""
    import uvicorn

    config = uvicorn.Config(
        sink_app(), host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        for _ in range(1000):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(port, flush=True)
        await task

    asyncio.run(serve())


# -- the notifier side ------------------------------------------------------------------------


def body(delivery_id: str) -> bytes:
    return MARK + delivery_id.encode() + b"-->" + b"<Notification>" + PADDING + b"</Notification>"


async def run(
    url: str, n: int, keys: int, batch: int, rate: float, concurrency: int
) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    enqueued: dict[str, float] = {}
    notifier = Notifier(directory, concurrency=concurrency)
    await notifier.start()
    started = time.monotonic()
    cpu_started = time.process_time()
    for first in range(0, n, batch):
        if rate > 0:
            await asyncio.sleep(max(0.0, started + first / rate - time.monotonic()))
        deliveries = []
        for i in range(first, min(n, first + batch)):
            key, seq = i % keys, i // keys
            delivery_id = f"{key}:{seq}"
            deliveries.append(
                Delivery(
                    id=delivery_id,
                    key=str(key),
                    uri=url,
                    body=body(delivery_id),
                    created=time.time(),
                )
            )
        now = time.monotonic()
        notifier.enqueue(deliveries)
        for delivery in deliveries:
            enqueued[delivery.id] = now
        await asyncio.sleep(0)  # let the workers run between batches, as a server would
    enqueue_done = time.monotonic()
    deadline = time.monotonic() + 300
    while notifier.stats().queued and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    stats = notifier.stats()
    cpu = time.process_time() - cpu_started
    await notifier.stop()
    shutil.rmtree(directory)
    async with httpx.AsyncClient() as client:
        received = (await client.get(url)).json()
    return {
        "started": started,
        "enqueue_s": enqueue_done - started,
        "enqueued": enqueued,
        "received": received,
        "stats": stats,
        "cpu_s": cpu,
    }


def summarize(result: dict[str, Any], n: int, keys: int) -> dict[str, Any]:
    enqueued: dict[str, float] = result["enqueued"]
    received: list[tuple[str, float]] = result["received"]
    ids = [delivery_id for delivery_id, _ in received]
    duplicates = len(ids) - len(set(ids))
    missing = len(set(enqueued) - set(ids))
    last_seq: dict[str, int] = {}
    out_of_order = 0
    for delivery_id in ids:
        key, seq = delivery_id.split(":")
        if int(seq) < last_seq.get(key, -1):
            out_of_order += 1
        last_seq[key] = int(seq)
    latencies = sorted(at - enqueued[delivery_id] for delivery_id, at in received)
    elapsed = max(at for _, at in received) - result["started"]
    return {
        "n": n,
        "keys": keys,
        "delivered": len(set(ids)),
        "seconds": elapsed,
        "per_second": len(received) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "missing": missing,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "enqueue_s": result["enqueue_s"],
        "notifier_cpu_ms": result["cpu_s"] * 1000 / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100, help="deliveries per enqueue call")
    parser.add_argument("--rate", type=float, default=0.0, help="offered/s (0: flat out)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="cProfile the notifier side")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_notify", "--sink"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        url = f"http://127.0.0.1:{int(sink.stdout.readline())}/notify"
        work = run(url, args.n, args.keys, args.batch, args.rate, args.concurrency)
        if args.profile:
            profiler = cProfile.Profile()
            result = profiler.runcall(asyncio.run, work)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        else:
            result = asyncio.run(work)
    finally:
        sink.terminate()
        sink.wait(10)
    sink_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    sink_cpu_ms = (sink_cpu.ru_utime + sink_cpu.ru_stime) * 1000 / args.n
    row = summarize(result, args.n, args.keys)
    command = "python -m benchmarks.bench_notify " + " ".join(sys.argv[1:])
    offered = f"{args.rate:,.0f}/s" if args.rate else "flat out"
    print(f"Command: `{command.strip()}`\n")
    print(
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, offered {offered}, "
        f"batches of {args.batch}, concurrency {args.concurrency}\n"
    )
    print(
        "| N | keys | delivered | s | delivered/s | p50 ms | p99 ms | missing | duplicates "
        "| out of order | notifier CPU ms/notification | sink CPU ms/notification |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {row['n']:,} | {row['keys']:,} | {row['delivered']:,} | {row['seconds']:.2f} "
        f"| {row['per_second']:,.0f} | {row['p50_ms']:,.1f} | {row['p99_ms']:,.1f} "
        f"| {row['missing']} | {row['duplicates']} | {row['out_of_order']} "
        f"| {row['notifier_cpu_ms']:.3f} | {sink_cpu_ms:.3f} |"
    )
    if row["missing"] or row["duplicates"] or row["out_of_order"]:
        sys.exit("FAILED: notifications were lost, duplicated or reordered")


if __name__ == "__main__":
    main()
