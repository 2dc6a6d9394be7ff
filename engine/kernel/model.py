"""Plain values: DER controls, default controls and curves (CSIP_RULES §1, §6).

All are frozen and validated on construction, so a value inside the kernel is always well
formed. ``from_json`` builds each from the JSON shape used by scenarios and the admin API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.kernel.errors import InvalidInput
from engine.kernel.modes import (
    CURVE_TYPES,
    DEFAULT_ONLY_SETTINGS,
    MODES,
    RAMP_TMS,
    ModeValue,
    curve_link,
    freeze,
    thaw,
)

RANDOMIZE_LIMIT = 3600  # CSIP_RULES §1: randomizeStart/randomizeDuration in −3600..3600
MAX_CURVE_POINTS = 10

Items = tuple[tuple[str, ModeValue], ...]


def _int(raw: Mapping[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = raw.get(key, default)
    if value is None:
        raise InvalidInput(f"missing {key!r}")
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"{key} must be an integer in {low}..{high}, not {value!r}")
    return value


def text_field(raw: Mapping[str, Any], key: str) -> str:
    """A field that must be a non-empty string (``InvalidInput`` otherwise)."""
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{key} must be a non-empty string, not {value!r}")
    return value


def parse_bitmap(value: object, what: str) -> int:
    """A bitmap given as an integer or as a hex string (2030.5 HexBinary)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise InvalidInput(f"{what} must be a non-negative integer or a hex string, not {value!r}")


def _freeze_base(raw: Mapping[str, Any], *, allow_settings: bool) -> tuple[Items, int | None]:
    items: list[tuple[str, ModeValue]] = []
    ramp: int | None = None
    for name, value in raw.items():
        if name == RAMP_TMS:
            ramp = _int(raw, RAMP_TMS, 0, 65535)
        elif name in MODES or (allow_settings and name in DEFAULT_ONLY_SETTINGS):
            items.append((name, freeze(name, value)))
        elif name in DEFAULT_ONLY_SETTINGS:
            raise InvalidInput(f"{name} is a DefaultDERControl setting, not a DERControl mode")
        else:
            raise InvalidInput(f"unknown mode {name!r}")
    items.sort()
    return tuple(items), ramp


