"""Scale run: one system-wide control issued to N simulated devices (default 100k) while they poll.

What it does, each step bounded by a timeout:

1. Device certificates for N devices (``csip fleet``'s own, issued once by the bench PKI's CA
   and cached under ``--pki``/fleet: the first 100k run spends a minute or two on them, later
   runs none).
2. A fresh ``csip serve`` (a temporary data directory, ``--behind-proxy --trusted-proxies
   127.0.0.1``, no access log) pinned to core 0 with ``taskset`` where there are two cores.
   Its rates are set so the load is the control path: the DERProgramList pollRate
   (``--derp-rate``, 600 s) is what devices poll most (each poll: the DERProgramList and the
   program's DERControlList, conditional GETs); EndDeviceList, FSAs, DERStatus and readings
   run at ``--slow-rate`` (default 20 DERProgramList cycles); DeviceCapability and Time once a
   day. Two cores cannot offer and serve 100k devices' every poll at CSIP's usual rates with a
   compression that makes a cycle last tens of seconds; this keeps the run about the control.
3. ``csip fleet`` on core 1, proxy-header mode (each request carries the device's certificate in
   X-Client-Cert, as from a TLS-terminating proxy), with the time compression that makes one
   DERProgramList poll cycle last ``--cycle`` seconds (default: 30 s for 5,000 devices, 300 s
   for 100k, so the offered polls stay near 600/s; a shorter cycle at 100k saturates one
   server core and measures a growing backlog). Devices discover (spread over ``--ramp``,
   default 12 ms a device: 20 minutes for 100k), then poll. One ``--settle`` (default one
   cycle) after the last device is discovered, the fleet issues one control to the ``system``
   program (every device) with responseRequired 03, starting ``--control-start`` seconds later
   (default an hour: devices post "received" now and "started" after the run), and the run
   ends a few seconds after every device has posted "received" (or at ``--max-run``).
4. Measured: from the fleet, the time from issuing the control until every device had fetched
   it and until every device had posted "received" (with the distribution over devices), the
   requests by kind, errors and latency, and a sample of devices compared with the server's own
   view; from the server, its CPU seconds and peak resident memory (``/proc/<pid>``, per phase),
   its own request counts (``/metrics``), and, for ``--confirm-sample`` devices, the stored
   "received" responses (admin API), so the server confirms what the fleet says.

Writes ``benchmarks/scale/results.json`` and ``benchmarks/scale/RESULTS-draft.md``; logs and the
fleet's full summary go to ``var/bench-scale/``.

    python -m benchmarks.bench_scale                      # 100k devices (40 to 60 minutes)
    python -m benchmarks.bench_scale --devices 5000       # a few minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "scale"
WORK = ROOT / "var" / "bench-scale"
TOKEN = "bench-scale-admin-token"
SERVER_START = 120.0  # seconds for csip serve to be ready (recovery of an empty directory)
SERVER_STOP = 60.0
FLEET_GRACE = 180.0  # after --max-run: the fleet's own drain and comparison, then SIGINT/kill
CONFIRM_TIMEOUT = 600.0
# The default load: about POLLS conditional GETs a second once every device polls, and one
# device starting discovery every DISCOVERY seconds. Measured on the 2-core machine with 5,000
# devices: a 304 poll costs the server about 0.6 ms of CPU and a discovery (12 requests, 5 of
# them durable writes) about 10 ms, so both keep the server's core below saturation and the
# time to reach every device measures delivery, not a backlog.
POLLS = 600.0
DISCOVERY = 0.012
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Lines of csip fleet's stderr that mark the phases of the run.
RUNNING = re.compile(r"^fleet: running ")
ALL_READY = re.compile(r"^fleet: all [\d,]+ devices discovered at \+([\d.]+) s")
ISSUED = re.compile(r"^fleet: issued control (\w+) in (\S+) at \+([\d.]+) s")
RECEIVED = re.compile(r"^fleet: every member posted received by \+([\d.]+) s")


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
    }


def pinning() -> tuple[list[str], list[str], str]:
    """taskset prefixes for the server (core 0) and the fleet (core 1), when possible."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        allowed = set()
    if shutil.which("taskset") and {0, 1} <= allowed:
        return ["taskset", "-c", "0"], ["taskset", "-c", "1"], "server on core 0, fleet on core 1"
    return [], [], "not pinned (taskset or a second core missing)"


