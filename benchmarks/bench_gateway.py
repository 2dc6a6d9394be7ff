"""Gateway benchmark: the 2030.5 listener of ``csip serve`` under load, over real mutual TLS.

A fresh PKI and data directory under a temporary directory; ``csip serve`` in a subprocess,
pinned with taskset to core 0 (the load generator, ``benchmarks/loadgen.py``, to core 1); a
fleet set up through the admin API (programs, controls, one device certificate per connection,
FSAs); every URL the load uses discovered from the server's own XML (DeviceCapability down to
the DERControlList). Scenarios, each on a fresh generator process, warm-up left out:

- ``poll304``: GET with the ETag of the last answer (``If-None-Match``), answered 304, of a
  DERControlList (shared by the program's devices) and of the device's DERProgramList;
- ``get200``: the same GETs without ``If-None-Match`` (full bodies);
- ``baseline``: ``get200`` against ``csip serve --no-view-cache`` (every GET rendered from
  scratch, no ETag), so the gain of the design is a ratio measured in the same run;
- ``post``: MirrorMeterReadings POSTed to each device's MirrorUsagePoint (201 once durable);
- ``handshake``: new connections, a full TLS 1.2 ECDHE-ECDSA P-256 handshake each, with
  AES-128-CCM-8 (what CSIP requires) and with AES-128-GCM;
- an open-loop sweep of ``poll304`` (offered load from a quarter of the closed-loop capacity to
  beyond it) for ``benchmarks/gateway/throughput_latency.png``;
- the server with ``--no-access-log`` and at ``--log-level warning``, to show what logging
  costs;
- with py-spy (in the venv), a profile of the server during poll304 and CCM-8 handshakes:
  where the time goes.

Each for 1 server process (server on core 0, generator on core 1) and for ``--processes 2``
(the server's processes and the generator share both cores: the machine has no third core).
Variants run only when ``csip serve --help`` lists their flags. Per point: throughput, latency
percentiles, status and error counts, the server's CPU (from /proc/<pid>/stat, over the
measured window) and RSS, the generator's CPU and what other processes on the machine used
meanwhile. A shared machine is waited for (a little) before each point and a noisy point is
run again, within a time budget past which points are measured once.

    python -m benchmarks.bench_gateway                    # the full run: 8-10 min when idle
    python -m benchmarks.bench_gateway --quick            # 4-5 minutes, to benchmarks/gateway/quick
    python -m benchmarks.bench_gateway --no-profile       # without py-spy

Writes ``benchmarks/gateway/results.json``, ``throughput_latency.png`` and ``RESULTS-draft.md``
(``results.partial.json`` with what was measured, if a run fails or is interrupted). Servers and
generators run in their own process groups and are ended on any exit, Ctrl-C and SIGTERM
included; the temporary directory is removed (``--keep`` keeps it, with the server's log).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from lxml import etree

from benchmarks import cpu_jitter
from benchmarks.loadgen import LoadOptions
from gateway.pki import Identity, Pki, ensure_pki

NS = {"s": "urn:ieee:std:2030.5:ns"}
SEP_XML = "application/sep+xml"
TOKEN = "bench-admin-token"
CCM8 = "ECDHE-ECDSA-AES128-CCM8"
GCM = "ECDHE-ECDSA-AES128-GCM-SHA256"
TASKSET = "/usr/bin/taskset"
OUT = Path(__file__).parent / "gateway"
FEEDERS = 4
CONTROLS_PER_FEEDER = 6
CLK_TCK = os.sysconf("SC_CLK_TCK")
BASELINE = "baseline (no view cache)"
POINT_COST = 3.5  # seconds a point takes beyond warm-up and window on an idle machine
BASELINE_2 = "2 processes, baseline (no view cache)"


@dataclass(frozen=True)
class Settings:
    """How big and how long: ``--quick`` shrinks everything."""

    devices: int
    closed_connections: int
    open_connections: int
    handshake_loops: int
    duration: float
    warmup: float
    sweep: tuple[float, ...]  # offered loads, as fractions of the estimated capacity
    retries: int  # a point measured while others used > quiet_cores is run again
    patience: float  # seconds to wait, before each point, for others to use <= quiet_cores
    budget: float  # seconds: past this, no more waiting for quiet and no more retries
    quiet_cores: float = 0.25
    loadgen_processes: int = 1
    nice: int = 0  # scheduling priority of the server and the generator (negative: higher)
    steadiness_s: float = 20.0  # the CPU-steadiness probe (benchmarks/cpu_jitter.py), before

    @classmethod
    def full(cls) -> Settings:
        # 36 points of about 13.5 s each on an idle machine: about 9 minutes in all, 11.5 at
        # most (the budget: past it, no waiting for quiet and no repeats).
        return cls(256, 64, 256, 16, 8.0, 2.0, (0.25, 0.5, 0.75, 0.9, 1.0, 1.15), 1, 15.0, 690.0)

    @classmethod
    def quick(cls) -> Settings:
        return cls(64, 32, 64, 8, 2.0, 1.0, (0.5, 0.9, 1.2), 0, 3.0, 240.0, steadiness_s=2.0)


# -- /proc: CPU and memory of process trees and of the machine -------------------------------


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (all their threads), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def pinned(cpus: str, nice: int) -> list[str]:
    """The command prefix that runs a process on ``cpus`` (and at ``nice``)."""
    return [*(["nice", "-n", str(nice)] if nice else []), TASKSET, "-c", cpus]


def terminate(process: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    """End a child started with ``start_new_session=True`` and everything in its process
    group (server replicas, generator processes): SIGTERM, SIGKILL after ``grace`` seconds,
    then SIGKILL to whatever of the group is left. Never raises, never waits unbounded."""
    if process is None:
        return
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    _signal_group(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _killed_with_parent() -> Callable[[], None] | None:
    """For a child, before exec: SIGKILL it if the benchmark dies without cleaning up (a
    SIGKILL); its own children are in its process group, which ``terminate`` ends."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child(command: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """A child process in its own session (so ``terminate`` can end its whole group)."""
    return subprocess.Popen(
        command, start_new_session=True, preexec_fn=_killed_with_parent(), **popen
    )


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def wait_for_quiet(server: Server, quiet_cores: float, patience: float) -> float:
    """Wait until, over one second, processes other than the server use at most
    ``quiet_cores`` (or ``patience`` runs out); return the seconds waited."""
    began = time.monotonic()
    pids = process_tree(server.pid)
    while True:
        busy, cpu = machine_busy_seconds(), cpu_seconds(pids)
        time.sleep(1.0)
        others = machine_busy_seconds() - busy - (cpu_seconds(pids) - cpu)
        waited = time.monotonic() - began
        if others <= quiet_cores or waited >= patience:
            return round(waited, 1)


def machine_busy_seconds() -> float:
    """CPU seconds spent by anything on the machine (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLK_TCK


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(int(meminfo[1]) / 2**20, 1),
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


# -- the server -------------------------------------------------------------------------------


@dataclass
class Server:
    """``csip serve`` pinned to ``cpus``, on ephemeral ports; stdout and stderr to a file."""

    pki: Pki
    data: Path
    cpus: str
    flags: tuple[str, ...] = ()
    nice: int = 0
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    admin_port: int = 0
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data.parent / "server.log"

    def start(self, timeout: float = 60.0) -> Server:
        ready = self.data.parent / "server.ready"
        ready.unlink(missing_ok=True)
        command = [
            *pinned(self.cpus, self.nice), sys.executable, "-m", "csip", "serve",
            "--data", str(self.data), "--pki", str(self.pki.directory),
            "--port", "0", "--admin-port", "0", "--admin-token", TOKEN,
            "--ready-file", str(ready), *self.flags,
        ]  # fmt: skip
        with self.log.open("ab") as log:
            log.write(f"\n=== {' '.join(command)}\n".encode())
            self.process = child(command, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not ready.exists() or not ready.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"csip serve {' '.join(self.flags)} did not start: {self.log}")
            time.sleep(0.05)
        self.port, self.admin_port = map(int, ready.read_text().split()[:2])
        return self

    def stop(self) -> None:
        terminate(self.process)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.admin_port}/admin",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        )

    def device(self, identity: Identity) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(identity.cert, identity.key)
        return httpx.Client(base_url=f"https://127.0.0.1:{self.port}", verify=context, timeout=30)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def serve_options() -> str:
    """``csip serve --help``: which variants this checkout has."""
    done = subprocess.run(
        [sys.executable, "-m", "csip", "serve", "--help"], capture_output=True, text=True
    )
    return done.stdout


