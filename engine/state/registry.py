"""The registry: who may talk to the server and what each device is assigned.

The registry is the part of the server state the kernel does not hold: end devices and their
registrations, aggregators, the authorization list, each device's FunctionSetAssignments,
programs' and controls' 2030.5 metadata (mRIDs, descriptions), and poll rates. Programs'
primacy, defaults, curves and controls live in the kernel's ``Catalog``.

``execute`` folds one command: it validates everything first, hands the kernel its inputs (which
the kernel validates too, atomically), and only then changes the registry. So a refused command
changes nothing, anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from engine.kernel import (
    KEEP,
    AddControl,
    AddCurve,
    Curve,
    DefaultControl,
    DefineProgram,
    DERControl,
    Input,
    InvalidInput,
    Output,
    RemoveDevice,
    SetDefault,
    SetMembership,
    normalize_lfdi,
    sfdi_from_lfdi,
)
from engine.kernel import CancelControl as KernelCancel
from engine.kernel.catalog import Catalog
from engine.kernel.codec import input_from_json
from engine.state import commands as c
from engine.state.errors import Rejected

MAX_FSAS = 15  # CSIP: a device belongs to up to 15 FunctionSetAssignments
REGISTRATION_MODES = ("closed", "allowlist", "open")
PROGRAM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MRID = re.compile(r"^(?:[0-9A-Fa-f]{2}){1,16}$")  # mRIDType: HexBinary128
DEFAULT_POLL_RATES = {
    "dcap": 900,
    "time": 900,
    "edev": 300,
    "registration": 300,
    "fsa": 300,
    "derp": 600,
    "der": 300,
    "mup": 300,
    "lel": 300,
    "rsps": 900,
    "sub": 300,
}
# How often devices post (EndDevice.postRate for DER status and settings, MUP.postRate).
DEFAULT_POST_RATES = {"edev": 300, "mup": 300}
MAX_SUBSCRIPTIONS_PER_DEVICE = 100


class Kernel(Protocol):
    """What the registry needs from the runtime's kernel."""

    @property
    def catalog(self) -> Catalog: ...

    def apply(self, t: int, inputs: Sequence[Input]) -> list[Output]: ...


@dataclass
class FunctionSetAssignment:
    mrid: str
    description: str
    programs: tuple[str, ...]


@dataclass
class EndDeviceRecord:
    edev_id: int
    lfdi: str
    sfdi: int
    registered_at: int
    changed_time: int
    pin: int
    source: str  # "admin" or "in-band"
    aggregator: str | None = None  # the aggregator that manages it
    own_aggregator: str | None = None  # set on an aggregator's own EndDevice
    device_category: int | None = None
    enabled: bool = True
    fsas: list[FunctionSetAssignment] = field(default_factory=list)
    connection_point: str | None = None  # CSIP-AUS ConnectionPoint.connectionPointId (NMI)

    def programs(self) -> tuple[str, ...]:
        """The device's program set: FSA order, then list order (CSIP_RULES §1)."""
        return tuple(dict.fromkeys(p for fsa in self.fsas for p in fsa.programs))


@dataclass
class AggregatorRecord:
    id: str
    lfdi: str
    description: str


@dataclass
class Authorization:
    lfdi: str
    aggregator: str | None
    pin: int | None


@dataclass
class ProgramMeta:
    id: str
    mrid: str
    description: str
    default_mrid: str = ""
    default_description: str = ""


@dataclass
class ControlMeta:
    mrid: str
    program: str
    description: str


@dataclass
class CurveMeta:
    program: str
    mrid: str
    description: str
    created: int


@dataclass
class SubscriptionRecord:
    id: int
    lfdi: str  # the EndDevice whose SubscriptionList holds it
    subscriber: str
    resource: str
    notification_uri: str
    limit: int
    level: str
    created: int


@dataclass(frozen=True)
class Requester:
    """Who is asking, resolved once per request from the certificate's LFDI."""

    lfdi: str
    device: EndDeviceRecord | None
    aggregator: AggregatorRecord | None
    authorization: Authorization | None

    @property
    def known(self) -> bool:
        return self.device is not None or self.aggregator is not None or bool(self.authorization)


