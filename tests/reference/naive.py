"""A deliberately naive reference implementation of CSIP control resolution.

It exists only to be compared with the optimized kernel in ``engine/kernel/`` (differential
testing), so it shares no code with it and imports nothing from ``engine``. Clarity over speed:

* The whole scenario is simulated second by second, ``t = 0 .. until``.
* Every device is simulated on its own: for each device the server side (programs, their
  events, server-side statuses) is rebuilt from scratch and replayed together with that one
  device, so nothing computed for one device can leak into another. The status lines come from
  one more replay without any device.
* Each second follows the instant model of ``docs/semantics.md``: (1) stops due at ``t``,
  (2) the inputs of ``t`` in file order, (3) settle ``t`` (successive-event predecessors,
  starts, per-mode conflicts in rank order, effective control, server-side status timers).
* Nothing is cached or indexed: every question ("which events are running?", "which program's
  default wins?") is answered by scanning everything again.

Rule references (``§2.7`` ...) point at CSIP_RULES.md; "sem" points at docs/semantics.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

STATUS_RECEIVED = 1
STATUS_STARTED = 2
STATUS_COMPLETED = 3
STATUS_CANCELLED = 6
STATUS_SUPERSEDED = 7
STATUS_ABORTED_PROGRAM_REMOVED = 14
STATUS_REJECTED_INVALID = 253
STATUS_REJECTED_EXPIRED = 254

# After one of these a device reports nothing more for an event (§4).
TERMINAL_RESPONSES = frozenset({3, 6, 7, 14, 253, 254})
# Statuses allowed by responseRequired bit 1 (0x02); status 1 needs bit 0 (0x01) (§4).
CSIP_AUS_RESPONSES = frozenset({1, 2, 3, 6, 7})

# Server-side currentStatus values (§5).
SERVER_SCHEDULED = 0
SERVER_ACTIVE = 1
SERVER_CANCELLED = 2
SERVER_CANCELLED_RANDOMIZED = 3
SERVER_SUPERSEDED = 4
SERVER_TERMINAL = frozenset({2, 3, 4})

# Curve modes and the curveType each must link to (§6, §2.13).
CURVE_TYPE_OF_MODE: dict[str, int] = {
    "opModFreqWatt": 0,
    "opModHFRTMayTrip": 1,
    "opModHFRTMustTrip": 2,
    "opModHVRTMayTrip": 3,
    "opModHVRTMomentaryCessation": 4,
    "opModHVRTMustTrip": 5,
    "opModLFRTMayTrip": 6,
    "opModLFRTMustTrip": 7,
    "opModLVRTMayTrip": 8,
    "opModLVRTMomentaryCessation": 9,
    "opModLVRTMustTrip": 10,
    "opModVoltVar": 11,
    "opModVoltWatt": 12,
    "opModWattPF": 13,
    "opModWattVar": 14,
}

NOT_A_MODE = "rampTms"  # carried with an event's modes, never a mode itself (§1)

# Output ordering of line types (FORMAT.md).
TYPE_ORDER = {"status": 0, "response": 1, "effective": 2}

Line = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def draw(lfdi: str, mrid: str, kind: str, bound: int) -> int:
    """The deterministic per-(device, event) randomization draw of §2.4."""
    if bound == 0:
        return 0
    text = f"{lfdi.upper()}|{mrid.upper()}|{kind}"
    u64 = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    sign = 1 if bound > 0 else -1
    return sign * (u64 % (abs(bound) + 1))


def parse_bitmap(raw: int | str | None) -> int | None:
    """deviceCategory: an int, or a hex string as in 2030.5 HexBinary32."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return int(raw, 16)
    return int(raw)


def parse_response_required(raw: int | str | None) -> int:
    if raw is None:
        return 0
    if isinstance(raw, str):
        return int(raw, 16)
    return int(raw)


def modes_of(base: dict[str, Any]) -> frozenset[str]:
    """The modes a control base (or default) carries: every element except rampTms."""
    return frozenset(name for name in base if name != NOT_A_MODE)


def value_key(value: Any) -> str:
    """Type-aware equality for JSON values (so that True and 1 differ)."""
    return json.dumps(value, sort_keys=True)


def dedupe(programs: list[str]) -> list[str]:
    """Membership lists each program once; a repeat keeps its first position (sem)."""
    result: list[str] = []
    for program_id in programs:
        if program_id not in result:
            result.append(program_id)
    return result


