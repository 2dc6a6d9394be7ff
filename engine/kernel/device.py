"""Device-side resolution: what one device does with the controls of its programs.

Theory of operation
-------------------
This module is the whole of CSIP_RULES §2-§4 as seen from a device; ``docs/semantics.md``
records how each rule is read. Everything that decides a device's lifecycle or effective control
lives here; nothing here knows about cohorts, timers, storage or which runtime calls it.

A device's resolution state is a ``DeviceState``: its program set, its deviceCategory, one
``Track`` per control it has seen, and the effective control it last reported. A state holds no
clock times and nothing specific to one device, so the many devices that share a state share
one object, and one computation serves them all. What *is* specific to a device is when things
happen to it: randomized starts, durations and cancels (§2.4) and the successive-event chains
built on them (§2.5). A ``Clock`` computes those times for one device on demand.

Transitions are pure functions ``(state, ...) -> Step``. Those that depend on time receive only
*flags* (did this track's start / end / stop come by now?), computed from a Clock, never the
times themselves. So a transition is a function of the state and the flags, and the engine can
compute it once for every device with the same state and flags.

Each instant ``t`` runs three phases (docs/semantics.md, "The instant model"):

1. ``stop_due``: running tracks whose effective end or randomized-cancel stop came.
2. Inputs, in order: ``see`` (a new control, §2.10), ``cancel`` (§2.9), ``set_membership``
   (joining sees listed controls, leaving aborts with 14, §2.11).
3. ``fix_new`` (successive predecessors of tracks first seen at ``t``, §2.5) then ``settle``:
   starts, per-mode conflict in rank order (§2.6-§2.8), effective control (§3), and the
   difference from what was last reported.

Track phases: SCHEDULED (seen, not started), RUNNING, DONE (terminal: 3, 6, 7 or 14; still a
possible predecessor of a successive event), IGNORED (late 254 or invalid 253: seen, nothing
more). Events outside the device's category (§2.12) get no track at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, cast

from engine.kernel.catalog import Catalog
from engine.kernel.draw import DrawKind, draw
from engine.kernel.model import DERControl
from engine.kernel.modes import CURVE_TYPES, ModeValue, freeze, thaw
from engine.kernel.outputs import ABORTED_PROGRAM_REMOVED as ABORTED
from engine.kernel.outputs import (
    CANCELLED,
    CANCELLED_RANDOMIZED,
    CANCELLED_STATUS,
    COMPLETED,
    RECEIVED,
    REJECTED_EXPIRED,
    REJECTED_INVALID,
    STARTED,
    SUPERSEDED,
)

# CSIP_RULES §4, response profile: which statuses a device posts.
PROFILES: dict[str, frozenset[int]] = {
    "csip": frozenset({1, 2, 3, 6, 7, 13, 14, 252, 253, 254}),
    "csip-aus": frozenset({1, 2, 3, 6, 7}),
}


class Phase(IntEnum):
    SCHEDULED = 0
    RUNNING = 1
    DONE = 2
    IGNORED = 3


class _Same:
    """``Track.replace``'s default: the field stays as it is."""


_SAME: Final = _Same()


