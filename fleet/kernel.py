"""The fleet's brain: the project's resolution kernel, fed with what the devices fetched.

Theory of operation. Every simulated device must work out, as a real CSIP client does, which
control is in force and which responses it owes (CSIP_RULES §2-§4). The fleet does not code
those rules again: it runs one ``engine.kernel.Engine`` for all its devices and turns what they
fetch into kernel inputs:

- a DERProgram (known by its mRID) -> ``DefineProgram`` / ``SetPrimacy``;
- its DefaultDERControl (or its disappearance) -> ``SetDefault``;
- a DERCurve a control or default links -> ``AddCurve``;
- a DERControl not seen before -> ``AddControl``; EventStatus 2 or 3 on a known one ->
  ``CancelControl`` (4, superseded, needs nothing: CSIP_RULES §2.9);
- a device's programs (its FSAs' DERProgramLists, in order) and deviceCategory ->
  ``SetMembership``.

An input is made once for the fleet, by the first device whose fetch brings the fact in (the
others fetch the same shared body: same ETag, parsed once). Devices with the same programs form
one cohort in the kernel, so a system-wide control over 100k devices is resolved a handful of
times, not 100k. Instants are the server's (``ServerClock``, learnt from Time).

Inputs are queued and applied in batches by ``run()``, which also advances the kernel to its
next change (a start, an end, a randomized stop) on time. Each ``ResponseDue`` goes to
``on_due``; the client decides when each device posts it (once it has fetched the control).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.kernel import (
    AddControl,
    AddCurve,
    CancelControl,
    Curve,
    DefaultControl,
    DefineProgram,
    DERControl,
    EffectiveChange,
    Engine,
    Input,
    InvalidInput,
    Output,
    ResponseDue,
    SetDefault,
    SetMembership,
    SetPrimacy,
)
from engine.kernel.modes import thaw
from fleet import resources
from fleet.clock import ServerClock

CANCEL_STATUSES = frozenset({2, 3})  # EventStatus: cancelled, cancelled with randomization
BATCH_PAUSE = 0.02  # seconds to gather inputs that arrive together into one apply


@dataclass
class Program:
    """What the fleet knows of one DERProgram (the same for every member device)."""

    key: str
    primacy: int
    controls: resources.Link | None = None
    default_href: str | None = None
    curves: resources.Link | None = None
    default: dict[str, Any] | None = None
    curve_mrids: dict[str, str] = field(default_factory=dict)  # DERCurve href -> mRID
    curve_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # mRID -> JSON


@dataclass
class Control:
    mrid: str
    program: str
    reply_to: str | None
    cancelled: bool = False
    invalid: bool = False


class FleetKernel:
    def __init__(
        self,
        clock: ServerClock,
        *,
        profile: str = "csip",
        on_due: Callable[[ResponseDue], None] | None = None,
    ) -> None:
        self.engine = Engine(profile=profile)
        self.clock = clock
        self.on_due = on_due
        self.programs: dict[str, Program] = {}
        self.controls: dict[str, Control] = {}
        self.refused: list[str] = []  # inputs the kernel refused (kept for the summary)
        self.effective_changes = 0
        self._pending: list[Input] = []
        self._wake = asyncio.Event()

    # -- facts the devices bring in -------------------------------------------------------------

    def program_seen(self, program: resources.DERProgram) -> Program:
        known = self.programs.get(program.key)
        if known is None:
            known = self.programs[program.key] = Program(program.key, program.primacy)
            self._queue(DefineProgram(program.key, program.primacy))
        elif known.primacy != program.primacy:
            known.primacy = program.primacy
            self._queue(SetPrimacy(program.key, program.primacy))
        known.controls = program.controls
        known.curves = program.curves
        known.default_href = program.default
        if program.default is None and known.default is not None:
            self.default_seen(program.key, None)
        return known

    def default_seen(self, key: str, base: Mapping[str, Any] | None) -> None:
        program = self.programs[key]
        resolved = None if base is None else resources.resolve_curves(base, program.curve_mrids)
        if resolved == program.default:
            return
        try:
            default = None if resolved is None else DefaultControl.from_json(resolved)
        except InvalidInput as exc:
            self.refused.append(f"DefaultDERControl of {key}: {exc}")
            return
        program.default = resolved
        self._queue(SetDefault(key, default))

    def curve_seen(self, key: str, href: str, curve: dict[str, Any]) -> None:
        program = self.programs[key]
        program.curve_mrids[href] = curve["mRID"]
        if program.curve_bodies.get(curve["mRID"]) == curve:
            return
        try:
            parsed = Curve.from_json(curve)
        except InvalidInput as exc:
            self.refused.append(f"DERCurve {curve.get('mRID')} of {key}: {exc}")
            return
        program.curve_bodies[curve["mRID"]] = curve
        self._queue(AddCurve(key, parsed))

    def control_seen(self, key: str, listed: resources.DERControl) -> Control | None:
        """A control in a fetched list: new ones are added, cancellations applied. None when
        the kernel cannot take it (kept in ``refused``)."""
        known = self.controls.get(listed.mrid)
        if known is None:
            program = self.programs[key]
            raw = dict(listed.control, program=key)
            raw["base"] = resources.resolve_curves(raw["base"], program.curve_mrids)
            known = self.controls[listed.mrid] = Control(listed.mrid, key, listed.reply_to)
            try:
                control = DERControl.from_json(raw)
            except InvalidInput as exc:
                known.invalid = True
                self.refused.append(f"DERControl {listed.mrid}: {exc}")
                return None
            self._queue(AddControl(control))
        if known.invalid:
            return None
        if listed.current_status in CANCEL_STATUSES and not known.cancelled:
            known.cancelled = True
            self._queue(CancelControl(known.program, known.mrid))
        return known

    def membership(self, lfdi: str, programs: tuple[str, ...], category: int | None) -> None:
        self._queue(SetMembership(lfdi, programs, category))

    # -- applying ---------------------------------------------------------------------------------

    def _queue(self, item: Input) -> None:
        self._pending.append(item)
        self._wake.set()

    def instant(self) -> int:
        """The server's instant, never before what the kernel has already processed."""
        now = self.clock.instant()
        current = self.engine.now
        return now if current is None or now > current else current

    def flush(self) -> int:
        """Apply what is queued and everything due up to now; returns the instant."""
        t = self.instant()
        pending, self._pending = self._pending, []
        outputs: list[Output] = []
        if pending:
            try:
                outputs = self.engine.apply(t, pending)
            except InvalidInput:
                for item in pending:  # one refused input must not hold the others back
                    try:
                        outputs.extend(self.engine.apply(t, [item]))
                    except InvalidInput as exc:
                        self.refused.append(f"{type(item).__name__}: {exc}")
        outputs.extend(self.engine.advance(t))
        self._deliver(outputs)
        return t

    def _deliver(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, ResponseDue):
                if self.on_due is not None:
                    self.on_due(output)
            elif isinstance(output, EffectiveChange):
                self.effective_changes += len(output.lfdis)

    async def run(self, stopping: asyncio.Event) -> None:
        """Apply inputs as they come and advance at each next change, until ``stopping``."""
        while not stopping.is_set():
            upcoming = self.engine.next_change()
            delay = 1.0 if upcoming is None else max(0.0, upcoming - self.clock.now())
            self._wake.clear()
            if not self._pending:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 1.0))
                except TimeoutError:
                    pass
                else:
                    await asyncio.sleep(BATCH_PAUSE)
            self.flush()

    def effective(self, lfdi: str, t: int) -> dict[str, dict[str, Any]]:
        """A device's effective control at ``t`` (not before the kernel's instant), as the
        admin API shows it: mode -> {value, program, event}."""
        try:
            holders = self.engine.project(lfdi.upper(), t)
        except KeyError:
            return {}
        return {
            mode: {"value": thaw(value), "program": program, "event": event}
            for mode, (value, program, event) in holders
        }
