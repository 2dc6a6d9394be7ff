"""Commands: every write to the server, as a value that goes on the log.

An admin API call or a device's POST becomes one command. The runtime appends it to the durable
log, then folds it into the server state (``Registry``) and the kernel. Replaying the log
rebuilds everything, so a command must carry all it needs: generated identifiers (mRIDs) are
chosen before it is logged, never during the fold.

Commands are JSON objects with a ``kind``; ``to_json``/``from_json`` are exact inverses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.state.errors import Rejected


# Fields hold what JSON can: the elements of a list or dict field are typed ``Any`` where the
# registry checks them itself (compiled, a typed element would be cast as it is read, and a
# malformed one would raise a TypeError from the handler instead of a 400).
@dataclass(frozen=True)
class Command:
    @property
    def kind(self) -> str:
        """The command's name on the log (``COMMANDS``)."""
        return KINDS[type(self)]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class PutProgram(Command):
    """Create a DERProgram or change its description or primacy."""

    program: str
    primacy: int
    mrid: str
    description: str = ""


@dataclass(frozen=True)
class SetDefaultControl(Command):
    """Replace a program's DefaultDERControl (modes and default-only settings); None removes."""

    program: str
    base: dict[str, Any] | None
    mrid: str = ""
    description: str = ""


@dataclass(frozen=True)
class PutCurve(Command):
    program: str
    curve: dict[str, Any]  # mRID, curveType, points, xMultiplier, yMultiplier, yRefType
    description: str = ""


@dataclass(frozen=True)
class CreateControls(Command):
    """One or more DERControls, created together (all or none)."""

    controls: list[Any]  # objects: program, mRID, description, start, duration, base, ...


@dataclass(frozen=True)
class CancelControl(Command):
    program: str
    mrid: str


@dataclass(frozen=True)
class PutAggregator(Command):
    """An aggregator, identified by the LFDI of its certificate; it is an EndDevice too."""

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

    lfdi: str
    allowed: bool = True
    aggregator: str | None = None
    pin: int | None = None


@dataclass(frozen=True)
class SetRegistrationMode(Command):
    """``closed``: only out-of-band (admin) registration; ``allowlist``: in-band for LFDIs on
    the authorization list; ``open``: in-band for any client with a valid certificate."""

    mode: str


@dataclass(frozen=True)
class RegisterDevice(Command):
    lfdi: str
    sfdi: int
    source: str = "admin"  # "admin" (out-of-band) or "in-band"
    aggregator: str | None = None
    pin: int | None = None
    device_category: int | None = None
    requested_by: str | None = None  # LFDI of the client that POSTed it (in-band)


@dataclass(frozen=True)
class DeleteDevice(Command):
    lfdi: str
    requested_by: str | None = None


@dataclass(frozen=True)
class SetDeviceFSAs(Command):
    """Replace a device's FunctionSetAssignments (at most 15), each a list of programs."""

    lfdi: str
    fsas: list[Any]  # objects: {"mRID", "description", "programs": [...]}


@dataclass(frozen=True)
class SetConnectionPoint(Command):
    """CSIP-AUS: the connection point (NMI) where an EndDevice is installed, PUT by the device
    or its aggregator (``requested_by``) or set by the utility; the gateway checks the format."""

    lfdi: str
    connection_point_id: str
    requested_by: str | None = None


@dataclass(frozen=True)
class SetPollRates(Command):
    rates: dict[str, Any]  # name: seconds


@dataclass(frozen=True)
class SetPostRates(Command):
    rates: dict[str, Any]  # name: seconds


@dataclass(frozen=True)
class SetNotificationHosts(Command):
    """Where an aggregator may receive notifications: ``host`` or ``host:port`` entries, or
    ``*.example.com`` suffix wildcards."""

    aggregator: str
    hosts: list[Any]  # strings


@dataclass(frozen=True)
class CreateSubscription(Command):
    """An aggregator (or device) subscribes to a resource, under an EndDevice's SubscriptionList."""

    lfdi: str  # the EndDevice whose SubscriptionList holds it
    subscriber: str  # LFDI of the client that posted it
    resource: str  # subscribedResource (a path on this server)
    notification_uri: str
    limit: int
    level: str = "+S1"


@dataclass(frozen=True)
class EndSubscription(Command):
    """A subscription ends: deleted by its subscriber, or its resource is gone (``reason``)."""

    subscription: int
    reason: str = "deleted"
    requested_by: str | None = None