class Track:
    """One device's view of one control. Immutable (``Final``: mypy refuses assignments, and
    the compiled kernel refuses them at run time too); its hash is computed once."""

    __slots__ = (
        "_hash",
        "cancelled",
        "live",
        "lost",
        "mrid",
        "personal",
        "phase",
        "preds",
        "program",
    )

    mrid: Final[str]
    program: Final[str]
    phase: Final[Phase]
    # Successive-event predecessors (§2.5): None until fixed at the end of the instant the
    # control is first seen; () when it has none.
    preds: Final[tuple[str, ...] | None]
    lost: Final[frozenset[str]]  # modes lost for good (§2.7)
    cancelled: Final[int | None]  # instant a randomized cancel was seen while running (§2.9)
    personal: Final[bool]  # its effective period depends on the device (§2.4)
    live: Final[bool]  # scheduled or running
    _hash: Final[int]

    def __init__(
        self,
        mrid: str,
        program: str,
        phase: Phase,
        preds: tuple[str, ...] | None = None,
        lost: frozenset[str] = frozenset(),
        cancelled: int | None = None,
        personal: bool = False,
    ) -> None:
        self.mrid = mrid
        self.program = program
        self.phase = phase
        self.preds = preds
        self.lost = lost
        self.cancelled = cancelled
        self.personal = personal
        self.live = phase <= Phase.RUNNING
        self._hash = hash((mrid, program, int(phase), preds, lost, cancelled, personal))

    def replace(
        self,
        *,
        phase: Phase | None = None,
        preds: tuple[str, ...] | _Same | None = _SAME,
        lost: frozenset[str] | None = None,
        cancelled: int | _Same | None = _SAME,
        personal: bool | None = None,
    ) -> Track:
        return Track(
            self.mrid,
            self.program,
            self.phase if phase is None else phase,
            self.preds if isinstance(preds, _Same) else preds,
            self.lost if lost is None else lost,
            self.cancelled if isinstance(cancelled, _Same) else cancelled,
            self.personal if personal is None else personal,
        )

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Track):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.mrid == other.mrid
            and self.program == other.program
            and self.phase == other.phase
            and self.preds == other.preds
            and self.lost == other.lost
            and self.cancelled == other.cancelled
            and self.personal == other.personal
        )

    def __repr__(self) -> str:
        return (
            f"Track({self.mrid!r}, {self.program!r}, {self.phase.name}, preds={self.preds}, "
            f"lost={sorted(self.lost)}, cancelled={self.cancelled}, personal={self.personal})"
        )


# What a mode is set to, by whom: (value, program, event mRID or None for a default).
Holder = tuple[ModeValue, str, str | None]
Effective = tuple[tuple[str, Holder], ...]


class DeviceState:
    """Immutable (``Final``, as ``Track``), hashable resolution state shared by every device it
    describes. ``_index`` and ``_periods`` are caches of what it holds."""

    __slots__ = (
        "_hash",
        "_index",
        "_live",
        "_periods",
        "category",
        "effective",
        "personal",
        "programs",
        "tracks",
    )

    programs: Final[tuple[str, ...]]
    category: Final[int | None]
    tracks: Final[tuple[Track, ...]]  # sorted by mRID
    effective: Final[Effective]  # sorted by mode
    personal: Final[bool]
    _hash: Final[int]
    _index: dict[str, Track] | None
    _live: Final[tuple[Track, ...]]
    # (catalog digest, effective periods of the live tracks, next change): the same for every
    # device in a state without personal tracks, so worked out once per catalog
    # (``Clock.live_periods``, ``Clock.next_change``).
    _periods: tuple[bytes, tuple[tuple[int, int], ...], int | None] | None

    def __init__(
        self,
        programs: tuple[str, ...],
        category: int | None,
        tracks: tuple[Track, ...],
        effective: Effective,
    ) -> None:
        self.programs = programs
        self.category = category
        self.tracks = tracks
        self.effective = effective
        live = tuple(t for t in tracks if t.live)
        self._live = live
        self.personal = any(t.personal or t.cancelled is not None for t in live)
        self._index = None
        self._periods = None
        self._hash = hash((programs, category, tracks, effective))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, DeviceState):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.programs == other.programs
            and self.category == other.category
            and self.tracks == other.tracks
            and self.effective == other.effective
        )

    def __repr__(self) -> str:
        return (
            f"DeviceState(programs={self.programs}, category={self.category}, "
            f"tracks={self.tracks}, effective={self.effective})"
        )

    def live(self) -> tuple[Track, ...]:
        """Scheduled and running tracks, in mRID order."""
        return self._live

    def track(self, mrid: str) -> Track | None:
        index = self._index
        if index is None:
            index = self._index = {t.mrid: t for t in self.tracks}
        return index.get(mrid)

    def to_json(self) -> dict[str, Any]:
        return {
            "programs": list(self.programs),
            "category": self.category,
            "tracks": [
                [
                    t.mrid,
                    t.program,
                    int(t.phase),
                    None if t.preds is None else list(t.preds),
                    sorted(t.lost),
                    t.cancelled,
                    t.personal,
                ]
                for t in self.tracks
            ],
            "effective": [
                [mode, thaw(value), program, event]
                for mode, (value, program, event) in self.effective
            ],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DeviceState:
        tracks = tuple(
            Track(
                mrid=mrid,
                program=program,
                phase=Phase(phase),
                preds=None if preds is None else tuple(preds),
                lost=frozenset(lost),
                cancelled=cancelled,
                personal=personal,
            )
            for mrid, program, phase, preds, lost, cancelled, personal in raw["tracks"]
        )
        effective = tuple(
            (mode, (freeze(mode, value), program, event))
            for mode, value, program, event in raw["effective"]
        )
        return cls(tuple(raw["programs"]), raw["category"], tracks, effective)


EMPTY = DeviceState((), None, (), ())

# A lifecycle step of one control: (mRID, program, status, posted).
Lifecycle = tuple[str, str, int, bool]
# A change of one mode: (mode, new holder or None when it became uncontrolled).
EffectiveDelta = tuple[str, Holder | None]


@dataclass(frozen=True, slots=True)
class Step:
    """The result of a transition: the new state and what happened on the way."""

    state: DeviceState
    lifecycle: tuple[Lifecycle, ...] = ()
    effective: tuple[EffectiveDelta, ...] = ()

    # Written out, as the hot records' constructors are (engine/kernel/inputs.py says why).
    def __init__(
        self,
        state: DeviceState,
        lifecycle: tuple[Lifecycle, ...] = (),
        effective: tuple[EffectiveDelta, ...] = (),
    ) -> None:
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "lifecycle", lifecycle)
        object.__setattr__(self, "effective", effective)


