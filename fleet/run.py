"""``csip fleet``: one run of a simulated fleet, from certificates to the summary.

1. Identities: one certificate per device from the PKI's CA, issued once and cached
   (``fleet/identities.py``).
2. Setup (unless ``--no-setup``): the layout's programs and every device's registration and FSAs,
   through the admin API (``fleet/admin.py``).
3. The run: devices discover, poll and post on the schedule the server's rates give them,
   divided by the time compression (``fleet/client.py``, ``fleet/workers.py``), with the kernel
   resolving their controls (``fleet/kernel.py``) and a progress line on stderr. A control is
   issued at ``--issue-control-at`` seconds, or ``--issue-control-after-ready`` seconds after
   every device has finished discovery (whichever comes first when both are given).
4. The end, at ``--duration``, ``--stop-when-received`` seconds after every member of the
   issued control's program has posted "received", or Ctrl-C: jobs in flight finish, responses
   already due are posted,
   then a sample of devices is compared with the server's view (``fleet/verify.py``) and the
   summary printed (and written with ``--json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.admin import AdminClient, AdminError, Registration, find_token
from fleet.client import FleetClient
from fleet.clock import ServerClock
from fleet.device import Device, Phase
from fleet.identities import ensure_identities, fleet_directory
from fleet.kernel import FleetKernel
from fleet.layout import Layout
from fleet.progress import Progress, Snapshot
from fleet.schedule import Job, ramp_start
from fleet.stats import RequestStats
from fleet.summary import IssuedControl, control_report, render, request_report
from fleet.transport import Transport, escaped_certificate
from fleet.verify import Verification, sample, verify
from fleet.workers import WorkerPool

STOP_GRACE = 10.0  # seconds for jobs in flight to finish at the end
READY_CHECK = 0.5  # seconds between looks at discovery and "received" counts
DRAIN = 15.0  # seconds to post the responses already due at the end


@dataclass
class FleetOptions:
    devices: int = 10
    server: str | None = None
    proxy_header: bool = False
    header_name: str = "X-Client-Cert"
    pki: Path = Path("var/pki")
    identities: Path | None = None
    admin: str = "http://127.0.0.1:8080"
    admin_token: str | None = None
    data: Path | None = Path("var/data")
    setup: bool = True
    programs: str = "system"
    default_control: dict[str, Any] | None = None
    time_compression: float = 1.0
    jitter: float = 0.1
    duration: float = 60.0
    ramp: float | None = None
    connections: int = 128
    timeout: float = 30.0
    issue_control_at: float | None = None
    issue_control_after_ready: float | None = None
    stop_when_received: float | None = None
    control_program: str | None = None
    control_duration: int = 300
    control_start: int = 0
    control_base: dict[str, Any] = field(default_factory=lambda: {"opModMaxLimW": 5000})
    control_randomize_start: int = 0
    verify_sample: int = 200
    json_path: Path | None = None
    profile: str = "csip"
    seed: int | None = None
    progress_every: float = 10.0
    csip_tls: bool = False

    @property
    def issues_control(self) -> bool:
        return self.issue_control_at is not None or self.issue_control_after_ready is not None

    @property
    def mode(self) -> str:
        return "proxy-header" if self.proxy_header else "mtls"

    @property
    def server_url(self) -> str:
        if self.server:
            return self.server
        return "http://127.0.0.1:8443" if self.proxy_header else "https://127.0.0.1:8443"

    def ramp_seconds(self) -> float:
        """Spread discovery: by default about 100 devices a second, at most five minutes."""
        if self.ramp is not None:
            return self.ramp
        return min(300.0, self.devices / 100)


class FleetRun:
    def __init__(self, options: FleetOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.layout = Layout.parse(options.programs)
        self.stats = RequestStats()
        self.clock = ServerClock()
        self.kernel = FleetKernel(self.clock, profile=options.profile)
        self.rng = random.Random(options.seed)
        self.stopping = asyncio.Event()
        self.interrupted = False
        self.admin: AdminClient | None = None
        self.registration: Registration | None = None
        self.program_keys: dict[str, str] = {}  # server program id -> mRID
        self.issued: IssuedControl | None = None
        self.members: list[Device] = []  # the devices in the issued control's program
        self.notes: list[str] = []
        self.devices: list[Device] = []
        self.transport = Transport(
            server=options.server_url,
            mode=options.mode,
            stats=self.stats,
            ca=options.pki / "ca.pem",
            connections=options.connections,
            timeout=options.timeout,
            header=options.header_name,
            csip_tls=options.csip_tls,
        )
        self.client = FleetClient(
            self.transport,
            self.kernel,
            compression=options.time_compression,
            jitter=options.jitter,
            rng=self.rng,
        )
        self.pool = WorkerPool(self.client, options.connections)
        self.started = 0.0
        self.started_wall = 0.0
        self.all_ready_at: float | None = None  # seconds into the run every device was ready
        self.elapsed = 0.0
        self.cpu_started = 0.0
        self.cpu = 0.0  # CPU seconds this process used during the run (the fleet's own cost)
        self._last = (0.0, 0)

    # -- phases ---------------------------------------------------------------------------------

    async def prepare(self) -> None:
        options = self.options
        self.progress.note(
            f"{options.devices:,} device certificates in "
            f"{options.identities or fleet_directory(options.pki)}"
        )
        started = time.monotonic()
        identities = await asyncio.to_thread(
            ensure_identities,
            options.pki,
            options.devices,
            directory=options.identities,
            bundles=not options.proxy_header,
            progress=lambda done, total: self.progress.note(f"issued {done:,}/{total:,}"),
        )
        self.progress.note(f"certificates ready in {time.monotonic() - started:.1f} s")
        for identity in identities:
            credential = (
                escaped_certificate(identity.certificate)
                if options.proxy_header
                else str(identity.bundle)
            )
            self.devices.append(Device(identity.index, identity.name, identity.lfdi, credential))
        self.client.add(self.devices)
        needs_admin = options.setup or options.issues_control or options.verify_sample > 0
        token = find_token(options.admin_token, options.data)
        if token is None:
            if options.setup or options.issues_control:
                raise AdminError(
                    "no admin token: give --admin-token, set CSIP_ADMIN_TOKEN or point --data "
                    "at the server's data directory (or run with --no-setup)"
                )
            if needs_admin:
                self.notes.append("no admin token: the server's view was not compared")
            return
        self.admin = AdminClient(options.admin, token)
        if options.setup:
            created = await self.admin.ensure_programs(self.layout, options.default_control)
            self.progress.note(
                f"programs: {len(self.layout.programs())} in the layout, {created} created"
            )
            self.registration = await self.admin.register(
                identities,
                self.layout,
                progress=lambda done, total: self.progress.note(f"registered {done:,}/{total:,}"),
            )
            reg = self.registration
            self.progress.note(
                f"registration ({reg.mode}): {reg.created:,} created, {reg.updated:,} updated, "
                f"{reg.unchanged:,} unchanged, {reg.failed:,} failed in {reg.seconds:.1f} s"
            )
        self.program_keys = {
            program: str(body["mRID"]).upper()
            for program, body in (await self.admin.programs()).items()
        }

    async def run(self) -> None:
        options = self.options
        client, pool, transport = self.client, self.pool, self.transport
        await transport.start()
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.cpu_started = time.process_time()
        self._last = (self.started, 0)
        ramp = options.ramp_seconds()
        self.progress.note(
            f"running {len(self.devices):,} devices for at most {options.duration:g} s "
            f"(discovery spread over {ramp:g} s, time compression {options.time_compression:g})"
        )
        for device in self.devices:
            offset = ramp_start(device.index, len(self.devices), ramp)
            client.push(self.started + offset, device, Job.DISCOVER)
        pool.start()
        tasks = [
            asyncio.create_task(self.kernel.run(self.stopping), name="fleet-kernel"),
            asyncio.create_task(self.progress.run(self.stopping, self.snapshot)),
        ]
        if options.issues_control:
            tasks.append(asyncio.create_task(self._issue_when_due(), name="fleet-control"))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=options.duration)
        finally:
            self.stopping.set()
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signal.SIGINT)
            self.progress.done()
            self.elapsed = time.monotonic() - self.started
            self.cpu = time.process_time() - self.cpu_started
            await pool.stop(STOP_GRACE)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, AdminError):
                    await task
            await self._drain(client)
            await transport.close()

    def _interrupt(self) -> None:
        if self.stopping.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.interrupted = True
        self.progress.note("interrupted: finishing and writing the summary (Ctrl-C again quits)")
        self.stopping.set()

    def ready(self) -> int:
        return sum(1 for d in self.devices if d.phase is Phase.READY)

    async def _issue_when_due(self) -> None:
        """Issue the control at its time, then (with ``--stop-when-received``) end the run
        that long after every member device has posted "received"."""
        options = self.options
        deadline = None
        if options.issue_control_at is not None:
            deadline = self.started + options.issue_control_at
        if options.issue_control_after_ready is not None:
            while self.ready() < len(self.devices):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                await asyncio.sleep(READY_CHECK)
            else:
                self.all_ready_at = time.monotonic() - self.started
                self.progress.note(
                    f"all {len(self.devices):,} devices discovered at +{self.all_ready_at:.1f} s"
                )
                settled = time.monotonic() + options.issue_control_after_ready
                deadline = settled if deadline is None else min(deadline, settled)
        assert deadline is not None
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        await self._issue_control()
        if options.stop_when_received is None or self.issued is None:
            return
        while self.client.tracked_received < len(self.members):
            await asyncio.sleep(READY_CHECK)
        self.progress.note(
            f"every member posted received by +{time.monotonic() - self.started:.1f} s; "
            f"ending in {options.stop_when_received:g} s"
        )
        await asyncio.sleep(options.stop_when_received)
        self.stopping.set()

    async def _issue_control(self) -> None:
        assert self.admin is not None
        options = self.options
        program = options.control_program or self.layout.groups[0].programs()[0]
        start = self.clock.instant() + options.control_start
        body = {
            "description": "csip fleet control",
            "start": start,
            "duration": options.control_duration,
            "randomizeStart": options.control_randomize_start,
            "responseRequired": "03",
            "base": options.control_base,
        }
        sent = time.monotonic()
        try:
            mrid = await self.admin.create_control(program, body)
        except AdminError as exc:
            self.notes.append(f"the control could not be issued: {exc}")
            self.progress.note(f"control not issued: {exc}")
            return
        self.issued = IssuedControl(
            mrid=mrid,
            program=program,
            program_key=self.program_keys.get(program),
            sent=sent,
            offset=sent - self.started,
            start=start,
        )
        self.members = self._members(self.issued)
        self.client.track(mrid)
        self.progress.note(f"issued control {mrid} in {program} at +{sent - self.started:.1f} s")

    async def _drain(self, client: FleetClient) -> None:
        """Post what is due and fetched before comparing with the server."""
        self.kernel.flush()
        limit = asyncio.Semaphore(self.options.connections)
        deadline = time.monotonic() + DRAIN

        async def one(device: Device) -> None:
            async with limit:
                if time.monotonic() < deadline:
                    await client.respond(device)

        owing = [d for d in self.devices if any(d.has_fetched(e[0]) for e in d.waiting)]
        await asyncio.gather(*(one(device) for device in owing))

    async def compare(self) -> Verification | None:
        if self.admin is None or self.options.verify_sample <= 0:
            return None
        cutoff = self.kernel.flush()
        # Let the server's clock pass the cutoff, so its timers have run for every instant.
        await asyncio.sleep(max(0.0, cutoff + 1.5 - self.clock.now()))
        ready = [d for d in self.devices if d.phase is Phase.READY]
        chosen = sample(ready, self.options.verify_sample)
        return await verify(
            self.admin,
            chosen,
            known_controls=set(self.kernel.controls),
            fleet_effective=self.kernel.effective,
            programs=self.program_keys,
            cutoff=cutoff,
            since=int(self.started_wall + self.clock.offset) - 1,
        )

    # -- reporting --------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        last_time, last_count = self._last
        total = self.stats.total
        rate = (total - last_count) / (now - last_time) if last_time else 0.0
        self._last = (now, total)
        gets = [s for k, s in self.stats.kinds.items() if k.startswith("GET ")]
        control = None
        if self.issued is not None:
            control = (
                self.client.tracked_fetched,
                self.client.tracked_received,
                len(self.members),
            )
        lag = self.client.lag
        return Snapshot(
            elapsed=now - self.started,
            duration=self.options.duration,
            devices=len(self.devices),
            ready=self.client.discovered,
            requests=total,
            rate=rate,
            not_modified=sum(s.outcomes.get("304", 0) for s in gets),
            gets=sum(s.count for s in gets),
            errors=self.stats.error_count(),
            responses=sum(self.client.responses_posted.values()),
            lag_p99=lag.percentile(99) if lag.count else None,
            control=control,
        )

    def _members(self, issued: IssuedControl) -> list[Device]:
        """The devices in the issued control's program: by the layout when the run set it up,
        else by what the devices found in their FSAs."""
        if self.options.setup:
            return [d for d in self.devices if issued.program in self.layout.memberships(d.index)]
        key = issued.program_key
        return [d for d in self.devices if d.programs is not None and key in d.programs]

    def summary(self, verification: Verification | None) -> dict[str, Any]:
        client = self.client
        elapsed = self.elapsed
        ready = self.ready()
        out: dict[str, Any] = {
            "run": {
                "devices": len(self.devices),
                "identity": self.options.mode,
                "server": self.options.server_url,
                "time_compression": self.options.time_compression,
                "duration_s": self.options.duration,
                "elapsed_s": round(elapsed, 1),
                "interrupted": self.interrupted,
                "profile": self.options.profile,
                "programs": self.options.programs,
            },
            "devices": {
                "discovered": ready,
                "all_discovered_at_s": (
                    None if self.all_ready_at is None else round(self.all_ready_at, 1)
                ),
                "not_discovered": len(self.devices) - ready,
                "discovery_failures": dict(client.discovery_failures.most_common(10)),
            },
            "registration": self.registration.to_json() if self.registration else None,
            "requests": request_report(self.stats, elapsed),
            "schedule_lag_s": client.lag.summary(scale=1.0, digits=3),
            "job_failures": dict(client.job_failures.most_common(20)),
            "responses": {
                "posted": {str(k): v for k, v in sorted(client.responses_posted.items())},
                "refused": dict(client.responses_failed),
                "waiting": sum(len(d.waiting) for d in self.devices),
            },
            "kernel": {
                **self.kernel.engine.stats(),
                "refused_inputs": self.kernel.refused[:20],
                "clock_offset_s": round(self.clock.offset, 3),
                "clock_uncertainty_s": self.clock.uncertainty,
            },
            "fleet": {
                "cpu_s": round(self.cpu, 2),
                "cpu_ms_per_request": (
                    round(self.cpu / self.stats.total * 1000, 3) if self.stats.total else None
                ),
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "parsed_bodies": client.parse_misses,
                "parse_cache_hits": client.parse_hits,
                "tls_contexts": self.transport.contexts_made,
                "crashes": self.pool.crashes,
            },
            "control": (control_report(self.issued, self.members) if self.issued else None),
            "verification": verification.to_json() if verification else None,
            "notes": self.notes,
        }
        if verification is None and self.notes:
            out["verification_skipped"] = self.notes[0]
        return out

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()


async def run_fleet(options: FleetOptions) -> dict[str, Any]:
    """Run the fleet and return the summary (also printed, and written to ``--json``)."""
    progress = Progress(plain_every=options.progress_every)
    fleet = FleetRun(options, progress)
    try:
        await fleet.prepare()
        await fleet.run()
        verification = await fleet.compare()
        summary = fleet.summary(verification)
    finally:
        await fleet.close()
    print(render(summary))
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def exit_status(summary: dict[str, Any]) -> int:
    """0, or 1 when the server's view of the devices disagrees with the fleet's."""
    verification = summary.get("verification") or {}
    return 1 if verification.get("disagreements") else 0