# -- the fleet, through the admin API ---------------------------------------------------------


def _ok(response: httpx.Response) -> Any:
    if response.status_code not in (200, 201, 204):
        raise RuntimeError(f"{response.request.method} {response.request.url}: "
                           f"{response.status_code} {response.text}")  # fmt: skip
    return response.json() if response.content else None


def set_up_fleet(server: Server, devices: list[Identity]) -> dict[str, Any]:
    """Programs ``system`` and ``feeder-1..4``; per feeder one active control and five
    scheduled later today (statuses stay put during the run, so ETags do too); each device in
    ``system`` and one feeder through one FSA."""
    now = int(time.time())
    with server.admin() as admin:
        _ok(admin.put("/programs/system", json={"primacy": 10, "description": "system-wide"}))
        _ok(admin.put("/programs/system/default", json={"base": {"opModMaxLimW": 10000}}))
        controls: list[dict[str, Any]] = []
        for f in range(1, FEEDERS + 1):
            program = f"feeder-{f}"
            _ok(admin.put(f"/programs/{program}", json={"primacy": 5, "description": program}))
            controls.append(_control(program, now - 60, 86_400, 6000, "active all day"))
            for k in range(1, CONTROLS_PER_FEEDER):
                controls.append(_control(program, now + 3600 * k, 1800, 4000 - 100 * k, "later"))
        controls.append(_control("system", now + 7200, 900, 8000, "system-wide later"))
        _ok(admin.post("/controls", json={"controls": controls}))
        registration = register_devices(admin, devices)
        for i, device in enumerate(devices):
            programs = ["system", f"feeder-{i % FEEDERS + 1}"]
            fsas = [{"description": "DER programs", "programs": programs}]
            _ok(admin.put(f"/devices/{device.lfdi}/fsas", json=fsas))
    return {"devices": len(devices), "controls": len(controls), "registration": registration}


def _control(program: str, start: int, duration: int, watts: int, text: str) -> dict[str, Any]:
    return {
        "program": program,
        "description": text,
        "start": start,
        "duration": duration,
        "responseRequired": "03",
        "base": {"opModMaxLimW": watts},
    }


def register_devices(admin: httpx.Client, devices: list[Identity]) -> str:
    """``POST /admin/devices/batch`` when the server's OpenAPI lists it, else one by one."""
    paths = _ok(admin.get("/openapi.json")).get("paths", {})
    if "/admin/devices/batch" in paths:
        bodies = [{"lfdi": d.lfdi} for d in devices]
        schema = paths["/admin/devices/batch"]["post"]["requestBody"]["content"]
        wants_list = schema["application/json"]["schema"].get("type") == "array"
        for start in range(0, len(bodies), 500):
            chunk = bodies[start : start + 500]
            _ok(admin.post("/devices/batch", json=chunk if wants_list else {"devices": chunk}))
        return "POST /admin/devices/batch"
    for device in devices:
        _ok(admin.post("/devices", json={"lfdi": device.lfdi}))
    return "POST /admin/devices (no batch endpoint in this checkout)"


# -- discovery: every URL from the server's own XML -------------------------------------------


@dataclass(frozen=True)
class DeviceUrls:
    """What one device polls and posts to, as the server linked it (``?l=`` = the list's all)."""

    identity: Identity
    program_list: str
    control_list: str
    mup: str


def _link(element: etree._Element, name: str) -> tuple[str, int]:
    link = element.find(f".//s:{name}", NS)
    if link is None:
        raise RuntimeError(f"no {name} in {element.tag}")
    return link.get("href", ""), int(link.get("all", "0"))


def _get_xml(client: httpx.Client, url: str) -> etree._Element:
    response = client.get(url, headers={"Accept": SEP_XML})
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
    return etree.fromstring(response.content)


def reading_mrid(identity: Identity) -> str:
    """The device's mirrored meter reading: an mRID of its own (mRIDs are globally unique)."""
    return f"{identity.lfdi[:24]}0000A001"


