"""A load generator for the 2030.5 listener: keep-alive HTTPS with a client certificate per
connection, fast enough that the server, not the client, is what a benchmark measures.

Theory of operation. A Python HTTP client library (httpx, aiohttp) spends 200-500 µs of CPU per
request, so it tops out at 2-5k requests/s per core and cannot measure a 10k/s server. This
one does as little per request as Python allows:

- uvloop, and one ``asyncio.Protocol`` per connection (no streams, no tasks per request);
- each connection's requests are built into bytes once, before the run;
- responses are parsed by ``httptools`` (llhttp, in C); only ``on_message_complete`` is
  implemented, so the parser calls back into Python once per response;
- latencies go into a flat ``array`` of floats; percentiles are computed after the run.

Three modes, each bounded by ``warmup + duration`` seconds:

- ``closed``: C connections, each sending its next request when the previous answer arrives
  (the server's capacity at concurrency C);
- ``open``: a target rate spread evenly over C connections; connection c's k-th request is
  *scheduled* at ``t0 + (c + k * C) / rate`` and its latency runs from that instant, not from
  when it could be sent, so a slow server's queueing shows in the latency instead of silently
  lowering the offered load (coordinated omission). Requests that were due in the window but
  unanswered at its end count with their latency so far (a lower bound);
- ``handshake``: C concurrent loops of connect, full TLS handshake (no session resumption),
  optionally one request with ``Connection: close``, close; counts handshakes per second.

Only what completes inside the measured window (after the warm-up) counts. ``--processes P``
runs P generator processes (connections and rate split between them) that start together and
whose results are merged, to use more than one core.

The plan (JSON) says where to connect and, per connection, which certificate to present and
which requests to send in turn::

    {"host": "127.0.0.1", "port": 8443, "ca": "ca.pem",
     "connections": [{"cert": "d1.pem", "key": "d1.key",
                      "requests": [{"method": "GET", "path": "/derp/p/derc",
                                    "headers": {"If-None-Match": "\\"ab\\""}, "body": null}]}]}

    python -m benchmarks.loadgen --plan plan.json --mode closed --connections 64 --duration 10
    python -m benchmarks.loadgen --plan plan.json --mode open --rate 5000 --processes 2
    python -m benchmarks.loadgen --plan plan.json --mode handshake \\
        --cipher ECDHE-ECDSA-AES128-CCM8

Progress goes to stdout as JSON lines: ``{"event": "start", ...}`` when every connection is
up and the clock starts (warm-up first), then ``{"event": "result", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import multiprocessing
import ssl
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import httptools

Mode = Literal["closed", "open", "handshake"]
DRAIN_S = 2.0  # after the window: how long answers to requests in flight are awaited
CONNECT_TIMEOUT_S = 10.0
CONNECT_BATCH = 16  # connections set up concurrently before a run


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestSpec:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass(frozen=True)
class ConnectionSpec:
    cert: str
    key: str
    requests: tuple[RequestSpec, ...]


@dataclass(frozen=True)
class Plan:
    host: str
    port: int
    ca: str
    connections: tuple[ConnectionSpec, ...]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Plan:
        return cls(
            host=raw["host"],
            port=int(raw["port"]),
            ca=raw["ca"],
            connections=tuple(
                ConnectionSpec(
                    cert=c["cert"],
                    key=c["key"],
                    requests=tuple(RequestSpec(**r) for r in c.get("requests", ())),
                )
                for c in raw["connections"]
            ),
        )

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls.from_json(json.loads(path.read_text()))


def request_bytes(spec: RequestSpec, host: str, port: int, *, close: bool = False) -> bytes:
    """One HTTP/1.1 request, ready to write."""
    body = spec.body.encode() if spec.body is not None else b""
    lines = [f"{spec.method} {spec.path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in spec.headers.items()]
    if body or spec.method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def client_context(ca: str, cert: str, key: str, cipher: str | None) -> ssl.SSLContext:
    """mTLS as a device does it; ``cipher`` pins TLS 1.2 and that one suite."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=ca)
    context.load_cert_chain(cert, key)
    if cipher:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cipher)
    return context