@dataclass(frozen=True, slots=True)
class Context:
    """What a transition may read besides the state: the programs, the instant, the profile."""

    catalog: Catalog
    t: int
    profile: frozenset[int]

    def __init__(self, catalog: Catalog, t: int, profile: frozenset[int]) -> None:
        object.__setattr__(self, "catalog", catalog)
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "profile", profile)


def posted(control: DERControl, status: int, profile: frozenset[int]) -> bool:
    """Whether the device posts this response (CSIP_RULES §4 gating)."""
    if not control.reply_to:
        return False
    bit = 0x01 if status == RECEIVED else 0x02
    return bool(control.response_required & bit) and status in profile


# -- time ---------------------------------------------------------------------------------

STARTED_FLAG = 1  # a scheduled track's effective start is <= t
ENDED_FLAG = 2  # its effective end is <= t
STOPPED_FLAG = 4  # a running track's randomized-cancel stop is <= t

Flags = tuple[int, ...]  # one per live track, in state order


class Clock:
    """Effective times of one device's controls (§2.3-§2.5, §2.9).

    ``lfdi`` is None for a state without personal tracks: then every time is the same for all
    devices, and asking for a randomized draw is a bug.
    """

    __slots__ = ("_catalog", "_periods", "lfdi")

    def __init__(self, catalog: Catalog, lfdi: str | None) -> None:
        self._catalog = catalog
        self.lfdi = lfdi
        self._periods: dict[str, tuple[int, int]] = {}

    def _draw(self, mrid: str, kind: DrawKind, bound: int) -> int:
        if bound == 0:
            return 0
        if self.lfdi is None:
            raise AssertionError(f"a shared evaluation needs a personal draw ({mrid}, {kind})")
        return draw(self.lfdi, mrid, kind, bound)

    def period(self, state: DeviceState, mrid: str) -> tuple[int, int]:
        """Effective [start, end) of a control for this device."""
        known = self._periods.get(mrid)
        if known is not None:
            return known
        track = state.track(mrid)
        preds = () if track is None or track.preds is None else track.preds
        shared = track is None or not track.personal
        if shared:
            # The same for every device: computed once per (control, predecessors).
            known = self._catalog.uniform_periods.get((mrid, preds))
            if known is not None:
                self._periods[mrid] = known
                return known
        control = self._catalog.control(mrid)
        assert control is not None, mrid
        ends = [self.period(state, p)[1] for p in preds if self._catalog.control(p) is not None]
        if ends:
            start = max(ends)  # §2.5: follows the latest predecessor's effective end
        else:
            start = control.start + self._draw(mrid, "start", control.randomize_start)
        end = start + control.duration + self._draw(mrid, "duration", control.randomize_duration)
        self._periods[mrid] = (start, end)
        if shared:
            self._catalog.uniform_periods[(mrid, preds)] = (start, end)
        return start, end

    def stop(self, track: Track) -> int:
        """The stop instant of a randomized cancel seen while running (§2.9)."""
        assert track.cancelled is not None
        control = self._catalog.control(track.mrid)
        assert control is not None
        return track.cancelled + self._draw(track.mrid, "cancel", control.cancel_bound)

    def live_periods(self, state: DeviceState) -> tuple[tuple[int, int], ...]:
        """Effective [start, end) of each live track, in state order. For a state without
        personal tracks they are the same for every device: kept on the state while the
        catalog does not change."""
        catalog = self._catalog
        if not state.personal:
            cached = state._periods
            if cached is not None and cached[0] == catalog.digest:
                return cached[1]
        uniform = catalog.uniform_periods
        # The (start, end) pairs as the cache holds them, passed on as objects: compiled,
        # a ``tuple[int, int]`` value is unpacked into two C integers and packed again into
        # a new tuple (and two new ints) wherever it is stored, for every track of every state.
        periods: list[object] = []
        for track in state.live():
            known: object = None
            if not track.personal:
                known = uniform.get((track.mrid, () if track.preds is None else track.preds))
            if known is None:
                known = self.period(state, track.mrid)
            periods.append(known)
        out: tuple[tuple[int, int], ...] = cast(Any, tuple(periods))
        if not state.personal:
            state._periods = (catalog.digest, out, _soonest(state, out))
        return out

    def flags(self, state: DeviceState, t: int) -> Flags:
        out = []
        live, periods = state.live(), self.live_periods(state)
        for i in range(len(live)):
            track = live[i]
            start, end = periods[i]
            if track.phase is Phase.SCHEDULED:
                flag = (STARTED_FLAG | (ENDED_FLAG if end <= t else 0)) if start <= t else 0
            else:
                flag = ENDED_FLAG if end <= t else 0
                if track.cancelled is not None and self.stop(track) <= t:
                    flag |= STOPPED_FLAG
            out.append(flag)
        return tuple(out)

    def cancel_flags(self, state: DeviceState, mrid: str, t: int) -> tuple[bool, bool]:
        """For a randomized cancel at ``t`` of a running control: (stops now, not before end)."""
        control = self._catalog.control(mrid)
        assert control is not None
        delay = self._draw(mrid, "cancel", control.cancel_bound)
        _, end = self.period(state, mrid)
        return delay == 0, t + delay >= end

    def next_change(self, state: DeviceState) -> int | None:
        """The next instant at which this device's state can change by itself."""
        periods = self.live_periods(state)
        if not state.personal:
            cached = state._periods
            assert cached is not None
            return cached[2]  # kept with the periods (no cancelled track in a shared state)
        soonest: int | None = None
        for track, (start, end) in zip(state.live(), periods, strict=True):
            when = start if track.phase is Phase.SCHEDULED else end
            if track.cancelled is not None:
                when = min(when, self.stop(track))
            if soonest is None or when < soonest:
                soonest = when
        return soonest