def discover(server: Server, identity: Identity) -> DeviceUrls:
    """DeviceCapability, EndDevice, FSA, DERProgramList, the DERProgram with the most
    controls; then the device creates its MirrorUsagePoint (as a CSIP DER does)."""
    with server.device(identity) as client:
        dcap = _get_xml(client, "/dcap")
        edev_list_href, _ = _link(dcap, "EndDeviceListLink")
        mup_list_href, _ = _link(dcap, "MirrorUsagePointListLink")
        edev = _get_xml(client, edev_list_href).find("s:EndDevice", NS)
        assert edev is not None, "the device does not see its EndDevice"
        fsa_list_href, _ = _link(edev, "FunctionSetAssignmentsListLink")
        fsa = _get_xml(client, fsa_list_href).find("s:FunctionSetAssignments", NS)
        assert fsa is not None, "the device has no FSA"
        program_list_href, programs = _link(fsa, "DERProgramListLink")
        program_list = f"{program_list_href}?l={programs}"
        listed = [
            _link(p, "DERControlListLink")
            for p in _get_xml(client, program_list).findall("s:DERProgram", NS)
        ]
        control_list_href, controls = max(listed, key=lambda link: link[1])
        created = client.post(
            mup_list_href,
            content=mirror_usage_point(identity.lfdi, reading_mrid(identity)),
            headers={"Content-Type": SEP_XML},
        )
        if created.status_code != 201:
            raise RuntimeError(f"POST {mup_list_href}: {created.status_code} {created.text}")
    return DeviceUrls(
        identity=identity,
        program_list=program_list,
        control_list=f"{control_list_href}?l={controls}",
        mup=created.headers["location"],
    )


def etags(server: Server, urls: list[DeviceUrls]) -> dict[tuple[str, str], str]:
    """(lfdi, url) -> the ETag a device holds after its last full GET (a few devices at a
    time: each is a new mTLS connection)."""

    def of(device: DeviceUrls) -> dict[tuple[str, str], str]:
        found = {}
        with server.device(device.identity) as client:
            for url in (device.control_list, device.program_list):
                response = client.get(url)
                if response.status_code != 200 or "etag" not in response.headers:
                    raise RuntimeError(f"GET {url}: {response.status_code}, no ETag")
                found[(device.identity.lfdi, url)] = response.headers["etag"]
        return found

    with ThreadPoolExecutor(4) as pool:
        return {key: tag for tags in pool.map(of, urls) for key, tag in tags.items()}


READING_TYPE = (
    "<ReadingType><accumulationBehaviour>12</accumulationBehaviour><commodity>1</commodity>"
    "<dataQualifier>2</dataQualifier><flowDirection>1</flowDirection>"
    "<intervalLength>300</intervalLength><kind>37</kind><phase>128</phase>"
    "<powerOfTenMultiplier>-1</powerOfTenMultiplier><uom>38</uom></ReadingType>"
)


def mirror_usage_point(lfdi: str, reading_mrid: str) -> str:
    return (
        f'<MirrorUsagePoint xmlns="{NS["s"]}"><mRID>{lfdi[:24]}00000001</mRID>'
        "<description>DER site</description><roleFlags>49</roleFlags>"
        "<serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{reading_mrid}</mRID>"
        f"<description>Average W, phase A</description>{READING_TYPE}</MirrorMeterReading>"
        "</MirrorUsagePoint>"
    )


def meter_reading(reading_mrid: str, start: int, value: int) -> str:
    """What a DER posts every 5 minutes: one interval reading of its mirrored meter."""
    return (
        f'<MirrorMeterReading xmlns="{NS["s"]}"><mRID>{reading_mrid}</mRID>'
        f"<lastUpdateTime>{start + 300}</lastUpdateTime><Reading><timePeriod>"
        f"<duration>300</duration><start>{start}</start></timePeriod><value>{value}</value>"
        "</Reading></MirrorMeterReading>"
    )


# -- plans for the load generator -------------------------------------------------------------


def plan(server: Server, connections: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "ca": str(server.pki.ca_cert),
        "connections": connections,
    }


def get_plan(
    server: Server,
    urls: list[DeviceUrls],
    resource: str,
    tags: dict[tuple[str, str], str] | None,
) -> dict[str, Any]:
    """One GET per request; with ``tags``, conditional on the device's ETag (304)."""
    connections = []
    for device in urls:
        url = device.control_list if resource == "DERControlList" else device.program_list
        headers = {"Accept": SEP_XML}
        if tags is not None:
            headers["If-None-Match"] = tags[(device.identity.lfdi, url)]
        request = {"method": "GET", "path": url, "headers": headers}
        connections.append(_connection(device.identity, [request]))
    return plan(server, connections)