# One of each per command: constructors written out (engine/kernel/inputs.py says why).
@dataclass
class _Plan:
    inputs: list[Input]
    commit: Callable[[], None]
    result: dict[str, Any]

    def __init__(
        self, inputs: list[Input], commit: Callable[[], None], result: dict[str, Any]
    ) -> None:
        self.inputs = inputs
        self.commit = commit
        self.result = result


@dataclass(frozen=True)
class Executed:
    result: dict[str, Any]
    outputs: list[Output]

    def __init__(self, result: dict[str, Any], outputs: list[Output]) -> None:
        object.__setattr__(self, "result", result)
        object.__setattr__(self, "outputs", outputs)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _fields(record: Any) -> dict[str, Any]:
    """A record's fields as a new dict, values shared (``vars`` would do, but compiled classes,
    engine/compiled.py, have no ``__dict__``)."""
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in fields(record))
    return {name: getattr(record, name) for name in names}


def check_mrid(mrid: str, what: str) -> str:
    if not isinstance(mrid, str) or not MRID.match(mrid):
        raise Rejected(
            400, f"{what} must be an even number of hex digits, at most 32 (mRIDType): {mrid!r}"
        )
    return mrid.upper()


def _lfdi(raw: str) -> str:
    try:
        return normalize_lfdi(raw)
    except InvalidInput as exc:
        raise Rejected(400, str(exc)) from exc


