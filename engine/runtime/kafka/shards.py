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
from topics.catalog import shard_of


class ShardedKernel:
    def __init__(self, shards: int, *, profile: str = "csip") -> None:
        self.shards = shards
        self.profile = profile
        self.program = Engine(profile=profile)
        self.engines: dict[int, Engine] = {}

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
        program_inputs = [i for i in inputs if not is_device_input(i)]
        outputs: list[Output] = []
        if not _idle(self.program, t, program_inputs):
            outputs += self._status(self.program.apply(t, program_inputs))
        by_shard: dict[int, list[Input]] = {}
        for item in inputs:
            if is_device_input(item):
                shard = shard_of(device_of(item), self.shards)
                if shard in self.engines:
                    by_shard.setdefault(shard, []).append(item)
        for shard, engine in self.engines.items():
            mine = [i for i in inputs if not is_device_input(i) or i in by_shard.get(shard, ())]
            if not _idle(engine, t, mine):
                outputs += self._devices(engine.apply(t, mine))
        return outputs

    def advance(self, t: int) -> list[Output]:
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


def _idle(engine: Engine, t: int, inputs: Sequence[Input]) -> bool:
    """``engine.apply(t, inputs)`` would change nothing: no inputs, the instant it is already
    at (its stops due and catalog timers up to ``t`` are done), and nothing due by ``t``."""
    if inputs or engine.now != t:
        return False
    upcoming = engine.next_change()
    return upcoming is None or upcoming > t