def _soonest(state: DeviceState, periods: tuple[tuple[int, int], ...]) -> int | None:
    """The next change of a state without personal tracks (so without cancelled ones): the
    start of a scheduled track or the end of a running one, whichever comes first."""
    live = state.live()
    soonest: int | None = None
    # Index loops here and in the other per-state loops: mypyc runs ``zip(..., strict=True)``
    # as a call of the Python builtin, with a generic iterator.
    for i in range(len(live)):
        start, end = periods[i]
        when = start if live[i].phase is Phase.SCHEDULED else end
        if soonest is None or when < soonest:
            soonest = when
    return soonest


# -- transitions --------------------------------------------------------------------------


class _Edit:
    """A state under construction plus the lifecycle steps taken so far."""

    __slots__ = ("added", "ctx", "lifecycle", "state", "tracks")

    def __init__(self, state: DeviceState, ctx: Context) -> None:
        self.state = state
        self.ctx = ctx
        # In mRID order, as the state's: replacing or deleting an entry keeps that order, and
        # only a track added (``_see``, which sets ``added``) makes ``step`` sort them again.
        self.tracks: dict[str, Track] = {t.mrid: t for t in state.tracks}
        self.added = False
        self.lifecycle: list[Lifecycle] = []

    def respond(self, track: Track, status: int) -> None:
        control = self.ctx.catalog.control(track.mrid)
        assert control is not None
        self.lifecycle.append(
            (track.mrid, track.program, status, posted(control, status, self.ctx.profile))
        )

    def finish(self, track: Track, status: int, phase: Phase = Phase.DONE) -> None:
        self.respond(track, status)
        self.tracks[track.mrid] = track.replace(phase=phase, lost=frozenset(), cancelled=None)

    def step(
        self,
        *,
        programs: tuple[str, ...] | None = None,
        category: int | bool | None = False,
        effective: Effective | None = None,
        deltas: tuple[EffectiveDelta, ...] = (),
    ) -> Step:
        state = self.state
        if self.added:
            tracks = tuple([self.tracks[mrid] for mrid in sorted(self.tracks)])
        else:
            tracks = tuple(self.tracks.values())
        new_programs = state.programs if programs is None else programs
        new_category = state.category if category is False else category
        new_effective = state.effective if effective is None else effective
        assert new_category is None or not isinstance(new_category, bool)
        if (
            tracks == state.tracks
            and new_programs == state.programs
            and new_category == state.category
            and new_effective == state.effective
        ):
            return Step(state, tuple(self.lifecycle), deltas)
        return Step(
            DeviceState(new_programs, new_category, tracks, new_effective),
            tuple(self.lifecycle),
            deltas,
        )


