"""What each simulated device does: discover, poll, post, respond, as a CSIP client.

Theory of operation. A device knows one URL, ``/dcap``, and follows hrefs from there:
DeviceCapability -> Time and EndDeviceList -> its own EndDevice (found by its LFDI) -> its
FunctionSetAssignmentsList -> each FSA's DERProgramList -> each DERProgram's DERControlList,
DefaultDERControl and, when a control or default links a curve it does not know, the
DERCurveList; and EndDevice -> DERList -> DER -> where to PUT its DERCapability, DERSettings and
DERStatus; DeviceCapability -> MirrorUsagePointList, where it creates its MirrorUsagePoint.
That is ``discover``. Then each recurring ``Job`` (``fleet/schedule.py``) re-reads one list at
the pollRate the server put on it, or posts at the postRate it was given, for as long as the run
lasts; the worker pool (``fleet/workers.py``) decides when.

Every GET is conditional (``fleet/transport.py``); on a 304 there is nothing new to learn. On a
200 the body is parsed once per (URL, ETag) for the whole fleet (a program's lists are the same
body for each member) and its facts go to the fleet's kernel (``fleet/kernel.py``), which works
out the responses; ``on_due`` routes each to its devices, and a device posts a control's
responses to the control's replyTo once it has fetched that control itself.

A failure (an error status, a timeout, a body that does not parse) ends the current job; a
recurring job simply runs again at its next time, a failed discovery is retried with backoff.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from engine.kernel import ResponseDue
from fleet import reports, resources
from fleet.device import Device, Phase
from fleet.kernel import FleetKernel, Program
from fleet.schedule import RECURRING, Job, Schedule, first_due, interval, next_due
from fleet.stats import Histogram
from fleet.transport import Reply, Transport

T = TypeVar("T")

# Page sizes (the l query parameter). A device sees only its own EndDevice and has at most 15
# FSAs; CSIP devices hold at least 24 events per program, and DERControlLists are paged.
END_DEVICES = 15
FSAS = 15
PROGRAMS = 50
CONTROLS = 24
CURVES = 50
PARSED_CACHE = 4096
RETRY_LIMIT = 60.0  # seconds: longest wait before discovery is tried again
RESPONSE_RETRY = 2.0  # seconds before a response that failed (5xx, timeout) is posted again


class Unavailable(Exception):
    """A request that did not give what the device needs (``outcome``: status or failure)."""

    def __init__(self, what: str, outcome: str) -> None:
        super().__init__(f"{what}: {outcome}")
        self.what = what
        self.outcome = outcome


def page(href: str, limit: int, start: int = 0) -> str:
    return f"{href}?s={start}&l={limit}" if start else f"{href}?l={limit}"


class FleetClient:
    def __init__(
        self,
        transport: Transport,
        kernel: FleetKernel,
        *,
        compression: float,
        jitter: float,
        rng: random.Random,
    ) -> None:
        self.devices: list[Device] = []
        self.by_lfdi: dict[str, Device] = {}
        self.transport = transport
        self.kernel = kernel
        kernel.on_due = self.on_due
        self.compression = compression
        self.jitter = jitter
        self.rng = rng
        self.schedule = Schedule()
        self.wake: Callable[[float], None] = lambda when: None  # set by the worker pool
        self._parsed: dict[tuple[object, bytes], object] = {}
        self.parse_hits = 0
        self.parse_misses = 0
        # What the summary reports beside the per-request statistics.
        self.discovered = 0
        self.discovery_failures: Counter[str] = Counter()
        self.job_failures: Counter[str] = Counter()
        self.responses_posted: Counter[int] = Counter()
        self.responses_failed: Counter[str] = Counter()
        self.lag = Histogram()
        # The control the run issued, if any: counted as devices fetch it and say "received".
        self.tracked: str | None = None
        self.tracked_fetched = 0
        self.tracked_received = 0

    def add(self, devices: list[Device]) -> None:
        """The fleet's devices; ``Device.index`` is the position in ``devices``."""
        self.devices = devices
        self.by_lfdi = {device.lfdi: device for device in devices}

    # -- scheduling ---------------------------------------------------------------------------

    def push(self, when: float, device: Device, job: Job, *, extra: bool = False) -> None:
        self.schedule.push(when, device.index, job, extra=extra)
        self.wake(when)

    def _rate(self, device: Device, job: Job) -> int | None:
        if job is Job.STATUS:
            return device.post_rate
        if job is Job.METER:
            return device.meter_rate
        return device.rates[job]

    def _period(self, device: Device, job: Job) -> float:
        return interval(self._rate(device, job), self.compression, self.jitter, self.rng)

    def _chain(self, device: Device, job: Job, due: float) -> None:
        now = time.monotonic()
        self.push(next_due(due, self._period(device, job), now), device, job)

    def extra_run(self, device: Device, job: Job) -> None:
        """Run ``job`` for the device as soon as it is free, outside its recurring chain."""
        self.push(time.monotonic(), device, job, extra=True)

    async def run_job(self, device: Device, job: Job, due: float, *, extra: bool = False) -> None:
        """One run of ``job``; a recurring job's chained run puts its next run on the
        schedule (an ``extra`` run does not)."""
        try:
            if job is Job.DISCOVER:
                await self.discover(device)
            elif job is Job.RESPOND:
                await self.respond(device)
            elif device.phase is Phase.READY:
                await self._recurring(device, job)
        except (Unavailable, resources.XmlRejected) as exc:
            if isinstance(exc, Unavailable):
                reason = f"{exc.what}: {exc.outcome}"
            else:
                reason = f"unreadable body ({exc.reason})"
            if job is Job.DISCOVER:
                self._discovery_failed(device, reason)
            else:
                self.job_failures[f"{job.name.lower()}: {reason}"] += 1
        except Exception as exc:
            if job is Job.DISCOVER:  # a bug: the worker reports it; the device tries again
                self._discovery_failed(device, f"crash ({type(exc).__name__})")
            raise
        finally:
            if job in RECURRING and not extra:
                if device.phase is Phase.READY:
                    self._chain(device, job, due)
                else:
                    device.chains &= ~(1 << job)  # the chain ends; discovery starts it again

    async def _recurring(self, device: Device, job: Job) -> None:
        if job is Job.DCAP:
            await self._poll_dcap(device)
        elif job is Job.TIME:
            await self._poll_time(device)
        elif job is Job.EDEV:
            await self._poll_end_devices(device)
        elif job is Job.FSA:
            await self._poll_fsas(device)
        elif job is Job.DERP:
            await self._poll_programs(device)
        elif job is Job.STATUS:
            await self._post_status(device)
        elif job is Job.METER:
            await self._post_readings(device)

    # -- discovery ----------------------------------------------------------------------------

    async def discover(self, device: Device) -> None:
        device.phase = Phase.DISCOVERING
        await self._poll_dcap(device)
        await self._poll_time(device)
        await self._poll_end_devices(device)
        await self._poll_fsas(device)
        await self._poll_programs(device)
        await self._find_der(device)
        now = self.kernel.instant()
        await self._put(device, device.capability_href, "DERCapability", reports.der_capability)
        await self._put(
            device,
            device.settings_href,
            "DERSettings",
            lambda lfdi: reports.der_settings(lfdi, now),
        )
        await self._post_status(device, strict=True)
        await self._create_mirror(device)
        device.phase = Phase.READY
        device.failures = 0
        self.discovered += 1
        now_local = time.monotonic()
        for job in RECURRING:
            if not device.chains & (1 << job):  # after a rediscovery, a chain may still run
                device.chains |= 1 << job
                self.push(first_due(now_local, self._period(device, job), self.rng), device, job)

    def _discovery_failed(self, device: Device, reason: str) -> None:
        self.discovery_failures[reason] += 1
        device.phase = Phase.RETRYING
        device.failures += 1
        delay = min(RETRY_LIMIT, 2.0**device.failures) * (0.5 + self.rng.random())
        self.push(time.monotonic() + delay, device, Job.DISCOVER)

    async def _fetch(
        self, device: Device, href: str, resource: str, parser: Callable[[bytes], T]
    ) -> T | None:
        """GET and parse, or None on a 304; Unavailable on anything else."""
        reply = await self.transport.get(device, href, resource)
        if reply.status == 304:
            return None
        return self._parse(resource, reply, parser)

    def _parse(self, resource: str, reply: Reply, parser: Callable[[bytes], T]) -> T:
        """The parsed body of a 200; Unavailable otherwise. Parsed once per distinct body for
        the whole fleet: the member devices of a program get the very same bytes."""
        if reply.status != 200 or reply.body is None:
            raise Unavailable(f"GET {resource}", reply.outcome)
        key = (parser, reply.body)
        cached = self._parsed.get(key)
        if cached is not None:
            self.parse_hits += 1
            return cached  # type: ignore[return-value]
        self.parse_misses += 1
        parsed = parser(reply.body)
        if len(self._parsed) >= PARSED_CACHE:
            self._parsed.clear()
        self._parsed[key] = parsed
        return parsed

    async def _poll_dcap(self, device: Device) -> None:
        found = await self._fetch(
            device, device.dcap_href, "DeviceCapability", resources.device_capability
        )
        if found is None:
            return
        device.rates[Job.DCAP] = found.poll_rate
        if found.time is not None:
            device.time_href = found.time.href
        if found.end_devices is not None:
            device.edev_list_href = found.end_devices.href
        if found.mirror_usage_points is not None:
            device.meter_list_href = found.mirror_usage_points.href

    async def _poll_time(self, device: Device) -> None:
        if device.time_href is None:
            return
        reply = await self.transport.get(device, device.time_href, "Time")
        if reply.status == 304:
            return
        found = self._parse("Time", reply, resources.time)
        device.rates[Job.TIME] = found.poll_rate
        self.kernel.clock.observe(found.current_time, reply.sent, reply.received)

    async def _poll_end_devices(self, device: Device) -> None:
        if device.edev_list_href is None:
            raise Unavailable("DeviceCapability", "no EndDeviceListLink")
        href = page(device.edev_list_href, END_DEVICES)
        found = await self._fetch(device, href, "EndDeviceList", resources.end_device_list)
        if found is None:
            return
        device.rates[Job.EDEV] = found.poll_rate
        mine = found.find(device.lfdi)
        if mine is None:
            device.etags.pop(href, None)  # look again next time, in full
            if device.phase is Phase.READY:
                device.phase = Phase.RETRYING  # deregistered: stop and discover again
                self.push(time.monotonic() + RETRY_LIMIT, device, Job.DISCOVER)
            raise Unavailable("EndDeviceList", "not registered")
        if mine.fsas is not None:
            device.fsa_list_href = mine.fsas.href
        if mine.ders is not None:
            device.der_list_href = mine.ders.href
        device.post_rate = mine.post_rate
        if mine.category != device.category:
            device.category = mine.category
            if device.programs is not None:
                self.kernel.membership(device.lfdi, device.programs, device.category)

    async def _poll_fsas(self, device: Device) -> None:
        if device.fsa_list_href is None:
            raise Unavailable("EndDevice", "no FunctionSetAssignmentsListLink")
        href = page(device.fsa_list_href, FSAS)
        found = await self._fetch(device, href, "FunctionSetAssignmentsList", resources.fsa_list)
        if found is None:
            return
        device.rates[Job.FSA] = found.poll_rate
        if found.program_lists != device.program_lists:
            device.program_lists = found.program_lists
            device.program_sets = [() for _ in found.program_lists]
            for link in found.program_lists:  # read them in full: the sets were reset
                device.etags.pop(page(link.href, PROGRAMS), None)
            if device.phase is Phase.READY:
                self.extra_run(device, Job.DERP)

    # -- the DER function set -------------------------------------------------------------------

    async def _poll_programs(self, device: Device) -> None:
        for index, link in enumerate(device.program_lists):
            href = page(link.href, PROGRAMS)
            found = await self._fetch(device, href, "DERProgramList", resources.program_list)
            if found is None:
                continue
            device.rates[Job.DERP] = found.poll_rate
            for listed in found.programs:
                self.kernel.program_seen(listed)
            device.program_sets[index] = tuple(listed.key for listed in found.programs)
        membership = tuple(dict.fromkeys(key for keys in device.program_sets for key in keys))
        if membership != device.programs:
            device.programs = membership
            self.kernel.membership(device.lfdi, membership, device.category)
        for key in membership:
            program = self.kernel.programs[key]
            if program.controls is not None:
                await self._poll_controls(device, program)
            if program.default_href is not None:
                await self._poll_default(device, program)

    async def _poll_controls(self, device: Device, program: Program) -> None:
        assert program.controls is not None
        pages = max(1, math.ceil((program.controls.all or 0) / CONTROLS))
        for number in range(pages):
            href = page(program.controls.href, CONTROLS, number * CONTROLS)
            found = await self._fetch(device, href, "DERControlList", resources.control_list)
            if found is None:
                continue
            for listed in found.controls:
                if any(h not in program.curve_mrids for h in listed.curve_hrefs):
                    await self._poll_curves(device, program)
                if self.kernel.control_seen(program.key, listed) is not None:
                    self._saw(device, listed.mrid)

    async def _poll_default(self, device: Device, program: Program) -> None:
        assert program.default_href is not None
        reply = await self.transport.get(device, program.default_href, "DefaultDERControl")
        if reply.status == 304:
            return
        if reply.status == 404:
            self.kernel.default_seen(program.key, None)
            return
        found = self._parse("DefaultDERControl", reply, resources.default_control)
        if any(h not in program.curve_mrids for h in found.curve_hrefs):
            await self._poll_curves(device, program)
        self.kernel.default_seen(program.key, found.base)

    async def _poll_curves(self, device: Device, program: Program) -> None:
        if program.curves is None:
            return
        href = page(program.curves.href, CURVES)
        found = await self._fetch(device, href, "DERCurveList", resources.curve_list)
        if found is None:
            return
        for curve_href, curve in found.curves:
            self.kernel.curve_seen(program.key, curve_href, curve)

    def _saw(self, device: Device, mrid: str) -> None:
        if device.fetched is None:
            device.fetched = {}
        elif mrid in device.fetched:
            return
        device.fetched[mrid] = time.monotonic()
        if mrid == self.tracked:
            self.tracked_fetched += 1
        if any(entry[0] == mrid for entry in device.waiting):
            self._respond_soon(device)

    # -- reporting ----------------------------------------------------------------------------

    async def _find_der(self, device: Device) -> None:
        if device.der_list_href is None:
            raise Unavailable("EndDevice", "no DERListLink")
        href = page(device.der_list_href, 1)
        device.etags.pop(href, None)  # discovery reads it in full
        reply = await self.transport.get(device, href, "DERList")
        _, ders = self._parse("DERList", reply, resources.der_list)
        if not ders or ders[0].status is None:
            raise Unavailable("DERList", "no DER with a DERStatusLink")
        device.capability_href = ders[0].capability
        device.settings_href = ders[0].settings
        device.status_href = ders[0].status

    async def _put(
        self, device: Device, href: str | None, resource: str, body: Callable[[str], bytes]
    ) -> None:
        if href is None:
            return
        reply = await self.transport.send(device, "PUT", href, resource, body(device.lfdi))
        if not reply.ok:
            raise Unavailable(f"PUT {resource}", reply.outcome)

    def _output_w(self, device: Device, now: int) -> int:
        state = self.kernel.engine.state_of(device.lfdi)
        effective = () if state is None else [(m, h[0]) for m, h in state.effective]
        return reports.output_w(device.lfdi, reports.rating_w(device.lfdi), now, effective)

    async def _post_status(self, device: Device, *, strict: bool = False) -> None:
        if device.status_href is None:
            return
        now = self.kernel.instant()
        body = reports.der_status(now, self._output_w(device, now) > 0)
        reply = await self.transport.send(device, "PUT", device.status_href, "DERStatus", body)
        if strict and not reply.ok:
            raise Unavailable("PUT DERStatus", reply.outcome)

    async def _create_mirror(self, device: Device) -> None:
        if device.meter_list_href is None:
            return  # the server offers no metering mirror
        body = reports.mirror_usage_point(device.lfdi)
        reply = await self.transport.send(
            device, "POST", device.meter_list_href, "MirrorUsagePoint", body
        )
        if not reply.ok or not reply.location:
            raise Unavailable("POST MirrorUsagePoint", reply.outcome)
        device.meter_href = reply.location
        device.etags.pop(reply.location, None)
        reply = await self.transport.get(device, reply.location, "MirrorUsagePoint")
        device.meter_rate = self._parse(
            "MirrorUsagePoint", reply, resources.mirror_usage_point_post_rate
        )

    async def _post_readings(self, device: Device) -> None:
        if device.meter_href is None:
            return
        now = self.kernel.instant()
        rate = device.meter_rate or device.post_rate or 300
        body = reports.meter_readings(device.lfdi, now, self._output_w(device, now), rate)
        await self.transport.send(device, "POST", device.meter_href, "MirrorMeterReadingList", body)

    # -- responses ----------------------------------------------------------------------------

    def on_due(self, due: ResponseDue) -> None:
        """The kernel's verdict for a cohort of devices: record it, post when fetched."""
        entry = (due.mrid.upper(), due.status, due.posted, due.t)
        for lfdi in due.lfdis:
            device = self.by_lfdi.get(lfdi)
            if device is None:
                continue
            device.lifecycle.append(entry)
            if due.posted:
                device.waiting.append(entry)
                if device.has_fetched(entry[0]):
                    self._respond_soon(device)

    def _respond_soon(self, device: Device) -> None:
        if device.respond_pending:
            return
        device.respond_pending = True
        self.push(time.monotonic(), device, Job.RESPOND)

    async def respond(self, device: Device) -> None:
        """POST every waiting response whose control the device has fetched, in order; keep
        those that failed for a reason worth retrying (no answer, 5xx, 429)."""
        device.respond_pending = False
        keep = []
        retry = False
        for entry in device.waiting:
            mrid, status = entry[0], entry[1]
            control = self.kernel.controls.get(mrid)
            if not device.has_fetched(mrid) or control is None:
                keep.append(entry)
                continue
            if control.reply_to is None:
                continue
            body = reports.control_response(device.lfdi, mrid, status, self.kernel.instant())
            reply = await self.transport.send(
                device, "POST", control.reply_to, "DERControlResponse", body
            )
            if reply.ok:
                device.posted.append((mrid, status, time.monotonic()))
                self.responses_posted[status] += 1
                if status == 1 and mrid == self.tracked:
                    self.tracked_received += 1
            elif reply.status == 0 or reply.status >= 500 or reply.status == 429:
                keep.append(entry)
                retry = True
            else:
                self.responses_failed[reply.outcome] += 1
        device.waiting = keep
        if retry:
            device.respond_pending = True
            self.push(time.monotonic() + RESPONSE_RETRY, device, Job.RESPOND)

    def track(self, mrid: str) -> None:
        """Count, from now on, the devices that fetch control ``mrid`` and say received."""
        self.tracked = mrid.upper()
        self.tracked_fetched = sum(1 for d in self.devices if d.has_fetched(self.tracked))
        self.tracked_received = sum(
            1 for d in self.devices for m, s, _ in d.posted if m == self.tracked and s == 1
        )
