"""The program side: programs, their controls, defaults and curves, and each control's
server-side status (CSIP_RULES §5).

This state is small (thousands of programs, a few dozen controls each) and is the same for every
device, so every runtime holds all of it. Device-side resolution only reads it.

Server-side status, per control created at instant ``c`` with earliest start
``e = start + min(0, randomizeStart)``: 1 at ``c`` if ``e <= c``, else 0 at ``c`` and 1 at ``e``;
2 (or 3 with randomization) when cancelled; 4 when a newer control of the same program with the
same modes overlaps it (at ``max(Y.c, Y.e)``, unless either was cancelled first). Terminal
statuses (2, 3, 4) never change. A control is listed until its scheduled end.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.kernel.errors import InvalidInput
from engine.kernel.model import Curve, DefaultControl, DERControl
from engine.kernel.outputs import (
    ACTIVE,
    CANCELLED_RANDOMIZED,
    CANCELLED_STATUS,
    SCHEDULED,
    SUPERSEDED_STATUS,
    EventStatusChange,
)

TERMINAL_STATUSES = frozenset({CANCELLED_STATUS, CANCELLED_RANDOMIZED, SUPERSEDED_STATUS})
DEFAULT_RETENTION = 7 * 86400
_NONE: list[DERControl] = []  # ``Catalog.ending``'s answer when none end then (never changed)

_ACTIVATE = 0
_SUPERSEDE = 1


@dataclass(slots=True)
class ControlRecord:
    control: DERControl
    created: int  # c: the instant the server created it
    status: int
    status_since: int  # the instant the current status was set
    cancelled_at: int | None = None
    # (instant, newer mRID): supersedes scheduled against this control (§5), checked when due
    supersedes: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class ProgramRecord:
    id: str
    primacy: int
    default: DefaultControl | None = None
    curves: dict[str, Curve] = field(default_factory=dict)
    controls: list[str] = field(default_factory=list)  # mRIDs in creation order


def newer(a: DERControl, b: DERControl) -> bool:
    """True when ``a`` is newer than ``b``: later creationTime, then greater mRID."""
    if a.creation_time != b.creation_time:
        return a.creation_time > b.creation_time
    return a.mrid.upper() > b.mrid.upper()


class Catalog:
    """Programs and controls, shared by all devices. Mutated only through the engine."""

    def __init__(self, retention: int = DEFAULT_RETENTION) -> None:
        self.retention = retention
        self.programs: dict[str, ProgramRecord] = {}
        # By upper-cased mRID: mRIDs are hex and compare case-insensitively (§2.1, §2.6).
        self.controls: dict[str, ControlRecord] = {}
        # (instant, sequence, kind, mRID, other mRID): status changes scheduled for later
        self._timers: list[tuple[int, int, int, str, str]] = []
        self._seq = 0
        # (instant, mRID): when a control may be forgotten
        self._expiry: list[tuple[int, str]] = []
        # Bumped on every change a device transition can observe (memo invalidation).
        self.version = 0
        # What the catalog holds, as a chain of every change since it was empty (or restored):
        # two catalogs with the same digest hold the same programs and controls, so engines
        # that share a memo (a worker's shard engines) can share results across catalogs.
        self.digest = _EMPTY
        # Effective periods that are the same for every device, by (mRID, predecessors):
        # a cache the device Clock fills (controls are immutable, so entries stay valid until
        # a control is forgotten: then the catalog takes a new, empty one). Catalogs fed the
        # same inputs may share one (a worker's shard engines: ``ShardedKernel``).
        self.uniform_periods: dict[tuple[str, tuple[str, ...]], tuple[int, int]] = {}
        # The records of ``controls`` by mRID as first given (what tracks hold), so a device
        # transition's lookups need no upper-cased copy; and the controls of each program by
        # scheduled end (those that last: duration > 0), the predecessors a control starting
        # then may have (§2.5).
        self._exact: dict[str, ControlRecord] = {}
        self._ending: dict[tuple[str, int], list[DERControl]] = {}

    # -- reads used by device resolution ----------------------------------------------------

    def program(self, program_id: str) -> ProgramRecord:
        try:
            return self.programs[program_id]
        except KeyError:
            raise InvalidInput(f"unknown program {program_id!r}") from None

    def record(self, mrid: str) -> ControlRecord | None:
        return self.controls.get(mrid.upper())

    def control(self, mrid: str) -> DERControl | None:
        record = self._exact.get(mrid)
        if record is None:
            record = self.controls.get(mrid.upper())
        return None if record is None else record.control

    def ending(self, program_id: str, t: int) -> list[DERControl]:
        """The program's controls (still held, duration > 0) whose scheduled end is ``t``."""
        return self._ending.get((program_id, t), _NONE)

    def status(self, mrid: str) -> int | None:
        record = self.controls.get(mrid.upper())
        return None if record is None else record.status

    def listed(self, program_id: str, t: int) -> list[DERControl]:
        """Controls the program lists at ``t``, in creation order (until their scheduled end)."""
        result = []
        for mrid in self.program(program_id).controls:
            record = self.controls.get(mrid.upper())
            if record is not None and record.control.scheduled_end > t:
                result.append(record.control)
        return result

    def next_change(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    def next_view_change(self, t: int) -> int | None:
        """The first instant after ``t`` at which time alone changes what a server shows of
        its controls: a status (activation at the earliest start, a supersede) or a program's
        list (a control drops out at its scheduled end). None when nothing is pending."""
        upcoming: int | None = None
        for record in self.controls.values():
            control = record.control
            instants = [control.earliest_start, control.scheduled_end]
            instants.extend(when for when, _ in record.supersedes)
            for when in instants:
                if when > t and (upcoming is None or when < upcoming):
                    upcoming = when
        return upcoming

    def status_at(self, mrid: str, t: int) -> tuple[int, int]:
        """(currentStatus, since when) of a control at instant ``t`` >= the last processed one.

        The recorded status is exact up to the last processed instant; what time alone changes
        after it (activation at ``e``, a supersede) is worked out here, so a GET answers for
        the very instant it is served (CSIP_RULES §5).
        """
        record = self.controls[mrid.upper()]
        status, since = record.status, record.status_since
        if status in TERMINAL_STATUSES:
            return status, since
        for when, by in sorted(record.supersedes):
            if when > t:
                break
            other = self.controls.get(by.upper())
            if other is None or (other.cancelled_at is not None and other.cancelled_at <= when):
                continue
            return SUPERSEDED_STATUS, when
        e = record.control.earliest_start
        if status == SCHEDULED and e <= t:
            return ACTIVE, e
        return status, since

    # -- operator inputs --------------------------------------------------------------------

    def define_program(self, program_id: str, primacy: int) -> None:
        check_primacy(primacy)
        record = self.programs.get(program_id)
        if record is None:
            self.programs[program_id] = ProgramRecord(program_id, primacy)
        else:
            record.primacy = primacy
        self._changed("define_program", program_id, primacy)

    def set_primacy(self, program_id: str, primacy: int) -> None:
        check_primacy(primacy)
        self.program(program_id).primacy = primacy
        self._changed("set_primacy", program_id, primacy)

    def set_default(self, program_id: str, default: DefaultControl | None) -> None:
        self.program(program_id).default = default
        self._changed("set_default", program_id, None if default is None else default.to_json())

    def add_curve(self, program_id: str, curve: Curve) -> None:
        self.program(program_id).curves[curve.mrid] = curve
        self._changed("add_curve", program_id, curve.to_json())

    def check_control(self, control: DERControl) -> bool:
        """Validate a new control; False when its mRID is already known (§2.1: ignored)."""
        self.program(control.program)
        return control.mrid.upper() not in self.controls

    def add_control(self, control: DERControl, t: int) -> list[EventStatusChange]:
        """Create a control at instant ``t`` (the caller checked it with ``check_control``)."""
        program = self.program(control.program)
        e = control.earliest_start
        status = ACTIVE if e <= t else SCHEDULED
        self._hold(ControlRecord(control, t, status, t))
        program.controls.append(control.mrid)
        heapq.heappush(self._expiry, (control.scheduled_end + self.retention, control.mrid))
        if status == SCHEDULED:
            self._schedule(e, _ACTIVATE, control.mrid, "")
        for other_mrid in program.controls[:-1]:
            other = self.controls.get(other_mrid.upper())
            if other is None or other.control.scheduled_end <= t:
                continue
            if not _supersedes_shape(control, other.control):
                continue
            if newer(control, other.control):
                when = max(t, e)
                self._schedule(when, _SUPERSEDE, other_mrid, control.mrid)
                other.supersedes.append((when, control.mrid))
            else:
                # An older control arriving after a newer one: superseded once both exist.
                when = max(other.created, other.control.earliest_start, t)
                self._schedule(when, _SUPERSEDE, control.mrid, other_mrid)
                self.controls[control.mrid.upper()].supersedes.append((when, other_mrid))
        self._changed("add_control", control.to_json(), t)
        return [EventStatusChange(t, control.program, control.mrid, status)]

    def cancel(self, program_id: str, mrid: str, t: int) -> EventStatusChange | None:
        """Cancel a control; None when it is no longer listed or already terminal."""
        record = self.controls.get(mrid.upper())
        if record is None:
            raise InvalidInput(f"unknown control {mrid!r}")
        if record.control.program != program_id:
            raise InvalidInput(f"control {mrid!r} belongs to program {record.control.program!r}")
        if record.status in TERMINAL_STATUSES or record.control.scheduled_end <= t:
            return None
        record.status = CANCELLED_RANDOMIZED if record.control.randomized else CANCELLED_STATUS
        record.status_since = t
        record.cancelled_at = t
        self._changed("cancel", program_id, mrid, t)
        return EventStatusChange(t, program_id, record.control.mrid, record.status)

    # -- time -------------------------------------------------------------------------------

    def due(self, t: int) -> list[EventStatusChange]:
        """Status changes scheduled at or before ``t``; called after the inputs of ``t``."""
        changes: list[EventStatusChange] = []
        while self._timers and self._timers[0][0] <= t:
            when, _, kind, mrid, other = heapq.heappop(self._timers)
            record = self.controls.get(mrid.upper())
            if record is None:
                continue
            if kind == _ACTIVATE:
                if record.status == SCHEDULED:
                    record.status = ACTIVE
                    record.status_since = when
                    changes.append(EventStatusChange(t, record.control.program, mrid, ACTIVE))
                continue
            by = self.controls.get(other.upper())
            if record.status in TERMINAL_STATUSES or by is None:
                continue
            if by.status in (CANCELLED_STATUS, CANCELLED_RANDOMIZED):
                continue
            record.status = SUPERSEDED_STATUS
            record.status_since = when
            changes.append(EventStatusChange(t, record.control.program, mrid, SUPERSEDED_STATUS))
        if changes:
            self._changed("due", t)
        self._forget(t)
        return changes

    def _forget(self, t: int) -> None:
        """Drop controls whose scheduled end is more than the retention horizon ago."""
        dropped = False
        while self._expiry and self._expiry[0][0] <= t:
            _, mrid = heapq.heappop(self._expiry)
            record = self.controls.pop(mrid.upper(), None)
            if record is not None:
                control = record.control
                self.programs[control.program].controls.remove(control.mrid)
                del self._exact[control.mrid]
                if control.duration > 0:
                    key = (control.program, control.scheduled_end)
                    same_end = self._ending[key]
                    same_end.remove(control)
                    if not same_end:
                        del self._ending[key]
                dropped = True
        if dropped:
            self._changed("forget", t)
            # A new dict, not clear(): another catalog that shares this one and has not
            # forgotten yet keeps what it may still ask for.
            self.uniform_periods = {}

    def _hold(self, record: ControlRecord) -> None:
        control = record.control
        self.controls[control.mrid.upper()] = record
        self._exact[control.mrid] = record
        if control.duration > 0:
            self._ending.setdefault((control.program, control.scheduled_end), []).append(control)

    def _changed(self, *change: Any) -> None:
        self.version += 1
        self.digest = _chain(self.digest, change)

    def _schedule(self, when: int, kind: int, mrid: str, other: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, kind, mrid, other))

    # -- snapshot ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "retention": self.retention,
            "programs": [
                {
                    "id": p.id,
                    "primacy": p.primacy,
                    "default": None if p.default is None else p.default.to_json(),
                    "curves": [c.to_json() for c in p.curves.values()],
                    "controls": list(p.controls),
                }
                for p in self.programs.values()
            ],
            "controls": [
                {
                    "control": r.control.to_json(),
                    "created": r.created,
                    "status": r.status,
                    "since": r.status_since,
                    "cancelled_at": r.cancelled_at,
                    "supersedes": [list(item) for item in r.supersedes],
                }
                for r in self.controls.values()
            ],
            "timers": [list(timer) for timer in self._timers],
            "seq": self._seq,
            "expiry": [list(item) for item in self._expiry],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Catalog:
        catalog = cls(raw["retention"])
        for p in raw["programs"]:
            record = ProgramRecord(p["id"], p["primacy"])
            if p["default"] is not None:
                record.default = DefaultControl.from_json(p["default"])
            for c in p["curves"]:
                curve = Curve.from_json(c)
                record.curves[curve.mrid] = curve
            record.controls = list(p["controls"])
            catalog.programs[record.id] = record
        for r in raw["controls"]:
            control = DERControl.from_json(r["control"])
            catalog._hold(
                ControlRecord(
                    control,
                    r["created"],
                    r["status"],
                    r["since"],
                    r["cancelled_at"],
                    [(int(w), str(b)) for w, b in r["supersedes"]],
                )
            )
        catalog._timers = [
            (int(w), int(s), int(k), str(m), str(o)) for w, s, k, m, o in raw["timers"]
        ]
        heapq.heapify(catalog._timers)
        catalog._seq = raw["seq"]
        catalog._expiry = [(int(w), str(m)) for w, m in raw["expiry"]]
        heapq.heapify(catalog._expiry)
        catalog.digest = _chain(_EMPTY, ("restored", raw))
        return catalog


