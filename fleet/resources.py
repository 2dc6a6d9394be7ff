"""What a device reads from the server: 2030.5 bodies parsed into the few facts it acts on.

Bodies are parsed with the server's own hardened parser (``gateway.xmlio.parse``: no DTDs, no
entities, bounded depth, root namespace checked) and read with its typed helpers, so a body
the server would refuse from a client is refused here too (``XmlRejected``).

Controls and defaults come out in the kernel's JSON shape (``DERControl.from_json``,
``DefaultDERControl.from_json``), so the fleet can feed what it fetched to the kernel as it
stands, except for one thing only the device can resolve: a curve mode links a DERCurve by
href, and the kernel wants the curve's mRID. Parsing leaves ``{"curve": href}`` in place and
lists the hrefs (``curve_hrefs``); ``resolve_curves`` swaps them for mRIDs once the device has
read the program's DERCurveList.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from engine.kernel.modes import DEFAULT_ONLY_SETTINGS, MODES, RAMP_TMS, Kind
from gateway.xmlio import (
    INT8,
    INT16,
    INT32,
    INT64,
    NS,
    UINT8,
    UINT16,
    UINT32,
    XmlRejected,
    optional_child,
    optional_hex,
    optional_hex_text,
    optional_int,
    optional_text,
    parse,
    required_int,
    required_text,
)

_NS = f"{{{NS}}}"
_COMPOSITE_BOOLEANS = frozenset({"excitation"})  # PowerFactorWithExcitation's one boolean

# -- links -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    all: int | None = None


def link(parent: etree._Element, tag: str) -> Link | None:
    element = optional_child(parent, tag)
    if element is None:
        return None
    href = element.get("href")
    if not href:
        raise XmlRejected(f"{tag} has no href")
    count = element.get("all")
    return Link(href, int(count) if count is not None and count.isdigit() else None)


def _rate(element: etree._Element, name: str = "pollRate") -> int | None:
    raw = element.get(name)
    return int(raw) if raw is not None and raw.isdigit() else None


def _list_counts(element: etree._Element) -> tuple[int, int]:
    """``all`` and ``results`` of a list resource."""
    return int(element.get("all", "0")), int(element.get("results", "0"))


def _children(element: etree._Element, tag: str) -> list[etree._Element]:
    found: list[etree._Element] = element.findall(_NS + tag)
    return found


def read(body: bytes, root: str) -> etree._Element:
    return parse(body, expected_root=root)


# -- discovery ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceCapability:
    poll_rate: int | None
    time: Link | None
    end_devices: Link | None
    mirror_usage_points: Link | None


def device_capability(body: bytes) -> DeviceCapability:
    element = read(body, "DeviceCapability")
    return DeviceCapability(
        poll_rate=_rate(element),
        time=link(element, "TimeLink"),
        end_devices=link(element, "EndDeviceListLink"),
        mirror_usage_points=link(element, "MirrorUsagePointListLink"),
    )


@dataclass(frozen=True, slots=True)
class Time:
    current_time: int
    poll_rate: int | None


def time(body: bytes) -> Time:
    element = read(body, "Time")
    return Time(required_int(element, "currentTime", low=INT64[0], high=INT64[1]), _rate(element))


@dataclass(frozen=True, slots=True)
class EndDevice:
    href: str
    lfdi: str | None
    category: int | None
    fsas: Link | None
    ders: Link | None
    post_rate: int | None


@dataclass(frozen=True, slots=True)
class EndDeviceList:
    poll_rate: int | None
    all: int
    devices: tuple[EndDevice, ...]

    def find(self, lfdi: str) -> EndDevice | None:
        return next((d for d in self.devices if d.lfdi == lfdi.upper()), None)


def end_device_list(body: bytes) -> EndDeviceList:
    element = read(body, "EndDeviceList")
    devices = tuple(
        EndDevice(
            href=item.get("href") or "",
            lfdi=optional_hex_text(item, "lFDI", max_digits=40),
            category=optional_hex(item, "deviceCategory", max_digits=8),
            fsas=link(item, "FunctionSetAssignmentsListLink"),
            ders=link(item, "DERListLink"),
            post_rate=optional_int(item, "postRate", low=UINT32[0], high=UINT32[1]),
        )
        for item in _children(element, "EndDevice")
    )
    return EndDeviceList(_rate(element), _list_counts(element)[0], devices)


@dataclass(frozen=True, slots=True)
class FunctionSetAssignmentsList:
    poll_rate: int | None
    all: int
    program_lists: tuple[Link, ...]  # each FSA's DERProgramListLink, in FSA order


def fsa_list(body: bytes) -> FunctionSetAssignmentsList:
    element = read(body, "FunctionSetAssignmentsList")
    lists = []
    for item in _children(element, "FunctionSetAssignments"):
        found = link(item, "DERProgramListLink")
        if found is not None:
            lists.append(found)
    return FunctionSetAssignmentsList(_rate(element), _list_counts(element)[0], tuple(lists))


@dataclass(frozen=True, slots=True)
class DERProgram:
    """A program as the fleet's kernel knows it: by its mRID (its 2030.5 identity)."""

    key: str
    href: str
    primacy: int
    controls: Link | None
    default: str | None
    curves: Link | None


