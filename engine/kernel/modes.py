"""The DERControlBase modes, default-only settings and their value shapes (CSIP_RULES §1, §6).

Values travel through the kernel frozen (hashable) and leave it in the JSON shape of the
2030.5 element: ActivePower ``{"value", "multiplier"}``, PerCent an integer, booleans as
booleans, PowerFactorWithExcitation ``{"displacement", "multiplier", "excitation"}``, a curve
mode ``{"curve": "<curve mRID>"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from engine.kernel.errors import InvalidInput

Scalar = bool | int | str
Composite = tuple[tuple[str, Scalar], ...]
ModeValue = Scalar | Composite


class Kind(Enum):
    """The 2030.5 type of a mode's value."""

    BOOLEAN = "boolean"
    PERCENT = "PerCent"
    SIGNED_PERCENT = "SignedPerCent"
    ACTIVE_POWER = "ActivePower"
    REACTIVE_POWER = "ReactivePower"
    POWER_FACTOR = "PowerFactorWithExcitation"
    FIXED_VAR = "FixedVar"
    FREQ_DROOP = "FreqDroopType"
    CURVE = "DERCurveLink"
    UINT16 = "UInt16"
    UINT32 = "UInt32"
    INT16 = "Int16"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: type
    low: int | None = None
    high: int | None = None


# Fields of each composite kind, in the order they are printed.
_COMPOSITE_FIELDS: dict[Kind, tuple[Field, ...]] = {
    Kind.ACTIVE_POWER: (Field("value", int, -32768, 32767), Field("multiplier", int, -9, 9)),
    Kind.REACTIVE_POWER: (Field("value", int, -32768, 32767), Field("multiplier", int, -9, 9)),
    Kind.POWER_FACTOR: (
        Field("displacement", int, 0, 65535),
        Field("multiplier", int, -9, 9),
        Field("excitation", bool),
    ),
    Kind.FIXED_VAR: (Field("refType", int, 0, 255), Field("value", int, -10000, 10000)),
    Kind.FREQ_DROOP: (
        Field("dBOF", int, 0, 2**32 - 1),
        Field("dBUF", int, 0, 2**32 - 1),
        Field("kOF", int, 0, 65535),
        Field("kUF", int, 0, 65535),
        Field("openLoopTms", int, 0, 65535),
    ),
    Kind.CURVE: (Field("curve", str),),
}

# CSIP_RULES §6: curveType of each curve mode.
CURVE_TYPES: dict[str, int] = {
    "opModFreqWatt": 0,
    "opModHFRTMayTrip": 1,
    "opModHFRTMustTrip": 2,
    "opModHVRTMayTrip": 3,
    "opModHVRTMomentaryCessation": 4,
    "opModHVRTMustTrip": 5,
    "opModLFRTMayTrip": 6,
    "opModLFRTMustTrip": 7,
    "opModLVRTMayTrip": 8,
    "opModLVRTMomentaryCessation": 9,
    "opModLVRTMustTrip": 10,
    "opModVoltVar": 11,
    "opModVoltWatt": 12,
    "opModWattPF": 13,
    "opModWattVar": 14,
}

MODES: dict[str, Kind] = {
    "opModConnect": Kind.BOOLEAN,
    "opModEnergize": Kind.BOOLEAN,
    "opModFixedPFAbsorbW": Kind.POWER_FACTOR,
    "opModFixedPFInjectW": Kind.POWER_FACTOR,
    "opModFixedVar": Kind.FIXED_VAR,
    "opModFixedW": Kind.SIGNED_PERCENT,
    "opModFreqDroop": Kind.FREQ_DROOP,
    "opModMaxLimW": Kind.PERCENT,
    "opModTargetVar": Kind.REACTIVE_POWER,
    "opModTargetW": Kind.ACTIVE_POWER,
    **dict.fromkeys(CURVE_TYPES, Kind.CURVE),
    # CSIP-AUS (namespace https://csipaus.org/ns): resolved like any other mode.
    "opModExpLimW": Kind.ACTIVE_POWER,
    "opModImpLimW": Kind.ACTIVE_POWER,
    "opModGenLimW": Kind.ACTIVE_POWER,
    "opModLoadLimW": Kind.ACTIVE_POWER,
    "opModStorageTargetW": Kind.ACTIVE_POWER,
}

AUS_MODES = frozenset(
    {"opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW", "opModStorageTargetW"}
)

# Carried with the modes of the control that owns it; not a mode itself (CSIP_RULES §1).
RAMP_TMS = "rampTms"

# DefaultDERControl only (CSIP_RULES §1): selected like modes, reported as modes (§3).
DEFAULT_ONLY_SETTINGS: dict[str, Kind] = {
    "setESDelay": Kind.UINT32,
    "setESHighFreq": Kind.UINT16,
    "setESHighVolt": Kind.INT16,
    "setESLowFreq": Kind.UINT16,
    "setESLowVolt": Kind.INT16,
    "setESRampTms": Kind.UINT32,
    "setESRandomDelay": Kind.UINT32,
    "setGradW": Kind.UINT16,
    "setSoftGradW": Kind.UINT16,
}