# -- one generator process --------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What one generator process runs: its share of the connections (with their global
    index, which places them in the open-loop schedule) and of nothing else."""

    plan: Plan
    mode: Mode
    indexes: tuple[int, ...]
    total_connections: int
    rate: float
    duration: float
    warmup: float
    cipher: str | None = None
    handshake_request: bool = False


@dataclass
class Window:
    """The run's clock, on ``time.perf_counter``: warm-up from ``t0``, then the window."""

    t0: float
    measure_from: float
    end: float

    @classmethod
    def starting_now(cls, warmup: float, duration: float) -> Window:
        t0 = time.perf_counter()
        return cls(t0, t0 + warmup, t0 + warmup + duration)

    def counts(self, finished: float) -> bool:
        return self.measure_from <= finished <= self.end


@dataclass
class Tally:
    """What one process saw in the window: mergeable by concatenation and addition."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    late_at_end: int = 0  # open loop: due in the window, unanswered at its end
    cpu_s: float = 0.0

    def merge(self, other: Tally) -> None:
        self.latencies.extend(other.latencies)
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.completed += other.completed
        self.late_at_end += other.late_at_end
        self.cpu_s += other.cpu_s


class CpuClock:
    """This process's CPU time over the measured window (the warm-up is left out)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, window: Window) -> None:
        self.started: float | None = None
        loop.call_later(window.measure_from - time.perf_counter(), self._start)

    def _start(self) -> None:
        self.started = time.process_time()

    def stop(self) -> float:
        return 0.0 if self.started is None else time.process_time() - self.started


