"""Kafka runtime benchmark: ``csip worker`` processes on a local Tansu broker.

Each (N, W) configuration runs in its own process, with its own Tansu broker (memory storage,
127.0.0.1, a free port) and a fresh topic prefix (``ensure_topics``, 12 shards). W ``csip
worker`` processes start on the empty log (event clock, group ``<prefix>workers``) and hold
their shards before anything else is sent. Progress is read from the workers' marker records on
``csip.effective-control`` (as ``engine/runtime/kafka/replay.py`` does; end offsets are not
reliable on Tansu). Then:

- **setup**: the fleet of ``bench_kernel`` as ``ApplyInputs`` commands: programs and a system
  default; 1,000 program sets of 5-7 programs with ``--scheduled`` (24) controls scheduled on
  each feeder, in commands of 1,000 controls; then N ``SetMembership`` (N/1,000 devices per
  set) in commands of 1,000 devices. A device with 24 scheduled controls costs 25 records out (its
  effective control and 24 "received" lifecycles), so setup is also a bulk-output figure.
- **input events/s per worker**: a stream of device-level input events, each its own command
  (one ``SetMembership`` record on ``csip.commands``), all at one instant (a burst), timed from
  the first send until the workers' markers say they applied the last one. Every worker folds
  every command (it resolves only the devices it owns), so the rate is per worker. Two streams:
  *enrolments* (a device joins or leaves a program without controls: the input path alone, no
  record out) and *feeder moves* (a device moves to the next program set, so to another feeder:
  24 lifecycle records "no longer applicable" for the old feeder's controls and 24 "received"
  for the new one's). Each stops at ``--events`` or after ``--phase-seconds``; "CPU ms/event"
  is each worker's own CPU (from /proc) per event.
- **effective-control records/s out**: one system-wide control (``opModExpLimW`` = 0, starting
  at once) reaching all N devices, from sending it until all N effective-control records (one
  per device) were read back. Per worker: the records of its shards over the time its last one
  arrived. The workers also publish 2 lifecycle records per device (received, started); "all
  out/s" counts every record they published (their ``/metrics``).
- **control-to-effective latency**: ``--controls`` feeder-level controls (N/1,000 devices each),
  ``--rate`` per second, each starting at once: for every affected device, the time from sending
  the control to reading its effective-control record; p50 and p99.

Group sessions and flow control: a worker folds and publishes a whole fetch without yielding to
its event loop, so its group heartbeats stop for that long. Setup and the input stream are
therefore sent in chunks, at most two ahead of the slowest worker's markers, each sized to
``--step`` seconds of worker CPU at the cost per command seen so far; the event streams start
at one worker step of commands, so a worker that keeps up is not held back (``paced``). The
system control is one command and cannot be paced, so workers run with a
``--session-timeout-ms`` of 10 s when alone (a lone worker whose session lapses re-joins with the
same shards) and ``--session-timeout-ms-multi`` of 40 s when W >= 2 (Tansu makes a join take
half of it: "join_s" in the JSON; with 2 s the group fell apart under load: lapsed sessions,
rebalances, and rebuilds from the log that lapsed more sessions). "group incidents" counts lapsed
sessions and rebalances in the workers' logs; it should be 0.

Tansu answers a fetch only when its wait (``fetch_max_wait_ms``) runs out if nothing was there
when the fetch arrived: about 200 ms with aiokafka's default 500 ms (measured), 5-10 ms with
10 ms. The bench and the workers' log consumers read with 20 ms (Apache Kafka answers a waiting
fetch as soon as a record arrives; on Tansu an idle worker's fetches cost it about 5% of a
core).

The machine is shared, so each configuration also records its load ("load" in the JSON, the
last two columns of the table): the load average at start and end, the cores kept busy by
processes other than the bench's own (workers, broker, the bench) over the run, from
/proc/stat, and the machine's speed at start and end (``probe_speed``: µs for a fixed piece of
pure-Python work; this machine's CPU drifts by up to 2x between runs, and the workers' CPU per
event with it). A configuration that fails is reported (with the end of each log) and the others
still run; every broker and worker is stopped and the temporary directory removed on the way
out, on errors and on SIGTERM too.

``--profile`` instead runs one in-process ``Worker`` (owning all 12 shards) under cProfile, for
the two event streams and then for the system control, and prints where the time goes.

    python -m benchmarks.bench_kafka                                  # 10k, 100k x 1, 2 workers
    python -m benchmarks.bench_kafka --sizes 10000 --workers 1
    python -m benchmarks.bench_kafka --profile --sizes 10000 --events 300
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import copy
import cProfile
import io
import itertools
import json
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks import cpu_jitter
from benchmarks.bench_kernel import SETS, T0, control, lfdi, program_sets
from engine.kernel import DefaultControl, DefineProgram, SetDefault, SetMembership
from engine.kernel.codec import input_to_json
from engine.runtime.kafka.admin import ensure_topics
from engine.runtime.kafka.worker import STEP_RECORDS
from tests.kafka.broker_fixtures import Broker
from topics import catalog

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 12
CONTROLS_PER_COMMAND = 1000
DEVICES_PER_COMMAND = 1000
MAX_CHUNK = 4000  # commands sent ahead at once (a worker folds at most STEP_RECORDS a step)
SETUP_TIMEOUT = 900.0
PHASE_TIMEOUT = 300.0
T_EVENTS = T0 + 10  # the input events (all at one instant: a burst)
T_SYSTEM = T0 + 60  # the system-wide control (900 s long)
T_FEEDERS = T0 + 120  # the feeder controls, one second apart (600 s long)
TICK = os.sysconf("SC_CLK_TCK")
SYSTEM_BASE = {"opModExpLimW": {"value": 0, "multiplier": 0}}
OPTIONAL = "OPTIN"  # a program without controls: enrolling in it changes no control


# -- the workload -----------------------------------------------------------------------------


def chunks(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def command(t: int, inputs: list[dict[str, Any]]) -> bytes:
    """A csip.commands record: an ``ApplyInputs`` of kernel inputs at instant ``t``."""
    body = {"kind": "apply_inputs", "inputs": inputs}
    return orjson.dumps({"v": 1, "id": uuid.uuid4().hex, "t": t, "command": body})


def catalog_commands(scheduled: int) -> list[bytes]:
    """Programs, the system default and ``scheduled`` controls per feeder (hourly)."""
    sets = program_sets()
    programs = sorted({p for s in sets for p in s})
    head = [
        input_to_json(DefineProgram(p, 0 if p == "SYS" else 1 if p.startswith("SUB") else 2))
        for p in programs
    ]
    default = DefaultControl.from_json({"opModExpLimW": {"value": 5, "multiplier": 3}})
    head.append(input_to_json(SetDefault("SYS", default)))
    head.append(input_to_json(DefineProgram(OPTIONAL, 2)))
    controls = [
        input_to_json(
            control(
                f"F{i:04d}E{k:02d}", f"FDR{i}", T0 + 3600 * (k + 1), 1800, opModMaxLimW=5000 + k
            )
        )
        for i in range(SETS)
        for k in range(scheduled)
    ]
    return [command(T0, head), *(command(T0, c) for c in chunks(controls, CONTROLS_PER_COMMAND))]


def member_commands(n: int) -> list[bytes]:
    sets = program_sets()
    members = [input_to_json(SetMembership(lfdi(j), sets[j % SETS])) for j in range(n)]
    return [command(T0, c) for c in chunks(members, DEVICES_PER_COMMAND)]


class Fleet:
    """Which program set each device is in, and whether it is enrolled in the optional program
    (the input events change both)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sets = program_sets()
        self.of = [j % SETS for j in range(n)]
        self.enrolled = [False] * n
        self.events = 0

    def _next(self) -> int:
        j = (self.events * 7919) % self.n  # spread over devices (and so over shards)
        self.events += 1
        return j

    def _membership(self, j: int) -> bytes:
        programs = self.sets[self.of[j]] + ((OPTIONAL,) if self.enrolled[j] else ())
        return command(T_EVENTS, [input_to_json(SetMembership(lfdi(j), programs))])

    def enroll(self) -> bytes:
        """An input event that changes no control: a device enrols in (or leaves) a program
        without controls."""
        j = self._next()
        self.enrolled[j] = not self.enrolled[j]
        return self._membership(j)

    def move(self) -> bytes:
        """An input event that changes the device's scheduled controls: it moves to the next
        program set (another feeder with its 24 scheduled controls)."""
        j = self._next()
        self.of[j] = (self.of[j] + 1) % SETS
        return self._membership(j)

    def on_feeder(self, i: int) -> int:
        return sum(1 for s in self.of if s == i)


