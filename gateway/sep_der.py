"""2030.5 DER function set: DERProgram, DERControl, DefaultDERControl, DERCurve and their lists.

The kernel hands us modes as frozen values (``engine/kernel/modes.py``): a name and a scalar or
a tuple of (field, scalar). Rendering them is mostly a matter of order: DERControlBase lists its
modes in a fixed XSD sequence (alphabetical, rampTms last), and each composite type has its own
field order, which is not the kernel's print order (ActivePower is multiplier *then* value;
PowerFactorWithExcitation is displacement, excitation, multiplier). Values are checked against
the XSD type ranges, which are sometimes narrower than the kernel's (setGradW is a UInt16).

CSIP-AUS modes (opModImpLimW...) are elements of the csipaus namespace that csipaus-core.xsd
appends to DERControlBase, so they follow rampTms (``AUS_ORDER``). Whether they may be used at
all is the profile's business (the admin API refuses them under ``csip``), not the renderer's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lxml import etree

from engine.kernel.model import Curve
from engine.kernel.modes import (
    AUS_MODES,
    DEFAULT_ONLY_SETTINGS,
    MODES,
    Kind,
    ModeValue,
    curve_link,
)
from gateway.sep_base import ListShape, add_identity, build_list, optional_checked
from gateway.xmlio import (
    INT8,
    INT16,
    INT32,
    INT64,
    UINT8,
    UINT16,
    UINT32,
    add,
    add_link,
    add_optional,
    aus,
    checked,
    container,
    hex_text,
    root,
    string_text,
)

CurveHref = Callable[[str], str]  # curve mRID -> href of the DERCurve
Bounds = tuple[int, int]

# DERControlBase's sequence in sep2_schema_2018.xsd; rampTms follows the modes.
BASE_ORDER: tuple[str, ...] = (
    "opModConnect",
    "opModEnergize",
    "opModFixedPFAbsorbW",
    "opModFixedPFInjectW",
    "opModFixedVar",
    "opModFixedW",
    "opModFreqDroop",
    "opModFreqWatt",
    "opModHFRTMayTrip",
    "opModHFRTMustTrip",
    "opModHVRTMayTrip",
    "opModHVRTMomentaryCessation",
    "opModHVRTMustTrip",
    "opModLFRTMayTrip",
    "opModLFRTMustTrip",
    "opModLVRTMayTrip",
    "opModLVRTMomentaryCessation",
    "opModLVRTMustTrip",
    "opModMaxLimW",
    "opModTargetVar",
    "opModTargetW",
    "opModVoltVar",
    "opModVoltWatt",
    "opModWattPF",
    "opModWattVar",
)
_BASE_POSITION = {name: index for index, name in enumerate(BASE_ORDER)}

# csipaus-core.xsd's extension of DERControlBase (after rampTms), and its element names.
# opModStorageTargetW exists only in the CSIP-AUS v1.3-beta storage schema, in its own
# namespace (csipaus-ext-v1.3-beta_storage.xsd).
STORAGE_NS = "https://csipaus.org/ns/v1.3-beta/storage"
AUS_ORDER: tuple[tuple[str, str], ...] = (
    ("opModImpLimW", aus("opModImpLimW")),
    ("opModExpLimW", aus("opModExpLimW")),
    ("opModGenLimW", aus("opModGenLimW")),
    ("opModLoadLimW", aus("opModLoadLimW")),
    ("opModStorageTargetW", f"{{{STORAGE_NS}}}opModStorageTargetW"),
)
_AUS_TAG = dict(AUS_ORDER)
_AUS_POSITION = {name: index for index, (name, _) in enumerate(AUS_ORDER)}

# DefaultDERControl's own elements after DERControlBase, in XSD order with their XSD types.
SETTINGS_ORDER: tuple[tuple[str, Bounds], ...] = (
    ("setESDelay", UINT32),
    ("setESHighFreq", UINT16),
    ("setESHighVolt", INT16),
    ("setESLowFreq", UINT16),
    ("setESLowVolt", INT16),
    ("setESRampTms", UINT32),
    ("setESRandomDelay", UINT32),
    ("setGradW", UINT16),
    ("setSoftGradW", UINT16),
)

# Composite fields in XSD order; None marks an xs:boolean.
_COMPOSITE_XSD: dict[Kind, tuple[tuple[str, Bounds | None], ...]] = {
    Kind.ACTIVE_POWER: (("multiplier", INT8), ("value", INT16)),
    Kind.REACTIVE_POWER: (("multiplier", INT8), ("value", INT16)),
    Kind.POWER_FACTOR: (("displacement", UINT16), ("excitation", None), ("multiplier", INT8)),
    Kind.FIXED_VAR: (("refType", UINT8), ("value", INT16)),
    Kind.FREQ_DROOP: (
        ("dBOF", UINT32),
        ("dBUF", UINT32),
        ("kOF", UINT16),
        ("kUF", UINT16),
        ("openLoopTms", UINT16),
    ),
}
_SCALAR_XSD: dict[Kind, Bounds] = {Kind.PERCENT: UINT16, Kind.SIGNED_PERCENT: INT16}
MAX_CURVE_POINTS = 10


# -- DERControlBase ------------------------------------------------------------------------


def _add_mode(parent: etree._Element, name: str, value: ModeValue, curve_href: CurveHref) -> None:
    kind = MODES[name]
    tag = _AUS_TAG.get(name, name)
    if kind is Kind.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean, not {value!r}")
        add(parent, name, value)
    elif kind in _SCALAR_XSD:
        if not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, not {value!r}")
        add(parent, name, checked(value, _SCALAR_XSD[kind], name))
    elif kind is Kind.CURVE:
        mrid = curve_link(value)
        if mrid is None:
            raise ValueError(f"{name} must link a curve, not {value!r}")
        add_link(parent, name, curve_href(mrid))
    else:
        fields = dict(value) if isinstance(value, tuple) else {}
        order = _COMPOSITE_XSD[kind]
        if set(fields) != {field for field, _ in order}:
            raise ValueError(f"{name} ({kind.value}) needs {[f for f, _ in order]}, not {value!r}")
        element = container(parent, tag)
        for field, bounds in order:
            item = fields[field]
            if bounds is None:
                if not isinstance(item, bool):
                    raise ValueError(f"{name}.{field} must be a boolean, not {item!r}")
                add(element, field, item)
            else:
                if not isinstance(item, int):
                    raise ValueError(f"{name}.{field} must be an integer, not {item!r}")
                add(element, field, checked(item, bounds, f"{name}.{field}"))


def _add_control_base(
    parent: etree._Element,
    modes: Sequence[tuple[str, ModeValue]],
    ramp_tms: int | None,
    curve_href: CurveHref,
) -> None:
    """DERControlBase with ``modes`` in XSD order; an empty one is valid (all optional)."""
    for name, _ in modes:
        if name not in _BASE_POSITION and name not in AUS_MODES:
            raise ValueError(f"{name} is not a DERControlBase mode")
    base = container(parent, "DERControlBase")
    standard = [item for item in modes if item[0] in _BASE_POSITION]
    for name, value in sorted(standard, key=lambda item: _BASE_POSITION[item[0]]):
        _add_mode(base, name, value, curve_href)
    add_optional(base, "rampTms", optional_checked(ramp_tms, UINT16, "rampTms"))
    extensions = [item for item in modes if item[0] in AUS_MODES]
    for name, value in sorted(extensions, key=lambda item: _AUS_POSITION[item[0]]):
        _add_mode(base, name, value, curve_href)


# -- resources -----------------------------------------------------------------------------


def der_program(
    *,
    href: str,
    mrid: str,
    description: str | None,
    primacy: int,
    active_der_control_list_href: str,
    active_der_control_list_all: int,
    default_der_control_href: str | None,
    der_control_list_href: str,
    der_control_list_all: int,
    der_curve_list_href: str,
    der_curve_list_all: int,
    subscribable: int | None = None,
) -> etree._Element:
    """DERProgram: identity, its four links, and primacy (lower wins, CSIP_RULES §2.6)."""
    element = root(
        "DERProgram",
        href=href,
        subscribable=optional_checked(subscribable, UINT8, "subscribable"),
    )
    add_identity(element, mrid=mrid, description=description)
    add_link(
        element,
        "ActiveDERControlListLink",
        active_der_control_list_href,
        active_der_control_list_all,
    )
    add_link(element, "DefaultDERControlLink", default_der_control_href)
    add_link(element, "DERControlListLink", der_control_list_href, der_control_list_all)
    add_link(element, "DERCurveListLink", der_curve_list_href, der_curve_list_all)
    add(element, "primacy", checked(primacy, UINT8, "primacy"))
    return element


def der_control(
    *,
    href: str,
    mrid: str,
    description: str | None,
    creation_time: int,
    current_status: int,
    status_time: int,
    potentially_superseded: bool,
    potentially_superseded_time: int | None,
    reason: str | None,
    start: int,
    duration: int,
    randomize_start: int | None,
    randomize_duration: int | None,
    reply_to: str | None,
    response_required: int | None,
    device_category: int | None,
    base: tuple[tuple[str, ModeValue], ...],
    ramp_tms: int | None,
    curve_href: CurveHref,
    subscribable: int | None = None,
) -> etree._Element:
    """DERControl: Event's head (identity, creationTime, EventStatus, interval), then
    RandomizableEvent's randomizeDuration *before* randomizeStart, then DERControlBase."""
    element = root(
        "DERControl",
        href=href,
        replyTo=reply_to,
        responseRequired=None
        if response_required is None
        else hex_text(response_required, bits=8, what="responseRequired"),
        subscribable=optional_checked(subscribable, UINT8, "subscribable"),
    )
    add_identity(element, mrid=mrid, description=description)
    add(element, "creationTime", checked(creation_time, INT64, "creationTime"))
    status = container(element, "EventStatus")
    add(status, "currentStatus", checked(current_status, UINT8, "currentStatus"))
    add(status, "dateTime", checked(status_time, INT64, "EventStatus.dateTime"))
    add(status, "potentiallySuperseded", potentially_superseded)
    if potentially_superseded_time is not None:
        add(
            status,
            "potentiallySupersededTime",
            checked(potentially_superseded_time, INT64, "potentiallySupersededTime"),
        )
    if reason is not None:
        add(status, "reason", string_text(reason, max_length=192, what="EventStatus.reason"))
    interval = container(element, "interval")
    add(interval, "duration", checked(duration, UINT32, "duration"))
    add(interval, "start", checked(start, INT64, "start"))
    if randomize_duration is not None:
        add(element, "randomizeDuration", checked(randomize_duration, INT16, "randomizeDuration"))
    if randomize_start is not None:
        add(element, "randomizeStart", checked(randomize_start, INT16, "randomizeStart"))
    _add_control_base(element, base, ramp_tms, curve_href)
    if device_category is not None:
        add(element, "deviceCategory", hex_text(device_category, bits=32, what="deviceCategory"))
    return element