# -- the server process ------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # monotonic
    cpu_s: float
    rss_mb: float


def proc_cpu_rss(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and resident MB of a process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = int(fields[21]) * PAGE / 2**20
    return cpu, rss


def peak_rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    samples: list[Sample] = field(default_factory=list)
    peak_rss: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def sample(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            cpu, rss = proc_cpu_rss(self.process.pid)
            self.samples.append(Sample(time.monotonic(), cpu, rss))
            self.peak_rss = peak_rss_mb(self.process.pid) or self.peak_rss

    def start_sampling(self, every: float = 1.0) -> None:
        self.sample()  # at once: the first phase starts right after

        def sample() -> None:
            while not self._stop.wait(every):
                self.sample()

        self._thread = threading.Thread(target=sample, name="server-sampler", daemon=True)
        self._thread.start()

    def cpu_at(self, when: float) -> float | None:
        """Server CPU seconds at monotonic ``when`` (the nearest sample at or before it)."""
        before = [s for s in self.samples if s.t <= when]
        return before[-1].cpu_s if before else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SERVER_STOP)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_server(prefix: list[str], data: Path, pki: Path, log: Path) -> Server:
    ready = data.parent / "server.ready"
    ready.unlink(missing_ok=True)
    command = [
        *prefix, sys.executable, "-m", "csip", "serve",
        "--data", str(data), "--pki", str(pki), "--port", "0", "--admin-port", "0",
        "--admin-token", TOKEN, "--ready-file", str(ready), "--log-level", "warning",
        "--no-access-log", "--behind-proxy", "--trusted-proxies", "127.0.0.1",
    ]  # fmt: skip
    with log.open("ab") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=stream, cwd=ROOT)
    deadline = time.monotonic() + SERVER_START
    while not ready.exists() or not ready.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            raise RuntimeError(f"csip serve did not start; see {log}")
        time.sleep(0.1)
    port, admin_port = map(int, ready.read_text().split())
    return Server(process, port, admin_port)