# -- reading outputs back ---------------------------------------------------------------------


@dataclass
class Reader:
    """Reads every csip.effective-control partition from the start: the workers' markers (per
    partition, the highest position so far and when it was read) and the records that contain
    ``watch``, with the time each was read."""

    broker: str
    prefix: str
    positions: dict[int, list[int]] = field(default_factory=dict)
    times: dict[int, list[float]] = field(default_factory=dict)
    watch: bytes | None = None
    hits: list[tuple[int, float, bytes]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.broker,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 << 20,
            fetch_max_wait_ms=20,  # Tansu holds a fetch this long even when records arrive
        )
        await self._consumer.start()
        topic = catalog.named(catalog.EFFECTIVE, self.prefix)
        partitions = [TopicPartition(topic, p) for p in range(SHARDS)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self.positions = {p: [] for p in range(SHARDS)}
        self.times = {p: [] for p in range(SHARDS)}
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=50)
            now = time.monotonic()
            for tp, messages in batch.items():
                for message in messages:
                    if message.key == b"marker":
                        position = orjson.loads(message.value)["position"]
                        seen = self.positions[tp.partition]
                        if not seen or position > seen[-1]:
                            seen.append(position)
                            self.times[tp.partition].append(now)
                    elif self.watch is not None and self.watch in message.value:
                        self.hits.append((tp.partition, now, message.value))

    def reached(self, position: int) -> dict[int, float]:
        """Per partition, when a marker at ``position`` or beyond was read."""
        found = {}
        for partition, seen in self.positions.items():
            index = bisect.bisect_left(seen, position)
            if index < len(seen):
                found[partition] = self.times[partition][index]
        return found

    async def wait(self, position: int, timeout: float) -> dict[int, float]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.reached(position)
            if len(found) == SHARDS:
                return found
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"markers at {position} on {sorted(found)} only")
            await asyncio.sleep(0.002)

    def expect(self, watch: bytes) -> None:
        self.watch = watch
        self.hits = []

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