class Connection(asyncio.Protocol):
    """One keep-alive connection with one request in flight at a time.

    ``origin`` is where the in-flight request's latency starts: when it was written (closed
    loop) or when it was scheduled (open loop).
    """

    def __init__(
        self, load: Load, requests: Sequence[bytes], index: int, context: ssl.SSLContext
    ) -> None:
        self.load = load
        self.requests = requests
        self.index = index
        self.context = context
        self.next_request = 0
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.origin = 0.0
        self.busy = False
        self.scheduled = 0  # open loop: how many requests of this connection were scheduled
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.parser = httptools.HttpResponseParser(self)  # a fresh one after a reconnect
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.load.tally.errors["parse"] += 1
            self.drop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed during setup"))
        self.load.lost(self)

    # httptools

    def on_message_complete(self) -> None:
        finished = time.perf_counter()
        self.busy = False
        self.load.answered(self, self.parser.get_status_code(), finished)

    # sending

    def send(self, origin: float) -> None:
        if self.transport is None:
            return
        self.origin = origin
        self.busy = True
        self.transport.write(self.requests[self.next_request])
        self.next_request = (self.next_request + 1) % len(self.requests)

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Load:
    """Closed- or open-loop load over keep-alive connections."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.tally = Tally()
        self.connections: list[Connection] = []
        self.window: Window | None = None
        self.running = False
        self.loop = asyncio.get_running_loop()
        self._reconnecting: set[asyncio.Task[None]] = set()
        # open loop: one connection's requests are this far apart
        self.period = spec.total_connections / spec.rate if spec.mode == "open" else 0.0

    async def connect(self) -> None:
        """Every connection up (``CONNECT_BATCH`` handshakes at a time) before the clock."""
        plan = self.spec.plan
        pending = []
        for index in self.spec.indexes:
            identity = plan.connections[index % len(plan.connections)]
            requests = [request_bytes(r, plan.host, plan.port) for r in identity.requests]
            context = client_context(plan.ca, identity.cert, identity.key, self.spec.cipher)
            pending.append(Connection(self, requests, index, context))
        for start in range(0, len(pending), CONNECT_BATCH):
            batch = pending[start : start + CONNECT_BATCH]
            await asyncio.gather(*(self.open(connection) for connection in batch))
            self.connections.extend(batch)

    async def open(self, connection: Connection) -> None:
        plan = self.spec.plan
        await asyncio.wait_for(
            self.loop.create_connection(
                lambda: connection, plan.host, plan.port, ssl=connection.context
            ),
            CONNECT_TIMEOUT_S,
        )

    async def run(self) -> None:
        self.window = window = Window.starting_now(self.spec.warmup, self.spec.duration)
        self.running = True
        cpu = CpuClock(self.loop, window)
        for connection in self.connections:
            if self.spec.mode == "closed":
                connection.send(time.perf_counter())
            else:
                self.schedule(connection)
        await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
        self.running = False
        self.tally.cpu_s = cpu.stop()
        if self.spec.mode == "open":
            self.count_late(window)
        # Answers to requests in flight are read (not counted) so connections close cleanly.
        drain_until = time.perf_counter() + DRAIN_S
        while any(c.busy for c in self.connections) and time.perf_counter() < drain_until:
            await asyncio.sleep(0.01)
        for connection in self.connections:
            connection.drop()

    def schedule(self, connection: Connection) -> None:
        """Open loop: send the connection's next scheduled request, now if it is late."""
        assert self.window is not None
        due = (
            self.window.t0
            + (connection.index + connection.scheduled * self.spec.total_connections)
            / self.spec.rate
        )
        if due >= self.window.end:
            return
        connection.scheduled += 1
        delay = due - time.perf_counter()
        if delay <= 0:
            connection.send(due)
        else:
            self.loop.call_later(delay, self._send_if_running, connection, due)

    def _send_if_running(self, connection: Connection, due: float) -> None:
        if self.running:
            connection.send(due)

    def answered(self, connection: Connection, status: int, finished: float) -> None:
        window = self.window
        if window is not None and window.counts(finished):
            self.tally.completed += 1
            self.tally.statuses[status] += 1
            self.tally.latencies.append(finished - connection.origin)
        if not self.running:
            return
        if self.spec.mode == "closed":
            connection.send(time.perf_counter())
        else:
            self.schedule(connection)

    def count_late(self, window: Window) -> None:
        """Open loop: requests due in the window but not answered by its end count with the
        latency they had reached (a lower bound), so saturation shows in the percentiles."""
        for connection in self.connections:
            late: list[float] = []
            if connection.busy:
                late.append(connection.origin)
            # scheduled but never sent: the connection was still waiting for an answer
            k = connection.scheduled
            while True:
                due = (
                    window.t0
                    + (connection.index + k * self.spec.total_connections) / self.spec.rate
                )
                if due >= window.end:
                    break
                late.append(due)
                k += 1
            for due in late:
                if due >= window.measure_from:
                    self.tally.late_at_end += 1
                    self.tally.latencies.append(window.end - due)

    def lost(self, connection: Connection) -> None:
        """The server closed a connection during the run: count it, then connect again (the
        request in flight is lost, and counted only as this error)."""
        if self.window is None:  # before the run: e.g. the server refused the certificate
            self.tally.errors["connection lost before the run"] += 1
            return
        if not self.running:
            return
        self.tally.errors["connection lost"] += 1
        connection.busy = False
        task = self.loop.create_task(self._reconnect(connection))
        self._reconnecting.add(task)
        task.add_done_callback(self._reconnecting.discard)

    async def _reconnect(self, connection: Connection) -> None:
        try:
            await self.open(connection)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self.tally.errors[f"reconnect: {type(exc).__name__}"] += 1
            return
        if not self.running:
            return
        if self.spec.mode == "closed":
            connection.send(time.perf_counter())
        else:
            self.schedule(connection)


