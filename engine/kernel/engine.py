"""The resolution engine: applies inputs at instants, returns outputs, tells the next change.

Devices that are in the same ``DeviceState`` form a *cohort* and are resolved once, together: a
system-wide control reaching a million devices spread over a thousand program sets costs a
thousand resolutions, not a million (ARCHITECTURE, scale model). A transition that depends on a
device's own times (randomization, §2.4) is computed per device, but only through its *flags*, so
devices with the same state and flags still share one computation (the ``Memo``). When devices'
states become equal again (a randomized control has ended for all of them), they merge back into
one cohort. Several engines may share one ``Memo`` (a Kafka worker's shard engines): its keys
carry the catalog's content digest, so engines share results exactly when their catalogs hold
the same programs and controls.

Timers: a cohort without personal tracks has one timer; a device in a personal state has its own.
``next_change()`` is the earliest of those and of the programs' status timers, so a runtime
sleeps until then instead of polling every second.

The engine does no I/O and reads no clock: time is the argument of ``apply`` and ``advance``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.kernel import device as dev
from engine.kernel.catalog import DEFAULT_RETENTION, Catalog
from engine.kernel.catalog import check_primacy as _check_primacy
from engine.kernel.device import EMPTY, Clock, Context, DeviceState, Step
from engine.kernel.errors import InvalidInput, TimeWentBackwards
from engine.kernel.identity import normalize_lfdi
from engine.kernel.inputs import (
    KEEP,
    AddControl,
    AddCurve,
    CancelControl,
    DefineProgram,
    Input,
    RemoveDevice,
    SetDefault,
    SetMembership,
    SetPrimacy,
)
from engine.kernel.outputs import EffectiveChange, EventStatusChange, Output, ResponseDue

SNAPSHOT_VERSION = 1


class Cohort:
    """Devices that share one resolution state.

    ``place`` orders cohorts as ``Engine._cohorts`` does (where a cohort was last put in): the
    order in which a change of a program visits the program's cohorts, so an engine restored
    from a snapshot (which lists cohorts in that order) visits them as the original would."""

    __slots__ = ("alive", "members", "place", "state")

    def __init__(self, state: DeviceState, place: int) -> None:
        self.state = state
        self.members: dict[str, None] = {}  # insertion-ordered: outputs are deterministic
        self.alive = True
        self.place = place

    def __repr__(self) -> str:
        return f"Cohort({len(self.members)} devices, personal={self.state.personal})"


def _place(cohort: Cohort) -> int:
    return cohort.place


TimerKey = Cohort | str  # a cohort, or the LFDI of a device in a personal state


class Memo:
    """What transitions computed, for every device in the same state to reuse.

    Results depend only on the catalog's content, the instant, the profile and the inputs, so
    keys carry the catalog's digest, the instant and the profile, and one Memo can serve
    several engines whose catalogs evolve alike: the shard engines of a Kafka worker, which
    would otherwise resolve equal states once per shard. ``at(t)`` makes ``steps`` and
    ``flags`` those of instant ``t``; the last ``instants`` instants are kept (only to bound
    memory: the keys say which instant they are for), because engines sharing a memo run one
    after another, each through every instant due, so the second engine asks again for the
    first instant after the first engine went on to later ones. A shared state's next change
    needs no entry: it is kept on the state (``Clock.live_periods``).
    """

    __slots__ = ("_kept", "flags", "instants", "steps", "t")

    def __init__(self, instants: int = 8) -> None:
        self.instants = instants
        self.steps: dict[tuple[object, ...], Step] = {}
        self.flags: dict[tuple[object, ...], dev.Flags] = {}
        self.t: int | None = None
        # (steps, flags) by instant, oldest first (insertion order).
        self._kept: dict[
            int, tuple[dict[tuple[object, ...], Step], dict[tuple[object, ...], dev.Flags]]
        ] = {}

    def at(self, t: int) -> None:
        if t == self.t:
            return
        kept = self._kept.get(t)
        if kept is None:
            kept = self._kept[t] = ({}, {})
            while len(self._kept) > self.instants:
                del self._kept[min(self._kept)]
        self.steps, self.flags = kept
        self.t = t


class Engine:
    """CSIP control resolution for many devices (CSIP_RULES §1-§6).

    ``profile`` is the response profile (``csip`` or ``csip-aus``). ``share_cohorts=False``
    resolves every device on its own, from scratch (no cohorts, no memo): the baseline the
    benchmarks compare against, and a cross-check in tests.
    """

    def __init__(
        self,
        *,
        profile: str = "csip",
        share_cohorts: bool = True,
        retention: int = DEFAULT_RETENTION,
        memo: Memo | None = None,
    ) -> None:
        if profile not in dev.PROFILES:
            raise InvalidInput(f"unknown response profile {profile!r}")
        self.profile = profile
        self._allowed = dev.PROFILES[profile]
        self.share_cohorts = share_cohorts
        self.catalog = Catalog(retention)
        self._now: int | None = None
        self._cohorts: dict[object, Cohort] = {}
        self._device: dict[str, Cohort] = {}
        self._by_program: dict[str, dict[Cohort, None]] = {}
        self._timers: list[tuple[int, int, TimerKey]] = []
        self._scheduled: dict[TimerKey, int] = {}
        self._seq = 0
        self._places = 0  # the last Cohort.place given
        # A memo of its own: one engine never asks for an instant it has gone past.
        self._memo = memo if memo is not None else Memo(instants=1)
        self._dirty: dict[Cohort, None] = {}
        self._dirty_devices: dict[str, None] = {}
        self._removals: list[str] = []
        self._out: list[Output] = []
        self._ctx: Context | None = None

    # -- public API -------------------------------------------------------------------------

    @property
    def now(self) -> int | None:
        """The last instant processed, or None before the first input."""
        return self._now

    def next_change(self) -> int | None:
        """The next instant at which anything changes without a new input."""
        self._drop_stale_timers()
        upcoming = self.catalog.next_change()
        if self._timers:
            first: int = self._timers[0][0]
            if upcoming is None or first < upcoming:
                upcoming = first
        return upcoming

    def advance(self, t: int) -> list[Output]:
        """Process every instant up to and including ``t`` at which something changes."""
        self._check_time(t)
        self._run_until(t)
        if self._now is None or t > self._now:
            self._now = t
        return self._take_outputs()

    def apply(self, t: int, inputs: Sequence[Input], *, checked: bool = False) -> list[Output]:
        """Apply ``inputs`` at instant ``t``, after everything due before it.

        Calling ``apply`` twice with the same ``t`` continues that instant: the second batch is
        applied after the first one settled (deterministic, but not the same as one batch).
        ``checked``: the caller has had ``validate`` pass these inputs on an engine whose
        catalog has this one's digest (the same content), so they are not checked again.
        """
        self._check_time(t)
        if not checked:
            self._validate_batch(inputs)
        self._run_until(t - 1)
        self._instant(t, inputs)
        return self._take_outputs()

    def devices(self) -> Iterable[tuple[str, DeviceState]]:
        """Every device with its state (for views, tests and snapshots)."""
        for cohort in self._cohorts.values():
            for lfdi in cohort.members:
                yield lfdi, cohort.state

    def state_of(self, lfdi: str) -> DeviceState | None:
        cohort = self._device.get(lfdi.upper())
        return None if cohort is None else cohort.state

    def clock(self, lfdi: str) -> Clock:
        """The effective-time view of one device (for views that show device times)."""
        return Clock(self.catalog, lfdi.upper())

    def project(self, lfdi: str, t: int) -> dev.Effective:
        """A device's effective control at a later instant ``t`` if no input arrives before.

        Pure: the device's state is advanced on the side, through the same transitions, and the
        engine is not changed.
        """
        state = self.state_of(lfdi)
        if state is None:
            raise KeyError(lfdi)
        clock = Clock(self.catalog, lfdi.upper())
        while (when := clock.next_change(state)) is not None and when <= t:
            ctx = Context(self.catalog, when, self._allowed)
            state = dev.stop_due(state, clock.flags(state, when), ctx).state
            fixed = dev.fix_new(state, ctx)
            state = dev.settle(fixed, clock.flags(fixed, when), ctx).state
        return state.effective

    def stats(self) -> dict[str, int]:
        return {
            "devices": len(self._device),
            "cohorts": len(self._cohorts),
            "personal_cohorts": sum(1 for c in self._cohorts.values() if c.state.personal),
            "programs": len(self.catalog.programs),
            "controls": len(self.catalog.controls),
            "timers": len(self._timers),
        }

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self, *, catalog: bool = True) -> dict[str, Any]:
        """A JSON-ready copy of the whole state; ``restore`` continues exactly from it.

        ``catalog=False`` leaves the catalog out (``None``), for engines that hold equal
        catalogs (a worker's shard engines, checkpointed beside their program engine):
        ``restore`` then needs the catalog given."""
        return {
            "version": SNAPSHOT_VERSION,
            "profile": self.profile,
            "share_cohorts": self.share_cohorts,
            "now": self._now,
            "catalog": self.catalog.to_json() if catalog else None,
            "cohorts": [
                {"state": c.state.to_json(), "members": list(c.members)}
                for c in self._cohorts.values()
            ],
        }

    @classmethod
    def restore(
        cls,
        raw: dict[str, Any],
        *,
        memo: Memo | None = None,
        catalog: dict[str, Any] | None = None,
    ) -> Engine:
        """The engine of a ``snapshot``; ``catalog``: the catalog's JSON for a snapshot taken
        without it."""
        if raw.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {raw.get('version')!r}")
        engine = cls(profile=raw["profile"], share_cohorts=raw["share_cohorts"], memo=memo)
        source: dict[str, Any] | None = raw["catalog"] if raw["catalog"] is not None else catalog
        if source is None:
            raise ValueError("a snapshot taken without its catalog needs the catalog given")
        engine.catalog = Catalog.from_json(source)
        engine._now = raw["now"]
        for item in raw["cohorts"]:
            state = DeviceState.from_json(item["state"])
            members = item["members"]
            if engine.share_cohorts:
                cohort = engine._new_cohort(state, None)
                for lfdi in members:
                    cohort.members[lfdi] = None
                    engine._device[lfdi] = cohort
            else:
                for lfdi in members:
                    cohort = engine._new_cohort(state, lfdi)
                    cohort.members[lfdi] = None
                    engine._device[lfdi] = cohort
        for cohort in list(engine._cohorts.values()):
            engine._reschedule(cohort, list(cohort.members))
        return engine

    # -- the instant loop -------------------------------------------------------------------

    def _check_time(self, t: int) -> None:
        if self._now is not None and t < self._now:
            raise TimeWentBackwards(f"instant {t} is before the current instant {self._now}")

    def _run_until(self, t: int) -> None:
        while True:
            upcoming = self.next_change()
            if upcoming is None or upcoming > t:
                return
            self._instant(upcoming, ())

    def _instant(self, t: int, inputs: Sequence[Input]) -> None:
        fresh = self._now is None or t > self._now
        self._now = t
        self._ctx = Context(self.catalog, t, self._allowed)
        self._memo.at(t)
        if fresh:
            self._stop_due(t)
        run: list[SetMembership] = []
        for item in inputs:
            if isinstance(item, SetMembership):
                run.append(item)
                continue
            if run:
                self._set_memberships(run)
                run = []
            self._apply_input(item, t)
        if run:
            self._set_memberships(run)
        self._settle(t)
        self._out.extend(self.catalog.due(t))
        for lfdi in self._removals:
            self._forget_device(lfdi)
        self._removals.clear()

    def _take_outputs(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    # -- phase 1: stops due -----------------------------------------------------------------

    def _stop_due(self, t: int) -> None:
        due: list[TimerKey] = []
        while self._timers and self._timers[0][0] <= t:
            when, _, key = heapq.heappop(self._timers)
            if self._scheduled.get(key) != when:
                continue  # superseded by a later schedule of the same key
            del self._scheduled[key]
            if self._timer_valid(key):
                due.append(key)
        for key in due:
            if isinstance(key, Cohort):
                if key.alive:
                    self._transform(key, None, self._op_stop_due, mark="cohort")
            else:
                cohort = self._device.get(key)
                if cohort is not None:
                    self._transform(cohort, [key], self._op_stop_due, mark="device")

    def _op_stop_due(self, state: DeviceState, clock: Clock) -> Step:
        flags = self._flags(state, clock)
        key = ("stop", state, flags)
        step = self._recall(key)
        if step is None:
            step = dev.stop_due(state, flags, self._c())
            self._remember(key, step)
        return step

    # -- phase 2: inputs --------------------------------------------------------------------

    def validate(self, inputs: Sequence[Input]) -> None:
        """Raise ``InvalidInput`` if ``apply`` would refuse these inputs (nothing changes)."""
        self._validate_batch(inputs)

    def _validate_batch(self, inputs: Sequence[Input]) -> None:
        """Refuse a batch before anything changes: every input is checked against the
        catalog as it will be when that input's turn comes."""
        # O(batch), not O(catalog): look the catalog up, and keep only what this batch adds.
        known, controls = self.catalog.programs, self.catalog.controls
        programs: set[str] = set()  # defined by this batch
        owners: dict[str, str] = {}  # controls added by this batch and not in the catalog
        # (Whether a program exists is written out below, not a nested function: compiled, a
        # closure costs an allocation per batch.)
        for item in inputs:
            if isinstance(item, SetMembership):  # the most common input by far: first
                normalize_lfdi(item.lfdi)
                for program in item.programs:
                    if program not in known and program not in programs:
                        raise InvalidInput(f"unknown program {program!r}")
                category = item.category
                if category not in (None, KEEP) and (
                    isinstance(category, bool) or not isinstance(category, int) or category < 0
                ):
                    raise InvalidInput(f"deviceCategory is a bitmap, not {category!r}")
            elif isinstance(item, DefineProgram):
                _check_primacy(item.primacy)
                programs.add(item.program)
            # (A tuple, not a union of the classes: compiled, that makes one per call.)
            elif isinstance(item, (SetPrimacy, SetDefault, AddCurve, CancelControl)):
                if item.program not in known and item.program not in programs:
                    raise InvalidInput(f"unknown program {item.program!r}")
                if isinstance(item, SetPrimacy):
                    _check_primacy(item.primacy)
                if isinstance(item, CancelControl):
                    key = item.mrid.upper()
                    record = controls.get(key)
                    owner = record.control.program if record is not None else owners.get(key)
                    if owner is None:
                        raise InvalidInput(f"unknown control {item.mrid!r}")
                    if owner != item.program:
                        raise InvalidInput(f"control {item.mrid!r} belongs to program {owner!r}")
            elif isinstance(item, AddControl):
                program = item.control.program
                if program not in known and program not in programs:
                    raise InvalidInput(f"unknown program {item.control.program!r}")
                key = item.control.mrid.upper()
                if key not in controls:
                    owners.setdefault(key, item.control.program)
            elif isinstance(item, RemoveDevice):
                normalize_lfdi(item.lfdi)
            else:
                raise InvalidInput(f"unknown input {item!r}")

    def _apply_input(self, item: Input, t: int) -> None:
        if isinstance(item, DefineProgram):
            existed = item.program in self.catalog.programs
            self.catalog.define_program(item.program, item.primacy)
            if existed:
                self._mark_program(item.program)
        elif isinstance(item, SetPrimacy):
            self.catalog.set_primacy(item.program, item.primacy)
            self._mark_program(item.program)
        elif isinstance(item, SetDefault):
            self.catalog.set_default(item.program, item.default)
            self._mark_program(item.program)
        elif isinstance(item, AddCurve):
            self.catalog.add_curve(item.program, item.curve)
        elif isinstance(item, AddControl):
            self._add_control(item, t)
        elif isinstance(item, CancelControl):
            self._cancel_control(item, t)
        elif isinstance(item, SetMembership):
            self._set_memberships([item])
        elif isinstance(item, RemoveDevice):
            lfdi = normalize_lfdi(item.lfdi)
            if lfdi in self._device:
                self._set_memberships([SetMembership(lfdi, (), KEEP)])
                self._removals.append(lfdi)
        else:  # pragma: no cover - exhaustive
            raise InvalidInput(f"unknown input {item!r}")

    def _add_control(self, item: AddControl, t: int) -> None:
        control = item.control
        if not self.catalog.check_control(control):
            return  # §2.1: an mRID keeps its first content
        self._out.extend(self.catalog.add_control(control, t))

        def op(state: DeviceState, clock: Clock) -> Step:
            key = ("see", state, control.mrid)
            step = self._recall(key)
            if step is None:
                step = dev.see(state, control, self._c())
                self._remember(key, step)
            return step

        for cohort in self._program_cohorts(control.program):
            if cohort.alive:
                self._transform(cohort, None, op, mark="cohort", uniform=True)

    def _cancel_control(self, item: CancelControl, t: int) -> None:
        change = self.catalog.cancel(item.program, item.mrid, t)
        if change is None:
            return
        self._out.append(change)
        status = change.status
        mrid = change.mrid  # as the control was first given (mRIDs compare case-insensitively)

        def op(state: DeviceState, clock: Clock) -> Step:
            if dev.cancel_needs_clock(state, mrid, status):
                flags = clock.cancel_flags(state, mrid, self._t())
            else:
                flags = (False, False)
            key = ("cancel", state, mrid, flags)
            step = self._recall(key)
            if step is None:
                step = dev.cancel(state, mrid, status, flags, self._c())
                self._remember(key, step)
            return step

        for cohort in self._program_cohorts(item.program):
            if not cohort.alive:
                continue
            # A randomized cancel of a running control draws a stop time per device (§2.9),
            # even where the control's own period is the same for all of them.
            per_device = dev.cancel_needs_clock(cohort.state, mrid, status)
            self._transform(cohort, None, op, mark="cohort", per_device=per_device)

    def _set_memberships(self, items: list[SetMembership]) -> None:
        """Membership changes of a run of inputs.

        Changes of different devices commute, so a run is applied by groups of devices that
        share a state, a new program set and a category: one transition and one output per
        group (bulk registration of a million devices costs a thousand transitions). A device
        that appears twice in a run is applied in order: its inputs land in successive runs.
        """
        groups: dict[tuple[int, tuple[str, ...], int | None], list[str]] = {}
        seen: set[str] = set()
        for item in items:
            lfdi = normalize_lfdi(item.lfdi)
            if lfdi in seen:
                self._apply_membership_groups(groups)
                groups, seen = {}, set()
            seen.add(lfdi)
            cohort = self._device.get(lfdi) or self._adopt(lfdi)
            category = cohort.state.category if item.category == KEEP else item.category
            groups.setdefault((id(cohort), tuple(item.programs), category), []).append(lfdi)
        self._apply_membership_groups(groups)

    def _apply_membership_groups(
        self, groups: dict[tuple[int, tuple[str, ...], int | None], list[str]]
    ) -> None:
        for (_, programs, category), lfdis in groups.items():

            def op(
                state: DeviceState,
                clock: Clock,
                programs: tuple[str, ...] = programs,
                category: int | None = category,
            ) -> Step:
                key = ("membership", state, programs, category)
                step = self._recall(key)
                if step is None:
                    step = dev.set_membership(state, programs, category, self._c())
                    self._remember(key, step)
                return step

            # A group's devices stay together in one cohort until it is applied: other groups
            # move only their own devices or merge whole cohorts of equal state.
            cohort = self._device[lfdis[0]]
            self._transform(cohort, lfdis, op, mark="device", uniform=True)

    def _mark_program(self, program: str) -> None:
        for cohort in self._program_cohorts(program):
            self._dirty[cohort] = None

    def _program_cohorts(self, program: str) -> list[Cohort]:
        """The cohorts of a program's members, in cohort order (``Cohort.place``)."""
        return sorted(self._by_program.get(program, ()), key=_place)

    # -- phase 3: settle --------------------------------------------------------------------

    def _settle(self, t: int) -> None:
        while self._dirty or self._dirty_devices:
            cohorts, self._dirty = list(self._dirty), {}
            devices, self._dirty_devices = list(self._dirty_devices), {}
            for cohort in cohorts:
                if cohort.alive:
                    self._transform(cohort, None, self._op_settle, mark=None, settle=True)
            for lfdi in devices:
                owner = self._device.get(lfdi)
                if owner is None:
                    continue
                some = [lfdi] if owner.state.personal else None
                self._transform(owner, some, self._op_settle, mark=None, settle=True)

    def _op_settle(self, state: DeviceState, clock: Clock) -> Step:
        ctx = self._c()
        fixed = self._fixed(state)
        flags = self._flags(fixed, clock)
        key = ("settle", fixed, flags)
        step = self._recall(key)
        if step is None:
            step = dev.settle(fixed, flags, ctx)
            self._remember(key, step)
        return step

    def _flags(self, state: DeviceState, clock: Clock) -> dev.Flags:
        """``clock.flags`` at this instant; computed once per shared state (a Clock without a
        device gives every member the same flags)."""
        if clock.lfdi is not None or not self.share_cohorts:
            return clock.flags(state, self._t())
        key = (self.catalog.digest, self._t(), state)
        flags = self._memo.flags.get(key)
        if flags is None:
            flags = self._memo.flags[key] = clock.flags(state, self._t())
        return flags

    def _fixed(self, state: DeviceState) -> DeviceState:
        if not self.share_cohorts:
            return dev.fix_new(state, self._c())
        key = (self.catalog.digest, self._t(), self.profile, "fix", state)
        known = self._memo.steps.get(key)
        if known is None:
            known = Step(dev.fix_new(state, self._c()))
            self._memo.steps[key] = known
        return known.state

    # -- transforming cohorts ---------------------------------------------------------------

    def _transform(
        self,
        cohort: Cohort,
        lfdis: list[str] | None,
        op: Callable[[DeviceState, Clock], Step],
        *,
        mark: str | None,
        uniform: bool = False,
        per_device: bool = False,
        settle: bool = False,
    ) -> None:
        """Apply ``op`` to some (``lfdis``) or all members of a cohort and move them.

        ``op`` gets the state and the device's Clock. For a state without personal tracks (or an
        op that reads no time, ``uniform``) one call serves every member; otherwise, or when the
        op draws for each device (``per_device``), members are evaluated one by one, and the
        memo shares work between members with equal flags.
        """
        state = cohort.state
        members = list(cohort.members) if lfdis is None else lfdis
        needs_device = per_device or (state.personal and not uniform)
        if settle and not needs_device:
            # fix_new may make a state personal (a randomized control first seen now).
            needs_device = self._fixed(state).personal
        if not needs_device:
            step = op(state, Clock(self.catalog, None))
            self._commit(cohort, members, step, mark, settle)
            return
        groups: dict[int, tuple[Step, list[str]]] = {}
        for lfdi in members:
            step = op(state, Clock(self.catalog, lfdi))
            entry = groups.get(id(step))
            if entry is None:
                groups[id(step)] = (step, [lfdi])
            else:
                entry[1].append(lfdi)
        for step, group in groups.values():
            self._commit(cohort, group, step, mark, settle)

    def _commit(
        self, cohort: Cohort, lfdis: list[str], step: Step, mark: str | None, settle: bool
    ) -> None:
        t = self._t()
        if step.lifecycle or step.effective:
            batch = tuple(lfdis)
            for mrid, program, status, posted in step.lifecycle:
                self._out.append(ResponseDue(t, batch, mrid, program, status, posted))
            for mode, holder in step.effective:
                if holder is None:
                    self._out.append(EffectiveChange(t, batch, mode, None, None, None))
                else:
                    value, program, event = holder
                    self._out.append(EffectiveChange(t, batch, mode, value, program, event))
        # Equal, not only identical: memoized steps may hold an equal state of another cohort.
        same = step.state == cohort.state
        target = cohort if same else self._move(cohort, lfdis, step.state)
        if settle:
            self._reschedule(target, lfdis)
        elif mark == "cohort" or not target.state.personal:
            self._dirty[target] = None
        else:
            self._dirty_devices.update(dict.fromkeys(lfdis))

    # A transition's Step, worked out once per (catalog content, instant, profile, inputs) and
    # shared: ``step = self._recall(key)``, then, if None, computed and ``self._remember``-ed.
    # (Not one helper taking a function that computes it: each call would make a closure.)

    def _recall(self, key: tuple[object, ...]) -> Step | None:
        if not self.share_cohorts:
            return None  # the baseline resolves every device from scratch
        return self._memo.steps.get((self.catalog.digest, self._t(), self.profile, key))

    def _remember(self, key: tuple[object, ...], step: Step) -> None:
        if self.share_cohorts:
            self._memo.steps[self.catalog.digest, self._t(), self.profile, key] = step

    def _t(self) -> int:
        assert self._now is not None
        return self._now

    def _c(self) -> Context:
        assert self._ctx is not None
        return self._ctx

    # -- cohort bookkeeping -----------------------------------------------------------------

    def _key(self, state: DeviceState, lfdi: str | None) -> object:
        return state if self.share_cohorts else (state, lfdi)

    def _new_cohort(self, state: DeviceState, lfdi: str | None) -> Cohort:
        cohort = Cohort(state, self._next_place())
        self._cohorts[self._key(state, lfdi)] = cohort
        for program in state.programs:
            self._by_program.setdefault(program, {})[cohort] = None
        return cohort

    def _cohort_for(self, state: DeviceState, lfdi: str) -> Cohort:
        cohort = self._cohorts.get(self._key(state, lfdi))
        return cohort if cohort is not None else self._new_cohort(state, lfdi)

    def _adopt(self, lfdi: str) -> Cohort:
        cohort = self._cohort_for(EMPTY, lfdi)
        cohort.members[lfdi] = None
        self._device[lfdi] = cohort
        return cohort

    def _move(self, source: Cohort, lfdis: list[str], state: DeviceState) -> Cohort:
        """Move ``lfdis`` (members of ``source``) to the cohort of ``state``."""
        if len(lfdis) == len(source.members):
            return self._relabel(source, state)
        lfdi0 = lfdis[0]
        target = self._cohort_for(state, lfdi0)
        for lfdi in lfdis:
            del source.members[lfdi]
            target.members[lfdi] = None
            self._device[lfdi] = target
        return target

    def _relabel(self, cohort: Cohort, state: DeviceState) -> Cohort:
        """Give a whole cohort a new state, merging it into the cohort already in that state."""
        lfdi0 = next(iter(cohort.members))
        old_key = self._key(cohort.state, lfdi0)
        new_key = self._key(state, lfdi0)
        existing = self._cohorts.get(new_key)
        assert existing is not cohort
        if existing is None:
            del self._cohorts[old_key]
            self._set_programs(cohort, cohort.state.programs, state.programs)
            cohort.state = state
            self._cohorts[new_key] = cohort  # put in last
            cohort.place = self._next_place()
            return cohort
        # Merge: keep the larger member dict, move the smaller one.
        survivor, absorbed = (existing, cohort)
        if len(cohort.members) > len(existing.members):
            survivor, absorbed = cohort, existing
            del self._cohorts[old_key]
            self._set_programs(cohort, cohort.state.programs, state.programs)
            cohort.state = state
            self._cohorts[new_key] = cohort  # in the place of ``existing``, whose key it is
            cohort.place = existing.place
        else:
            del self._cohorts[old_key]
            self._set_programs(cohort, cohort.state.programs, ())
        for lfdi in absorbed.members:
            survivor.members[lfdi] = None
            self._device[lfdi] = survivor
        absorbed.members.clear()
        self._retire(absorbed)
        if absorbed in self._dirty:
            self._dirty[survivor] = None
        return survivor

    def _next_place(self) -> int:
        self._places += 1
        return self._places

    def _set_programs(self, cohort: Cohort, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        """Index ``cohort`` under the programs of ``new`` instead of those of ``old``, touching
        only the programs that differ: an enrolment adds or drops one of a device's 5-15, and
        the index of a system-wide program holds every cohort (taking a cohort out of a large
        dict and putting it back costs its entries' compaction; the index says which cohorts,
        ``Cohort.place`` in which order). Program sets keep their order, so what they share is
        mostly a common prefix, skipped without making sets."""
        if old == new:
            return
        shared = 0
        while shared < len(old) and shared < len(new) and old[shared] == new[shared]:
            shared += 1
        gone, came = old[shared:], new[shared:]
        for program in gone:
            if program not in came:
                index = self._by_program.get(program)
                if index is not None:
                    index.pop(cohort, None)
        for program in came:
            if program not in gone:
                self._by_program.setdefault(program, {})[cohort] = None

    def _retire(self, cohort: Cohort) -> None:
        cohort.alive = False
        for program in cohort.state.programs:
            index = self._by_program.get(program)
            if index is not None:
                index.pop(cohort, None)
        self._scheduled.pop(cohort, None)

    def _drop_if_empty(self, cohort: Cohort, lfdi: str) -> None:
        if not cohort.members and cohort.alive:
            key = self._key(cohort.state, lfdi)
            if self._cohorts.get(key) is cohort:
                del self._cohorts[key]
            self._retire(cohort)

    def _forget_device(self, lfdi: str) -> None:
        cohort = self._device.pop(lfdi, None)
        if cohort is None:
            return
        cohort.members.pop(lfdi, None)
        self._scheduled.pop(lfdi, None)
        self._drop_if_empty(cohort, lfdi)

    # -- timers -----------------------------------------------------------------------------

    def _reschedule(self, cohort: Cohort, lfdis: list[str]) -> None:
        """After settling: the next change of a cohort, or of each moved personal device."""
        state = cohort.state
        if not state.personal:
            self._schedule(cohort, Clock(self.catalog, None).next_change(state))
            return
        self._scheduled.pop(cohort, None)
        for lfdi in lfdis:
            self._schedule(lfdi, Clock(self.catalog, lfdi).next_change(state))

    def _schedule(self, key: TimerKey, when: int | None) -> None:
        """Set the timer of ``key``. Invariant: ``_scheduled[key] == w`` means a heap entry
        ``(w, _, key)`` is still queued; older entries of the key are skipped when popped."""
        if when is None:
            self._scheduled.pop(key, None)
            return
        assert self._now is None or when > self._now, (key, when, self._now)
        if self._scheduled.get(key) == when:
            return
        self._scheduled[key] = when
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, key))

    def _timer_valid(self, key: TimerKey) -> bool:
        if isinstance(key, Cohort):
            return key.alive and not key.state.personal
        cohort = self._device.get(key)
        return cohort is not None and cohort.state.personal

    def _drop_stale_timers(self) -> None:
        while self._timers:
            when, _, key = self._timers[0]
            if self._scheduled.get(key) == when and self._timer_valid(key):
                return
            heapq.heappop(self._timers)
            if self._scheduled.get(key) == when:
                del self._scheduled[key]


def expand(outputs: Iterable[Output]) -> Iterable[dict[str, Any]]:
    """Per-device records of a list of outputs (see ``records()`` of each output type)."""
    for output in outputs:
        yield from output.records()


__all__ = ["Engine", "EventStatusChange", "expand"]