def default_der_control(
    *,
    href: str,
    mrid: str,
    description: str | None,
    items: tuple[tuple[str, ModeValue], ...],
    ramp_tms: int | None,
    curve_href: CurveHref,
    subscribable: int | None = None,
) -> etree._Element:
    """DefaultDERControl: ``items`` mixes DERControlBase modes and the default-only settings
    (setGradW...), which are DefaultDERControl's own elements after DERControlBase."""
    element = root(
        "DefaultDERControl",
        href=href,
        subscribable=optional_checked(subscribable, UINT8, "subscribable"),
    )
    add_identity(element, mrid=mrid, description=description)
    modes = [(name, value) for name, value in items if name not in DEFAULT_ONLY_SETTINGS]
    settings = dict(item for item in items if item[0] in DEFAULT_ONLY_SETTINGS)
    _add_control_base(element, modes, ramp_tms, curve_href)
    for name, bounds in SETTINGS_ORDER:
        if name in settings:
            value = settings[name]
            if not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, not {value!r}")
            add(element, name, checked(value, bounds, name))
    return element


def der_curve(
    *, href: str, mrid: str, description: str | None, creation_time: int, curve: Curve
) -> etree._Element:
    """DERCurve: an IdentifiedObject (not subscribable) with 1-10 CurveData points."""
    if not 1 <= len(curve.points) <= MAX_CURVE_POINTS:
        raise ValueError(f"a DERCurve has 1 to {MAX_CURVE_POINTS} points, not {len(curve.points)}")
    element = root("DERCurve", href=href)
    add_identity(element, mrid=mrid, description=description)
    add(element, "creationTime", checked(creation_time, INT64, "creationTime"))
    for x, y in curve.points:
        point = container(element, "CurveData")
        add(point, "xvalue", checked(x, INT32, "CurveData.xvalue"))
        add(point, "yvalue", checked(y, INT32, "CurveData.yvalue"))
    add(element, "curveType", checked(curve.curve_type, UINT8, "curveType"))
    add(element, "xMultiplier", checked(curve.x_multiplier, INT8, "xMultiplier"))
    add(element, "yMultiplier", checked(curve.y_multiplier, INT8, "yMultiplier"))
    add(element, "yRefType", checked(curve.y_ref_type, UINT8, "yRefType"))
    return element


