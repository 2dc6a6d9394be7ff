"""Folding one record of ``csip.commands``: the same in every reader (workers, gateways).

A record applies at its instant, or at the reader's current instant if that is later (writers'
clocks differ a little; time never goes back). A command the registry refuses is skipped the
same way by every reader, since they all fold the same log in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from engine.runtime.kafka.shards import ShardedKernel
from engine.state import commands as c
from engine.state.errors import Rejected
from engine.state.registry import Executed, Registry


def command_record(command: c.Command, t: int, record_id: str) -> bytes:
    """The bytes of a csip.commands record (topics/catalog.py: COMMANDS)."""
    return orjson.dumps({"v": 1, "id": record_id, "t": t, "command": command.to_json()})


def fold(registry: Registry, kernel: ShardedKernel, raw: bytes) -> Executed | Rejected:
    """Apply one record; ``Rejected`` for a command the registry refuses and for a record that
    is not one at all (every reader skips it alike: none may stop at it)."""
    try:
        record: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Rejected(400, "a csip.commands record is JSON")
    if not isinstance(record, dict) or "command" not in record:
        return Rejected(400, "a csip.commands record is an object with a command")
    t = record.get("t")
    if not isinstance(t, int) or isinstance(t, bool):
        return Rejected(400, f"a csip.commands record's instant is an integer, not {t!r}")
    now = kernel.program.now
    if now is not None and t < now:
        t = now
    try:
        command = c.from_json(record["command"])
        return registry.execute(command, t, kernel)
    except Rejected as exc:
        return exc


def fold_records(
    registry: Registry, kernel: ShardedKernel, raws: Sequence[bytes]
) -> list[Executed | Rejected]:
    """``fold`` each of ``raws`` in order, one kernel apply per record.

    Not one apply for a run of single-device records at one instant: the engine would give
    each device the same records, but the order of the devices inside its later multi-device
    outputs (cohort member order, which is history: the order devices joined a cohort) would
    differ, and so would the order of records on a partition."""
    return [fold(registry, kernel, raw) for raw in raws]