class HandshakeProbe(asyncio.Protocol):
    """One short-lived connection: handshake done at ``connection_made``, then maybe one
    request with ``Connection: close``."""

    def __init__(self, request: bytes | None) -> None:
        self.request = request
        self.parser = httptools.HttpResponseParser(self)
        self.handshaken = 0.0
        self.status = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handshaken = time.perf_counter()
        if self.request is None:
            self.done.set_result(None)
        else:
            cast(asyncio.Transport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.done.done():
                self.done.set_exception(exc)

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed before the answer"))


async def handshakes(spec: WorkerSpec, on_start: Callable[[], None]) -> Tally:
    """``len(spec.indexes)`` loops of connect-handshake-(request)-close until the end."""
    plan = spec.plan
    loop = asyncio.get_running_loop()
    contexts = []
    requests: list[bytes | None] = []
    for index in spec.indexes:
        identity = plan.connections[index % len(plan.connections)]
        contexts.append(client_context(plan.ca, identity.cert, identity.key, spec.cipher))
        request = identity.requests[0] if identity.requests and spec.handshake_request else None
        requests.append(
            None if request is None else request_bytes(request, plan.host, plan.port, close=True)
        )
    tally = Tally()
    on_start()
    window = Window.starting_now(spec.warmup, spec.duration)
    cpu = CpuClock(loop, window)

    async def one_slot(context: ssl.SSLContext, request: bytes | None) -> None:
        while (started := time.perf_counter()) < window.end:
            try:
                transport, probe = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: HandshakeProbe(request), plan.host, plan.port, ssl=context
                    ),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                tally.errors[f"connect: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.01)
                continue
            try:
                await asyncio.wait_for(probe.done, CONNECT_TIMEOUT_S)
            except (OSError, httptools.HttpParserError, TimeoutError) as exc:
                tally.errors[f"request: {type(exc).__name__}"] += 1
            transport.close()
            if window.counts(time.perf_counter()):
                tally.completed += 1
                tally.statuses[probe.status] += 1
                tally.latencies.append(probe.handshaken - started)

    await asyncio.gather(*(one_slot(c, r) for c, r in zip(contexts, requests, strict=True)))
    tally.cpu_s = cpu.stop()
    return tally


async def run_worker(spec: WorkerSpec, on_ready: Callable[[], None]) -> Tally:
    """Run one process's share; ``on_ready`` is called once connected (it may block until
    every process is ready) and the clock starts when it returns."""
    if spec.mode == "handshake":
        return await handshakes(spec, on_ready)
    load = Load(spec)
    try:
        await load.connect()
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        load.tally.errors[f"connect: {type(exc).__name__}: {exc}"] += 1
        return load.tally
    on_ready()
    # The generator's own cyclic garbage collections stall every connection at once: against a
    # trivial server at 5,000 requests/s open loop they put 21 ms on p99 (8 ms without). The
    # run is bounded and what it allocates is freed by reference counting: no collections
    # while it is measured.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        await load.run()
    finally:
        gc.enable()
        gc.unfreeze()
    return load.tally


def _event_loop_run(spec: WorkerSpec, on_ready: Callable[[], None]) -> Tally:
    try:
        import uvloop
    except ImportError:  # plain asyncio works, only slower
        return asyncio.run(run_worker(spec, on_ready))
    return uvloop.run(run_worker(spec, on_ready))


def _child(spec: WorkerSpec, barrier: Any, results: Any) -> None:
    tally = _event_loop_run(spec, lambda: barrier.wait(60))
    results.put(tally)


# -- several processes, one result ------------------------------------------------------------


def percentiles(latencies: Sequence[float]) -> dict[str, float | None]:
    """Nearest-rank percentiles in milliseconds (numpy sorts when installed)."""
    n = len(latencies)
    if n == 0:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None}
    ordered: Sequence[float]
    try:
        import numpy
    except ImportError:
        ordered = sorted(latencies)
    else:
        ordered = numpy.sort(numpy.asarray(latencies, dtype=float))  # type: ignore[assignment]

    def at(q: float) -> float:
        return round(float(ordered[max(0, math.ceil(q * n) - 1)]) * 1000, 3)

    return {
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": at(1.0),
    }


