"""Outputs: values the kernel returns, each with deterministic ids (ARCHITECTURE, scale model).

Device outputs are emitted once for a whole cohort of devices that share a resolution
(``lfdis``); ``records()`` expands one into per-device records, each with an id that is the
same on every replay, so a consumer can drop duplicates after a retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from engine.kernel.modes import ModeValue, thaw

# CSIP_RULES §4
RECEIVED = 1
STARTED = 2
COMPLETED = 3
CANCELLED = 6
SUPERSEDED = 7
ABORTED_OTHER_SERVER = 13
ABORTED_PROGRAM_REMOVED = 14
REJECTED_NOT_APPLICABLE = 252
REJECTED_INVALID = 253
REJECTED_EXPIRED = 254
TERMINAL_RESPONSES = frozenset({3, 6, 7, 14, 253, 254})

# CSIP_RULES §5 (EventStatus.currentStatus)
SCHEDULED = 0
ACTIVE = 1
CANCELLED_STATUS = 2
CANCELLED_RANDOMIZED = 3
SUPERSEDED_STATUS = 4


@dataclass(frozen=True, slots=True)
class EffectiveChange:
    """A mode of each device in ``lfdis`` changed at ``t`` (CSIP_RULES §3).

    ``event`` is None for a default; value, program and event are all None when the mode
    became uncontrolled.
    """

    t: int
    lfdis: tuple[str, ...]
    mode: str
    value: ModeValue | None
    program: str | None
    event: str | None

    # Written out, as the hot records' constructors are (engine/kernel/inputs.py says why).
    def __init__(
        self,
        t: int,
        lfdis: tuple[str, ...],
        mode: str,
        value: ModeValue | None,
        program: str | None,
        event: str | None,
    ) -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "lfdis", lfdis)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "program", program)
        object.__setattr__(self, "event", event)

    def id_suffix(self) -> str:
        """What follows ``eff:<lfdi>:`` in each record's id: mode, instant and a tag of the
        value, program and event (the same change gets the same id on every replay)."""
        tag = blake2b(repr((self.value, self.program, self.event)).encode(), digest_size=6)
        return f"{self.mode}@{self.t}:{tag.hexdigest()}"

    def records(self) -> Iterator[dict[str, Any]]:
        value = None if self.value is None else thaw(self.value)
        suffix = self.id_suffix()
        for lfdi in self.lfdis:
            yield {
                "id": f"eff:{lfdi}:{suffix}",
                "type": "effective",
                "t": self.t,
                "lfdi": lfdi,
                "mode": self.mode,
                "value": value,
                "program": self.program,
                "event": self.event,
            }


@dataclass(frozen=True, slots=True)
class ResponseDue:
    """Each device in ``lfdis`` reached lifecycle ``status`` for an event (CSIP_RULES §4).

    ``posted`` is False when responseRequired, a missing replyTo or the response profile keep
    the device from posting it; the lifecycle is the same either way.
    """

    t: int
    lfdis: tuple[str, ...]
    mrid: str
    program: str
    status: int
    posted: bool

    def __init__(
        self, t: int, lfdis: tuple[str, ...], mrid: str, program: str, status: int, posted: bool
    ) -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "lfdis", lfdis)
        object.__setattr__(self, "mrid", mrid)
        object.__setattr__(self, "program", program)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "posted", posted)

    def records(self) -> Iterator[dict[str, Any]]:
        for lfdi in self.lfdis:
            yield {
                "id": f"resp:{lfdi}:{self.mrid}:{self.status}",
                "type": "response",
                "t": self.t,
                "lfdi": lfdi,
                "mRID": self.mrid,
                "program": self.program,
                "status": self.status,
                "posted": self.posted,
            }


@dataclass(frozen=True, slots=True)
class EventStatusChange:
    """The server-side currentStatus of a control changed (CSIP_RULES §5)."""

    t: int
    program: str
    mrid: str
    status: int

    def __init__(self, t: int, program: str, mrid: str, status: int) -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "program", program)
        object.__setattr__(self, "mrid", mrid)
        object.__setattr__(self, "status", status)

    def records(self) -> Iterator[dict[str, Any]]:
        yield {
            "id": f"status:{self.mrid}:{self.status}",
            "type": "status",
            "t": self.t,
            "program": self.program,
            "mRID": self.mrid,
            "currentStatus": self.status,
        }


Output = EffectiveChange | ResponseDue | EventStatusChange