@dataclass(frozen=True, slots=True)
class DERProgramList:
    poll_rate: int | None
    all: int
    programs: tuple[DERProgram, ...]


def program_list(body: bytes) -> DERProgramList:
    element = read(body, "DERProgramList")
    programs = []
    for item in _children(element, "DERProgram"):
        default = link(item, "DefaultDERControlLink")
        programs.append(
            DERProgram(
                key=required_text(item, "mRID").upper(),
                href=item.get("href") or "",
                primacy=required_int(item, "primacy", low=UINT8[0], high=UINT8[1]),
                controls=link(item, "DERControlListLink"),
                default=None if default is None else default.href,
                curves=link(item, "DERCurveListLink"),
            )
        )
    return DERProgramList(_rate(element), _list_counts(element)[0], tuple(programs))


@dataclass(frozen=True, slots=True)
class DER:
    capability: str | None
    settings: str | None
    status: str | None


def der_list(body: bytes) -> tuple[int | None, tuple[DER, ...]]:
    element = read(body, "DERList")
    ders = []
    for item in _children(element, "DER"):
        links = {
            tag: found.href
            for tag in ("DERCapabilityLink", "DERSettingsLink", "DERStatusLink")
            if (found := link(item, tag)) is not None
        }
        ders.append(
            DER(
                links.get("DERCapabilityLink"),
                links.get("DERSettingsLink"),
                links.get("DERStatusLink"),
            )
        )
    return _rate(element), tuple(ders)


def mirror_usage_point_post_rate(body: bytes) -> int | None:
    element = read(body, "MirrorUsagePoint")
    return optional_int(element, "postRate", low=UINT32[0], high=UINT32[1])


# -- the DER function set --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DERControl:
    """A listed control: ``control`` in kernel JSON (``program`` is filled by the caller),
    its EventStatus, where to respond, and the curve hrefs its modes link."""

    mrid: str
    control: dict[str, Any]
    current_status: int
    reply_to: str | None
    curve_hrefs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DERControlList:
    all: int
    results: int
    controls: tuple[DERControl, ...]


def control_list(body: bytes) -> DERControlList:
    element = read(body, "DERControlList")
    controls = tuple(_control(item) for item in _children(element, "DERControl"))
    total, results = _list_counts(element)
    return DERControlList(total, results, controls)


def _control(element: etree._Element) -> DERControl:
    mrid = required_text(element, "mRID").upper()
    status = optional_child(element, "EventStatus")
    interval = optional_child(element, "interval")
    base_element = optional_child(element, "DERControlBase")
    if status is None or interval is None or base_element is None:
        raise XmlRejected(f"DERControl {mrid} lacks EventStatus, interval or DERControlBase")
    base, curves = _control_base(base_element)
    required = element.get("responseRequired")
    reply_to = element.get("replyTo")
    control: dict[str, Any] = {
        "mRID": mrid,
        "creationTime": required_int(element, "creationTime", low=INT64[0], high=INT64[1]),
        "start": required_int(interval, "start", low=INT64[0], high=INT64[1]),
        "duration": required_int(interval, "duration", low=UINT32[0], high=UINT32[1]),
        "randomizeStart": optional_int(element, "randomizeStart", low=INT16[0], high=INT16[1]) or 0,
        "randomizeDuration": optional_int(element, "randomizeDuration", low=INT16[0], high=INT16[1])
        or 0,
        "responseRequired": required or "00",
        "replyTo": reply_to is not None,
        "deviceCategory": optional_hex(element, "deviceCategory", max_digits=8),
        "base": base,
    }
    return DERControl(
        mrid=mrid,
        control=control,
        current_status=required_int(status, "currentStatus", low=UINT8[0], high=UINT8[1]),
        reply_to=reply_to,
        curve_hrefs=curves,
    )