# -- lists ---------------------------------------------------------------------------------

DER_PROGRAM_LIST = ListShape("DERProgramList", "DERProgram", subscribable=True, poll_rate=True)
DER_CONTROL_LIST = ListShape("DERControlList", "DERControl", subscribable=True, poll_rate=False)
DER_CURVE_LIST = ListShape("DERCurveList", "DERCurve", subscribable=False, poll_rate=False)
# The 2018 XSD has no ActiveDERControlList type: the active list is a DERControlList.
ACTIVE_DER_CONTROL_LIST = DER_CONTROL_LIST


def der_program_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    """DERProgramList: the one DER list that carries pollRate (for the whole function set)."""
    return build_list(
        DER_PROGRAM_LIST,
        href=href,
        all=all,
        results=results,
        items=items,
        poll_rate=poll_rate,
        subscribable=subscribable,
    )


def der_control_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    """DERControlList: subscribable, no pollRate (refused if given)."""
    return build_list(
        DER_CONTROL_LIST,
        href=href,
        all=all,
        results=results,
        items=items,
        poll_rate=poll_rate,
        subscribable=subscribable,
    )


def active_der_control_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    """The ActiveDERControlList resource, whose root element is ``DERControlList``."""
    return build_list(
        ACTIVE_DER_CONTROL_LIST,
        href=href,
        all=all,
        results=results,
        items=items,
        poll_rate=poll_rate,
        subscribable=subscribable,
    )


def der_curve_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    """DERCurveList: a plain List, neither subscribable nor with pollRate (both refused)."""
    return build_list(
        DER_CURVE_LIST,
        href=href,
        all=all,
        results=results,
        items=items,
        poll_rate=poll_rate,
        subscribable=subscribable,
    )
