"""The kernel of a worker: one engine per device shard it owns or keeps warm, plus a program
engine.

Program inputs (programs, controls, defaults, curves) reach every engine; a device input reaches
only the engine of the device's shard, and only if this worker has one. Device outputs come from
the shard engines (each device lives in exactly one); the server-side status of controls comes
from the program engine, and only where ``publishes_status`` (one place in the cluster: the
owner of shard 0), so it is published once.

Shards in ``standby`` are kept warm for the worker that owns them: their engines run like the
others, but their outputs (and the event status, where shard 0 is one) go to ``held`` with the
shard, for the worker to keep until the owner is known to have published them.

``ShardedKernel`` is the registry's ``Kernel`` port: the registry folds every command of the log
once and hands the kernel the inputs; validation happens before any engine changes, once, on
the program engine (a shard engine whose catalog has the same digest does not check again).

Most commands are one device's, many at one instant (registrations, enrolment bursts). An
engine that was idle at an instant stays idle there until it is applied or advanced, so after
one pass over every engine at an instant (``_calm``), a command of device inputs at that
instant looks only at the engines it gives inputs to and those applied since (``_stirred``),
instead of all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from engine.kernel import Engine, EventStatusChange, Input, Output
from engine.kernel.catalog import Catalog
from engine.kernel.codec import device_of, is_device_input
from engine.kernel.engine import Memo
from topics.partition import shard_of


class Engines(dict[int, Engine]):
    """The shard engines by shard, counting their changes (an engine put in or taken out), so
    the kernel knows when what it noted about idle engines no longer holds."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def __setitem__(self, shard: int, engine: Engine) -> None:
        self.version += 1
        super().__setitem__(shard, engine)

    def __delitem__(self, shard: int) -> None:
        self.version += 1
        super().__delitem__(shard)

    def pop(self, shard: int, *default: Any) -> Any:
        self.version += 1
        return super().pop(shard, *default)

    def popitem(self) -> tuple[int, Engine]:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def setdefault(self, shard: int, engine: Engine) -> Engine:
        self.version += 1
        return super().setdefault(shard, engine)


PROGRAM = -1  # the program engine, among the shards in ``ShardedKernel._stirred``