def post_plan(server: Server, urls: list[DeviceUrls]) -> dict[str, Any]:
    start = (int(time.time()) // 300) * 300
    connections = []
    for device in urls:
        requests = [
            {
                "method": "POST",
                "path": device.mup,
                "headers": {"Content-Type": SEP_XML},
                "body": meter_reading(reading_mrid(device.identity), start - 300 * k, 1000 + k),
            }
            for k in range(4)
        ]
        connections.append(_connection(device.identity, requests))
    return plan(server, connections)


def _connection(identity: Identity, requests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cert": str(identity.cert), "key": str(identity.key), "requests": requests}


# -- one measured run -------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    server_cpu: float
    loadgen_cpu: float
    busy: float

    @classmethod
    def take(cls, server_pids: list[int], loadgen_pid: int) -> Sample:
        return cls(
            time.monotonic(),
            cpu_seconds(server_pids),
            cpu_seconds(process_tree(loadgen_pid)),
            machine_busy_seconds(),
        )


def run_load(
    server: Server,
    plan_json: dict[str, Any],
    options: LoadOptions,
    *,
    cpus: str,
    work: Path,
    nice: int = 0,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """Run ``benchmarks.loadgen`` pinned to ``cpus``; measure the server meanwhile."""
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan_json))
    command = [
        *pinned(cpus, nice), sys.executable, "-m", "benchmarks.loadgen",
        "--plan", str(plan_path), "--mode", options.mode,
        "--connections", str(options.connections), "--rate", str(options.rate),
        "--duration", str(options.duration), "--warmup", str(options.warmup),
        "--processes", str(options.processes),
    ]  # fmt: skip
    if options.cipher:
        command += ["--cipher", options.cipher]
    if options.handshake_request:
        command.append("--handshake-request")
    with (work / "loadgen.log").open("ab") as errors:
        generator = child(command, stdout=subprocess.PIPE, stderr=errors)
    profiler = None
    try:
        started = _wait_for_line(generator, b'"start"', timeout=120)
        server_pids = process_tree(server.pid)
        _sleep_until(started + options.warmup)
        before = Sample.take(server_pids, generator.pid)
        if profile_to is not None:
            profiler = _py_spy(server.pid, profile_to, options.duration, cpus)
        _sleep_until(started + options.warmup + options.duration)
        after = Sample.take(server_pids, generator.pid)
        rss = rss_mb(server_pids)
        # the generator stops by itself after its drain (a few seconds); a margin, no more
        output, _ = generator.communicate(timeout=60 + 10 * options.processes)
        if profiler is not None:
            profiler.wait(30)
    finally:
        terminate(generator, grace=5)
        terminate(profiler, grace=5)
    results = [json.loads(line) for line in output.splitlines() if b'"result"' in line]
    if not results:
        raise RuntimeError(f"the load generator gave no result; see {work / 'loadgen.log'}")
    result: dict[str, Any] = results[-1]
    result.pop("event")
    elapsed = after.at - before.at
    server_cpu = after.server_cpu - before.server_cpu
    loadgen_cpu = after.loadgen_cpu - before.loadgen_cpu
    result.update(
        server_cores=round(server_cpu / elapsed, 2),
        server_cpu_us_per_request=(
            round(server_cpu / result["completed"] * 1e6) if result["completed"] else None
        ),
        server_rss_mb=round(rss),
        loadgen_cores=round(loadgen_cpu / elapsed, 2),
        other_cores=round(
            max(0.0, after.busy - before.busy - server_cpu - loadgen_cpu) / elapsed, 2
        ),
        server_cpus=server.cpus,
        loadgen_cpus=cpus,
        error_count=sum(result["errors"].values()),
    )
    return result


def _wait_for_line(process: subprocess.Popen[bytes], marker: bytes, timeout: float) -> float:
    """Block until the process prints a line with ``marker``; return when (monotonic)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 1.0)
        if readable:
            line = process.stdout.readline()
            if marker in line:
                return time.monotonic()
            if not line and process.poll() is not None:
                break
    raise RuntimeError("the load generator did not start (connections refused or too slow?)")


def _sleep_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.monotonic()))


def _py_spy(pid: int, output: Path, duration: float, cpus: str) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [
        *pinned(cpus, 0), py_spy, "record", "--pid", str(pid), "--subprocesses",
        "--format", "raw", "--rate", "200", "--nonblocking", "--threads",
        "--duration", str(max(1, int(duration))), "--output", str(output),
    ]  # fmt: skip
    return child(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- the benchmark ----------------------------------------------------------------------------


@dataclass
class Bench:
    settings: Settings
    work: Path
    out: Path
    pki: Pki
    data: Path
    urls: list[DeviceUrls] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    sweeps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)
    planned: int = 0  # points the run will measure (an estimate, for the time budget)
    measured: int = 0
    overheads: list[float] = field(default_factory=list)  # seconds per point beyond its window
    over_budget_noted: bool = False

    def over_budget(self) -> bool:
        """Whether the points still to come, at their plain cost (no waiting, no repeats),
        would end the run past its budget: then points are measured once, without waiting
        for quiet, so a busy machine makes the run noisier, not longer."""
        s = self.settings
        recent = self.overheads[-5:]  # what points cost on this machine today
        overhead = max(POINT_COST, sum(recent) / len(recent)) if recent else POINT_COST
        remaining = max(0, self.planned - self.measured) * (s.warmup + s.duration + overhead)
        over = time.monotonic() - self.began + remaining > s.budget
        if over and not self.over_budget_noted:
            self.over_budget_noted = True
            self.notes.append(
                f"Waiting for quiet and repeating noisy points would have taken the run past "
                f"its {s.budget / 60:.0f} minute budget, so from point {self.measured + 1} of "
                f"{self.planned} on, points were measured once, without waiting."
            )
        return over

    def server(self, flags: tuple[str, ...], cpus: str) -> Server:
        return Server(self.pki, self.data, cpus, flags, self.settings.nice)

    def options(self, mode: str, **extra: Any) -> LoadOptions:
        s = self.settings
        connections = {"closed": s.closed_connections, "open": s.open_connections}
        return LoadOptions(
            mode=mode,  # type: ignore[arg-type]
            connections=extra.pop("connections", connections.get(mode, s.handshake_loops)),
            duration=s.duration,
            warmup=s.warmup,
            processes=s.loadgen_processes,
            **extra,
        )

    def measure(
        self, server: Server, name: str, variant: str, plan_json: dict[str, Any],
        options: LoadOptions, loadgen_cpus: str, **extra: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """One point. This machine is shared: before it, wait (a while) for other processes to
        calm down; after it, if they used more than ``quiet_cores`` meanwhile, run it again and
        keep the quietest attempt. Every row says how noisy it was."""
        quiet = self.settings.quiet_cores
        best: dict[str, Any] | None = None
        for attempt in range(1, self.settings.retries + 2):
            late = self.over_budget()
            if late and best is not None:
                break
            print(f"  {variant:>26} {name:<40}", end="", file=sys.stderr, flush=True)
            began = time.monotonic()
            waited = wait_for_quiet(server, quiet, 0.0 if late else self.settings.patience)
            result = run_load(
                server,
                plan_json,
                options,
                cpus=loadgen_cpus,
                work=self.work,
                nice=self.settings.nice,
                **extra,
            )
            window = options.warmup + options.duration
            self.overheads.append(time.monotonic() - began - waited - window + 1.0)
            result.update(
                scenario=name,
                variant=variant,
                server_flags=list(server.flags),
                attempt=attempt,
                waited_for_quiet_s=waited,
                noisy=result["other_cores"] > quiet,
            )
            print(
                f" {result['throughput']:>9,.0f}/s  p50 {result['p50_ms']}  p99 "
                f"{result['p99_ms']} ms  {result['statuses']}  errors {result['error_count']}"
                f"  server {result['server_cores']} cores, {result['server_cpu_us_per_request']}"
                f" µs/req  others {result['other_cores']}",
                file=sys.stderr,
                flush=True,
            )
            if best is None or result["other_cores"] < best["other_cores"]:
                best = result
            if not result["noisy"]:
                break
        assert best is not None
        self.measured += 1
        return best

    def setup(self, server: Server) -> dict[str, Any]:
        devices = self.pki.of_kind("device")[: self.settings.devices]
        began = time.monotonic()
        fleet = set_up_fleet(server, devices)
        self.urls = [discover(server, d) for d in devices]
        fleet["setup_s"] = round(time.monotonic() - began, 1)
        fleet["example_urls"] = {
            "DERControlList": self.urls[0].control_list,
            "DERProgramList": self.urls[0].program_list,
            "MirrorUsagePoint": self.urls[0].mup,
        }
        return fleet

    def get_scenarios(
        self,
        server: Server,
        variant: str,
        loadgen_cpus: str,
        *,
        conditional: bool = True,
        resources: tuple[str, ...] = ("DERControlList", "DERProgramList"),
    ) -> None:
        urls = self.urls[: self.settings.closed_connections]  # the devices the load uses
        tags = etags(server, urls) if conditional else None
        for resource in resources:
            kinds = [("poll304", tags), ("get200", None)] if conditional else [("get200", None)]
            for kind, with_tags in kinds:
                self.rows.append(
                    self.measure(
                        server,
                        f"{kind} {resource}",
                        variant,
                        get_plan(server, urls, resource, with_tags),
                        self.options("closed"),
                        loadgen_cpus,
                    )
                )

    def post_and_handshakes(self, server: Server, variant: str, loadgen_cpus: str) -> None:
        self.rows.append(
            self.measure(
                server,
                "post MirrorMeterReading",
                variant,
                post_plan(server, self.urls),
                self.options("closed"),
                loadgen_cpus,
            )
        )
        handshake_plan = get_plan(server, self.urls, "DERControlList", None)
        for label, cipher in (("CCM-8", CCM8), ("AES-GCM", GCM)):
            self.rows.append(
                self.measure(
                    server,
                    f"handshake {label}",
                    variant,
                    handshake_plan,
                    self.options("handshake", cipher=cipher),
                    loadgen_cpus,
                )
            )

    def sweep(self, server: Server, variant: str, loadgen_cpus: str, capacity: float) -> None:
        urls = self.urls[: self.settings.open_connections]
        poll = get_plan(server, urls, "DERControlList", etags(server, urls))
        points = []
        for fraction in self.settings.sweep:
            rate = max(100.0, round(capacity * fraction, -1))
            point = self.measure(
                server, f"open {rate:,.0f}/s poll304 DERControlList", variant, poll,
                self.options("open", rate=rate), loadgen_cpus,
            )  # fmt: skip
            points.append(point)
        self.sweeps[variant] = points

    def profile(self, server: Server, loadgen_cpus: str) -> dict[str, Any]:
        """py-spy on the server during a poll304 run and a CCM-8 handshake run."""
        if not (shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists()):
            self.notes.append("py-spy is not installed: no profile (pip install py-spy)")
            return {}
        urls = self.urls[: self.settings.closed_connections]
        tags = etags(server, urls)
        runs = {
            "poll304 DERControlList": (
                get_plan(server, urls, "DERControlList", tags),
                self.options("closed"),
            ),
            "handshake CCM-8": (
                get_plan(server, self.urls, "DERControlList", None),
                self.options("handshake", cipher=CCM8),
            ),
        }
        profiles = {}
        for name, (plan_json, options) in runs.items():
            raw = self.out / f"profile_{name.split()[0]}.txt"
            raw.unlink(missing_ok=True)
            result = self.measure(
                server, f"{name} (profiled)", "1 process, py-spy attached", plan_json,
                options, loadgen_cpus, profile_to=raw,
            )  # fmt: skip
            if not raw.exists():
                self.notes.append("py-spy ran but wrote no profile (ptrace not permitted?)")
                continue
            profiles[name] = {"run": result, "raw": raw.name, **summarize_profile(raw)}
        return profiles


# -- the profile, the plot and the draft ------------------------------------------------------

# Where a sample's time goes: the first frame from the leaf up whose file matches (so time in
# the logging module called from our middleware counts as logging, not as the middleware).
COMPONENTS = (
    ("TLS (ssl, uvloop sslproto)", ("ssl.py", "sslproto", "SSL_")),
    ("logging (one JSON access line per request)", ("logging/", "gateway/logs.py")),
    ("Prometheus metrics", ("prometheus_client/",)),
    ("XML (lxml, rendering)", ("lxml", "gateway/sep", "gateway/xmlio.py")),
    ("gateway: routes, identity, views", ("gateway/",)),
    ("engine", ("engine/",)),
    ("FastAPI: routing, dependencies, serialization", ("fastapi/",)),
    ("Starlette: middleware, routing, requests, responses", ("starlette/",)),
    ("anyio: thread pool for sync routes", ("anyio/",)),
    ("uvicorn: HTTP protocol, ASGI cycle", ("uvicorn/",)),
    ("asyncio and uvloop: event loop, tasks", ("asyncio/", "uvloop", "contextvars")),
    ("httptools (llhttp)", ("httptools",)),
)


def summarize_profile(raw: Path, top: int = 20) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks: samples per component and the hottest functions."""
    components: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if "(" in f]
        total += count
        leaves[_short(frames[-1]) if frames else "(no Python frame)"] += count
        components[_component(frames)] += count
    return {
        "samples": total,
        "components": [
            {"component": name, "share": round(n / total, 3)}
            for name, n in components.most_common()
        ]
        if total
        else [],
        "top_functions": [
            {"function": name, "share": round(n / total, 3)} for name, n in leaves.most_common(top)
        ]
        if total
        else [],
    }


