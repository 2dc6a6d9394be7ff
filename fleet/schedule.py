"""When each simulated device does what: poll and post intervals, jitter, and the due-job heap.

Pure: no clock, no asyncio. Times are whatever the caller measures in (the fleet uses
``time.monotonic()`` seconds); ``Rng`` is any ``random.Random``.

A CSIP client polls each resource at the ``pollRate`` the server put on the list that holds it
and posts at the ``postRate`` of its EndDevice or MirrorUsagePoint. The fleet divides those by
the time compression factor and spreads devices out so they never poll in lockstep: each
device's first run of a job falls at a random phase of its interval, and every later run is one
interval after the previous *due* time (not the completion time, so slow requests do not make a
device drift) with a relative jitter drawn each time. A device that falls behind (the fleet or
the server is saturated) is not made to catch up with a burst: its next run is at the latest
"now", and the lag is what the summary reports.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from enum import IntEnum

# IEEE 2030.5: a client polls a resource without a pollRate every 900 seconds.
DEFAULT_POLL_RATE = 900


class Job(IntEnum):
    """What one run of a device's schedule does. Ordered: the recurring ones after DISCOVER."""

    DISCOVER = 0  # DeviceCapability down to every DERControlList, then the first posts
    DCAP = 1  # DeviceCapability, at its pollRate
    TIME = 2  # Time, at its pollRate
    EDEV = 3  # EndDeviceList (and so the device's own EndDevice), at its pollRate
    FSA = 4  # FunctionSetAssignmentsList, at its pollRate
    DERP = 5  # the DER function set: DERProgramLists, DERControlLists, defaults, curves
    STATUS = 6  # PUT DERStatus at the EndDevice's postRate
    METER = 7  # POST MirrorMeterReadings at the MirrorUsagePoint's postRate
    RESPOND = 8  # POST DERControlResponses that are due (not recurring)


RECURRING = (Job.DCAP, Job.TIME, Job.EDEV, Job.FSA, Job.DERP, Job.STATUS, Job.METER)


def interval(rate: int | None, compression: float, jitter: float, rng: random.Random) -> float:
    """Seconds until the next run of a job the server rates at ``rate`` seconds.

    ``rate`` None or 0 means the server gave none: 2030.5's default of 900 s. ``jitter`` is
    relative (0.1: ±10 %). Never less than a millisecond, so a zero rate cannot spin.
    """
    if compression <= 0:
        raise ValueError("the time compression factor must be positive")
    if not 0 <= jitter < 1:
        raise ValueError("jitter is a fraction in [0, 1)")
    base = (rate or DEFAULT_POLL_RATE) / compression
    spread = rng.uniform(-jitter, jitter) if jitter else 0.0
    return max(0.001, base * (1.0 + spread))


def first_due(now: float, period: float, rng: random.Random) -> float:
    """The first run of a recurring job: a random phase of its period, so that devices
    discovered together spread their polls over the whole period."""
    return now + rng.uniform(0.0, period)


def next_due(previous_due: float, period: float, now: float) -> float:
    """One period after the previous due time, or now if that has already passed."""
    return max(previous_due + period, now)


def ramp_start(index: int, count: int, ramp: float) -> float:
    """Offset of device ``index`` (of ``count``) in a ramp-up of ``ramp`` seconds: evenly
    spread, so a large fleet does not discover all at once."""
    if count <= 1 or ramp <= 0:
        return 0.0
    return ramp * index / count


@dataclass(order=True, slots=True)
class Due:
    when: float
    seq: int
    device: int = field(compare=False)
    job: Job = field(compare=False)
    extra: bool = field(default=False, compare=False)  # a one-off run outside the job's chain


class Schedule:
    """A heap of (when, device, job); ``pop_due`` takes every entry due by ``now`` in order.

    Entries of the same instant come out in the order they were pushed.
    """

    def __init__(self) -> None:
        self._heap: list[Due] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, when: float, device: int, job: Job, *, extra: bool = False) -> None:
        self._seq += 1
        heapq.heappush(self._heap, Due(when, self._seq, device, job, extra))

    def next_time(self) -> float | None:
        return self._heap[0].when if self._heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[Due]:
        """Entries due at or before ``now`` (at most ``limit``), earliest first."""
        out: list[Due] = []
        heap = self._heap
        while heap and heap[0].when <= now and (limit is None or len(out) < limit):
            out.append(heapq.heappop(heap))
        return out