_EMPTY = b"csip-catalog/empty"


_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _chain(digest: bytes, change: Any) -> bytes:
    """The digest after ``change`` (JSON-ready values): BLAKE2b-128 of the two.

    Digests are compared within a process only (engines that share memo entries; a restored
    catalog starts a chain of its own), so the encoding need only be deterministic: orjson, in
    a worker's setup some 6 µs less per control and engine than ``json.dumps``; values it cannot
    encode (integers beyond 64 bits) take the standard library."""
    try:
        text = orjson.dumps(change, default=str, option=_SORTED)
    except TypeError:
        text = json.dumps(change, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(digest + text, digest_size=16).digest()


def check_primacy(primacy: int) -> None:
    if isinstance(primacy, bool) or not isinstance(primacy, int) or not 0 <= primacy <= 255:
        raise InvalidInput(f"primacy is a UInt8 (0..255), not {primacy!r}")


def _supersedes_shape(a: DERControl, b: DERControl) -> bool:
    """Same modes (rampTms aside) and overlapping scheduled periods (CSIP_RULES §5).

    Periods are half-open (§2.3): an empty one overlaps nothing.
    """
    return (
        a.modes == b.modes
        and a.duration > 0
        and b.duration > 0
        and a.start < b.scheduled_end
        and b.start < a.scheduled_end
    )