def _component(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, patterns in COMPONENTS:
            if any(p in frame for p in patterns):
                return name
    return "other"


def _short(frame: str) -> str:
    """``function (/long/path/pkg/module.py:12)`` -> ``function (pkg/module.py)``."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    return f"{function} ({'/'.join(parts[-2:])})"


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput and p99 against offered load, one line per swept server variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    highest = 1.0
    for n, (variant, points) in enumerate(report["sweeps"].items()):
        if not points:
            continue
        color = f"C{n}"
        offered = [p["rate"] for p in points]
        highest = max(highest, *offered)
        left.plot(offered, [p["throughput"] for p in points], "o-", color=color, label=variant)
        p99 = [p["p99_ms"] for p in points]
        p50 = [p["p50_ms"] for p in points]
        right.plot(offered, p99, "o-", color=color, label=f"{variant} p99")
        right.plot(offered, p50, "x:", color=color, label=f"{variant} p50")
    left.plot([0, highest], [0, highest], color="grey", linewidth=0.8, label="achieved = offered")
    left.set(
        xlabel="offered load (304 polls/s, open loop)",
        ylabel="achieved (responses/s)",
        title="Throughput: 304 polls of a DERControlList",
    )
    right.axhline(20, color="red", linewidth=0.8, linestyle="--", label="target p99 20 ms")
    right.set(
        xlabel="offered load (304 polls/s, open loop)",
        ylabel="latency (ms, from the scheduled send)",
        yscale="log",
        title="Latency against offered load",
    )
    for axes in (left, right):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(
        f"csip serve, mTLS keep-alive, {report['machine']['cores']} cores "
        f"({report['started'][:10]})",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _row(r: dict[str, Any]) -> str:
    statuses = ", ".join(f"{k}: {v:,}" for k, v in r["statuses"].items())
    per_request = r["server_cpu_us_per_request"]
    per_core = f"{1e6 / per_request:,.0f}" if per_request else "-"
    others = f"{r['other_cores']}" + (" (noisy)" if r.get("noisy") else "")
    return (
        f"| {r['variant']} | {r['scenario']} | {r['throughput']:,.0f} | {_ms(r['p50_ms'])} | "
        f"{_ms(r['p99_ms'])} | {_ms(r['p999_ms'])} | {statuses} | {r['error_count']} | "
        f"{r['server_cores']} | {per_request or '-'} | {per_core} | {r['server_rss_mb']} | "
        f"{r['loadgen_cores']} | {others} |"
    )


HEADER = (
    "| server | scenario | per s | p50 ms | p99 ms | p99.9 ms | statuses | errors "
    "| server cores | server CPU µs/req | per core at that CPU | server RSS MB "
    "| load gen cores | other cores |\n"
    "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
)


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    rows = report["scenarios"]
    make = " (what `make bench-gateway` runs)" if report["command"].endswith("gateway") else ""
    elapsed = f", in {report['elapsed_s'] / 60:.1f} minutes" if "elapsed_s" in report else ""
    lines = [
        "# Gateway benchmark (draft)",
        "",
        f"Command: `{report['command']}`{make}. Measured {report['started']}{elapsed}.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}, {m['machine']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['openssl']}, Linux {m['kernel']}.",
        "",
        *_other_load(report),
        *_steadiness(report),
        "",
        f"Fleet: {report['fleet']['devices']} devices, each with its own client certificate "
        f"(one per connection), in `system` and one of {FEEDERS} feeder programs; "
        f"{report['fleet']['controls']} controls (per feeder one active and "
        f"{CONTROLS_PER_FEEDER - 1} scheduled). Registered through "
        f"{report['fleet']['registration']}. URLs discovered from the server's XML, e.g. "
        + ", ".join(f"{k} `{v}`" for k, v in report["fleet"]["example_urls"].items())
        + ".",
        "",
        f"Each point: {s['warmup']:g} s warm-up (not counted), then {s['duration']:g} s "
        f"measured. Closed loop: {s['closed_connections']} keep-alive mTLS connections "
        f"(TLS 1.3, default suites), each sending its next request when the answer arrives. "
        f"Open loop: {s['open_connections']} connections, latency from the scheduled send "
        f"time. Handshakes: {s['handshake_loops']} concurrent connect-handshake-close loops, "
        "TLS 1.2, no resumption. With one server process the server is pinned to core 0 and "
        "the load generator to core 1 (taskset). With two server processes there is no core "
        "left for the generator: the server's two processes and the generator all run on "
        "cores 0 and 1, so the server has 2 cores less what the generator uses (its "
        "*load gen cores* column), and 2-process figures understate what two dedicated "
        "server cores would do. "
        "*server cores*: the server's CPU over the window (from /proc); *per core at that "
        "CPU*: 10^6 / server CPU µs per request, what one saturated core would serve at that "
        "cost; *other cores*: what other processes on this shared machine used meanwhile. "
        f"Before each point the benchmark waits up to {s['patience']:g} s for other processes "
        f"to use at most {s['quiet_cores']} cores, and runs a point again (up to "
        f"{s['retries']} times) when they used more; rows marked *noisy* are the quietest of "
        "those attempts.",
        "",
    ]
    if s["nice"]:
        lines[-1:-1] = [
            f"The server and the load generator ran at nice {s['nice']} (other tenants of "
            "this shared machine at 0), so the scheduler favours them as on a dedicated machine.",
            "",
        ]
    if report["notes"]:
        lines += ["Notes:", ""]
        lines += [f"- {note}" for note in report["notes"]]
        lines.append("")
    lines += ["## Polls and GETs (closed loop)", "", HEADER]
    lines += [_row(r) for r in rows if r["scenario"].startswith(("poll304", "get200"))]
    lines += ["", *_ratios(rows), "", "## Reading posts (durable acknowledgement)", "", HEADER]
    lines += [_row(r) for r in rows if r["scenario"].startswith("post")]
    lines += ["", "## New TLS handshakes (ECDHE-ECDSA P-256, TLS 1.2)", "", HEADER]
    lines += [_row(r) for r in rows if r["scenario"].startswith("handshake")]
    lines += ["", "## Open-loop sweep: 304 polls of a DERControlList", ""]
    lines += [
        "![throughput and p99 against offered load](throughput_latency.png)",
        "",
        "| server | offered/s | achieved/s | p50 ms | p99 ms | p99.9 ms | late at end | errors "
        "| server cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, points in report["sweeps"].items():
        for p in points:
            lines.append(
                f"| {variant} | {p['rate']:,.0f} | {p['throughput']:,.0f} | {_ms(p['p50_ms'])} "
                f"| {_ms(p['p99_ms'])} | {_ms(p['p999_ms'])} | {p['late_at_end']} "
                f"| {p['error_count']} | {p['server_cores']} |"
            )
    lines += ["", *_target(report), ""]
    lines += _logging(rows)
    lines += _profiles(report.get("profiles"))
    return "\n".join(lines) + "\n"


def _steadiness(report: dict[str, Any]) -> list[str]:
    """The CPU-steadiness probe's finding: what bounds the open loop's p99 from below."""
    probe = report.get("cpu_steadiness")
    if not probe:
        return []
    return [
        f"Before the run (`python -m benchmarks.cpu_jitter --seconds {probe['seconds']:.0f}`): "
        f"{probe['text']} A request in such a window takes that much longer, whatever the "
        "server does."
    ]


def _other_load(report: dict[str, Any]) -> list[str]:
    """What else ran on the machine: before and after the run, and during each point."""
    out = []
    for when in ("before", "after"):
        load = report.get(f"machine_load_{when}")
        if not load:
            continue
        top = "; ".join(f"{t['cores']} `{t['command'][:60]}`" for t in load["top"][:3])
        out.append(
            f"Other load {when} the run: {load['busy_cores']} cores busy over 2 s, load "
            f"average {' '.join(load['loadavg'])}" + (f"; the busiest: {top}" if top else "") + "."
        )
    points = report.get("scenarios", []) + [
        p for points in report.get("sweeps", {}).values() for p in points
    ]
    others = [p["other_cores"] for p in points]
    if others:
        noisy = sum(1 for p in points if p.get("noisy"))
        out.append(
            f"During the {len(points)} measured points other processes used "
            f"{sum(others) / len(others):.2f} cores on average (at most {max(others)}); "
            f"{noisy} points ran with more than {report['settings']['quiet_cores']} cores of "
            "other load (*noisy* below)."
        )
    return [" ".join(out)] if out else []


def _find(rows: list[dict[str, Any]], variant: str, scenario: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["variant"] == variant and r["scenario"] == scenario), None)


def _ratios(rows: list[dict[str, Any]]) -> list[str]:
    """The design's gain: each GET against the same GET rendered from scratch."""
    out = []
    for variant, baseline in (("1 process", BASELINE), ("2 processes", BASELINE_2)):
        for resource in ("DERControlList", "DERProgramList"):
            base = _find(rows, baseline, f"get200 {resource}")
            if base is None or not base["throughput"]:
                continue
            for kind in ("poll304", "get200"):
                row = _find(rows, variant, f"{kind} {resource}")
                if row is None:
                    continue
                cpu = ""
                before, after = base["server_cpu_us_per_request"], row["server_cpu_us_per_request"]
                if before and after:
                    cpu = (
                        f", {before} -> {after} µs of server CPU per request "
                        f"({before / after:.1f}x less)"
                    )
                out.append(
                    f"- {variant}, {kind} {resource} vs the baseline (`--no-view-cache`, "
                    f"rendered from scratch): {row['throughput'] / base['throughput']:.1f}x "
                    f"the throughput{cpu}."
                )
    return out or ["- No in-run baseline (`--no-view-cache` not available)."]


def _target(report: dict[str, Any]) -> list[str]:
    """The issue's target: >= 10k 304 polls/s per core with p99 < 20 ms."""
    out = ["Target: >= 10,000 unchanged-resource polls/s per core with p99 < 20 ms."]
    missed = False
    for variant in ("1 process", "2 processes"):
        row = _find(report["scenarios"], variant, "poll304 DERControlList")
        if row is None or not row["server_cpu_us_per_request"]:
            continue
        per_core = 1e6 / row["server_cpu_us_per_request"]
        missed |= per_core < 10_000
        out.append(
            f"- {variant}, closed loop ({report['settings']['closed_connections']} "
            f"connections): {row['throughput']:,.0f}/s at p99 {_ms(row['p99_ms'])} ms on "
            f"{row['server_cores']} server cores; {row['server_cpu_us_per_request']} µs of "
            f"server CPU per 304, i.e. {per_core:,.0f}/s per fully used core."
        )
    for variant, points in report["sweeps"].items():
        good = [
            p for p in points
            if p["p99_ms"] is not None and p["p99_ms"] < 20 and p["throughput"] >= 0.98 * p["rate"]
        ]  # fmt: skip
        if not good:
            missed = True
            lowest = min(points, key=lambda p: p["rate"], default=None)
            if lowest is not None:
                out.append(
                    f"- {variant}, open loop: no offered load was served in full with p99 < "
                    f"20 ms (the lowest, {lowest['rate']:,.0f}/s: {lowest['throughput']:,.0f}/s "
                    f"achieved, p99 {_ms(lowest['p99_ms'])} ms): **not met**."
                )
            continue
        best = max(good, key=lambda p: p["rate"])
        cores = max(1.0, round(best["server_cores"]))
        met = best["rate"] / cores >= 10_000
        missed |= not met
        out.append(
            f"- {variant}, open loop: highest offered load served in full with p99 < 20 ms: "
            f"{best['rate']:,.0f}/s (p99 {_ms(best['p99_ms'])} ms) on {best['server_cores']} "
            f"server cores: **{'met' if met else 'not met'}**."
        )
    if missed:
        out.append(
            "- Where a target is missed, the profile below says where the server's time goes"
            + ("." if report.get("profiles") else " (none in this run: run with py-spy).")
        )
    return out


def _logging(rows: list[dict[str, Any]]) -> list[str]:
    out = ["## Does logging slow the server down?", ""]
    for scenario in ("poll304 DERControlList", "get200 DERControlList"):
        info = _find(rows, "1 process", scenario)
        for variant in ("1 process, no access log", "1 process, log warning"):
            quiet = _find(rows, variant, scenario)
            if info is None or quiet is None or not info["throughput"]:
                continue
            out.append(
                f"- {scenario}: {info['throughput']:,.0f}/s with the defaults (`--log-level "
                f"info`: one JSON access line per request) vs {quiet['throughput']:,.0f}/s "
                f"with `{' '.join(quiet['server_flags'])}` "
                f"({quiet['throughput'] / info['throughput']:.2f}x); server CPU "
                f"{info['server_cpu_us_per_request']} vs {quiet['server_cpu_us_per_request']} "
                "µs per request."
            )
    out.append(
        "- uvicorn's own access log is off in every variant (`access_log=False` in "
        "`gateway/server.py`, the `uvicorn.access` logger disabled in `gateway/logs.py`); the "
        "per-request line is the app's `csip.access` logger."
    )
    return [*out, ""]


def _profiles(profiles: dict[str, Any] | None) -> list[str]:
    if not profiles:
        return ["## Profile", "", "No profile in this run (`--profile`, with py-spy).", ""]
    out = []
    for name, profile in profiles.items():
        run = profile["run"]
        per_request = run["server_cpu_us_per_request"] or 0
        out += [
            f"## Where the server's time goes: {name} (py-spy)",
            "",
            f"py-spy at 200 Hz, non-blocking, all threads of the server, while the load ran "
            f"({run['throughput']:,.0f}/s under the profiler, {per_request} µs of server CPU "
            f"each; {profile['samples']:,} samples in `{profile['raw']}`). Samples by "
            "component (the first frame from the leaf up that belongs to it; C code shows "
            "under the Python frame that called it):",
            "",
            "| component | share | ≈ µs each |",
            "|---|---:|---:|",
        ]
        for c in profile["components"]:
            out.append(f"| {c['component']} | {c['share']:.1%} | {c['share'] * per_request:.0f} |")
        out += ["", "Hottest functions (self time):", "", "| function | share |", "|---|---:|"]
        out += [f"| `{f['function']}` | {f['share']:.1%} |" for f in profile["top_functions"]]
        out.append("")
    return out


def estimated_capacity(
    rows: list[dict[str, Any]], variant: str, cores: float, *, shared: bool = False
) -> float:
    """Where to centre the open-loop sweep: the closed-loop poll304 rate, or what the server's
    CPU per request implies for the cores it can have (``cores``, less what the generator
    took when it ran on the same cores) when other processes held it back."""
    row = _find(rows, variant, "poll304 DERControlList")
    if row is None or not row["completed"] or not row["server_cpu_us_per_request"]:
        return 1000.0 if row is None else max(1000.0, float(row["throughput"]))
    available = max(0.5, cores - row["loadgen_cores"]) if shared else cores
    return max(float(row["throughput"]), available * 1e6 / float(row["server_cpu_us_per_request"]))


def other_load(seconds: float = 2.0, top: int = 5) -> dict[str, Any]:
    """What else runs on the machine: load average, busy cores over ``seconds`` (this process
    excluded) and the processes that used the most CPU meanwhile."""

    def per_process() -> dict[int, tuple[float, str]]:
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            name = command.decode(errors="replace").strip() or stat.split("(", 1)[1].split(")")[0]
            found[int(entry)] = ((int(fields[11]) + int(fields[12])) / CLK_TCK, name[:100])
        return found

    before, busy = per_process(), machine_busy_seconds()
    time.sleep(seconds)
    after, busy_after = per_process(), machine_busy_seconds()
    used = sorted(
        ((cpu - before[pid][0], name) for pid, (cpu, name) in after.items() if pid in before),
        reverse=True,
    )
    return {
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "busy_cores": round((busy_after - busy) / seconds, 2),
        "top": [
            {"cores": round(cpu / seconds, 2), "command": name}
            for cpu, name in used[:top]
            if cpu > 0
        ],
    }


def planned_points(settings: Settings, available: dict[str, bool], profile: bool) -> int:
    """How many points ``run`` measures (retries aside)."""
    per_server = 4 + len(settings.sweep) + 3  # GETs, sweep, post and handshakes
    baseline = 2 if available["--no-view-cache"] else 0
    logging = 2 * (2 if available["--no-access-log"] else 1)
    one = per_server + (2 if profile else 0) + logging + baseline
    return one + (per_server + baseline if available["--processes"] else 0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small fleet, 2 s per point")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="py-spy profiles of poll304 and of handshakes (default on when py-spy is there)",
    )
    parser.add_argument("--duration", type=float, help="seconds measured per point")
    parser.add_argument("--loadgen-processes", type=int, help="generator processes (default 1)")
    parser.add_argument(
        "--nice", type=int, default=0, help="run the server and generator at this nice level"
    )
    parser.add_argument(
        "--out", type=Path, help=f"where results go (default {OUT}, with --quick {OUT}/quick)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    settings = Settings.quick() if args.quick else Settings.full()
    if args.out is None:  # a quick check never overwrites the full run's results
        args.out = OUT / "quick" if args.quick else OUT
    if args.duration:
        settings = replace(settings, duration=args.duration)
    if args.loadgen_processes:
        settings = replace(settings, loadgen_processes=args.loadgen_processes)
    if args.nice:
        settings = replace(settings, nice=args.nice)
    args.out.mkdir(parents=True, exist_ok=True)

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so every server and generator is ended.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    report: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.bench_gateway", *sys.argv[1:]]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    began = time.monotonic()
    try:
        run(settings, work, args.out, args.profile, report)
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        partial = args.out / "results.partial.json"
        partial.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"stopped ({report['error']}); what was measured: {partial}", file=sys.stderr)
        if args.keep:
            print(f"kept {work} (server.log, loadgen.log)", file=sys.stderr)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        raise
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["elapsed_s"] = round(time.monotonic() - began)
    (args.out / "results.partial.json").unlink(missing_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "throughput_latency.png")
    (args.out / "RESULTS-draft.md").write_text(markdown(report))
    print(
        f"wrote {args.out}/results.json, throughput_latency.png, RESULTS-draft.md "
        f"in {report['elapsed_s']} s",
        file=sys.stderr,
    )
    return 0


def run(settings: Settings, work: Path, out: Path, profile: bool, report: dict[str, Any]) -> None:
    """Every scenario, into ``report`` as it goes (so an interrupted run keeps its points)."""

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    say("what else runs on this machine (2 s) ...")
    report["machine_load_before"] = other_load()
    say(f"is the CPU steady? ({settings.steadiness_s:.0f} s, every core) ...")
    report["cpu_steadiness"] = cpu_jitter.measure(settings.steadiness_s)
    say(f"  {report['cpu_steadiness']['text']}")
    say(f"PKI ({settings.devices} device certificates) ...")
    pki = ensure_pki(work / "pki", devices=settings.devices, aggregators=1)
    bench = Bench(settings, work, out, pki, work / "server" / "data")
    (work / "server").mkdir()
    help_text = serve_options()
    available = {
        flag: flag in help_text for flag in ("--processes", "--no-view-cache", "--no-access-log")
    }
    report.update(
        available=available,
        settings=settings.__dict__,
        scenarios=bench.rows,
        sweeps=bench.sweeps,
        notes=bench.notes,
        profiles=None,
    )
    bench.planned = planned_points(settings, available, profile)
    one_core, other_core, both = "0", "1", "0,1"
    if (os.cpu_count() or 1) < 2:
        one_core = other_core = both = "0"
        bench.notes.append("One core only: the server and the load generator share it.")

    say(f"1 process (server on core {one_core}, load generator on core {other_core})")
    with running(bench.server((), one_core)) as server:
        report["fleet"] = bench.setup(server)
        bench.get_scenarios(server, "1 process", other_core)
        bench.sweep(server, "1 process", other_core, estimated_capacity(bench.rows, "1 process", 1))
        bench.post_and_handshakes(server, "1 process", other_core)
        if profile:
            report["profiles"] = bench.profile(server, other_core)

    # What logging costs: the access line per request, and everything below warning.
    quiet_variants: list[tuple[str, tuple[str, ...]]] = [
        ("1 process, log warning", ("--log-level", "warning"))
    ]
    if available["--no-access-log"]:
        quiet_variants.insert(0, ("1 process, no access log", ("--no-access-log",)))
    for variant, flags in quiet_variants:
        say(variant)
        with running(bench.server(flags, one_core)) as server:
            bench.get_scenarios(server, variant, other_core, resources=("DERControlList",))

    if available["--no-view-cache"]:
        say("baseline: --no-view-cache, 1 process")
        with running(bench.server(("--no-view-cache",), one_core)) as server:
            bench.get_scenarios(server, BASELINE, other_core, conditional=False)
    else:
        bench.notes.append("`csip serve --no-view-cache` is not available: no in-run baseline")

    if available["--processes"]:
        two = ("--processes", "2")
        say(f"2 processes (server and load generator both on cores {both})")
        with running(bench.server(two, both)) as server:
            bench.get_scenarios(server, "2 processes", both)
            bench.sweep(
                server,
                "2 processes",
                both,
                estimated_capacity(bench.rows, "2 processes", 2, shared=True),
            )
            bench.post_and_handshakes(server, "2 processes", both)
        if available["--no-view-cache"]:
            say("baseline: --no-view-cache, 2 processes")
            with running(bench.server((*two, "--no-view-cache"), both)) as server:
                bench.get_scenarios(server, BASELINE_2, both, conditional=False)
    else:
        bench.notes.append("`csip serve --processes N` is not available: 1 process only")
    report["machine_load_after"] = other_load()


if __name__ == "__main__":
    raise SystemExit(main())