_SCALAR_RANGES: dict[Kind, tuple[int, int]] = {
    Kind.PERCENT: (0, 10000),
    Kind.SIGNED_PERCENT: (-10000, 10000),
    Kind.UINT16: (0, 65535),
    Kind.UINT32: (0, 2**32 - 1),
    Kind.INT16: (-32768, 32767),
}


def kind_of(name: str) -> Kind:
    kind = MODES.get(name) or DEFAULT_ONLY_SETTINGS.get(name)
    if kind is None:
        raise InvalidInput(f"unknown mode or setting {name!r}")
    return kind


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def freeze(name: str, value: object) -> ModeValue:
    """Validate a JSON-shaped value of mode ``name`` and return its hashable form."""
    kind = kind_of(name)
    if kind is Kind.BOOLEAN:
        if not isinstance(value, bool):
            raise InvalidInput(f"{name} must be true or false, not {value!r}")
        return value
    if kind in _SCALAR_RANGES:
        low, high = _SCALAR_RANGES[kind]
        if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
            raise InvalidInput(f"{name} must be an integer in {low}..{high}, not {value!r}")
        return value  # type: ignore[return-value]
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{name} must be an object ({kind.value}), not {value!r}")
    fields = _COMPOSITE_FIELDS[kind]
    unknown = set(value) - {f.name for f in fields}
    if unknown:
        raise InvalidInput(f"{name}: unknown field(s) {sorted(unknown)}")
    items: list[tuple[str, Scalar]] = []
    for field in fields:
        if field.name not in value:
            raise InvalidInput(f"{name}: missing field {field.name!r}")
        item = value[field.name]
        if field.kind is bool:
            if not isinstance(item, bool):
                raise InvalidInput(f"{name}.{field.name} must be true or false")
        elif field.kind is int:
            if not _is_int(item):
                raise InvalidInput(f"{name}.{field.name} must be an integer")
            if (
                field.low is not None
                and field.high is not None
                and not field.low <= item <= field.high
            ):
                raise InvalidInput(
                    f"{name}.{field.name} must be in {field.low}..{field.high}, not {item}"
                )
        elif not isinstance(item, str) or not item:
            raise InvalidInput(f"{name}.{field.name} must be a non-empty string")
        items.append((field.name, item))
    return tuple(items)


def thaw(value: ModeValue) -> Any:
    """The JSON shape of a frozen value."""
    if isinstance(value, tuple):
        return dict(value)
    return value


def curve_link(value: ModeValue) -> str | None:
    """The curve mRID a curve mode's value links, if it is a curve link."""
    if isinstance(value, tuple) and len(value) == 1 and value[0][0] == "curve":
        link = value[0][1]
        return link if isinstance(link, str) else None
    return None


# -- CSIP_RULES §6: units ------------------------------------------------------------------


def scaled(name: str, value: ModeValue) -> float | bool | dict[str, Any] | str:
    """A frozen value in engineering units: W, var, percent, power factor.

    ActivePower/ReactivePower: value × 10^multiplier (W, var). PerCent: hundredths of a percent
    (opModMaxLimW is a percentage of setMaxW). SignedPerCent: hundredths, −10000..10000.
    PowerFactorWithExcitation: displacement × 10^multiplier, excitation true = absorbing.
    A curve mode's value is the link to its curve (scale the curve with ``Curve.scaled``).
    """
    kind = kind_of(name)
    if kind is Kind.BOOLEAN:
        return bool(value)
    if kind in (Kind.PERCENT, Kind.SIGNED_PERCENT):
        assert isinstance(value, int)
        return value / 100
    if kind in (Kind.UINT16, Kind.UINT32, Kind.INT16):
        assert isinstance(value, int)
        return float(value)
    fields = dict(value) if isinstance(value, tuple) else {}
    if kind in (Kind.ACTIVE_POWER, Kind.REACTIVE_POWER):
        return _times_ten(fields["value"], fields["multiplier"])
    if kind is Kind.POWER_FACTOR:
        return {
            "powerFactor": _times_ten(fields["displacement"], fields["multiplier"]),
            "absorbing": bool(fields["excitation"]),
        }
    if kind is Kind.FIXED_VAR:
        return {"refType": fields["refType"], "percent": int(fields["value"]) / 100}
    if kind is Kind.CURVE:
        return str(fields["curve"])
    return {key: item for key, item in fields.items()}


def _times_ten(value: Scalar, multiplier: Scalar) -> float:
    assert isinstance(value, int) and isinstance(multiplier, int)
    return float(value * 10**multiplier) if multiplier >= 0 else value / 10 ** (-multiplier)