def canonical_key(line: Line) -> tuple[Any, ...]:
    """FORMAT.md order: t, type, lfdi, mRID or mode, status."""
    kind = line["type"]
    if kind == "effective":
        return (line["t"], TYPE_ORDER[kind], line["lfdi"], line["mode"], 0)
    if kind == "response":
        return (line["t"], TYPE_ORDER[kind], line["lfdi"], line["mRID"], line["status"])
    return (line["t"], TYPE_ORDER[kind], "", line["mRID"], line["currentStatus"])


def canonical_sort(lines: list[Line]) -> list[Line]:
    return sorted(lines, key=canonical_key)


# ---------------------------------------------------------------------------------------------
# Server side: programs, events, server-side status (§5)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Control:
    """The immutable content of one DERControl, plus the instant the server received it."""

    program: str
    mrid: str
    creation_time: int
    start: int
    duration: int
    randomize_start: int
    randomize_duration: int
    response_required: int
    has_reply_to: bool
    device_category: int | None
    base: dict[str, Any]
    created_at: int  # the instant of the input (sem: not the creationTime field)

    @property
    def key(self) -> str:
        return self.mrid.upper()

    @property
    def scheduled_end(self) -> int:
        return self.start + self.duration

    @property
    def modes(self) -> frozenset[str]:
        return modes_of(self.base)

    @property
    def has_randomization(self) -> bool:
        return self.randomize_start != 0 or self.randomize_duration != 0

    @property
    def earliest_start(self) -> int:
        """§5: e = start + min(0, randomizeStart)."""
        return self.start + min(0, self.randomize_start)


def parse_control(raw: dict[str, Any], created_at: int) -> Control:
    return Control(
        program=raw["program"],
        mrid=raw["mRID"],
        creation_time=int(raw.get("creationTime", created_at)),
        start=int(raw["start"]),
        duration=int(raw["duration"]),
        randomize_start=int(raw.get("randomizeStart", 0) or 0),
        randomize_duration=int(raw.get("randomizeDuration", 0) or 0),
        response_required=parse_response_required(raw.get("responseRequired", "00")),
        has_reply_to=("replyTo" not in raw) or raw["replyTo"] is not None,
        device_category=parse_bitmap(raw.get("deviceCategory")),
        base=dict(raw.get("base") or {}),
        created_at=created_at,
    )


def scheduled_periods_overlap(a: Control, b: Control) -> bool:
    """Half-open [start, start + duration) periods share an instant (§2.3). A zero-length
    period is empty and overlaps nothing."""
    return max(a.start, b.start) < min(a.scheduled_end, b.scheduled_end)


@dataclass
class Program:
    program_id: str
    primacy: int
    default: dict[str, Any] | None
    curves: dict[str, dict[str, Any]]  # keyed by upper-cased curve mRID


@dataclass
class PendingSupersede:
    """Server status 4 for ``older`` at ``fire_at``, unless a cancel comes first (§5, sem)."""

    older: Control
    newer: Control
    fire_at: int