@dataclass(frozen=True)
class LoadOptions:
    mode: Mode
    connections: int
    duration: float
    warmup: float
    rate: float = 0.0
    processes: int = 1
    cipher: str | None = None
    handshake_request: bool = False


def split(options: LoadOptions, plan: Plan) -> list[WorkerSpec]:
    """Connection indexes dealt round-robin to the processes (each gets its share of rate)."""
    shares = [
        tuple(range(p, options.connections, options.processes)) for p in range(options.processes)
    ]
    return [
        WorkerSpec(
            plan=plan,
            mode=options.mode,
            indexes=indexes,
            total_connections=options.connections,
            rate=options.rate,
            duration=options.duration,
            warmup=options.warmup,
            cipher=options.cipher,
            handshake_request=options.handshake_request,
        )
        for indexes in shares
        if indexes
    ]


def generate(plan: Plan, options: LoadOptions, on_start: Callable[[], None]) -> dict[str, Any]:
    """Run the load (in ``options.processes`` processes) and return the merged result."""
    if options.mode == "open" and options.rate <= 0:
        raise ValueError("open loop needs a rate")
    if not plan.connections:
        raise ValueError("the plan has no connections")
    specs = split(options, plan)
    tally = Tally()
    if len(specs) == 1:
        tally = _event_loop_run(specs[0], on_start)
    else:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(len(specs) + 1)
        results = context.Queue()
        children = [
            context.Process(target=_child, args=(spec, barrier, results), daemon=True)
            for spec in specs
        ]
        for child in children:
            child.start()
        barrier.wait(120)
        on_start()
        limit = options.warmup + options.duration + DRAIN_S + 60
        for _ in children:
            tally.merge(results.get(timeout=limit))
        for child in children:
            child.join(10)
    return summarize(tally, options, plan)


def summarize(tally: Tally, options: LoadOptions, plan: Plan) -> dict[str, Any]:
    return {
        **asdict(options),
        "identities_distinct": min(options.connections, len(plan.connections)),
        "completed": tally.completed,
        "throughput": round(tally.completed / options.duration, 1),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "late_at_end": tally.late_at_end,
        **percentiles(tally.latencies),
        "loadgen_cpu_s": round(tally.cpu_s, 2),
    }


# -- a trivial TLS server: the generator's own ceiling ----------------------------------------


class FixedResponse(asyncio.Protocol):
    """Answers every request with the same bytes (parsed with httptools, as a server would)."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.abort()

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(self.response)


async def serve_fixed(
    context: ssl.SSLContext, host: str, port: int, ready: Callable[[int], None]
) -> None:
    """Serve ``FixedResponse`` (a 304 with an ETag) until cancelled."""
    response = b'HTTP/1.1 304 Not Modified\r\nETag: "0123456789abcdef"\r\n\r\n'
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FixedResponse(response), host, port, ssl=context)
    ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


# -- command line -----------------------------------------------------------------------------


def _print_event(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--mode", choices=("closed", "open", "handshake"), default="closed")
    parser.add_argument("--connections", type=int, default=64, help="or handshake loops")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests/s")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds, not measured")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--cipher", help="TLS 1.2 with this suite, e.g. ECDHE-ECDSA-AES128-CCM8")
    parser.add_argument(
        "--handshake-request",
        action="store_true",
        help="handshake mode: send the connection's first request before closing",
    )
    args = parser.parse_args(argv)
    plan = Plan.load(args.plan)
    options = LoadOptions(
        mode=args.mode,
        connections=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        rate=args.rate,
        processes=args.processes,
        cipher=args.cipher,
        handshake_request=args.handshake_request,
    )
    result = generate(
        plan,
        options,
        lambda: _print_event("start", warmup=options.warmup, duration=options.duration),
    )
    _print_event("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