def _thaw_items(items: Items, ramp: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {name: thaw(value) for name, value in items}
    if ramp is not None:
        out[RAMP_TMS] = ramp
    return out


@dataclass(frozen=True, slots=True)
class DERControl:
    """A scheduled control event of one program (CSIP_RULES §1). Immutable once seen (§2.1)."""

    mrid: str
    program: str
    creation_time: int
    start: int
    duration: int
    base: Items
    randomize_start: int = 0
    randomize_duration: int = 0
    response_required: int = 0
    reply_to: bool = True
    device_category: int | None = None
    ramp_tms: int | None = None
    modes: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", frozenset(name for name, _ in self.base))

    @property
    def scheduled_end(self) -> int:
        return self.start + self.duration

    @property
    def randomized(self) -> bool:
        return self.randomize_start != 0 or self.randomize_duration != 0

    @property
    def cancel_bound(self) -> int:
        """R of a randomized cancel (CSIP_RULES §2.9)."""
        return max(abs(self.randomize_start), abs(self.randomize_duration))

    @property
    def earliest_start(self) -> int:
        """e of CSIP_RULES §5: the earliest possible start over all devices."""
        return self.start + min(0, self.randomize_start)

    def value(self, mode: str) -> ModeValue:
        for name, value in self.base:
            if name == mode:
                return value
        raise KeyError(mode)

    def curve_links(self) -> tuple[tuple[str, str | None], ...]:
        """(curve mode, linked curve mRID) for every curve mode of the control."""
        return tuple((name, curve_link(value)) for name, value in self.base if name in CURVE_TYPES)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DERControl:
        base_raw = raw.get("base")
        if not isinstance(base_raw, Mapping):
            raise InvalidInput("a control needs a 'base' object of modes")
        base, ramp = _freeze_base(base_raw, allow_settings=False)
        category = raw.get("deviceCategory")
        reply_to = raw.get("replyTo", True)
        return cls(
            mrid=text_field(raw, "mRID"),
            program=text_field(raw, "program"),
            creation_time=_int(raw, "creationTime", -(2**63), 2**63 - 1),
            start=_int(raw, "start", -(2**63), 2**63 - 1),
            duration=_int(raw, "duration", 0, 2**32 - 1),
            base=base,
            randomize_start=_int(raw, "randomizeStart", -RANDOMIZE_LIMIT, RANDOMIZE_LIMIT, 0),
            randomize_duration=_int(raw, "randomizeDuration", -RANDOMIZE_LIMIT, RANDOMIZE_LIMIT, 0),
            response_required=parse_bitmap(raw.get("responseRequired", 0), "responseRequired")
            & 0xFF,
            reply_to=reply_to is not None and reply_to is not False,
            device_category=None if category is None else parse_bitmap(category, "deviceCategory"),
            ramp_tms=ramp,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mRID": self.mrid,
            "program": self.program,
            "creationTime": self.creation_time,
            "start": self.start,
            "duration": self.duration,
            "randomizeStart": self.randomize_start,
            "randomizeDuration": self.randomize_duration,
            "responseRequired": f"{self.response_required:02X}",
            "replyTo": True if self.reply_to else None,
            "deviceCategory": self.device_category,
            "base": _thaw_items(self.base, self.ramp_tms),
        }


@dataclass(frozen=True, slots=True)
class DefaultControl:
    """A program's DefaultDERControl: modes and default-only settings (CSIP_RULES §1, §3)."""

    items: Items
    ramp_tms: int | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DefaultControl:
        items, ramp = _freeze_base(raw, allow_settings=True)
        return cls(items=items, ramp_tms=ramp)

    def to_json(self) -> dict[str, Any]:
        return _thaw_items(self.items, self.ramp_tms)


@dataclass(frozen=True, slots=True)
class Curve:
    """A DERCurve (CSIP_RULES §6): 1-10 points scaled by 10^xMultiplier and 10^yMultiplier."""

    mrid: str
    curve_type: int
    points: tuple[tuple[int, int], ...]
    x_multiplier: int = 0
    y_multiplier: int = 0
    y_ref_type: int = 0

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Curve:
        points_raw = raw.get("points")
        if not isinstance(points_raw, list) or not 1 <= len(points_raw) <= MAX_CURVE_POINTS:
            raise InvalidInput(f"a curve has 1 to {MAX_CURVE_POINTS} points")
        points: list[tuple[int, int]] = []
        for point in points_raw:
            if (
                not isinstance(point, (list, tuple))
                or len(point) != 2
                or not all(
                    isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31
                    for v in point
                )
            ):
                raise InvalidInput(f"a curve point is [x, y], 32-bit integers, not {point!r}")
            points.append((point[0], point[1]))
        return cls(
            mrid=text_field(raw, "mRID"),
            curve_type=_int(raw, "curveType", 0, max(CURVE_TYPES.values())),
            points=tuple(points),
            x_multiplier=_int(raw, "xMultiplier", -9, 9, 0),
            y_multiplier=_int(raw, "yMultiplier", -9, 9, 0),
            y_ref_type=_int(raw, "yRefType", 0, 255, 0),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mRID": self.mrid,
            "curveType": self.curve_type,
            "xMultiplier": self.x_multiplier,
            "yMultiplier": self.y_multiplier,
            "yRefType": self.y_ref_type,
            "points": [list(point) for point in self.points],
        }

    def scaled(self) -> list[tuple[float, float]]:
        """Points in engineering units (CSIP_RULES §6)."""
        return [(x * 10.0**self.x_multiplier, y * 10.0**self.y_multiplier) for x, y in self.points]