def stop_due(state: DeviceState, flags: Flags, ctx: Context) -> Step:
    """Phase 1: running controls whose end or randomized-cancel stop came (§2.3, §2.9)."""
    edit = _Edit(state, ctx)
    live = state.live()
    for i in range(len(live)):  # flags are per live track (index loops: see ``_soonest``)
        track, flag = live[i], flags[i]
        if track.phase is not Phase.RUNNING:
            continue
        if flag & STOPPED_FLAG:  # only set while the stop is before the end
            edit.finish(track, CANCELLED)
        elif flag & ENDED_FLAG:
            edit.finish(track, COMPLETED)
    return edit.step()


def _applies(control: DERControl, category: int | None) -> bool:
    """§2.12: a deviceCategory with no bit in common with the device's makes it not apply."""
    if control.device_category is None or category is None:
        return True
    return bool(control.device_category & category)


def _invalid(control: DERControl, catalog: Catalog) -> bool:
    """§2.13: a curve mode linking a missing curve, or one of the wrong curveType."""
    curves = catalog.program(control.program).curves
    for mode, link in control.curve_links():
        curve = None if link is None else curves.get(link)
        if curve is None or curve.curve_type != CURVE_TYPES[mode]:
            return True
    return False


def _see(edit: _Edit, control: DERControl, category: int | None) -> None:
    if control.mrid in edit.tracks or not _applies(control, category):
        return
    ctx = edit.ctx
    track = Track(control.mrid, control.program, Phase.SCHEDULED, personal=control.randomized)
    edit.added = True  # finished or kept, it is a new entry of ``edit.tracks``
    edit.respond(track, RECEIVED)
    if control.scheduled_end <= ctx.t:  # §2.10: late
        edit.finish(track, REJECTED_EXPIRED, Phase.IGNORED)
    elif _invalid(control, ctx.catalog):
        edit.finish(track, REJECTED_INVALID, Phase.IGNORED)
    elif ctx.catalog.status(control.mrid) in (CANCELLED_STATUS, CANCELLED_RANDOMIZED):
        edit.finish(track, CANCELLED)  # §2.9: first seen already cancelled, never starts
    else:
        edit.tracks[control.mrid] = track