@dataclass
class Server:
    """Everything the utility server knows; rebuilt from scratch for every replay."""

    programs: dict[str, Program]
    controls: list[Control] = field(default_factory=list)  # creation order
    status: dict[str, int] = field(default_factory=dict)  # by upper-cased mRID
    status_lines: list[Line] = field(default_factory=list)
    pending_active: list[Control] = field(default_factory=list)  # 0 -> 1 at e
    pending_supersedes: list[PendingSupersede] = field(default_factory=list)

    def find(self, mrid: str) -> Control | None:
        for control in self.controls:
            if control.key == mrid.upper():
                return control
        return None

    def is_listed(self, control: Control, t: int) -> bool:
        """Listed from its creation until its scheduled end, exclusive (sem)."""
        return control.created_at <= t < control.scheduled_end

    def is_cancelled(self, control: Control) -> bool:
        return self.status.get(control.key) in (SERVER_CANCELLED, SERVER_CANCELLED_RANDOMIZED)

    def set_status(self, control: Control, status: int, t: int) -> None:
        self.status[control.key] = status
        self.status_lines.append(
            {
                "type": "status",
                "t": t,
                "program": control.program,
                "mRID": control.mrid,
                "currentStatus": status,
            }
        )

    def curves_valid(self, control: Control) -> bool:
        """§2.13: every curve mode links an existing curve of the right curveType."""
        program = self.programs[control.program]
        for mode, value in control.base.items():
            if mode not in CURVE_TYPE_OF_MODE:
                continue
            if not isinstance(value, dict) or not isinstance(value.get("curve"), str):
                return False
            curve = program.curves.get(value["curve"].upper())
            if curve is None or curve.get("curveType") != CURVE_TYPE_OF_MODE[mode]:
                return False
        return True

    # -- inputs ----------------------------------------------------------------------------

    def add_control(self, raw: dict[str, Any], t: int) -> Control | None:
        """A new DERControl; None when it is ignored (unknown program, known mRID §2.1)."""
        if raw["program"] not in self.programs or self.find(raw["mRID"]) is not None:
            return None
        control = parse_control(raw, created_at=t)
        self.controls.append(control)
        if control.earliest_start <= t:
            self.set_status(control, SERVER_ACTIVE, t)
        else:
            self.set_status(control, SERVER_SCHEDULED, t)
            self.pending_active.append(control)
        return control

    def cancel(self, raw: dict[str, Any], t: int) -> Control | None:
        """The operator's cancel; None when it changes nothing (sem: unlisted or terminal)."""
        control = self.find(raw["mRID"])
        if control is None or control.program != raw["program"]:
            return None
        if not self.is_listed(control, t) or self.status[control.key] in SERVER_TERMINAL:
            return None
        new_status = SERVER_CANCELLED_RANDOMIZED if control.has_randomization else SERVER_CANCELLED
        self.set_status(control, new_status, t)
        return control

    # -- settle (§5 timers) ------------------------------------------------------------------

    def settle(self, t: int) -> None:
        self.schedule_supersedes(t)
        for control in list(self.pending_active):
            if control.earliest_start <= t:
                self.pending_active.remove(control)
                if self.status[control.key] == SERVER_SCHEDULED:
                    self.set_status(control, SERVER_ACTIVE, t)
        for pending in list(self.pending_supersedes):
            if pending.fire_at <= t:
                self.pending_supersedes.remove(pending)
                older_status = self.status[pending.older.key]
                if older_status in SERVER_TERMINAL or self.is_cancelled(pending.newer):
                    continue
                self.set_status(pending.older, SERVER_SUPERSEDED, t)

    def schedule_supersedes(self, t: int) -> None:
        """§5 / sem: checked for every pair whose later-created member was created at t,
        against the earlier-created member if it is still listed."""
        for newer in self.controls:
            for older in self.controls:
                if older is newer or older.program != newer.program:
                    continue
                if max(older.created_at, newer.created_at) != t:
                    continue
                if older.modes != newer.modes:
                    continue
                if (older.creation_time, older.key) >= (newer.creation_time, newer.key):
                    continue
                # The new event is compared with the events the server *still* lists: the
                # pair's first-created member must be listed at t; the new one may be late.
                first_created = min(older, newer, key=self.controls.index)
                if not self.is_listed(first_created, t):
                    continue
                if not scheduled_periods_overlap(older, newer):
                    continue
                fire_at = max(newer.earliest_start, newer.created_at, older.created_at)
                self.pending_supersedes.append(PendingSupersede(older, newer, fire_at))


# ---------------------------------------------------------------------------------------------
# Device side: what one EndDevice sees, runs and reports
# ---------------------------------------------------------------------------------------------

IGNORED = "ignored"  # late (254) or invalid (253): seen, then ignored
SCHEDULED = "scheduled"
RUNNING = "running"
DONE = "done"  # completed, cancelled, superseded or aborted


@dataclass
class EventRecord:
    """One device's view of one event it has seen."""

    control: Control
    seen_at: int
    phase: str = SCHEDULED
    effective_start: int | None = None
    effective_end: int | None = None
    lost_modes: set[str] = field(default_factory=set)
    cancel_stop_at: int | None = None
    responses: list[int] = field(default_factory=list)

    @property
    def held_modes(self) -> frozenset[str]:
        return self.control.modes - self.lost_modes