# -- worker processes -------------------------------------------------------------------------

PORT = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")
GAUGE = re.compile(r"^(csip_worker_\w+) ([0-9.e+-]+)$", re.M)
SHARD = re.compile(r'^csip_worker_engine\{role="owned",shard="(\d+)"', re.M)
INCIDENTS = (b"Heartbeat session expired", b"because it is rebalancing")


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, not idle or iowait) since boot."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


PROBE_WORK = 20_000  # cpu_jitter.work size of the speed probe: about 2.5 ms here


def probe_speed(runs: int = 15) -> float:
    """This machine's speed now: the median time of a fixed piece of pure-Python work
    (``cpu_jitter.work``), in µs. The same code runs about as much slower as this is higher."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        cpu_jitter.work(PROBE_WORK)
        times.append(time.perf_counter() - began)
    return round(statistics.median(times) * 1e6)


@dataclass
class Load:
    """The machine's load during one configuration: the load average at start and end, the
    CPU that processes other than the bench's (workers, broker, this process) used meanwhile,
    in cores (busy seconds per second of wall time), and its speed (``probe_speed``) at start
    and end: this machine's CPU drifts by up to 2x between runs, which moves every figure."""

    began: float = field(default_factory=time.monotonic)
    busy: float = field(default_factory=busy_seconds)
    self_cpu: float = field(default_factory=lambda: _self_cpu())
    loadavg: tuple[float, ...] = field(default_factory=os.getloadavg)
    probe_us: float = field(default_factory=probe_speed)

    def report(self, pids: Sequence[int]) -> dict[str, Any]:
        """``pids`` started after this was made (so all their CPU is in the window)."""
        seconds = time.monotonic() - self.began
        total = busy_seconds() - self.busy
        ours = _self_cpu() - self.self_cpu
        for pid in pids:
            with contextlib.suppress(OSError):
                ours += cpu_of(pid)
        return {
            "seconds": round(seconds, 1),
            "loadavg_start": [round(x, 2) for x in self.loadavg],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "machine_cores_busy": round(total / seconds, 2),
            "bench_cores_busy": round(ours / seconds, 2),
            "other_cores_busy": round(max(0.0, total - ours) / seconds, 2),
            "probe_us_start": self.probe_us,
            "probe_us_end": probe_speed(),
        }


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def status(self) -> dict[str, Any]:
        """Position, published records and owned shards, from ``/metrics``."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        gauges = {m[1]: float(m[2]) for m in GAUGE.finditer(text)}
        return {
            "position": int(gauges["csip_worker_position"]),
            "published": int(gauges["csip_worker_published"]),
            "rejected": int(gauges["csip_worker_rejected"]),
            "kernel": "compiled" if gauges["csip_worker_kernel_compiled"] else "interpreted",
            "shards": sorted({int(m[1]) for m in SHARD.finditer(text)}),
        }

    def incidents(self) -> int:
        text = self.log.read_bytes()
        return sum(text.count(pattern) for pattern in INCIDENTS)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_worker(
    broker: str, prefix: str, log: Path, session_ms: int, *extra: str
) -> WorkerProcess:
    """A ``csip worker`` process of the bench's group (``extra``: more flags)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "csip", "worker", "--broker", broker, "--prefix", prefix,
                "--shards", str(SHARDS), "--clock", "event", "--no-idempotence",
                "--session-timeout-ms", str(session_ms), "--group", f"{prefix}workers",
                "--metrics-port", "0", "--log-level", "info", *extra,
            ],
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )  # fmt: skip
    return WorkerProcess(process, log)


