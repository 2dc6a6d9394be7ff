"""Does the server see each device as the device sees itself? The end-of-run comparison.

For a sample of devices the fleet reads the server's own view through the admin API (the
response lifecycle its engine expects, the responses it stored, the effective control at an
instant) and compares it with the fleet's: what the fleet's kernel computed from what the device
fetched, and what the device actually posted. Each difference is a ``Disagreement``:

- ``lifecycle``: the two kernels expect different statuses (or one says post, the other not);
- ``not posted``: the server expects a response the device never got accepted;
- ``lost``: the device's POST got a 2xx but the server does not show the response;
- ``unexpected``: the server shows a response from this run the device did not send;
- ``effective``: a mode is held by a different value, program or event.

Only controls the device itself fetched during the run are compared: one that ended before the
device's next poll is counted apart (``unseen``), since no device could have answered it. The
comparison is cut at one instant: statuses after it are ignored on both sides.

A control the server already had for the device before the run began (an earlier run's, or the
operator's) has a history the fleet never saw: the server may have recorded "started" an hour
ago for a control the fleet first meets already superseded. For those (``preexisting``) only
the responses posted during the run are compared (``lost``, ``unexpected``); the lifecycle and
``not posted`` checks cover the controls whose whole history falls within the run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fleet.device import Device, LifecycleEntry

EXAMPLES = 20


@dataclass(frozen=True, slots=True)
class Disagreement:
    lfdi: str
    kind: str
    mrid: str | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"lfdi": self.lfdi, "kind": self.kind, "mRID": self.mrid, "detail": self.detail}


def compare_lifecycle(
    lfdi: str,
    server: Sequence[Mapping[str, Any]],
    fleet: Sequence[LifecycleEntry],
    scope: set[str],
    cutoff: int,
) -> list[Disagreement]:
    """The statuses each side expects per control in ``scope``, up to ``cutoff``."""
    expected: dict[str, dict[int, bool]] = {}
    for record in server:
        mrid = str(record["mRID"]).upper()
        if mrid in scope and int(record["t"]) <= cutoff:
            expected.setdefault(mrid, {})[int(record["status"])] = bool(record["posted"])
    computed: dict[str, dict[int, bool]] = {}
    for mrid, status, posted, t in fleet:
        if mrid in scope and t <= cutoff:
            computed.setdefault(mrid, {})[status] = posted
    out = []
    for mrid in sorted(set(expected) | set(computed)):
        theirs, ours = expected.get(mrid, {}), computed.get(mrid, {})
        if sorted(theirs) != sorted(ours):
            out.append(
                Disagreement(
                    lfdi,
                    "lifecycle",
                    mrid,
                    f"server expects statuses {sorted(theirs)}, the fleet's kernel {sorted(ours)}",
                )
            )
            continue
        for status in sorted(theirs):
            if theirs[status] != ours[status]:
                out.append(
                    Disagreement(
                        lfdi,
                        "lifecycle",
                        mrid,
                        f"status {status}: server says posted={theirs[status]}, "
                        f"the fleet's kernel posted={ours[status]}",
                    )
                )
    return out


def compare_posted(
    lfdi: str,
    server_expected: Sequence[Mapping[str, Any]],
    server_posted: Sequence[Mapping[str, Any]],
    fleet_posted: Iterable[tuple[str, int, float]],
    scope: set[str],
    cutoff: int,
    since: int,
    due_scope: set[str] | None = None,
) -> list[Disagreement]:
    """Responses: what the server stored (this run: at or after ``since``) against what the
    device got accepted, and what the server's engine expects posted against both (for the
    controls of ``due_scope``, by default all of ``scope``)."""
    due_scope = scope if due_scope is None else due_scope
    stored = {
        (str(r["subject"]).upper(), int(r["status"]))
        for r in server_posted
        if int(r["t"]) >= since and str(r["subject"]).upper() in scope
    }
    sent = {(mrid, status) for mrid, status, _ in fleet_posted if mrid in scope}
    due = {
        (str(r["mRID"]).upper(), int(r["status"]))
        for r in server_expected
        if r["posted"] and int(r["t"]) <= cutoff and str(r["mRID"]).upper() in due_scope
    }
    out = [
        Disagreement(lfdi, "lost", mrid, f"status {status} was accepted but is not stored")
        for mrid, status in sorted(sent - stored)
    ]
    out += [
        Disagreement(lfdi, "unexpected", mrid, f"status {status} is stored; the fleet sent none")
        for mrid, status in sorted(stored - sent)
    ]
    out += [
        Disagreement(lfdi, "not posted", mrid, f"the server expects status {status} posted")
        for mrid, status in sorted(due - sent)
    ]
    return out


def _holder(entry: Mapping[str, Any], programs: Mapping[str, str]) -> tuple[Any, Any, Any]:
    value = entry.get("value")
    if isinstance(value, Mapping) and set(value) == {"curve"}:
        value = {"curve": str(value["curve"]).upper()}
    program = entry.get("program")
    event = entry.get("event")
    return (
        value,
        programs.get(str(program), str(program).upper()) if program is not None else None,
        None if event is None else str(event).upper(),
    )


def compare_effective(
    lfdi: str,
    server: Mapping[str, Mapping[str, Any]],
    fleet: Mapping[str, Mapping[str, Any]],
    programs: Mapping[str, str],
) -> list[Disagreement]:
    """Mode by mode; ``programs`` maps the server's program ids to their mRIDs (the fleet
    knows programs by mRID, as a device does)."""
    identity = {key: key for key in programs.values()}
    out = []
    for mode in sorted(set(server) | set(fleet)):
        theirs = _holder(server[mode], programs) if mode in server else None
        ours = _holder(fleet[mode], identity) if mode in fleet else None
        if theirs != ours:
            out.append(
                Disagreement(lfdi, "effective", None, f"{mode}: server {theirs}, fleet {ours}")
            )
    return out


@dataclass
class Verification:
    sampled: int = 0
    cutoff: int | None = None
    compared_controls: int = 0
    unseen: int = 0  # (device, control) pairs the server expects but the device never fetched
    preexisting: int = 0  # pairs whose control the server had before the run: posts only
    disagreements: list[Disagreement] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        kinds = Counter(d.kind for d in self.disagreements)
        return {
            "sampled_devices": self.sampled,
            "at": self.cutoff,
            "compared_controls": self.compared_controls,
            "unseen_controls": self.unseen,
            "preexisting_controls": self.preexisting,
            "disagreements": len(self.disagreements),
            "by_kind": dict(sorted(kinds.items())),
            "examples": [d.to_json() for d in self.disagreements[:EXAMPLES]],
            "errors": dict(self.errors),
        }


def sample(devices: Sequence[Device], size: int) -> list[Device]:
    """At most ``size`` devices, evenly spread over the fleet (all of them if few)."""
    if size <= 0:
        return []
    if len(devices) <= size:
        return list(devices)
    step = len(devices) / size
    return [devices[int(i * step)] for i in range(size)]


class ServerView(Protocol):
    """What ``verify`` reads from the admin API (``fleet.admin.AdminClient`` has it)."""

    async def responses(self, lfdi: str) -> dict[str, Any]: ...

    async def effective(self, lfdi: str, at: int) -> dict[str, Any]: ...


FleetEffective = Callable[[str, int], Mapping[str, Mapping[str, Any]]]


async def verify(
    admin: ServerView,
    devices: Sequence[Device],
    *,
    known_controls: set[str],
    fleet_effective: FleetEffective,
    programs: Mapping[str, str],
    cutoff: int,
    since: int,
    concurrency: int = 16,
) -> Verification:
    """Compare each device of ``devices`` with the server's view of it (see the module doc)."""
    result = Verification(sampled=len(devices), cutoff=cutoff)
    limit = asyncio.Semaphore(concurrency)

    async def one(device: Device) -> None:
        async with limit:
            try:
                responses = await admin.responses(device.lfdi)
                effective = await admin.effective(device.lfdi, cutoff)
            except Exception as exc:  # the admin API failing is reported, not fatal
                result.errors[type(exc).__name__] += 1
                return
        fetched = set(device.fetched or ())
        scope = fetched & known_controls
        expected = responses.get("expected", [])
        due = {str(r["mRID"]).upper() for r in expected if int(r["t"]) <= cutoff}
        result.unseen += len((due & known_controls) - fetched)
        result.compared_controls += len(scope)
        first: dict[str, int] = {}
        for record in expected:
            mrid, t = str(record["mRID"]).upper(), int(record["t"])
            first[mrid] = min(t, first.get(mrid, t))
        older = {mrid for mrid in scope if first.get(mrid, since) < since}
        result.preexisting += len(older)
        whole = scope - older  # controls whose whole history is within the run
        found = compare_lifecycle(device.lfdi, expected, device.lifecycle, whole, cutoff)
        found += compare_posted(
            device.lfdi,
            expected,
            responses.get("posted", []),
            device.posted,
            scope,
            cutoff,
            since,
            due_scope=whole,
        )
        found += compare_effective(
            device.lfdi, effective.get("modes", {}), fleet_effective(device.lfdi, cutoff), programs
        )
        result.disagreements.extend(found)

    await asyncio.gather(*(one(device) for device in devices))
    return result