@dataclass
class Device:
    lfdi: str
    category: int | None
    membership: list[str]
    profile: str
    records: dict[str, EventRecord] = field(default_factory=dict)  # by upper mRID, seen order
    reported: dict[str, tuple[Any, str | None, str | None]] = field(default_factory=dict)
    response_lines: list[Line] = field(default_factory=list)  # after gating
    lifecycle_lines: list[Line] = field(default_factory=list)  # every response, ungated
    effective_lines: list[Line] = field(default_factory=list)

    # -- responses (§4) ----------------------------------------------------------------------

    def respond(self, record: EventRecord, status: int, t: int) -> None:
        assert status not in record.responses, "each (device, mRID, status) at most once"
        assert not TERMINAL_RESPONSES.intersection(record.responses), "nothing after terminal"
        record.responses.append(status)
        line = {
            "type": "response",
            "t": t,
            "lfdi": self.lfdi,
            "mRID": record.control.mrid,
            "status": status,
        }
        self.lifecycle_lines.append(line)
        if self.is_posted(record.control, status):
            self.response_lines.append(dict(line))

    def is_posted(self, control: Control, status: int) -> bool:
        if not control.has_reply_to:
            return False
        needed_bit = 0x01 if status == STATUS_RECEIVED else 0x02
        if not control.response_required & needed_bit:
            return False
        return not (self.profile == "csip-aus" and status not in CSIP_AUS_RESPONSES)

    # -- seeing events (§2.10, §2.12, §2.13) -------------------------------------------------

    def in_category(self, control: Control) -> bool:
        if control.device_category is None or self.category is None:
            return True
        return (control.device_category & self.category) != 0

    def see(self, control: Control, server: Server, t: int) -> None:
        if control.key in self.records or not self.in_category(control):
            return
        record = EventRecord(control=control, seen_at=t)
        self.records[control.key] = record
        self.respond(record, STATUS_RECEIVED, t)
        if control.scheduled_end <= t:
            record.phase = IGNORED
            self.respond(record, STATUS_REJECTED_EXPIRED, t)
        elif not server.curves_valid(control):
            record.phase = IGNORED
            self.respond(record, STATUS_REJECTED_INVALID, t)
        elif server.is_cancelled(control):
            record.phase = DONE
            self.respond(record, STATUS_CANCELLED, t)

    # -- phase 1: stops due at t -------------------------------------------------------------

    def stops_due(self, t: int) -> None:
        for record in self.records.values():
            if record.phase != RUNNING:
                continue
            assert record.effective_end is not None
            if record.effective_end <= t:
                record.phase = DONE
                self.respond(record, STATUS_COMPLETED, t)
            elif record.cancel_stop_at is not None and record.cancel_stop_at <= t:
                record.phase = DONE
                self.respond(record, STATUS_CANCELLED, t)

    # -- phase 2: inputs ---------------------------------------------------------------------

    def on_new_control(self, control: Control, server: Server, t: int) -> None:
        if control.program in self.membership:
            self.see(control, server, t)

    def on_cancel(self, control: Control, server: Server, t: int) -> None:
        """§2.9: a cancel takes effect when seen."""
        if control.program not in self.membership:
            return
        record = self.records.get(control.key)
        if record is None:
            return
        if record.phase == SCHEDULED:
            record.phase = DONE
            self.respond(record, STATUS_CANCELLED, t)
            return
        if record.phase != RUNNING or record.cancel_stop_at is not None:
            return
        if server.status[control.key] == SERVER_CANCELLED:
            record.phase = DONE
            self.respond(record, STATUS_CANCELLED, t)
            return
        bound = max(abs(control.randomize_start), abs(control.randomize_duration))
        stop_at = t + draw(self.lfdi, control.mrid, "cancel", bound)
        assert record.effective_end is not None
        if stop_at >= record.effective_end:
            return  # completes normally (3) at its effective end
        if stop_at <= t:
            record.phase = DONE
            self.respond(record, STATUS_CANCELLED, t)
        else:
            record.cancel_stop_at = stop_at

    def on_membership(self, programs: list[str], server: Server, t: int) -> None:
        old = self.membership
        new = dedupe(programs)
        self.membership = new
        for record in self.records.values():
            removed = record.control.program in old and record.control.program not in new
            if removed and record.phase in (SCHEDULED, RUNNING):
                record.phase = DONE
                self.respond(record, STATUS_ABORTED_PROGRAM_REMOVED, t)
        added = [program_id for program_id in new if program_id not in old]
        for control in server.controls:  # creation order
            if control.program in added and server.is_listed(control, t):
                self.see(control, server, t)

    # -- phase 3: settle ---------------------------------------------------------------------

    def settle(self, server: Server, t: int) -> None:
        for record in list(self.records.values()):
            if record.seen_at == t and record.phase != IGNORED:
                self.fix_effective_period(record)
        starting = self.start_due(t)
        self.resolve_conflicts(starting, server, t)
        for record in starting:
            if record.phase == SCHEDULED:
                record.phase = RUNNING
                self.respond(record, STATUS_STARTED, t)
        self.report_effective(server, t)

    def is_predecessor(self, earlier: EventRecord, later: EventRecord) -> bool:
        """sem, successive events (§2.5)."""
        a, b = earlier.control, later.control
        return (
            earlier is not later
            and earlier.phase != IGNORED
            and a.program in self.membership
            and bool(a.modes & b.modes)
            and a.duration > 0
            and a.start + a.duration == b.start
        )

    def fix_effective_period(self, record: EventRecord) -> None:
        """§2.3 and §2.5: effective start and end, fixed at the end of the first-seen instant."""
        if record.effective_start is not None:
            return
        control = record.control
        predecessors = [r for r in self.records.values() if self.is_predecessor(r, record)]
        if predecessors:
            ends: list[int] = []
            for predecessor in predecessors:
                self.fix_effective_period(predecessor)
                assert predecessor.effective_end is not None
                ends.append(predecessor.effective_end)
            start = max(ends)
        else:
            start = control.start + draw(self.lfdi, control.mrid, "start", control.randomize_start)
        record.effective_start = start
        record.effective_end = (
            start
            + control.duration
            + draw(self.lfdi, control.mrid, "duration", control.randomize_duration)
        )

    def start_due(self, t: int) -> list[EventRecord]:
        """Events whose effective start has come. Empty periods start and complete at once."""
        starting: list[EventRecord] = []
        for record in self.records.values():
            if record.phase != SCHEDULED:
                continue
            assert record.effective_start is not None and record.effective_end is not None
            if record.effective_start > t:
                continue
            if record.effective_end <= t:
                record.phase = DONE
                self.respond(record, STATUS_STARTED, t)
                self.respond(record, STATUS_COMPLETED, t)
                continue
            starting.append(record)
        return starting

    def outranks(self, w: Control, x: Control, server: Server) -> bool:
        """§2.6: lower primacy, then later creationTime, then greater (upper-cased) mRID."""
        w_primacy = server.programs[w.program].primacy
        x_primacy = server.programs[x.program].primacy
        if w_primacy != x_primacy:
            return w_primacy < x_primacy
        if w.creation_time != x.creation_time:
            return w.creation_time > x.creation_time
        return w.key > x.key

    def resolve_conflicts(self, starting: list[EventRecord], server: Server, t: int) -> None:
        """§2.7, §2.8 in rank order: a running event takes every mode it carries from each
        lower-ranked event inside its effective period; one that loses all is superseded."""
        contenders = [r for r in self.records.values() if r.phase == RUNNING] + starting

        def compare(a: EventRecord, b: EventRecord) -> int:
            if self.outranks(a.control, b.control, server):
                return -1
            if self.outranks(b.control, a.control, server):
                return 1
            return 0

        contenders.sort(key=functools.cmp_to_key(compare))
        superseded: list[EventRecord] = []
        for index, winner in enumerate(contenders):
            if winner in superseded:
                continue
            for loser in contenders[index + 1 :]:
                if loser in superseded:
                    continue
                loser.lost_modes |= winner.control.modes & loser.control.modes
                if loser.control.modes and not loser.held_modes:
                    superseded.append(loser)
                    loser.phase = DONE
                    self.respond(loser, STATUS_SUPERSEDED, t)

    def effective_now(self, server: Server) -> dict[str, tuple[Any, str | None, str | None]]:
        """§3: the running event holding each mode, else the winning program's default."""
        current: dict[str, tuple[Any, str | None, str | None]] = {}
        for record in self.records.values():
            if record.phase != RUNNING:
                continue
            for mode in record.held_modes:
                assert mode not in current, "rule 7 leaves at most one holder"
                control = record.control
                current[mode] = (control.base[mode], control.program, control.mrid)
        best: tuple[int, int, Program] | None = None
        for position, program_id in enumerate(self.membership):
            program = server.programs.get(program_id)
            if program is None or program.default is None:
                continue
            if best is None or (program.primacy, position) < best[:2]:
                best = (program.primacy, position, program)
        if best is not None:
            program = best[2]
            assert program.default is not None
            for mode in modes_of(program.default):
                if mode not in current:
                    current[mode] = (program.default[mode], program.program_id, None)
        return current

    def report_effective(self, server: Server, t: int) -> None:
        current = self.effective_now(server)
        uncontrolled: tuple[Any, str | None, str | None] = (None, None, None)
        for mode in sorted(set(current) | set(self.reported)):
            before = self.reported.get(mode, uncontrolled)
            after = current.get(mode, uncontrolled)
            if (value_key(before[0]), before[1], before[2]) == (
                value_key(after[0]),
                after[1],
                after[2],
            ):
                continue
            self.effective_lines.append(
                {
                    "type": "effective",
                    "t": t,
                    "lfdi": self.lfdi,
                    "mode": mode,
                    "value": json.loads(json.dumps(after[0])),
                    "program": after[1],
                    "event": after[2],
                }
            )
            if mode in current:
                self.reported[mode] = after
            else:
                self.reported.pop(mode, None)