class ShardedKernel:
    def __init__(self, shards: int, *, profile: str = "csip", memo: Memo | None = None) -> None:
        self.shards = shards
        self.profile = profile
        # One memo for the program engine and every shard engine (give it to each engine
        # put in ``engines``): devices in equal states are resolved once per worker, not once
        # per shard. Its keys carry each engine's catalog digest, so an engine whose catalog
        # differs (rebuilt, behind) only misses.
        self.memo = memo if memo is not None else Memo()
        self.program = Engine(profile=profile, memo=self.memo)
        self.engines: Engines = Engines()
        # Engines known idle at an instant (see ``_idle``), by id, with the engine itself so
        # an engine put in place of one gone is not taken for it. Any apply or advance ends it.
        self._quiet: dict[int, tuple[Engine, int]] = {}
        # (instant, program engine, ``engines.version``) at which every engine except the
        # shards in ``_stirred`` (those applied since; PROGRAM for the program engine) is known
        # idle: a run of device inputs at one instant then looks only at the engines it touches.
        self._calm: tuple[int, Engine, int] | None = None
        self._stirred: set[int] = set()
        # Shards kept warm for another worker (engines in ``engines`` all the same): their
        # outputs go to ``held`` (with the shard), not to the caller, until taken.
        self.standby: set[int] = set()
        self.held: list[tuple[int, Output]] = []

    @property
    def catalog(self) -> Catalog:
        return self.program.catalog

    @property
    def publishes_status(self) -> bool:
        return 0 in self.engines and 0 not in self.standby

    def owns(self, lfdi: str) -> bool:
        shard = shard_of(lfdi, self.shards)
        return shard in self.engines and shard not in self.standby

    def take_held(self) -> list[tuple[int, Output]]:
        """The outputs of standby shards since the last call, with their shards."""
        held, self.held = self.held, []
        return held

    def apply(self, t: int, inputs: Sequence[Input]) -> list[Output]:
        self.program.validate(inputs)  # every engine holds the same catalog: refuse up front
        # The shard of each input (None: a program input, for every engine), computed once.
        shards = [
            shard_of(device_of(i), self.shards) if is_device_input(i) else None for i in inputs
        ]
        if None not in shards and self._calm == (t, self.program, self.engines.version):
            return self._apply_devices(t, inputs, shards)
        self._calm = None  # until this pass is through (an engine may raise half-way)
        if len(self._quiet) > len(self.engines) + 1:  # engines gone (shards lost, restored)
            current = {id(e) for e in (self.program, *self.engines.values())}
            self._quiet = {k: v for k, v in self._quiet.items() if k in current}
        program_inputs = [inputs[k] for k in range(len(inputs)) if shards[k] is None]
        outputs: list[Output] = []
        stirred: set[int] = set()
        if not self._idle(self.program, t, program_inputs):
            outputs += self._status(self._apply(self.program, t, program_inputs))
            stirred.add(PROGRAM)
        by_shard: dict[int, list[Input]] = {}
        if program_inputs:  # every engine gets them, each with its own devices' in between
            for shard in self.engines:
                by_shard[shard] = [
                    inputs[k] for k in range(len(inputs)) if shards[k] is None or shards[k] == shard
                ]
        else:
            by_shard = self._by_shard(inputs, shards)
        for shard, engine in self.engines.items():
            mine = by_shard.get(shard, [])
            if not self._idle(engine, t, mine):
                outputs += self._devices(shard, self._apply(engine, t, mine))
                stirred.add(shard)
        self._calm = (t, self.program, self.engines.version)
        self._stirred = stirred
        return outputs

    def _apply_devices(
        self, t: int, inputs: Sequence[Input], shards: list[int | None]
    ) -> list[Output]:
        """``apply`` of device inputs only, at the instant of ``_calm``: every engine neither
        stirred since nor given inputs now is idle, so only those are looked at, in the order
        of ``engines`` (the order the full loop gives their outputs)."""
        by_shard = self._by_shard(inputs, shards)
        calm, self._calm = self._calm, None  # until this pass is through
        outputs: list[Output] = []
        stirred: set[int] = set()
        if PROGRAM in self._stirred and not self._idle(self.program, t, []):
            outputs += self._status(self._apply(self.program, t, []))
            stirred.add(PROGRAM)
        touched = set(by_shard)
        # Applied before at this instant (idle again, as a rule): looked at, not assumed idle.
        for shard in self._stirred:
            if (
                shard != PROGRAM
                and shard not in touched
                and not self._idle(self.engines[shard], t, [])
            ):
                touched.add(shard)
        if len(touched) > 1:
            in_order = [shard for shard in self.engines if shard in touched]
        else:
            in_order = list(touched)
        for shard in in_order:
            engine = self.engines[shard]
            mine = by_shard.get(shard, [])
            if not self._idle(engine, t, mine):
                outputs += self._devices(shard, self._apply(engine, t, mine))
                stirred.add(shard)
        self._calm, self._stirred = calm, stirred
        return outputs

    def _by_shard(
        self, inputs: Sequence[Input], shards: list[int | None]
    ) -> dict[int, list[Input]]:
        """The device inputs of this worker's engines, by shard, in order. (Index loops: compiled,
        ``zip(..., strict=True)`` is a call of the Python builtin.)"""
        by_shard: dict[int, list[Input]] = {}
        for k in range(len(inputs)):
            where = shards[k]
            if where is not None and where in self.engines:
                mine = by_shard.get(where)
                if mine is None:
                    by_shard[where] = [inputs[k]]
                else:
                    mine.append(inputs[k])
        return by_shard

    def _apply(self, engine: Engine, t: int, inputs: Sequence[Input]) -> list[Output]:
        """``engine.apply``, without checking the inputs again where the engine's catalog is
        the program engine's (equal digests: equal content), which already checked them."""
        checked = engine.catalog.digest == self.program.catalog.digest
        if checked:
            # Equal content: one cache of the periods that are the same for every device, so
            # a control's period is computed once per worker, not once per shard engine.
            engine.catalog.uniform_periods = self.program.catalog.uniform_periods
        return engine.apply(t, inputs, checked=checked)

    def advance(self, t: int) -> list[Output]:
        self._quiet.clear()
        self._calm = None
        outputs = self._status(self.program.advance(t))
        for shard, engine in self.engines.items():
            outputs += self._devices(shard, engine.advance(t))
        return outputs

    def next_change(self) -> int | None:
        found = [e.next_change() for e in (self.program, *self.engines.values())]
        changes = [c for c in found if c is not None]
        return min(changes) if changes else None

    def _status(self, outputs: Iterable[Output]) -> list[Output]:
        """The program engine's event status: published by the owner of shard 0 (held where
        shard 0 is a standby)."""
        if 0 not in self.engines:
            return []
        return self._out(0, [o for o in outputs if isinstance(o, EventStatusChange)])

    def _devices(self, shard: int, outputs: Iterable[Output]) -> list[Output]:
        return self._out(shard, [o for o in outputs if not isinstance(o, EventStatusChange)])

    def _out(self, shard: int, outputs: list[Output]) -> list[Output]:
        if shard in self.standby and outputs:
            self.held += [(shard, o) for o in outputs]
            return []
        return outputs

    def _idle(self, engine: Engine, t: int, inputs: Sequence[Input]) -> bool:
        """``engine.apply(t, inputs)`` would change nothing: no inputs, the instant it is already
        at (its stops due and catalog timers up to ``t`` are done), and nothing due by ``t``.
        An engine changes only when applied or advanced, so once idle at ``t`` it stays so."""
        key = id(engine)
        if inputs:
            self._quiet.pop(key, None)
            return False
        known = self._quiet.get(key)
        if known is not None and known[0] is engine and known[1] == t:
            return True
        self._quiet.pop(key, None)
        if engine.now != t:
            return False
        upcoming = engine.next_change()
        if upcoming is not None and upcoming <= t:
            return False
        self._quiet[key] = (engine, t)
        return True
