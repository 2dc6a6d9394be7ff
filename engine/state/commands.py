"""Commands: every write to the server, as a value that goes on the log.

An admin API call or a device's POST becomes one command. The runtime appends it to the durable
log, then folds it into the server state (``Registry``) and the kernel. Replaying the log
rebuilds everything, so a command must carry all it needs: generated identifiers (mRIDs) are
chosen before it is logged, never during the fold.

Commands are JSON objects with a ``kind``; ``to_json``/``from_json`` are exact inverses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from engine.state.errors import Rejected


@dataclass(frozen=True)
class Command:
    kind: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class PutProgram(Command):
    """Create a DERProgram or change its description or primacy."""

    kind: ClassVar[str] = "put_program"
    program: str
    primacy: int
    mrid: str
    description: str = ""


@dataclass(frozen=True)
class SetDefaultControl(Command):
    """Replace a program's DefaultDERControl (modes and default-only settings); None removes."""

    kind: ClassVar[str] = "set_default_control"
    program: str
    base: dict[str, Any] | None
    mrid: str = ""
    description: str = ""


@dataclass(frozen=True)
class PutCurve(Command):
    kind: ClassVar[str] = "put_curve"
    program: str
    curve: dict[str, Any]  # mRID, curveType, points, xMultiplier, yMultiplier, yRefType
    description: str = ""


@dataclass(frozen=True)
class CreateControls(Command):
    """One or more DERControls, created together (all or none)."""

    kind: ClassVar[str] = "create_controls"
    controls: list[dict[str, Any]]  # program, mRID, description, start, duration, base, ...


@dataclass(frozen=True)
class CancelControl(Command):
    kind: ClassVar[str] = "cancel_control"
    program: str
    mrid: str


@dataclass(frozen=True)
class PutAggregator(Command):
    """An aggregator, identified by the LFDI of its certificate; it is an EndDevice too."""

    kind: ClassVar[str] = "put_aggregator"
    aggregator: str
    lfdi: str
    sfdi: int
    description: str = ""


@dataclass(frozen=True)
class Authorize(Command):
    """Put an LFDI on (or, ``allowed=False``, take it off) the registration authorization list.

    ``aggregator`` names the aggregator that will manage the device, if any; ``pin`` is the
    registration PIN the device will see.
    """

    kind: ClassVar[str] = "authorize"
    lfdi: str
    allowed: bool = True
    aggregator: str | None = None
    pin: int | None = None


@dataclass(frozen=True)
class SetRegistrationMode(Command):
    """``closed``: only out-of-band (admin) registration; ``allowlist``: in-band for LFDIs on
    the authorization list; ``open``: in-band for any client with a valid certificate."""

    kind: ClassVar[str] = "set_registration_mode"
    mode: str


@dataclass(frozen=True)
class RegisterDevice(Command):
    kind: ClassVar[str] = "register_device"
    lfdi: str
    sfdi: int
    source: str = "admin"  # "admin" (out-of-band) or "in-band"
    aggregator: str | None = None
    pin: int | None = None
    device_category: int | None = None
    requested_by: str | None = None  # LFDI of the client that POSTed it (in-band)


@dataclass(frozen=True)
class DeleteDevice(Command):
    kind: ClassVar[str] = "delete_device"
    lfdi: str
    requested_by: str | None = None


@dataclass(frozen=True)
class SetDeviceFSAs(Command):
    """Replace a device's FunctionSetAssignments (at most 15), each a list of programs."""

    kind: ClassVar[str] = "set_device_fsas"
    lfdi: str
    fsas: list[dict[str, Any]]  # {"mRID", "description", "programs": [...]}


@dataclass(frozen=True)
class SetConnectionPoint(Command):
    """CSIP-AUS: the connection point (NMI) where an EndDevice is installed, PUT by the device
    or its aggregator (``requested_by``) or set by the utility; the gateway checks the format."""

    kind: ClassVar[str] = "set_connection_point"
    lfdi: str
    connection_point_id: str
    requested_by: str | None = None


@dataclass(frozen=True)
class SetPollRates(Command):
    kind: ClassVar[str] = "set_poll_rates"
    rates: dict[str, int]


@dataclass(frozen=True)
class SetPostRates(Command):
    kind: ClassVar[str] = "set_post_rates"
    rates: dict[str, int]


@dataclass(frozen=True)
class SetNotificationHosts(Command):
    """Where an aggregator may receive notifications: ``host`` or ``host:port`` entries, or
    ``*.example.com`` suffix wildcards."""

    kind: ClassVar[str] = "set_notification_hosts"
    aggregator: str
    hosts: list[str]


@dataclass(frozen=True)
class CreateSubscription(Command):
    """An aggregator (or device) subscribes to a resource, under an EndDevice's SubscriptionList."""

    kind: ClassVar[str] = "create_subscription"
    lfdi: str  # the EndDevice whose SubscriptionList holds it
    subscriber: str  # LFDI of the client that posted it
    resource: str  # subscribedResource (a path on this server)
    notification_uri: str
    limit: int
    level: str = "+S1"


@dataclass(frozen=True)
class EndSubscription(Command):
    """A subscription ends: deleted by its subscriber, or its resource is gone (``reason``)."""

    kind: ClassVar[str] = "end_subscription"
    subscription: int
    reason: str = "deleted"
    requested_by: str | None = None


@dataclass(frozen=True)
class ApplyInputs(Command):
    """Kernel inputs applied as given, bypassing the registry: how a scenario replay travels
    through a runtime's log (never produced by the gateway)."""

    kind: ClassVar[str] = "apply_inputs"
    inputs: list[dict[str, Any]]  # engine/kernel/codec.py JSON


@dataclass(frozen=True)
class Tick(Command):
    """No change: time moves to the record's instant (replays run on event time)."""

    kind: ClassVar[str] = "tick"


COMMANDS: dict[str, type[Command]] = {
    cls.kind: cls
    for cls in (
        PutProgram,
        SetDefaultControl,
        PutCurve,
        CreateControls,
        CancelControl,
        PutAggregator,
        Authorize,
        SetRegistrationMode,
        RegisterDevice,
        DeleteDevice,
        SetDeviceFSAs,
        SetConnectionPoint,
        SetPollRates,
        SetPostRates,
        SetNotificationHosts,
        CreateSubscription,
        EndSubscription,
        ApplyInputs,
        Tick,
    )
}


# The JSON fields of each command kind ("kind" and its dataclass fields), looked up per command.
_FIELDS = {cls: frozenset({"kind", *(f.name for f in fields(cls))}) for cls in COMMANDS.values()}


def from_json(raw: dict[str, Any]) -> Command:
    """The command a JSON object describes; Rejected (400) when it is not one."""
    if not isinstance(raw, dict):
        raise Rejected(400, "a command is a JSON object")
    cls = COMMANDS.get(str(raw.get("kind")))
    if cls is None:
        raise Rejected(400, f"unknown command kind {raw.get('kind')!r}")
    if not _FIELDS[cls].issuperset(raw):  # (no set made: every log record comes through here)
        unknown = raw.keys() - _FIELDS[cls]
        raise Rejected(400, f"{cls.kind}: unknown field(s) {sorted(unknown)}")
    arguments = dict(raw)
    del arguments["kind"]
    try:
        return cls(**arguments)
    except TypeError as exc:
        raise Rejected(400, f"{cls.kind}: {exc}") from exc