def admin_call(server: Server, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.admin + "/admin" + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
    return json.loads(text) if text else None


def server_metrics(server: Server) -> dict[str, Any]:
    """The device listener's requests by status, and stored responses, from the server's
    own /metrics."""
    with urllib.request.urlopen(server.admin + "/metrics", timeout=60) as response:
        return parse_metrics(response.read().decode())


def parse_metrics(text: str) -> dict[str, Any]:
    pattern = re.compile(r"^csip_http_requests_total\{(.*)\} (\S+)$")
    by_status: dict[str, int] = {}
    total = 0
    responses_stored = 0
    for line in text.splitlines():
        found = pattern.match(line)
        if not found:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        if labels.get("listener") != "device":
            continue
        count = int(float(found.group(2)))
        total += count
        status = labels.get("status", "")
        by_status[status] = by_status.get(status, 0) + count
        route, method = labels.get("route"), labels.get("method")
        if route == "/rsps/{program}/rsp" and method == "POST" and status.startswith("2"):
            responses_stored += count
    return {"requests": total, "by_status": by_status, "responses_stored": responses_stored}


async def confirm_received(
    server: Server, lfdis: list[str], mrid: str, created: int
) -> dict[str, Any]:
    """For each device of ``lfdis``, whether the server stored its "received" (1) for
    control ``mrid``, and when (server seconds after ``created``, the control's creation)."""
    from fleet.admin import AdminClient

    admin = AdminClient(server.admin, TOKEN, timeout=60)
    limit = asyncio.Semaphore(16)
    delays: list[float] = []
    missing: list[str] = []
    errors = 0

    async def one(lfdi: str) -> None:
        nonlocal errors
        async with limit:
            try:
                answer = await admin.responses(lfdi)
            except Exception:
                errors += 1
                return
        times = [
            int(r["t"])
            for r in answer.get("posted", [])
            if str(r.get("subject", "")).upper() == mrid and int(r.get("status", 0)) == 1
        ]
        if times:
            delays.append(min(times) - created)
        else:
            missing.append(lfdi)

    try:
        await asyncio.wait_for(asyncio.gather(*(one(x) for x in lfdis)), CONFIRM_TIMEOUT)
    except TimeoutError:
        errors += 1
    finally:
        await admin.close()
    from fleet.stats import percentiles

    return {
        "sampled_devices": len(lfdis),
        "received_stored": len(delays),
        "missing": len(missing),
        "missing_examples": missing[:5],
        "errors": errors,
        "server_seconds_after_creation": percentiles(delays, digits=0),
    }


# -- the fleet process -------------------------------------------------------------------------


@dataclass
class Marks:
    """Monotonic times (in this process) of the fleet's phases, read off its stderr."""

    running: float | None = None
    all_ready: float | None = None
    issued: float | None = None
    received: float | None = None
    ended: float | None = None
    control: str | None = None


def follow(stream: TextIO, marks: Marks, log: TextIO, echo: bool) -> None:
    for line in stream:
        now = time.monotonic()
        log.write(line)
        log.flush()
        if echo:
            sys.stderr.write(line)
            sys.stderr.flush()
        if RUNNING.match(line):
            marks.running = now
        elif ALL_READY.match(line):
            marks.all_ready = now
        elif found := ISSUED.match(line):
            marks.issued = now
            marks.control = found.group(1)
        elif RECEIVED.match(line):
            marks.received = now


def run_fleet(
    command: list[str], marks: Marks, log: Path, bound: float, echo: bool
) -> tuple[int, str]:
    """Run ``csip fleet``; SIGINT at ``bound`` seconds (it then writes its summary), SIGKILL
    if it has not ended ``FLEET_GRACE`` seconds later."""
    with log.open("w") as log_stream:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert process.stdout is not None and process.stderr is not None
        reader = threading.Thread(
            target=follow, args=(process.stderr, marks, log_stream, echo), daemon=True
        )
        reader.start()
        output: queue.Queue[str] = queue.Queue()
        stdout = process.stdout
        out_reader = threading.Thread(target=lambda: output.put(stdout.read()), daemon=True)
        out_reader.start()
        try:
            process.wait(bound)
        except subprocess.TimeoutExpired:
            sys.stderr.write(f"bench-scale: the fleet ran past {bound:.0f} s; interrupting\n")
            process.send_signal(signal.SIGINT)
            try:
                process.wait(FLEET_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
        marks.ended = time.monotonic()
        reader.join(10)
        out_reader.join(10)
    text = output.get() if not output.empty() else ""
    return process.returncode, text


# -- the run ------------------------------------------------------------------------------------


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scale",
        description="One system-wide control to N simulated devices while they poll.",
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument(
        "--cycle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="one DERProgramList poll cycle, in run seconds (default: 2N/600, 30 to 300: "
        "about 600 conditional GETs a second once every device polls)",
    )
    parser.add_argument("--derp-rate", type=int, default=600, help="DERProgramList pollRate")
    parser.add_argument(
        "--slow-rate",
        type=int,
        default=None,
        help="pollRate of EndDeviceList and FSAs, postRate of DERStatus and readings "
        "(default: 20 DERProgramList cycles)",
    )
    parser.add_argument(
        "--control-start",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="the control starts this long after it is issued (server time; default 3600, "
        'so the run measures "received" alone; 0: at once, and devices also post "started")',
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="discovery spread (default 12 ms a device: about what the server's core takes)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="polling after the last discovery before the control (default: one cycle)",
    )
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument(
        "--max-run",
        type=float,
        default=None,
        metavar="SECONDS",
        help="bound on the fleet run (default: 0.05 s per device + settle + 4 cycles, "
        "at least 600)",
    )
    parser.add_argument("--verify-sample", type=int, default=1000)
    parser.add_argument(
        "--confirm-sample",
        type=int,
        default=5000,
        help="devices whose stored 'received' is read back from the server (0: all)",
    )
    parser.add_argument("--pki", type=Path, default=WORK / "pki", help="kept: certificates")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quiet", action="store_true", help="do not echo the fleet's progress")
    return parser.parse_args()


def note(text: str) -> None:
    sys.stderr.write(f"bench-scale: {text}\n")
    sys.stderr.flush()


def main() -> int:
    args = options()
    n = args.devices
    cycle = args.cycle if args.cycle is not None else min(300.0, max(30.0, 2 * n / POLLS))
    settle = args.settle if args.settle is not None else cycle
    compression = args.derp_rate / cycle
    ramp = args.ramp if args.ramp is not None else DISCOVERY * n
    bound = args.max_run or max(600.0, 0.05 * n + settle + 4 * cycle)
    slow_rate = args.slow_rate or 20 * args.derp_rate
    server_pin, fleet_pin, pinned = pinning()
    WORK.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    facts = machine()
    started_wall = time.time()

    from fleet.identities import ensure_identities
    from gateway.pki import ensure_pki

    note(f"{n:,} devices, cycle {cycle:g} s (compression {compression:g}), {pinned}")
    ensure_pki(args.pki, devices=0, aggregators=0)
    began = time.monotonic()
    identities = ensure_identities(
        args.pki,
        n,
        progress=lambda done, total: note(f"certificates: {done:,}/{total:,}"),
    )
    note(f"certificates ready in {time.monotonic() - began:.1f} s")

    data_root = Path(tempfile.mkdtemp(prefix="csip-scale-"))
    server = start_server(server_pin, data_root / "data", args.pki, WORK / "server.log")
    note(f"csip serve (pid {server.process.pid}) on :{server.port}, admin :{server.admin_port}")
    rates = {"dcap": 86400, "time": 86400, "edev": slow_rate, "fsa": slow_rate}
    rates["derp"] = args.derp_rate
    post_rates = {"edev": slow_rate, "mup": slow_rate}
    fleet_json = WORK / "fleet.json"
    fleet_json.unlink(missing_ok=True)
    command = [
        *fleet_pin, sys.executable, "-m", "csip", "fleet",
        "--devices", str(n), "--proxy-header",
        "--server", f"http://127.0.0.1:{server.port}",
        "--pki", str(args.pki), "--admin", server.admin, "--admin-token", TOKEN,
        "--programs", "system", "--time-compression", f"{compression:g}",
        "--ramp", f"{ramp:g}", "--duration", f"{bound:g}",
        "--issue-control-after-ready", f"{settle:g}", "--stop-when-received", "3",
        "--control-start", str(args.control_start), "--control-duration", "3600",
        "--connections", str(args.connections),
        "--verify-sample", str(args.verify_sample), "--seed", "1",
        "--progress-every", "10", "--json", str(fleet_json),
    ]  # fmt: skip
    marks = Marks()
    try:
        admin_call(server, "PUT", "/poll-rates", rates)
        admin_call(server, "PUT", "/post-rates", post_rates)
        server.start_sampling()
        launched = time.monotonic()
        note("starting csip fleet: " + " ".join(command))
        code, stdout = run_fleet(
            command, marks, WORK / "fleet.log", bound + 600 + n * 0.002, not args.quiet
        )
        sys.stdout.write(stdout)
        note(f"csip fleet exited {code}")
        metrics = server_metrics(server)
        summary = json.loads(fleet_json.read_text()) if fleet_json.exists() else None
        confirmation = None
        control = (summary or {}).get("control")
        if control:
            program = admin_call(server, "GET", "/programs/system")
            created = next(
                (
                    int(c["creationTime"])
                    for c in program.get("controls", [])
                    if str(c.get("mRID", "")).upper() == control["mRID"] and "creationTime" in c
                ),
                None,
            )
            lfdis = [identity.lfdi for identity in identities]
            size = args.confirm_sample
            if 0 < size < len(lfdis):
                step = len(lfdis) / size
                lfdis = [lfdis[int(i * step)] for i in range(size)]
            confirmation = asyncio.run(
                confirm_received(server, lfdis, control["mRID"], created or 0)
            )
            confirmation["control_creation_time"] = created
    finally:
        server.stop()
        shutil.rmtree(data_root, ignore_errors=True)

    results = report(
        args, facts, pinned, cycle, compression, ramp, settle, bound, rates, post_rates,
        command, server, marks, launched, code, metrics, summary, confirmation, started_wall,
    )  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS-draft.md").write_text(markdown(results))
    note(f"wrote {args.out / 'results.json'} and {args.out / 'RESULTS-draft.md'}")
    ok = code == 0 and bool(results["control"]["every_device_received"])
    return 0 if ok else 1


def report(
    args: argparse.Namespace,
    facts: dict[str, Any],
    pinned: str,
    cycle: float,
    compression: float,
    ramp: float,
    settle: float,
    bound: float,
    rates: dict[str, int],
    post_rates: dict[str, int],
    command: list[str],
    server: Server,
    marks: Marks,
    launched: float,
    code: int,
    metrics: dict[str, Any],
    summary: dict[str, Any] | None,
    confirmation: dict[str, Any] | None,
    started_wall: float,
) -> dict[str, Any]:
    def cpu_between(start: float | None, end: float | None) -> float | None:
        if start is None or end is None:
            return None
        a, b = server.cpu_at(start), server.cpu_at(end)
        return None if a is None or b is None else round(b - a, 2)

    def seconds(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round(end - start, 1)

    phases = {
        "setup": (launched, marks.running),  # fleet start, certificates loaded, registration
        "discovery": (marks.running, marks.all_ready),
        "polling_before_control": (marks.all_ready, marks.issued),
        "control_until_all_received": (marks.issued, marks.received),
        "whole_fleet_run": (marks.running, marks.ended),
    }
    server_phases = {}
    for name, (start, end) in phases.items():
        cpu = cpu_between(start, end)
        span = seconds(start, end)
        server_phases[name] = {
            "seconds": span,
            "cpu_s": cpu,
            "cpu_share": round(cpu / span, 3) if cpu is not None and span else None,
        }
    final = server.samples[-1] if server.samples else None
    timeline = [
        {"t": round(s.t - launched, 1), "cpu_s": round(s.cpu_s, 2), "rss_mb": round(s.rss_mb, 1)}
        for index, s in enumerate(server.samples)
        if index % 5 == 0
    ]
    control = (summary or {}).get("control") or {}
    requests = (summary or {}).get("requests", {})
    totals = requests.get("totals", {})
    fetched, received = control.get("fetched", {}), control.get("received", {})
    return {
        "benchmark": "bench_scale",
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started_wall)),
        "command": "python -m benchmarks.bench_scale " + " ".join(sys.argv[1:]),
        "fleet_command": " ".join(command),
        "machine": facts,
        "pinning": pinned,
        "model": {
            "devices": args.devices,
            "identity": "proxy-header (X-Client-Cert from a trusted proxy on 127.0.0.1)",
            "programs": "system (every device)",
            "poll_rates_s": rates,
            "post_rates_s": post_rates,
            "time_compression": round(compression, 4),
            "derp_poll_cycle_s": cycle,
            "discovery_ramp_s": ramp,
            "settle_s": settle,
            "control_starts_after_s": args.control_start,
            "max_run_s": bound,
            "connections": args.connections,
        },
        "fleet_exit_code": code,
        "control": {
            "mRID": control.get("mRID"),
            "issued_at_run_s": control.get("issued_at_s"),
            "devices": control.get("devices"),
            "every_device_fetched": fetched.get("all"),
            "all_fetched_within_s": fetched.get("all_within_s"),
            "fetched_s": fetched.get("seconds"),
            "every_device_received": received.get("all"),
            "all_received_within_s": received.get("all_within_s"),
            "received_s": received.get("seconds"),
            "server_confirmation": confirmation,
        },
        "server": {
            "cpu_s_total": round(final.cpu_s, 2) if final else None,
            "peak_rss_mb": server.peak_rss,
            "phases": server_phases,
            "requests_seen": metrics,
            "timeline_every_5s": timeline,
        },
        "fleet": {
            "devices_discovered": (summary or {}).get("devices", {}).get("discovered"),
            "all_discovered_at_s": (summary or {}).get("devices", {}).get("all_discovered_at_s"),
            "elapsed_s": (summary or {}).get("run", {}).get("elapsed_s"),
            "requests": totals.get("requests"),
            "requests_per_second": totals.get("per_second"),
            "not_modified_share": totals.get("not_modified_share"),
            "errors": totals.get("errors"),
            "latency_ms": totals.get("latency_ms"),
            "by_kind": requests.get("by_kind"),
            "schedule_lag_s": (summary or {}).get("schedule_lag_s"),
            "responses_posted": (summary or {}).get("responses", {}).get("posted"),
            "verification": (summary or {}).get("verification"),
            "own_cost": (summary or {}).get("fleet"),
        },
    }


def markdown(results: dict[str, Any]) -> str:
    m, model, control = results["machine"], results["model"], results["control"]
    server, fleet = results["server"], results["fleet"]
    confirmation = control.get("server_confirmation") or {}
    latency = fleet.get("latency_ms") or {}
    lag = fleet.get("schedule_lag_s") or {}
    verification = fleet.get("verification") or {}

    def spread(values: dict[str, Any] | None) -> str:
        if not values or not values.get("count"):
            return "n/a"
        return f"p50 {values['p50']} s, p90 {values['p90']} s, p99 {values['p99']} s"

    rows = [
        ("devices", f"{model['devices']:,} (proxy-header identity, one `system` program)"),
        (
            "poll model",
            f"DERProgramList pollRate {model['poll_rates_s']['derp']} s at time compression "
            f"{model['time_compression']:g} = one poll cycle every {model['derp_poll_cycle_s']:g} s"
            f"; EndDeviceList, FSAs, DERStatus and readings every {model['poll_rates_s']['edev']} s"
            " (server time)",
        ),
        (
            "the control",
            f"system program (every device), responseRequired 03, starts "
            f"{model['control_starts_after_s']} s after issuing",
        ),
        (
            "all discovered",
            f"{fleet.get('devices_discovered')} devices, by +{fleet.get('all_discovered_at_s')} s",
        ),
        (
            "control fetched by every device",
            f"{control.get('all_fetched_within_s')} s after issuing "
            f"({spread(control['fetched_s'])})",
        ),
        (
            '"received" posted by every device',
            f"{control.get('all_received_within_s')} s after issuing "
            f"({spread(control['received_s'])})",
        ),
        (
            'server-side check of "received"',
            f"{confirmation.get('received_stored')} of {confirmation.get('sampled_devices')} "
            f"sampled devices stored; last at +"
            f"{(confirmation.get('server_seconds_after_creation') or {}).get('max')} s "
            "(server clock, whole seconds)",
        ),
        (
            "server CPU",
            f"{server['cpu_s_total']} s in all; "
            + "; ".join(
                f"{name.replace('_', ' ')}: {p['cpu_s']} s over {p['seconds']} s"
                for name, p in server["phases"].items()
                if p["seconds"] is not None
            ),
        ),
        ("server peak RSS", f"{server['peak_rss_mb']} MB"),
        (
            "fleet requests",
            f"{fleet.get('requests') or 0:,} ({fleet.get('requests_per_second')}/s), "
            f"{(fleet.get('not_modified_share') or 0):.1%} of GETs 304, "
            f"errors {fleet.get('errors') or 'none'}",
        ),
        (
            "fleet latency",
            f"p50 {latency.get('p50')} ms, p90 {latency.get('p90')} ms, "
            f"p99 {latency.get('p99')} ms, max {latency.get('max')} ms",
        ),
        ("fleet schedule lag", f"p50 {lag.get('p50')} s, p99 {lag.get('p99')} s"),
        (
            "server's view compared",
            f"{verification.get('sampled_devices')} devices, "
            f"{verification.get('disagreements')} disagreements",
        ),
        ("server requests (its /metrics)", f"{server['requests_seen']}"),
    ]
    lines = [
        "# Scale run (draft)",
        "",
        f"One system-wide DERControl (responseRequired 03) issued to {model['devices']:,} "
        "simulated CSIP devices while they poll; measured "
        f"{results['date_utc']} UTC.",
        "",
        "| figure | value |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        "Command:",
        "",
        f"    {results['command']}",
        "",
        "which ran the fleet as:",
        "",
        f"    {results['fleet_command']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"{m['platform']}; {results['pinning']}; load average at start "
        f"{m['load_average_at_start']}; commit {m['commit']}.",
        "",
        "Times are from the admin API request that created the control, on the fleet's "
        "clock; every device answers at its next DERProgramList poll, so the time to reach "
        "every device is bounded by one poll cycle plus the fleet's schedule lag.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