class Registry:
    """End devices, aggregators, authorization, FSAs and 2030.5 metadata (see module doc)."""

    def __init__(self) -> None:
        self.devices: dict[str, EndDeviceRecord] = {}
        self.by_edev: dict[int, str] = {}
        self.next_edev = 1
        self.aggregators: dict[str, AggregatorRecord] = {}
        self.aggregator_by_lfdi: dict[str, str] = {}
        self.authorizations: dict[str, Authorization] = {}
        self.registration_mode = "allowlist"
        self.programs: dict[str, ProgramMeta] = {}
        self.controls: dict[str, ControlMeta] = {}  # by upper-cased mRID
        self.curves: dict[tuple[str, str], CurveMeta] = {}
        self.poll_rates: dict[str, int] = dict(DEFAULT_POLL_RATES)
        self.post_rates: dict[str, int] = dict(DEFAULT_POST_RATES)
        self.notification_hosts: dict[str, list[str]] = {}  # by aggregator
        self.subscriptions: dict[int, SubscriptionRecord] = {}
        self.next_subscription = 1
        self.version = 0

    # -- reads ------------------------------------------------------------------------------

    def requester(self, lfdi: str) -> Requester:
        lfdi = lfdi.upper()
        aggregator_id = self.aggregator_by_lfdi.get(lfdi)
        return Requester(
            lfdi=lfdi,
            device=self.devices.get(lfdi),
            aggregator=None if aggregator_id is None else self.aggregators[aggregator_id],
            authorization=self.authorizations.get(lfdi),
        )

    def device_by_edev(self, edev_id: int) -> EndDeviceRecord | None:
        lfdi = self.by_edev.get(edev_id)
        return None if lfdi is None else self.devices.get(lfdi)

    def visible_devices(self, requester: Requester) -> list[EndDeviceRecord]:
        """A device sees itself; an aggregator itself and the devices it manages."""
        if requester.aggregator is not None:
            aggregator = requester.aggregator.id
            found = [
                d
                for d in self.devices.values()
                if d.aggregator == aggregator or d.own_aggregator == aggregator
            ]
            return sorted(found, key=lambda d: d.edev_id)
        return [] if requester.device is None else [requester.device]

    def managers_of(self, lfdi: str) -> list[str]:
        """The LFDIs of the aggregators that may see a device (besides the device itself)."""
        device = self.devices.get(lfdi.upper())
        if device is None:
            return []
        managers = []
        for aggregator_id in (device.aggregator, device.own_aggregator):
            aggregator = self.aggregators.get(aggregator_id) if aggregator_id else None
            if aggregator is not None:
                managers.append(aggregator.lfdi)
        return managers

    def may_see(self, requester: Requester, device: EndDeviceRecord) -> bool:
        if requester.aggregator is not None:
            aggregator = requester.aggregator.id
            return device.aggregator == aggregator or device.own_aggregator == aggregator
        return requester.device is not None and requester.device.lfdi == device.lfdi

    # -- the fold ---------------------------------------------------------------------------

    def execute(self, command: c.Command, t: int, kernel: Kernel) -> Executed:
        """Validate and apply one command at instant ``t``: all of it, or nothing."""
        plan = _HANDLERS[command.kind](self, command, t, kernel.catalog)
        try:
            outputs = kernel.apply(t, plan.inputs) if plan.inputs else kernel.apply(t, [])
        except InvalidInput as exc:
            raise Rejected(400, str(exc)) from exc
        plan.commit()
        self.version += 1
        return Executed(plan.result, outputs)

    def _put_program(self, cmd: c.PutProgram, t: int, catalog: Catalog) -> _Plan:
        if not PROGRAM_ID.match(cmd.program):
            raise Rejected(400, "a program id is 1-64 of A-Z a-z 0-9 _ . -")
        mrid = check_mrid(cmd.mrid, "mRID")
        existing = self.programs.get(cmd.program)
        if existing is None and any(p.mrid == mrid for p in self.programs.values()):
            raise Rejected(409, f"mRID {mrid} is already used by another program")

        def commit() -> None:
            meta = self.programs.get(cmd.program)
            if meta is None:
                self.programs[cmd.program] = ProgramMeta(cmd.program, mrid, cmd.description[:32])
            else:
                meta.description = cmd.description[:32]

        return _Plan([DefineProgram(cmd.program, cmd.primacy)], commit, {"program": cmd.program})

    def _require_program(self, program: str) -> ProgramMeta:
        meta = self.programs.get(program)
        if meta is None:
            raise Rejected(404, f"unknown program {program!r}")
        return meta

    def _set_default_control(self, cmd: c.SetDefaultControl, t: int, catalog: Catalog) -> _Plan:
        meta = self._require_program(cmd.program)
        try:
            default = None if cmd.base is None else DefaultControl.from_json(cmd.base)
        except InvalidInput as exc:
            raise Rejected(400, f"default control: {exc}") from exc
        mrid = check_mrid(cmd.mrid, "mRID") if cmd.mrid else meta.default_mrid

        def commit() -> None:
            meta.default_mrid = mrid or meta.mrid
            meta.default_description = cmd.description[:32]

        return _Plan([SetDefault(cmd.program, default)], commit, {"program": cmd.program})

    def _put_curve(self, cmd: c.PutCurve, t: int, catalog: Catalog) -> _Plan:
        self._require_program(cmd.program)
        try:
            curve = Curve.from_json(cmd.curve)
        except InvalidInput as exc:
            raise Rejected(400, f"curve: {exc}") from exc
        mrid = check_mrid(curve.mrid, "curve mRID")

        def commit() -> None:
            self.curves[(cmd.program, curve.mrid)] = CurveMeta(
                cmd.program, mrid, cmd.description[:32], t
            )

        return _Plan([AddCurve(cmd.program, curve)], commit, {"curve": curve.mrid})

    def _create_controls(self, cmd: c.CreateControls, t: int, catalog: Catalog) -> _Plan:
        if not cmd.controls:
            raise Rejected(400, "no controls given")
        inputs: list[Input] = []
        metas: list[ControlMeta] = []
        seen: set[str] = set()
        for index, raw in enumerate(cmd.controls):
            where = f"control {index}"
            if not isinstance(raw, dict):
                raise Rejected(400, f"{where}: a control is an object")
            self._require_program(str(raw.get("program")))
            mrid = check_mrid(str(raw.get("mRID", "")), f"{where}: mRID")
            if mrid in seen or catalog.control(mrid) is not None or mrid in self.controls:
                raise Rejected(409, f"{where}: mRID {mrid} already exists")
            seen.add(mrid)
            body = {"creationTime": t, **raw, "mRID": mrid}
            body.pop("description", None)
            try:
                control = DERControl.from_json(body)
            except InvalidInput as exc:
                raise Rejected(400, f"{where}: {exc}") from exc
            if not control.modes and control.ramp_tms is None:
                raise Rejected(400, f"{where}: a control carries at least one mode")
            inputs.append(AddControl(control))
            metas.append(ControlMeta(mrid, control.program, str(raw.get("description", ""))[:32]))

        def commit() -> None:
            for meta in metas:
                self.controls[meta.mrid] = meta

        return _Plan(inputs, commit, {"mRIDs": [m.mrid for m in metas]})

    def _cancel_control(self, cmd: c.CancelControl, t: int, catalog: Catalog) -> _Plan:
        self._require_program(cmd.program)
        record = catalog.record(cmd.mrid)
        if record is None or record.control.program != cmd.program:
            raise Rejected(404, f"no control {cmd.mrid} in program {cmd.program}")
        return _Plan([KernelCancel(cmd.program, cmd.mrid)], lambda: None, {"mRID": cmd.mrid})

    def _put_aggregator(self, cmd: c.PutAggregator, t: int, catalog: Catalog) -> _Plan:
        if not PROGRAM_ID.match(cmd.aggregator):
            raise Rejected(400, "an aggregator id is 1-64 of A-Z a-z 0-9 _ . -")
        lfdi = _lfdi(cmd.lfdi)
        if cmd.sfdi != sfdi_from_lfdi(lfdi):
            raise Rejected(400, f"SFDI {cmd.sfdi} does not belong to LFDI {lfdi}")
        owner = self.aggregator_by_lfdi.get(lfdi)
        if owner is not None and owner != cmd.aggregator:
            raise Rejected(409, f"LFDI {lfdi} is aggregator {owner!r}")
        existing = self.devices.get(lfdi)
        if existing is not None and existing.own_aggregator != cmd.aggregator:
            raise Rejected(409, f"LFDI {lfdi} is registered as an end device")
        previous = self.aggregators.get(cmd.aggregator)
        inputs: list[Input] = []
        if existing is None:
            inputs.append(SetMembership(lfdi, (), None))

        def commit() -> None:
            if previous is not None and previous.lfdi != lfdi:
                self.aggregator_by_lfdi.pop(previous.lfdi, None)
            self.aggregators[cmd.aggregator] = AggregatorRecord(
                cmd.aggregator, lfdi, cmd.description
            )
            self.aggregator_by_lfdi[lfdi] = cmd.aggregator
            if existing is None:
                self._add_device(
                    lfdi, cmd.sfdi, t, source="admin", pin=0, own_aggregator=cmd.aggregator
                )

        return _Plan(inputs, commit, {"aggregator": cmd.aggregator, "lfdi": lfdi})

    def _authorize(self, cmd: c.Authorize, t: int, catalog: Catalog) -> _Plan:
        lfdi = _lfdi(cmd.lfdi)
        if cmd.aggregator is not None and cmd.aggregator not in self.aggregators:
            raise Rejected(404, f"unknown aggregator {cmd.aggregator!r}")
        if cmd.pin is not None and not 0 <= cmd.pin <= 999_999:
            raise Rejected(400, "a PIN has at most 6 digits")

        def commit() -> None:
            if cmd.allowed:
                self.authorizations[lfdi] = Authorization(lfdi, cmd.aggregator, cmd.pin)
            else:
                self.authorizations.pop(lfdi, None)

        return _Plan([], commit, {"lfdi": lfdi, "allowed": cmd.allowed})

    def _set_registration_mode(self, cmd: c.SetRegistrationMode, t: int, catalog: Catalog) -> _Plan:
        if cmd.mode not in REGISTRATION_MODES:
            raise Rejected(400, f"registration mode is one of {', '.join(REGISTRATION_MODES)}")

        def commit() -> None:
            self.registration_mode = cmd.mode

        return _Plan([], commit, {"mode": cmd.mode})

    def _register_device(self, cmd: c.RegisterDevice, t: int, catalog: Catalog) -> _Plan:
        lfdi = _lfdi(cmd.lfdi)
        if cmd.sfdi != sfdi_from_lfdi(lfdi):
            raise Rejected(400, f"SFDI {cmd.sfdi} does not belong to LFDI {lfdi}")
        existing = self.devices.get(lfdi)
        if existing is not None:
            # A duplicate registration answers with the existing EndDevice (idempotent).
            return _Plan([], lambda: None, {"edev_id": existing.edev_id, "created": False})
        if lfdi in self.aggregator_by_lfdi:
            raise Rejected(409, f"LFDI {lfdi} belongs to an aggregator")
        authorization = self.authorizations.get(lfdi)
        aggregator = cmd.aggregator
        if cmd.source == "in-band":
            aggregator = self._check_in_band(cmd, lfdi, authorization)
        elif aggregator is not None and aggregator not in self.aggregators:
            raise Rejected(404, f"unknown aggregator {aggregator!r}")
        pin = cmd.pin if cmd.pin is not None else (authorization.pin if authorization else None)
        edev_id = self.next_edev

        def commit() -> None:
            self._add_device(
                lfdi,
                cmd.sfdi,
                t,
                source=cmd.source,
                pin=pin if pin is not None else 0,
                aggregator=aggregator,
                device_category=cmd.device_category,
            )

        inputs: list[Input] = [SetMembership(lfdi, (), cmd.device_category)]
        return _Plan(inputs, commit, {"edev_id": edev_id, "created": True})

    def _check_in_band(
        self, cmd: c.RegisterDevice, lfdi: str, authorization: Authorization | None
    ) -> str | None:
        """Who may register a device in-band, and which aggregator then manages it."""
        requester = self.requester(cmd.requested_by or lfdi)
        if self.registration_mode == "closed":
            raise Rejected(403, "registration is closed: devices are registered out of band")
        if requester.aggregator is not None:
            # An aggregator registers devices for itself: the device must be authorized for it
            # (or registration open).
            mine = requester.aggregator.id
            if authorization is not None and authorization.aggregator not in (None, mine):
                raise Rejected(403, "that device is authorized for another aggregator")
            if authorization is None and self.registration_mode != "open":
                raise Rejected(403, "that LFDI is not on the authorization list")
            return mine
        if requester.lfdi != lfdi:
            raise Rejected(403, "a device registers only itself")
        if authorization is None and self.registration_mode != "open":
            raise Rejected(403, "that LFDI is not on the authorization list")
        return None if authorization is None else authorization.aggregator

    def _add_device(
        self,
        lfdi: str,
        sfdi: int,
        t: int,
        *,
        source: str,
        pin: int,
        aggregator: str | None = None,
        own_aggregator: str | None = None,
        device_category: int | None = None,
    ) -> EndDeviceRecord:
        record = EndDeviceRecord(
            edev_id=self.next_edev,
            lfdi=lfdi,
            sfdi=sfdi,
            registered_at=t,
            changed_time=t,
            pin=pin,
            source=source,
            aggregator=aggregator,
            own_aggregator=own_aggregator,
            device_category=device_category,
        )
        self.next_edev += 1
        self.devices[lfdi] = record
        self.by_edev[record.edev_id] = lfdi
        return record

    def _delete_device(self, cmd: c.DeleteDevice, t: int, catalog: Catalog) -> _Plan:
        lfdi = _lfdi(cmd.lfdi)
        record = self.devices.get(lfdi)
        if record is None:
            raise Rejected(404, f"no end device {lfdi}")
        if record.own_aggregator is not None:
            raise Rejected(409, "an aggregator's own EndDevice is removed with the aggregator")
        if cmd.requested_by is not None:
            requester = self.requester(cmd.requested_by)
            if requester.aggregator is None or record.aggregator != requester.aggregator.id:
                raise Rejected(403, "only the managing aggregator may delete this EndDevice")

        ended = [s.id for s in self.subscriptions.values() if s.lfdi == lfdi]

        def commit() -> None:
            del self.devices[lfdi]
            del self.by_edev[record.edev_id]

        return _Plan(
            [RemoveDevice(lfdi)], commit, {"edev_id": record.edev_id, "subscriptions": ended}
        )

    def _set_device_fsas(self, cmd: c.SetDeviceFSAs, t: int, catalog: Catalog) -> _Plan:
        lfdi = _lfdi(cmd.lfdi)
        record = self.devices.get(lfdi)
        if record is None:
            raise Rejected(404, f"no end device {lfdi}")
        if len(cmd.fsas) > MAX_FSAS:
            raise Rejected(400, f"a device has at most {MAX_FSAS} FunctionSetAssignments")
        fsas: list[FunctionSetAssignment] = []
        for index, raw in enumerate(cmd.fsas):
            if not isinstance(raw, dict):
                raise Rejected(400, f"FSA {index}: a JSON object, not {raw!r}")
            programs = raw.get("programs")
            if not isinstance(programs, list) or not all(isinstance(p, str) for p in programs):
                raise Rejected(400, f"FSA {index}: programs is a list of program ids")
            for program in programs:
                self._require_program(program)
            mrid = check_mrid(str(raw.get("mRID", "")), f"FSA {index}: mRID")
            fsas.append(
                FunctionSetAssignment(mrid, str(raw.get("description", ""))[:32], tuple(programs))
            )
        programs_now = tuple(dict.fromkeys(p for fsa in fsas for p in fsa.programs))

        def commit() -> None:
            record.fsas = fsas
            record.changed_time = t

        inputs: list[Input] = [SetMembership(lfdi, programs_now, KEEP)]
        return _Plan(inputs, commit, {"lfdi": lfdi, "programs": list(programs_now)})

    def _set_connection_point(self, cmd: c.SetConnectionPoint, t: int, catalog: Catalog) -> _Plan:
        lfdi = _lfdi(cmd.lfdi)
        record = self.devices.get(lfdi)
        if record is None:
            raise Rejected(404, f"no end device {lfdi}")
        if cmd.requested_by is not None and not self.may_see(
            self.requester(cmd.requested_by), record
        ):
            raise Rejected(403, "a ConnectionPoint is for yourself or a device you manage")
        if not cmd.connection_point_id or len(cmd.connection_point_id) > 32:
            raise Rejected(400, "connectionPointId is 1..32 characters (String32)")

        def commit() -> None:
            record.connection_point = cmd.connection_point_id

        return _Plan([], commit, {"connectionPointId": cmd.connection_point_id})

    def _set_poll_rates(self, cmd: c.SetPollRates, t: int, catalog: Catalog) -> _Plan:
        for name, rate in cmd.rates.items():
            if name not in DEFAULT_POLL_RATES:
                raise Rejected(
                    400, f"unknown poll rate {name!r}: one of {sorted(DEFAULT_POLL_RATES)}"
                )
            if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= 86400:
                raise Rejected(400, f"poll rate {name} is 1..86400 seconds")

        def commit() -> None:
            self.poll_rates.update(cmd.rates)

        return _Plan([], commit, {"rates": dict(self.poll_rates, **cmd.rates)})

    def _set_post_rates(self, cmd: c.SetPostRates, t: int, catalog: Catalog) -> _Plan:
        for name, rate in cmd.rates.items():
            if name not in DEFAULT_POST_RATES:
                raise Rejected(
                    400, f"unknown post rate {name!r}: one of {sorted(DEFAULT_POST_RATES)}"
                )
            if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= 86400:
                raise Rejected(400, f"post rate {name} is 1..86400 seconds")

        def commit() -> None:
            self.post_rates.update(cmd.rates)

        return _Plan([], commit, {"rates": dict(self.post_rates, **cmd.rates)})

    def _set_notification_hosts(
        self, cmd: c.SetNotificationHosts, t: int, catalog: Catalog
    ) -> _Plan:
        if cmd.aggregator not in self.aggregators:
            raise Rejected(404, f"unknown aggregator {cmd.aggregator!r}")
        if not all(isinstance(h, str) for h in cmd.hosts):
            raise Rejected(400, "notification hosts are strings")
        hosts = [h.strip().lower() for h in cmd.hosts if h.strip()]
        if any("/" in h or "@" in h for h in hosts):
            raise Rejected(400, "a notification host is host or host:port (or *.domain)")

        def commit() -> None:
            self.notification_hosts[cmd.aggregator] = hosts

        return _Plan([], commit, {"aggregator": cmd.aggregator, "hosts": hosts})

    def allowed_notification_hosts(self, subscriber: str) -> list[str]:
        aggregator = self.aggregator_by_lfdi.get(subscriber.upper())
        return [] if aggregator is None else list(self.notification_hosts.get(aggregator, []))

    def _create_subscription(self, cmd: c.CreateSubscription, t: int, catalog: Catalog) -> _Plan:
        lfdi = _lfdi(cmd.lfdi)
        holder = self.devices.get(lfdi)
        if holder is None:
            raise Rejected(404, "no such EndDevice")
        if not 0 <= cmd.limit <= 0xFFFFFFFF:
            raise Rejected(400, "limit is a UInt32")
        held = sum(1 for s in self.subscriptions.values() if s.lfdi == lfdi)
        if held >= MAX_SUBSCRIPTIONS_PER_DEVICE:
            raise Rejected(
                409, f"at most {MAX_SUBSCRIPTIONS_PER_DEVICE} subscriptions per EndDevice"
            )
        subscription_id = self.next_subscription
        record = SubscriptionRecord(
            subscription_id,
            lfdi,
            _lfdi(cmd.subscriber),
            cmd.resource,
            cmd.notification_uri,
            cmd.limit,
            cmd.level,
            t,
        )

        def commit() -> None:
            self.subscriptions[subscription_id] = record
            self.next_subscription += 1

        return _Plan([], commit, {"subscription": subscription_id, "edev_id": holder.edev_id})

    def _end_subscription(self, cmd: c.EndSubscription, t: int, catalog: Catalog) -> _Plan:
        record = self.subscriptions.get(cmd.subscription)
        if record is None:
            raise Rejected(404, "no such Subscription")
        if cmd.requested_by is not None:
            requester = self.requester(cmd.requested_by)
            owner = self.devices.get(record.lfdi)
            if owner is None or not self.may_see(requester, owner):
                raise Rejected(404, "no such Subscription")

        def commit() -> None:
            self.subscriptions.pop(cmd.subscription, None)

        return _Plan([], commit, {"subscription": cmd.subscription, "reason": cmd.reason})

    def _apply_inputs(self, cmd: c.ApplyInputs, t: int, catalog: Catalog) -> _Plan:
        try:
            inputs = [input_from_json(raw) for raw in cmd.inputs]
        except InvalidInput as exc:
            raise Rejected(400, str(exc)) from exc
        return _Plan(inputs, lambda: None, {"inputs": len(inputs)})

    def _tick(self, cmd: c.Tick, t: int, catalog: Catalog) -> _Plan:
        return _Plan([], lambda: None, {})

    # -- snapshot ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The registry as JSON-ready data (checkpoints). Records are copied field by field
        (``_fields``), not with ``dataclasses.asdict``, which copies every value recursively:
        at 100,000 devices that was seconds per checkpoint."""
        return {
            "devices": [
                {**_fields(d), "fsas": [_fields(f) for f in d.fsas]} for d in self.devices.values()
            ],
            "next_edev": self.next_edev,
            "aggregators": [_fields(a) for a in self.aggregators.values()],
            "authorizations": [_fields(a) for a in self.authorizations.values()],
            "registration_mode": self.registration_mode,
            "programs": [_fields(p) for p in self.programs.values()],
            "controls": [_fields(m) for m in self.controls.values()],
            "curves": [_fields(m) for m in self.curves.values()],
            "poll_rates": dict(self.poll_rates),
            "post_rates": dict(self.post_rates),
            "notification_hosts": {k: list(v) for k, v in self.notification_hosts.items()},
            "subscriptions": [_fields(s) for s in self.subscriptions.values()],
            "next_subscription": self.next_subscription,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Registry:
        registry = cls()
        for d in raw["devices"]:
            fsas = [
                FunctionSetAssignment(f["mrid"], f["description"], tuple(f["programs"]))
                for f in d.pop("fsas")
            ]
            record = EndDeviceRecord(**d, fsas=fsas)
            registry.devices[record.lfdi] = record
            registry.by_edev[record.edev_id] = record.lfdi
        registry.next_edev = raw["next_edev"]
        for a in raw["aggregators"]:
            registry.aggregators[a["id"]] = AggregatorRecord(**a)
            registry.aggregator_by_lfdi[a["lfdi"]] = a["id"]
        for a in raw["authorizations"]:
            registry.authorizations[a["lfdi"]] = Authorization(**a)
        registry.registration_mode = raw["registration_mode"]
        for p in raw["programs"]:
            registry.programs[p["id"]] = ProgramMeta(**p)
        for m in raw["controls"]:
            registry.controls[m["mrid"]] = ControlMeta(**m)
        for m in raw["curves"]:
            registry.curves[(m["program"], m["mrid"])] = CurveMeta(**m)
        registry.poll_rates = dict(raw["poll_rates"])
        registry.post_rates = dict(raw["post_rates"])
        registry.notification_hosts = {k: list(v) for k, v in raw["notification_hosts"].items()}
        for item in raw["subscriptions"]:
            subscription = SubscriptionRecord(**item)
            registry.subscriptions[subscription.id] = subscription
        registry.next_subscription = raw["next_subscription"]
        registry.version = raw["version"]
        return registry


# The plan of each command kind (``Registry._<kind>``), looked up once per command.
_HANDLERS: dict[str, Callable[[Registry, Any, int, Catalog], _Plan]] = {
    kind: getattr(Registry, f"_{kind}") for kind in c.COMMANDS
}
