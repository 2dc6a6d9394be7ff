"""One simulated device's state: what it has learnt from the server and what it still owes it.

Kept small (slots, shared strings and tuples) because a fleet holds 100k of them: the links it
follows, the ETag of every URL it polls, the rates the server gave it, the programs it belongs
to, and its response bookkeeping. The behaviour lives in ``fleet/client.py``.

Response bookkeeping, per device:

- ``lifecycle``: every (mRID, status, posted, t) the fleet's kernel computed for the device,
  in order (what the device *should* do; compared with the server's own view at the end);
- ``waiting``: the entries it must post and has not yet (posted: a 2xx from the replyTo);
- ``fetched``: when it first saw each control in a DERControlList it fetched. A device posts
  a control's responses only once it has fetched that control itself: the kernel resolves all
  devices together, the moment any one of them brings a new control in;
- ``posted``: (mRID, status, when) of every response the server accepted.
"""

from __future__ import annotations

from enum import Enum

from fleet.resources import Link
from fleet.schedule import Job

LifecycleEntry = tuple[str, int, bool, int]  # mRID, status, posted, t (server instant)


class Phase(Enum):
    NEW = "new"  # discovery not started
    DISCOVERING = "discovering"
    READY = "ready"  # discovered: polling and posting
    RETRYING = "retrying"  # discovery failed; it will try again


class Device:
    __slots__ = (
        "busy",
        "capability_href",
        "category",
        "chains",
        "credential",
        "dcap_href",
        "der_list_href",
        "edev_list_href",
        "etags",
        "failures",
        "fetched",
        "fsa_list_href",
        "index",
        "lfdi",
        "lifecycle",
        "meter_href",
        "meter_list_href",
        "meter_rate",
        "name",
        "phase",
        "post_rate",
        "posted",
        "program_lists",
        "program_sets",
        "programs",
        "rates",
        "respond_pending",
        "settings_href",
        "status_href",
        "time_href",
        "waiting",
    )

    def __init__(self, index: int, name: str, lfdi: str, credential: str) -> None:
        self.index = index
        self.name = name
        self.lfdi = lfdi
        self.credential = credential  # the escaped certificate (proxy mode) or its bundle path
        self.phase = Phase.NEW
        self.busy = False
        self.respond_pending = False
        self.chains = 0  # bitmask of recurring Jobs with a run on the schedule
        self.failures = 0  # consecutive discovery failures (backoff)
        self.etags: dict[str, str] = {}
        self.rates: list[int | None] = [None] * len(Job)  # pollRate per Job, as the server said
        self.dcap_href = "/dcap"  # the one URL a 2030.5 client knows beforehand
        self.time_href: str | None = None
        self.edev_list_href: str | None = None
        self.fsa_list_href: str | None = None
        self.der_list_href: str | None = None
        self.meter_list_href: str | None = None  # the MirrorUsagePointList (from /dcap)
        self.program_lists: tuple[Link, ...] = ()  # each FSA's DERProgramListLink
        self.program_sets: list[tuple[str, ...]] = []  # program keys per FSA
        self.programs: tuple[str, ...] | None = None  # membership the kernel was told
        self.category: int | None = None
        self.capability_href: str | None = None
        self.settings_href: str | None = None
        self.status_href: str | None = None
        self.post_rate: int | None = None  # EndDevice.postRate (DERStatus)
        self.meter_href: str | None = None  # the MirrorUsagePoint readings are posted to
        self.meter_rate: int | None = None  # MirrorUsagePoint.postRate
        self.fetched: dict[str, float] | None = None  # mRID -> first fetch (monotonic)
        self.lifecycle: list[LifecycleEntry] = []
        self.waiting: list[LifecycleEntry] = []
        self.posted: list[tuple[str, int, float]] = []

    def has_fetched(self, mrid: str) -> bool:
        return self.fetched is not None and mrid in self.fetched

    def __repr__(self) -> str:
        return f"Device({self.name}, {self.lfdi}, {self.phase.value})"