@dataclass(frozen=True)
class ApplyInputs(Command):
    """Kernel inputs applied as given, bypassing the registry: how a scenario replay travels
    through a runtime's log (never produced by the gateway)."""

    inputs: list[Any]  # objects: engine/kernel/codec.py JSON

    # Written out: compiled, a dataclass's generated __init__ would run as Python (every input
    # event on the log is one of these).
    def __init__(self, inputs: list[Any]) -> None:
        object.__setattr__(self, "inputs", inputs)


@dataclass(frozen=True)
class Tick(Command):
    """No change: time moves to the record's instant (replays run on event time)."""


COMMANDS: dict[str, type[Command]] = {
    "put_program": PutProgram,
    "set_default_control": SetDefaultControl,
    "put_curve": PutCurve,
    "create_controls": CreateControls,
    "cancel_control": CancelControl,
    "put_aggregator": PutAggregator,
    "authorize": Authorize,
    "set_registration_mode": SetRegistrationMode,
    "register_device": RegisterDevice,
    "delete_device": DeleteDevice,
    "set_device_fsas": SetDeviceFSAs,
    "set_connection_point": SetConnectionPoint,
    "set_poll_rates": SetPollRates,
    "set_post_rates": SetPostRates,
    "set_notification_hosts": SetNotificationHosts,
    "create_subscription": CreateSubscription,
    "end_subscription": EndSubscription,
    "apply_inputs": ApplyInputs,
    "tick": Tick,
}
KINDS: dict[type[Command], str] = {cls: kind for kind, cls in COMMANDS.items()}


# The JSON fields of each command kind ("kind" and its dataclass fields), looked up per command.
_FIELDS = {cls: frozenset({"kind", *(f.name for f in fields(cls))}) for cls in COMMANDS.values()}

_RUNTIME_TYPES: dict[str, type] = {
    "str": str,
    "int": int,  # (a bool is an int, here as in the compiled classes)
    "bool": bool,
    "list": list,
    "dict": dict,
    "None": type(None),
}


def _admits(annotation: str) -> tuple[type, ...]:
    """The outer runtime types a field's annotation admits (``dict[str, int] | None``: dict or
    None); an annotation of another form fails at import, so a new field type is seen to."""
    return tuple(_RUNTIME_TYPES[part.split("[", 1)[0].strip()] for part in annotation.split(" | "))


# Every reader of the log must accept and refuse the same records, from source or compiled.
# Compiled, each command class checks the types of its fields itself (a TypeError, refused as
# 400 below) and keeps no annotations to read; from source a dataclass takes any value, so
# ``from_json`` checks what the compiled class would: the outer type of each field (its
# annotation is a string here, ``from __future__ import annotations``).
_TYPES = {
    cls: tuple((f.name, _admits(f.type)) for f in fields(cls) if isinstance(f.type, str))
    for cls in COMMANDS.values()
}
# A JSON true or false belongs in a bool field only: a compiled class would take it for an int
# field as 1 or 0, a dataclass from source as it is (a plain type's annotation is kept compiled).
_FLAGS = {
    cls: frozenset(f.name for f in fields(cls) if f.type in ("bool", bool))
    for cls in COMMANDS.values()
}


_ABSENT = object()


def from_json(raw: Any) -> Command:
    """The command a JSON object describes; Rejected (400) when it is not one (anything at all
    may come in: compiled, a ``dict`` annotation would refuse a list with a TypeError)."""
    if not isinstance(raw, dict):
        raise Rejected(400, "a command is a JSON object")
    kind = str(raw.get("kind"))
    cls = COMMANDS.get(kind)
    if cls is None:
        raise Rejected(400, f"unknown command kind {raw.get('kind')!r}")
    if not _FIELDS[cls].issuperset(raw):  # (no set made: every log record comes through here)
        unknown = raw.keys() - _FIELDS[cls]
        raise Rejected(400, f"{kind}: unknown field(s) {sorted(unknown)}")
    for name, value in raw.items():
        if (value is True or value is False) and name not in _FLAGS[cls]:
            raise Rejected(400, f"{kind}: {name} must not be true or false")
    for name, admitted in _TYPES[cls]:
        value = raw.get(name, _ABSENT)
        if value is not _ABSENT and not isinstance(value, admitted):
            expected = " or ".join(t.__name__ for t in admitted)
            raise Rejected(400, f"{kind}: {name} must be {expected}, not {value!r}")
    try:
        if cls is ApplyInputs and len(raw) == 2:  # every input event: no dict copy, no **
            return ApplyInputs(raw["inputs"])
        arguments = dict(raw)
        del arguments["kind"]
        return cls(**arguments)
    except TypeError as exc:  # a field missing; compiled, also a value of the wrong type
        raise Rejected(400, f"{kind}: {exc}") from exc