def see(state: DeviceState, control: DERControl, ctx: Context) -> Step:
    """Phase 2: a control appears in a program of the device (§2.10)."""
    edit = _Edit(state, ctx)
    _see(edit, control, state.category)
    return edit.step()


def cancel(
    state: DeviceState, mrid: str, server_status: int, flags: tuple[bool, bool], ctx: Context
) -> Step:
    """Phase 2: the device sees a cancel (§2.9).

    ``flags`` matter only for a randomized cancel of a running control: (the draw is 0, the stop
    is not before the effective end), from ``Clock.cancel_flags``.
    """
    track = state.track(mrid)
    if track is None or not track.live:
        return Step(state)
    edit = _Edit(state, ctx)
    stops_now, not_before_end = flags
    if track.phase is Phase.SCHEDULED or server_status == CANCELLED_STATUS or stops_now:
        edit.finish(track, CANCELLED)
    elif not not_before_end:
        edit.tracks[mrid] = track.replace(cancelled=ctx.t)
    return edit.step()


def cancel_needs_clock(state: DeviceState, mrid: str, server_status: int) -> bool:
    """Whether a cancel's effect on this state depends on the device (a randomized stop)."""
    track = state.track(mrid)
    return (
        track is not None and track.phase is Phase.RUNNING and server_status == CANCELLED_RANDOMIZED
    )


def set_membership(
    state: DeviceState, programs: Iterable[str], category: int | None, ctx: Context
) -> Step:
    """Phase 2: the device's program set changes (§2.10 joining, §2.11 removal)."""
    ordered = tuple(dict.fromkeys(programs))  # each program once, first position kept
    edit = _Edit(state, ctx)
    keep = set(ordered)
    for track in state.tracks:
        if track.live and track.program not in keep:
            edit.finish(track, ABORTED)
    for program in ordered:
        if program not in state.programs:
            for control in ctx.catalog.listed(program, ctx.t):
                _see(edit, control, category)
    return edit.step(programs=ordered, category=category)


def fix_new(state: DeviceState, ctx: Context) -> DeviceState:
    """Start of phase 3: predecessors of the tracks first seen at this instant (§2.5).

    A predecessor is a track of the state (not ignored, in one of its programs, lasting) whose
    control's scheduled end is the new control's start and which shares a mode with it: found
    through the catalog's controls by (program, scheduled end), so the cost follows the new
    tracks, not all the tracks a state holds."""
    catalog = ctx.catalog
    tracks = state.tracks
    # (start, mRID, position in ``tracks``, control): earlier starts first, since a
    # predecessor always starts before its successor and must be fixed first.
    fresh: list[tuple[int, str, int, DERControl]] = []
    for i in range(len(tracks)):
        track = tracks[i]
        if track.preds is None and track.phase is not Phase.IGNORED:
            control = catalog.control(track.mrid)
            assert control is not None
            fresh.append((control.start, track.mrid, i, control))
    if not fresh:
        return state
    fresh.sort()
    out = list(tracks)
    where: dict[str, int] | None = None  # position by mRID, made when a candidate shows up
    for start, mrid, i, control in fresh:
        found: list[str] = []
        for program in state.programs:
            for other in catalog.ending(program, start):
                if other.mrid == mrid or not (other.modes & control.modes):
                    continue
                if where is None:
                    where = {t.mrid: k for k, t in enumerate(tracks)}
                k = where.get(other.mrid, -1)
                if k >= 0 and out[k].phase is not Phase.IGNORED:
                    found.append(other.mrid)
        preds = tuple(sorted(found))
        if preds:
            assert where is not None
            personal = control.randomize_duration != 0 or any(out[where[p]].personal for p in preds)
        else:
            personal = control.randomized
        out[i] = out[i].replace(preds=preds, personal=personal)
    return DeviceState(state.programs, state.category, tuple(out), state.effective)


