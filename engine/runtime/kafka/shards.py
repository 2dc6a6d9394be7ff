"""The kernel of a worker: one engine per device shard it owns, plus a program engine.

Program inputs (programs, controls, defaults, curves) reach every engine; a device input reaches
only the engine of the device's shard, and only if this worker owns it. Device outputs come from
the shard engines (each device lives in exactly one); the server-side status of controls comes
from the program engine, and only where ``publishes_status`` (one place in the cluster: the
owner of shard 0), so it is published once.

``ShardedKernel`` is the registry's ``Kernel`` port: the registry folds every command of the log
once and hands the kernel the inputs; validation happens before any engine changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.kernel import Engine, EventStatusChange, Input, Output
from engine.kernel.catalog import Catalog
from engine.kernel.codec import device_of, is_device_input
from engine.kernel.engine import Memo
from topics.catalog import shard_of


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
        self.engines: dict[int, Engine] = {}
        # Engines known idle at an instant (see ``_idle``), by id, with the engine itself so
        # an engine put in place of one gone is not taken for it. Any apply or advance ends it.
        self._quiet: dict[int, tuple[Engine, int]] = {}

    @property
    def catalog(self) -> Catalog:
        return self.program.catalog

    @property
    def publishes_status(self) -> bool:
        return 0 in self.engines

    def owns(self, lfdi: str) -> bool:
        return shard_of(lfdi, self.shards) in self.engines

    def apply(self, t: int, inputs: Sequence[Input]) -> list[Output]:
        self.program.validate(inputs)  # every engine holds the same catalog: refuse up front
        if len(self._quiet) > len(self.engines) + 1:  # engines gone (shards lost, restored)
            current = {id(e) for e in (self.program, *self.engines.values())}
            self._quiet = {k: v for k, v in self._quiet.items() if k in current}
        # The shard of each input (None: a program input, for every engine), computed once.
        shards = [
            shard_of(device_of(i), self.shards) if is_device_input(i) else None for i in inputs
        ]
        program_inputs = [i for i, where in zip(inputs, shards, strict=True) if where is None]
        outputs: list[Output] = []
        if not self._idle(self.program, t, program_inputs):
            outputs += self._status(self.program.apply(t, program_inputs))
        by_shard: dict[int, list[Input]] = {}
        if program_inputs:  # every engine gets them, each with its own devices' in between
            for shard in self.engines:
                by_shard[shard] = [
                    i for i, s in zip(inputs, shards, strict=True) if s is None or s == shard
                ]
        else:
            for item, where in zip(inputs, shards, strict=True):
                if where is not None and where in self.engines:
                    by_shard.setdefault(where, []).append(item)
        for shard, engine in self.engines.items():
            mine = by_shard.get(shard, [])
            if not self._idle(engine, t, mine):
                outputs += self._devices(engine.apply(t, mine))
        return outputs

    def advance(self, t: int) -> list[Output]:
        self._quiet.clear()
        outputs = self._status(self.program.advance(t))
        for engine in self.engines.values():
            outputs += self._devices(engine.advance(t))
        return outputs

    def next_change(self) -> int | None:
        found = [e.next_change() for e in (self.program, *self.engines.values())]
        changes = [c for c in found if c is not None]
        return min(changes) if changes else None

    def _status(self, outputs: Iterable[Output]) -> list[Output]:
        if not self.publishes_status:
            return []
        return [o for o in outputs if isinstance(o, EventStatusChange)]

    @staticmethod
    def _devices(outputs: Iterable[Output]) -> list[Output]:
        return [o for o in outputs if not isinstance(o, EventStatusChange)]

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