async def find_port(worker: WorkerProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = PORT.search(worker.log.read_bytes())
        if found:
            worker.port = int(found.group(1))
            return
        if worker.process.poll() is not None:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(f"worker did not start; see {worker.log}")


def statuses(workers: list[WorkerProcess]) -> list[dict[str, Any]]:
    return [w.status() for w in workers]


async def settled(workers: list[WorkerProcess], timeout: float) -> dict[int, int]:
    """Wait until every shard has exactly one owner; which worker owns each shard."""
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(statuses, workers)
        counts = [len(s["shards"]) for s in found]
        owner = {shard: i for i, s in enumerate(found) for shard in s["shards"]}
        if len(owner) == SHARDS and sum(counts) == SHARDS and all(counts):
            return owner
        if time.monotonic() > deadline:
            raise TimeoutError(f"the group never settled: shards per worker {counts}")
        await asyncio.sleep(0.2)


@dataclass
class Cpu:
    """CPU seconds of the workers, the broker and this process since it was made."""

    pids: list[int]
    start: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start = self._now()

    def _now(self) -> list[float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return [*(cpu_of(pid) for pid in self.pids), usage.ru_utime + usage.ru_stime]

    def spent(self) -> dict[str, Any]:
        """Seconds: ``workers`` (one per worker pid), ``broker`` (the last pid) and ``bench``."""
        used = [round(b - a, 2) for a, b in zip(self.start, self._now(), strict=True)]
        return {"workers": used[:-2], "broker": used[-2], "bench": used[-1]}


# -- sending ----------------------------------------------------------------------------------


def producer_for(broker: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=broker,
        acks="all",
        enable_idempotence=False,  # Tansu has no idempotent producer
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )


async def send_all(producer: AIOKafkaProducer, topic: str, values: Sequence[bytes]) -> int:
    """Send records in order to partition 0 (csip.commands has one); the offset after the last.

    Records go into producer batches sent as each fills, not one ``send`` (and one future) per
    record: the bench shares this machine's cores with the workers it measures, so its own cost
    per record is kept to a few microseconds."""
    key = b"apply_inputs"
    sent = []
    batch = producer.create_batch()
    appended = 0
    for value in values:
        if batch.append(key=key, value=value, timestamp=None) is None:
            sent.append(await producer.send_batch(batch, topic, partition=0))
            batch = producer.create_batch()
            appended = 0
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes exceeds max_batch_size")
        appended += 1
    if appended:
        sent.append(await producer.send_batch(batch, topic, partition=0))
    metadata = await asyncio.gather(*sent)
    # A batch's metadata has its base offset; the last record is ``appended - 1`` past it.
    return int(metadata[-1].offset) + appended


@dataclass
class Paced:
    sent: int  # commands sent
    goal: int  # the offset after the last one
    started: float  # monotonic time of the first send
    chunks: int


async def paced(
    producer: AIOKafkaProducer,
    reader: Reader,
    values: Iterable[bytes],
    pids: Sequence[int],
    *,
    step: float,
    until: float | None = None,
    first: int = 1,
) -> Paced:
    """Send ``values`` (taken as they are sent) in chunks, at most two ahead of the slowest
    worker's markers, each of about ``step`` seconds of worker CPU at the cost per command seen
    so far (CPU, not elapsed time, so the time a worker waits for its next fetch does not shrink
    the chunks); no new chunk after ``until``.

    The first two chunks have ``first`` commands, since no cost is known yet; then each may be
    up to 10 times the one before. ``first=1`` suits commands of unknown cost (the setup's, of
    1,000 devices each). Single-device events start at one worker step (``STEP_RECORDS``): a
    worker folds at most that many per step whatever was sent, so a larger first chunk cannot
    stall its heartbeats, and starting at 1 costs the stream a marker round trip (10-40 ms on
    Tansu) per tenfold step, time in which the worker has nothing to fold."""
    topic = catalog.named(catalog.COMMANDS, reader.prefix)
    cpu_at_start = [cpu_of(pid) for pid in pids]
    started = time.monotonic()
    pending: deque[tuple[int, int]] = deque()
    sent = done = chunks = goal = 0
    size = first
    source = iter(values)
    exhausted = False
    while True:
        while not exhausted and len(pending) < 2:
            if until is not None and time.monotonic() > until:
                break
            chunk = list(itertools.islice(source, size))
            if not chunk:
                exhausted = True
                break
            goal = await send_all(producer, topic, chunk)
            pending.append((goal, len(chunk)))
            sent += len(chunk)
            chunks += 1
        if not pending:
            return Paced(sent, goal, started, chunks)
        position, count = pending.popleft()
        await reader.wait(position, PHASE_TIMEOUT)
        done += count
        busiest = max(cpu_of(pid) - at for pid, at in zip(pids, cpu_at_start, strict=True))
        fitting = int(done / max(busiest, 0.01) * step)
        size = max(1, min(MAX_CHUNK, 10 * size, fitting))


# -- one configuration ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Options:
    events: int = 20_000
    phase_seconds: float = 10.0
    controls: int = 50
    rate: float = 5.0
    step: float = 1.0
    scheduled: int = 24
    session_ms: int = 10_000
    session_ms_multi: int = 40_000


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return b"\n".join(path.read_bytes().splitlines()[-lines:]).decode(errors="replace")
    return ""


async def measure(n: int, w: int, o: Options) -> dict[str, Any]:
    load = Load()
    logs = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    try:
        broker = Broker(logs).start()
    except BaseException:
        shutil.rmtree(logs, ignore_errors=True)
        raise
    assert broker.process is not None
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    workers: list[WorkerProcess] = []
    reader = Reader(broker.url, prefix)
    producer = producer_for(broker.url)
    session = o.session_ms if w == 1 else o.session_ms_multi
    result: dict[str, Any] = {"n": n, "w": w, "scheduled": o.scheduled, "session_ms": session}

    def note(what: str, value: Any) -> None:
        result[what] = value
        print(f"  {what}: {value}", file=sys.stderr, flush=True)

    try:
        await asyncio.to_thread(ensure_topics, broker.url, prefix=prefix, shards=SHARDS)
        await reader.start()
        await producer.start()
        topic = catalog.named(catalog.COMMANDS, prefix)

        # The workers take their shards on the empty log.
        began = time.monotonic()
        for i in range(w):
            workers.append(start_worker(broker.url, prefix, logs / f"worker-{i}.log", session))
        for worker in workers:
            await find_port(worker)
        owner = await settled(workers, 3 * session / 1000 + 30)
        tick = orjson.dumps({"v": 1, "id": uuid.uuid4().hex, "t": T0, "command": {"kind": "tick"}})
        await reader.wait(await send_all(producer, topic, [tick]), PHASE_TIMEOUT)
        note("join_s", round(time.monotonic() - began, 2))
        # compiled (engine/compiled.py, `make compile`) or interpreted: as each worker says
        note("kernel", sorted({s["kernel"] for s in await asyncio.to_thread(statuses, workers)}))
        pids = [worker.process.pid for worker in workers] + [broker.process.pid]

        # Setup: the catalog, then the devices.
        cpu = Cpu(pids)
        began = time.monotonic()
        worker_pids = pids[:-1]
        await paced(producer, reader, catalog_commands(o.scheduled), worker_pids, step=o.step)
        await paced(producer, reader, member_commands(n), worker_pids, step=o.step)
        seconds = time.monotonic() - began
        published = sum(s["published"] for s in await asyncio.to_thread(statuses, workers))
        note(
            "setup",
            {
                "seconds": round(seconds, 1),
                "records": published,
                "per_s": round(published / seconds),
                "cpu": cpu.spent(),
            },
        )

        # 1. Input events, each its own command: enrolments, then moves to another feeder.
        fleet = Fleet(n)
        for kind, event in (("inputs", Fleet.enroll), ("moves", Fleet.move)):
            before = sum(s["published"] for s in await asyncio.to_thread(statuses, workers))
            # Made before the clock and CPU start, on a copy of the fleet; the fleet itself
            # then takes the events that were sent (the phase may stop before the last).
            ahead = copy.deepcopy(fleet)
            events = [event(ahead) for _ in range(o.events)]
            cpu = Cpu(pids)
            until = time.monotonic() + o.phase_seconds
            stream = await paced(
                producer, reader, events, worker_pids, step=o.step, until=until, first=STEP_RECORDS
            )
            for _ in range(stream.sent):
                event(fleet)
            reached = reader.reached(stream.goal)
            spent = cpu.spent()
            after = sum(s["published"] for s in await asyncio.to_thread(statuses, workers))
            done = [
                max(when for shard, when in reached.items() if owner[shard] == i) - stream.started
                for i in range(w)
            ]
            per_event = [round(1000 * c / stream.sent, 3) for c in spent["workers"]]
            note(
                kind,
                {
                    "events": stream.sent,
                    "chunks": stream.chunks,
                    "per_s": round(stream.sent / max(done)),
                    "per_worker": [round(stream.sent / d) for d in done],
                    "records_per_event": round((after - before) / stream.sent, 1),
                    "cpu": spent,
                    "cpu_ms_per_event": per_event,
                },
            )

        # 2. One system-wide control reaching all N devices.
        before = sum(s["published"] for s in await asyncio.to_thread(statuses, workers))
        reader.expect(b'"event":"SYSTEM-1"')
        system = control("SYSTEM-1", "SYS", T_SYSTEM, 900, **SYSTEM_BASE)
        cpu = Cpu(pids)
        started = time.monotonic()
        goal = await send_all(producer, topic, [command(T_SYSTEM, [input_to_json(system)])])
        reached = await reader.wait(goal, PHASE_TIMEOUT)
        spent = cpu.spent()
        hits = reader.hits
        if len(hits) != n:
            raise RuntimeError(f"{len(hits)} effective records for the system control, not {n}")
        last = max(when for _, when, _ in hits) - started
        per_worker = []
        for i in range(w):
            mine = [when for shard, when, _ in hits if owner[shard] == i]
            per_worker.append(round(len(mine) / (max(mine) - started)))
        after = sum(s["published"] for s in await asyncio.to_thread(statuses, workers))
        note(
            "system",
            {
                "records": n,
                "seconds": round(last, 3),
                "per_s": round(n / last),
                "per_worker": per_worker,
                "all_records": after - before,
                "all_per_s": round((after - before) / (max(reached.values()) - started)),
                "cpu": spent,
            },
        )

        # 3. Feeder controls at a modest rate: latency to each device's record.
        reader.expect(b'"event":"FEEDER-')
        feeders = [(7 + k * 37) % SETS for k in range(o.controls)]
        expected = sum(fleet.on_feeder(feeder) for feeder in feeders)
        sent: dict[str, float] = {}
        futures = []
        started = time.monotonic()
        for k, feeder in enumerate(feeders):
            mrid = f"FEEDER-{k:03d}"
            t = T_FEEDERS + k
            item = control(mrid, f"FDR{feeder}", t, 600, opModFixedW=1000 + k)
            await asyncio.sleep(max(0.0, started + k / o.rate - time.monotonic()))
            sent[mrid] = time.monotonic()
            futures.append(await producer.send(topic, command(t, [input_to_json(item)])))
        metadata = await asyncio.gather(*futures)
        await reader.wait(int(metadata[-1].offset) + 1, PHASE_TIMEOUT)
        latencies = [
            1000 * (when - sent[orjson.loads(value)["event"]]) for _, when, value in reader.hits
        ]
        if len(latencies) != expected:
            raise RuntimeError(f"{len(latencies)} feeder records, expected {expected}")
        note(
            "latency",
            {
                "controls": o.controls,
                "records": len(latencies),
                "p50_ms": round(percentile(latencies, 0.50), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
                "max_ms": round(max(latencies), 1),
            },
        )
        found = await asyncio.to_thread(statuses, workers)
        note("rejected", sum(s["rejected"] for s in found))
        note("incidents", sum(worker.incidents() for worker in workers))
        note("peak_worker_rss_mb", [round(peak_rss_mb(wp.process.pid)) for wp in workers])
        note("peak_broker_rss_mb", round(peak_rss_mb(broker.process.pid)))
        note("load", load.report([*(wp.process.pid for wp in workers), broker.process.pid]))
    except BaseException:
        print("  failed; the end of each log:", file=sys.stderr)
        for path in sorted(logs.iterdir()):
            print(f"  -- {path.name}\n{tail(path)}", file=sys.stderr)
        raise
    finally:
        try:
            for worker in workers:
                worker.stop()
            await producer.stop()
            await reader.stop()
        finally:
            broker.stop()
            shutil.rmtree(logs, ignore_errors=True)
    return result


# -- profile: one in-process worker under cProfile --------------------------------------------


async def profile(n: int, o: Options, top: int) -> str:
    """One in-process Worker owning all 12 shards, under cProfile in three parts, each sent once
    the worker has folded (and published) what came before: ``o.events`` enrolments and
    ``o.events`` feeder moves (one command each), then one system-wide control (its N effective
    and 2N lifecycle records)."""
    from engine.runtime.kafka.worker import Worker, WorkerSettings

    class Profiled(Worker):
        """Notes the position of its last marker: a step is done (folded and published)."""

        marked = 0

        async def _mark(self, position: int) -> None:
            await super()._mark(position)
            self.marked = position

    logs = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    try:
        broker = Broker(logs).start()
    except BaseException:
        shutil.rmtree(logs, ignore_errors=True)
        raise
    prefix = f"prof{uuid.uuid4().hex[:8]}."
    producer = producer_for(broker.url)
    settings = WorkerSettings(
        broker.url,
        prefix=prefix,
        shards=SHARDS,
        clock="event",
        group=f"{prefix}workers",
        session_timeout_ms=o.session_ms,
        heartbeat_interval_ms=500,
        idempotent=False,
        name="profiled",
    )
    worker = Profiled(settings)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    out = io.StringIO()
    try:
        await asyncio.to_thread(ensure_topics, broker.url, prefix=prefix, shards=SHARDS)
        await producer.start()
        topic = catalog.named(catalog.COMMANDS, prefix)
        task = asyncio.create_task(worker.run(stop))

        async def until(position: int) -> None:
            deadline = time.monotonic() + SETUP_TIMEOUT
            while worker.marked < position:
                if task.done() or time.monotonic() > deadline:
                    task.result()
                    raise TimeoutError(f"worker at {worker.marked}, not {position}")
                await asyncio.sleep(0.001)

        async def profiled(label: str, values: list[bytes], count: int, unit: str) -> None:
            published = worker.stats.published
            profiler = cProfile.Profile()
            began = time.monotonic()
            profiler.enable()
            await until(await send_all(producer, topic, values))
            profiler.disable()
            seconds = time.monotonic() - began
            out.write(
                f"\n## {label} (N={n:,}, one worker owning all {SHARDS} shards): "
                f"{seconds:.2f} s under cProfile, {count / seconds:,.0f} {unit}/s, "
                f"{worker.stats.published - published:,} records published\n"
            )
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumulative").print_stats(top)

        began = time.monotonic()
        setup = catalog_commands(o.scheduled) + member_commands(n)
        await until(await send_all(producer, topic, setup))
        out.write(f"setup folded and published in {time.monotonic() - began:.1f} s\n")
        fleet = Fleet(n)
        enrolments = [fleet.enroll() for _ in range(o.events)]
        await profiled(f"{o.events:,} enrolments", enrolments, o.events, "events")
        moves = [fleet.move() for _ in range(o.events)]
        await profiled(f"{o.events:,} feeder moves", moves, o.events, "events")
        system = control("SYSTEM-1", "SYS", T_SYSTEM, 900, **SYSTEM_BASE)
        values = [command(T_SYSTEM, [input_to_json(system)])]
        await profiled("one system-wide control", values, n, "effective records")
        return out.getvalue()
    finally:
        stop.set()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        try:
            await producer.stop()
        finally:
            broker.stop()
            shutil.rmtree(logs, ignore_errors=True)


# -- the driver -------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    def cpu(phase: dict[str, Any]) -> str:
        return " / ".join(str(x) for x in phase["cpu_ms_per_event"])

    lines = [
        "| N | W | setup s (records out/s) | input events/s per worker (events) "
        "| worker CPU ms/event | feeder moves/s (records out each) | worker CPU ms/move "
        "| effective records/s (per worker) | all records out/s | latency p50 ms | p99 ms "
        "| group incidents | other load (cores busy; load avg start-end) "
        "| CPU probe µs (start-end) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        setup, inputs, moves = r["setup"], r["inputs"], r["moves"]
        system, latency, load = r["system"], r["latency"], r["load"]
        out_per_worker = " / ".join(f"{x:,}" for x in system["per_worker"])
        lines.append(
            f"| {r['n']:,} | {r['w']} | {setup['seconds']} ({setup['per_s']:,}) "
            f"| {inputs['per_s']:,} ({inputs['events']:,}) | {cpu(inputs)} "
            f"| {moves['per_s']:,} ({moves['records_per_event']}) | {cpu(moves)} "
            f"| {system['per_s']:,} ({out_per_worker}) | {system['all_per_s']:,} "
            f"| {latency['p50_ms']} | {latency['p99_ms']} | {r['incidents']} "
            f"| {load['other_cores_busy']} ({load['loadavg_start'][0]}-{load['loadavg_end'][0]}) "
            f"| {load.get('probe_us_start', '-')}-{load.get('probe_us_end', '-')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = Options()
    parser.add_argument("--sizes", default="10000,100000", help="fleet sizes N")
    parser.add_argument("--workers", default="1,2", help="worker counts W")
    parser.add_argument("--events", type=int, default=d.events, help="input events, at most")
    parser.add_argument("--phase-seconds", type=float, default=d.phase_seconds)
    parser.add_argument("--controls", type=int, default=d.controls, help="feeder controls")
    parser.add_argument("--rate", type=float, default=d.rate, help="feeder controls per second")
    parser.add_argument("--step", type=float, default=d.step, help="seconds of work per chunk")
    parser.add_argument("--scheduled", type=int, default=d.scheduled, help="controls per feeder")
    parser.add_argument("--session-timeout-ms", type=int, default=d.session_ms)
    parser.add_argument("--session-timeout-ms-multi", type=int, default=d.session_ms_multi)
    parser.add_argument("--profile", action="store_true", help="cProfile one in-process worker")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    counts = [int(s) for s in args.workers.split(",") if s]
    options = Options(
        events=args.events,
        phase_seconds=args.phase_seconds,
        controls=args.controls,
        rate=args.rate,
        step=args.step,
        scheduled=args.scheduled,
        session_ms=args.session_timeout_ms,
        session_ms_multi=args.session_timeout_ms_multi,
    )

    # SIGTERM as SIGINT: asyncio.run cancels the main task, so the finally blocks stop the
    # workers and the broker and remove the temporary directory.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    if args.profile:
        print(asyncio.run(profile(sizes[0], options, args.top)))
        return 0
    if args.one is not None:
        n, w = (int(x) for x in args.one.split(","))
        print(json.dumps(asyncio.run(measure(n, w, options))))
        return 0

    results: list[dict[str, Any]] = []
    failed: list[str] = []
    began = time.monotonic()
    for n in sizes:
        for w in counts:
            print(f"running N={n:,} W={w} ...", file=sys.stderr, flush=True)
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.bench_kafka",
                *sys.argv[1:],
                "--one",
                f"{n},{w}",
            ]
            child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
            try:
                out, _ = child.communicate()
            except BaseException:
                child.terminate()  # it stops its workers and broker (see above)
                try:
                    child.wait(60)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                raise
            if child.returncode != 0:
                failed.append(f"N={n:,} W={w}")
                continue
            results.append(json.loads(out.strip().splitlines()[-1]))

    cores = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    print(
        f"\nMachine: {cores} cores, {memory:.1f} GiB, Python {platform.python_version()}, "
        f"{platform.machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    kernels = sorted({kernel for r in results for kernel in r.get("kernel", [])})
    print(f"Run: {time.monotonic() - began:.0f} s; {options}; workers' kernel: {kernels}\n")
    print(table(results))
    print(f"\nCommand: python -m benchmarks.bench_kafka {' '.join(sys.argv[1:])}".rstrip())
    print("\n" + json.dumps(results, indent=1), file=sys.stderr)
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