def _rank_order(tracks: list[Track], catalog: Catalog) -> list[Track]:
    """Highest rank first (§2.6): lower primacy, then later creationTime, then greater mRID."""
    ordered = sorted(tracks, key=lambda t: t.mrid.upper(), reverse=True)

    def key(track: Track) -> tuple[int, int]:
        control = catalog.control(track.mrid)
        assert control is not None
        return (catalog.program(track.program).primacy, -control.creation_time)

    ordered.sort(key=key)
    return ordered


def settle(state: DeviceState, flags: Flags, ctx: Context) -> Step:
    """Phase 3: starts, per-mode conflict, supersession and effective control (§2.7, §2.8, §3)."""
    catalog = ctx.catalog
    edit = _Edit(state, ctx)
    for track in state.tracks:  # what ``edit.tracks`` holds so far
        if not track.live and catalog.control(track.mrid) is None:
            del edit.tracks[track.mrid]  # forgotten: the control can never be listed again
    candidates: list[Track] = []
    live = state.live()
    for i in range(len(live)):
        track, flag = live[i], flags[i]
        if track.phase is Phase.RUNNING:
            candidates.append(track)
        elif flag & STARTED_FLAG:
            if flag & ENDED_FLAG:  # an empty effective period: starts and completes at once
                edit.respond(track, STARTED)
                edit.finish(track, COMPLETED)
            else:
                candidates.append(track)
    carried: set[str] = set()
    running: list[Track] = []
    for track in _rank_order(candidates, catalog):
        control = catalog.control(track.mrid)
        assert control is not None
        # §2.7: a running higher-ranked control carrying a mode takes it, for good.
        lost = track.lost | (control.modes & carried)
        if control.modes and lost >= control.modes:
            edit.finish(track, SUPERSEDED)  # §2.8: every mode lost (or taken at its start)
            continue
        if track.phase is Phase.SCHEDULED:
            edit.respond(track, STARTED)
            track = track.replace(phase=Phase.RUNNING, lost=lost)
        elif lost != track.lost:
            track = track.replace(lost=lost)
        edit.tracks[track.mrid] = track
        carried |= control.modes
        running.append(track)
    effective = _effective(state.programs, running, catalog)
    old = dict(state.effective)
    new = dict(effective)
    deltas = tuple(
        (mode, new.get(mode))
        for mode in sorted(old.keys() | new.keys())
        if old.get(mode) != new.get(mode)
    )
    return edit.step(effective=effective, deltas=deltas)


def _effective(programs: tuple[str, ...], running: list[Track], catalog: Catalog) -> Effective:
    """§3: the running control that still holds a mode, else the top program's default."""
    holders: dict[str, Holder] = {}
    for track in running:  # in rank order
        control = catalog.control(track.mrid)
        assert control is not None
        for mode, value in control.base:
            if mode not in track.lost and mode not in holders:
                holders[mode] = (value, track.program, track.mrid)
    best: str | None = None
    best_primacy = 0
    for program_id in programs:
        program = catalog.program(program_id)
        if program.default is not None and (best is None or program.primacy < best_primacy):
            best, best_primacy = program_id, program.primacy
    if best is not None:
        default = catalog.program(best).default
        assert default is not None
        for mode, value in default.items:
            holders.setdefault(mode, (value, best, None))
    return tuple(sorted(holders.items()))