def _control_base(element: etree._Element) -> tuple[dict[str, Any], tuple[str, ...]]:
    """DERControlBase's modes (and rampTms) in kernel JSON; curve modes keep their hrefs.
    Elements this kernel does not know (a newer schema's) are skipped."""
    base: dict[str, Any] = {}
    curves: list[str] = []
    for child in element:
        if not isinstance(child.tag, str) or not child.tag.startswith(_NS):
            continue
        name = child.tag[len(_NS) :]
        if name == RAMP_TMS:
            base[name] = _int_text(child, UINT16)
            continue
        kind = MODES.get(name)
        if kind is None:
            continue
        if kind is Kind.BOOLEAN:
            base[name] = _bool_text(child)
        elif kind in (Kind.PERCENT, Kind.SIGNED_PERCENT):
            base[name] = _int_text(child, INT16 if kind is Kind.SIGNED_PERCENT else UINT16)
        elif kind is Kind.CURVE:
            href = child.get("href")
            if not href:
                raise XmlRejected(f"{name} links no curve")
            base[name] = {"curve": href}
            curves.append(href)
        else:
            base[name] = {
                field.tag[len(_NS) :]: _bool_text(field)
                if field.tag[len(_NS) :] in _COMPOSITE_BOOLEANS
                else _int_text(field, INT64)
                for field in child
                if isinstance(field.tag, str)
            }
    return base, tuple(curves)


def _int_text(element: etree._Element, bounds: tuple[int, int]) -> int:
    text = (element.text or "").strip()
    try:
        value = int(text)
    except ValueError:
        raise XmlRejected(f"{etree.QName(element).localname} is not an integer") from None
    if not bounds[0] <= value <= bounds[1]:
        raise XmlRejected(f"{etree.QName(element).localname} is out of range")
    return value


def _bool_text(element: etree._Element) -> bool:
    text = (element.text or "").strip()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise XmlRejected(f"{etree.QName(element).localname} is not a boolean")


@dataclass(frozen=True, slots=True)
class DefaultDERControl:
    """A program's default in kernel JSON (modes and default-only settings)."""

    base: dict[str, Any]
    curve_hrefs: tuple[str, ...]


def default_control(body: bytes) -> DefaultDERControl:
    element = read(body, "DefaultDERControl")
    base_element = optional_child(element, "DERControlBase")
    base, curves = ({}, ()) if base_element is None else _control_base(base_element)
    for name, kind in DEFAULT_ONLY_SETTINGS.items():
        bounds = {Kind.UINT16: UINT16, Kind.UINT32: UINT32, Kind.INT16: INT16}[kind]
        value = optional_int(element, name, low=bounds[0], high=bounds[1])
        if value is not None:
            base[name] = value
    return DefaultDERControl(base, curves)


@dataclass(frozen=True, slots=True)
class DERCurveList:
    all: int
    results: int
    curves: tuple[tuple[str, dict[str, Any]], ...]  # (href, kernel JSON of the curve)


def curve_list(body: bytes) -> DERCurveList:
    element = read(body, "DERCurveList")
    curves = []
    for item in _children(element, "DERCurve"):
        points = [
            [
                required_int(point, "xvalue", low=INT32[0], high=INT32[1]),
                required_int(point, "yvalue", low=INT32[0], high=INT32[1]),
            ]
            for point in _children(item, "CurveData")
        ]
        curves.append(
            (
                item.get("href") or "",
                {
                    "mRID": required_text(item, "mRID").upper(),
                    "curveType": required_int(item, "curveType", low=UINT8[0], high=UINT8[1]),
                    "points": points,
                    "xMultiplier": required_int(item, "xMultiplier", low=INT8[0], high=INT8[1]),
                    "yMultiplier": required_int(item, "yMultiplier", low=INT8[0], high=INT8[1]),
                    "yRefType": optional_int(item, "yRefType", low=UINT8[0], high=UINT8[1]) or 0,
                },
            )
        )
    total, results = _list_counts(element)
    return DERCurveList(total, results, tuple(curves))


def resolve_curves(base: Mapping[str, Any], curve_mrids: Mapping[str, str]) -> dict[str, Any]:
    """``base`` with each ``{"curve": href}`` replaced by the curve's mRID; a link to a curve
    the program does not list stays a dangling link (the kernel then rejects the event, 253,
    as CSIP_RULES §2.13 says)."""
    out = dict(base)
    for name, value in base.items():
        if MODES.get(name) is Kind.CURVE and isinstance(value, Mapping):
            href = value.get("curve")
            out[name] = {"curve": curve_mrids.get(str(href), str(href))}
    return out


__all__ = [
    "DER",
    "DERControl",
    "DERControlList",
    "DERCurveList",
    "DERProgram",
    "DERProgramList",
    "DefaultDERControl",
    "DeviceCapability",
    "EndDevice",
    "EndDeviceList",
    "FunctionSetAssignmentsList",
    "Link",
    "Time",
    "XmlRejected",
    "control_list",
    "curve_list",
    "default_control",
    "der_list",
    "device_capability",
    "end_device_list",
    "fsa_list",
    "mirror_usage_point_post_rate",
    "optional_text",
    "program_list",
    "resolve_curves",
    "time",
]