# ---------------------------------------------------------------------------------------------
# The replay
# ---------------------------------------------------------------------------------------------


def build_server(scenario: dict[str, Any]) -> Server:
    programs: dict[str, Program] = {}
    for raw in scenario.get("programs", []):
        curves = {curve["mRID"].upper(): dict(curve) for curve in raw.get("curves") or []}
        default = raw.get("default")
        programs[raw["id"]] = Program(
            program_id=raw["id"],
            primacy=int(raw["primacy"]),
            default=dict(default) if default is not None else None,
            curves=curves,
        )
    return Server(programs=programs)


def build_device(raw: dict[str, Any], profile: str) -> Device:
    return Device(
        lfdi=raw["lfdi"].upper(),
        category=parse_bitmap(raw.get("deviceCategory")),
        membership=dedupe(list(raw.get("programs", []))),
        profile=profile,
    )


def apply_input(step: dict[str, Any], server: Server, device: Device | None, t: int) -> None:
    """Phase 2: one input, applied to the server and then seen by the device."""
    if "control" in step:
        control = server.add_control(step["control"], t)
        if control is not None and device is not None:
            device.on_new_control(control, server, t)
    elif "cancel" in step:
        control = server.cancel(step["cancel"], t)
        if control is not None and device is not None:
            device.on_cancel(control, server, t)
    elif "default" in step:
        program = server.programs.get(step["default"]["program"])
        if program is not None:
            base = step["default"].get("base")
            program.default = dict(base) if base is not None else None
    elif "primacy" in step:
        program = server.programs.get(step["primacy"]["program"])
        if program is not None:
            program.primacy = int(step["primacy"]["primacy"])
    elif "membership" in step:
        change = step["membership"]
        if device is not None and change["lfdi"].upper() == device.lfdi:
            device.on_membership(list(change["programs"]), server, t)
    elif "curve" in step:
        program = server.programs.get(step["curve"]["program"])
        if program is not None:
            curve = step["curve"]["curve"] if "curve" in step["curve"] else step["curve"]
            program.curves[curve["mRID"].upper()] = dict(curve)
    else:
        raise ValueError(f"unknown step kind: {sorted(step)}")


def replay(
    scenario: dict[str, Any], device_raw: dict[str, Any] | None
) -> tuple[Server, Device | None]:
    """Simulate t = 0..until for the server and at most one device."""
    until = int(scenario["until"])
    profile = scenario.get("profile", "csip")
    server = build_server(scenario)
    device = build_device(device_raw, profile) if device_raw is not None else None
    steps = list(scenario.get("steps", []))
    for t in range(until + 1):
        if device is not None:
            device.stops_due(t)
        for step in steps:
            if int(step["t"]) == t:
                apply_input(step, server, device, t)
        if device is not None:
            device.settle(server, t)
        server.settle(t)
    return server, device


def run_reference(scenario: dict[str, Any], *, lifecycle: bool = False) -> list[Line]:
    """All output lines of a scenario (FORMAT.md), canonically sorted, ``t`` <= ``until``.

    With ``lifecycle=True`` the response lines are every response the devices record, before
    responseRequired, replyTo and profile gating (§4).
    """
    server, _ = replay(scenario, None)
    lines: list[Line] = list(server.status_lines)
    for device_raw in scenario.get("devices", []):
        _, device = replay(scenario, device_raw)
        assert device is not None
        lines.extend(device.lifecycle_lines if lifecycle else device.response_lines)
        lines.extend(device.effective_lines)
    until = int(scenario["until"])
    return canonical_sort([line for line in lines if line["t"] <= until])
