"""2030.5 metering mirror: the readings a device mirrors to the server, and their telemetry form.

A CSIP device creates a MirrorUsagePoint (POST /mup), usually with one MirrorMeterReading per
quantity carrying only its ReadingType, then POSTs readings to the MUP as a MirrorMeterReading
or a MirrorMeterReadingList whose ReadingType is usually left out (the server remembers it by
the reading's mRID). Each resource is a ``Record`` (``gateway/sep_record.py``): one declaration
in XSD order gives the parser, the XSD-valid renderer and the JSON form. ``normalize`` turns
mirrored readings into flat telemetry records named by ``engine.telemetry.quantities``.

XSD notes the routes depend on: a MirrorUsagePoint requires mRID, roleFlags (HexBinary16),
serviceCategoryKind, status and deviceLFDI, in that order, with its MirrorMeterReadings after
deviceLFDI and postRate last. A MirrorMeterReading orders lastUpdateTime, MirrorReadingSet*,
nextUpdateTime, Reading, ReadingType (the ReadingType comes *last*). A MirrorReadingSet
requires its timePeriod. Reading.value is optional and an Int48; localID is hexBinary.
MirrorUsagePointList and MirrorMeterReadingList are plain Lists (no subscribable attribute),
and only the former has pollRate.
"""

# xsd() returns dataclasses.field(...): a declaration, not a shared mutable default.
# ruff: noqa: RUF009

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from lxml import etree

from engine.telemetry.quantities import Quantity, quantity_of, scale
from gateway.sep_base import ListShape, build_list
from gateway.sep_record import (
    Bitmap,
    Boolean,
    DateTimeInterval,
    HexId,
    Integer,
    Many,
    One,
    Record,
    Text,
    xsd,
)
from gateway.xmlio import (
    INT8,
    INT32,
    INT48,
    INT64,
    NS,
    UINT8,
    UINT16,
    UINT32,
    UINT48,
    XmlRejected,
)

MRID = HexId(32)
LFDI = HexId(40)
INTERVAL = One(DateTimeInterval)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitValue(Record):
    """UnitValueType (calorificValue, conversionFactor): value x 10^multiplier in ``unit``."""

    multiplier: int = xsd("multiplier", Integer(INT8), required=True)
    unit: int = xsd("unit", Integer(UINT8), required=True)
    value: int = xsd("value", Integer(INT32), required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadingType(Record):
    """What the readings of a MirrorMeterReading measure; every element is optional."""

    TAG: ClassVar[str] = "ReadingType"

    accumulation_behaviour: int | None = xsd("accumulationBehaviour", Integer(UINT8))
    calorific_value: UnitValue | None = xsd("calorificValue", One(UnitValue))
    commodity: int | None = xsd("commodity", Integer(UINT8))
    conversion_factor: UnitValue | None = xsd("conversionFactor", One(UnitValue))
    data_qualifier: int | None = xsd("dataQualifier", Integer(UINT8))
    flow_direction: int | None = xsd("flowDirection", Integer(UINT8))
    interval_length: int | None = xsd("intervalLength", Integer(UINT32))
    kind: int | None = xsd("kind", Integer(UINT8))
    max_number_of_intervals: int | None = xsd("maxNumberOfIntervals", Integer(UINT8))
    number_of_consumption_blocks: int | None = xsd("numberOfConsumptionBlocks", Integer(UINT8))
    number_of_tou_tiers: int | None = xsd("numberOfTouTiers", Integer(UINT8))
    phase: int | None = xsd("phase", Integer(UINT8))
    power_of_ten_multiplier: int | None = xsd("powerOfTenMultiplier", Integer(INT8))
    sub_interval_length: int | None = xsd("subIntervalLength", Integer(UINT32))
    supply_limit: int | None = xsd("supplyLimit", Integer(UINT48))
    tiered_consumption_blocks: bool | None = xsd("tieredConsumptionBlocks", Boolean())
    uom: int | None = xsd("uom", Integer(UINT8))

    @property
    def quantity(self) -> Quantity:
        """The named quantity (uom absent counts as 0, Not Applicable)."""
        return quantity_of(
            self.uom or 0, self.data_qualifier, self.flow_direction, self.phase, self.kind
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading(Record):
    """One value, in the units of its ReadingType (times 10^powerOfTenMultiplier)."""

    TAG: ClassVar[str] = "Reading"

    consumption_block: int | None = xsd("consumptionBlock", Integer(UINT8))
    quality_flags: int | None = xsd("qualityFlags", Bitmap(16))
    time_period: DateTimeInterval | None = xsd("timePeriod", INTERVAL)
    tou_tier: int | None = xsd("touTier", Integer(UINT8))
    value: int | None = xsd("value", Integer(INT48))
    local_id: str | None = xsd("localID", HexId(4))


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorReadingSet(Record):
    """Readings of one period, e.g. the intervals since the last post."""

    mrid: str = xsd("mRID", MRID, required=True)
    description: str | None = xsd("description", Text(32))
    version: int | None = xsd("version", Integer(UINT16))
    time_period: DateTimeInterval = xsd("timePeriod", INTERVAL, required=True)
    readings: tuple[Reading, ...] = xsd("Reading", Many(Reading))


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorMeterReading(Record):
    """One mirrored quantity: its ReadingType, its latest Reading and/or sets of readings."""

    TAG: ClassVar[str] = "MirrorMeterReading"

    mrid: str = xsd("mRID", MRID, required=True)
    description: str | None = xsd("description", Text(32))
    version: int | None = xsd("version", Integer(UINT16))
    last_update_time: int | None = xsd("lastUpdateTime", Integer(INT64))
    reading_sets: tuple[MirrorReadingSet, ...] = xsd("MirrorReadingSet", Many(MirrorReadingSet))
    next_update_time: int | None = xsd("nextUpdateTime", Integer(INT64))
    reading: Reading | None = xsd("Reading", One(Reading))
    reading_type: ReadingType | None = xsd("ReadingType", One(ReadingType))


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorUsagePoint(Record):
    """A device's mirror: ``device_lfdi`` is the device measured (not always the poster)."""

    TAG: ClassVar[str] = "MirrorUsagePoint"

    mrid: str = xsd("mRID", MRID, required=True)
    description: str | None = xsd("description", Text(32))
    version: int | None = xsd("version", Integer(UINT16))
    role_flags: int = xsd("roleFlags", Bitmap(16), required=True)
    service_category_kind: int = xsd("serviceCategoryKind", Integer(UINT8), required=True)
    status: int = xsd("status", Integer(UINT8), required=True)
    device_lfdi: str = xsd("deviceLFDI", LFDI, required=True)
    meter_readings: tuple[MirrorMeterReading, ...] = xsd(
        "MirrorMeterReading", Many(MirrorMeterReading)
    )
    post_rate: int | None = xsd("postRate", Integer(UINT32))


# -- parsers (parse the body with ``xmlio.parse`` first; they raise XmlRejected) ------------


def parse_mirror_usage_point(element: etree._Element) -> MirrorUsagePoint:
    return MirrorUsagePoint.parse(element)


def parse_mirror_meter_reading(element: etree._Element) -> MirrorMeterReading:
    return MirrorMeterReading.parse(element)


def parse_mirror_meter_readings(element: etree._Element) -> tuple[MirrorMeterReading, ...]:
    """What a device POSTs to its MUP: one MirrorMeterReading or a MirrorMeterReadingList
    (whose all/results attributes are not checked: only the readings matter)."""
    if element.tag == f"{{{NS}}}MirrorMeterReadingList":
        return tuple(
            MirrorMeterReading.read(child)
            for child in element.findall(f"{{{NS}}}MirrorMeterReading")
        )
    if element.tag == f"{{{NS}}}MirrorMeterReading":
        return (MirrorMeterReading.read(element),)
    raise XmlRejected(
        "expected a MirrorMeterReading or a MirrorMeterReadingList, "
        f"not {etree.QName(element).localname}"
    )


# -- builders (ValueError on values the XSD forbids) ---------------------------------------

MIRROR_USAGE_POINT_LIST = ListShape(
    "MirrorUsagePointList", "MirrorUsagePoint", subscribable=False, poll_rate=True
)
MIRROR_METER_READING_LIST = ListShape(
    "MirrorMeterReadingList", "MirrorMeterReading", subscribable=False, poll_rate=False
)


def mirror_usage_point(*, href: str, value: MirrorUsagePoint) -> etree._Element:
    return value.render(href=href)


def mirror_meter_reading(*, href: str, value: MirrorMeterReading) -> etree._Element:
    return value.render(href=href)


def mirror_usage_point_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
) -> etree._Element:
    return build_list(
        MIRROR_USAGE_POINT_LIST,
        href=href,
        all=all,
        results=results,
        items=items,
        poll_rate=poll_rate,
    )


def mirror_meter_reading_list(
    *, href: str, all: int, results: int, items: Sequence[etree._Element]
) -> etree._Element:
    return build_list(MIRROR_METER_READING_LIST, href=href, all=all, results=results, items=items)


# -- telemetry -----------------------------------------------------------------------------


def normalize(
    *,
    lfdi: str,
    mup: str,
    meter_reading: MirrorMeterReading,
    reading_type: ReadingType | None = None,
) -> list[dict[str, Any]]:
    """Flat telemetry records, one per mirrored reading that has a value.

    ``reading_type`` is the one the server remembered for this mRID when the body has none
    (the body's own wins); with neither, the quantity is the generic ``uom0``. ``lfdi`` and
    ``mup`` identify the source as the caller sees it (usually the MUP's deviceLFDI and its
    mRID or id). Each record::

        lfdi, mup, mmr (mRID), quantity, unit, value (scaled float),
        raw {value, powerOfTenMultiplier}, time, interval, phase, dataQualifier,
        flowDirection, kind, uom, qualityFlags

    ``time`` is the reading's timePeriod start, else its set's, else the MMR's
    lastUpdateTime (else None); ``interval`` the reading's duration, else the ReadingType's
    intervalLength (else None).
    """
    kind = meter_reading.reading_type or reading_type or ReadingType()
    quantity = kind.quantity
    power = kind.power_of_ten_multiplier or 0
    sourced: list[tuple[Reading, DateTimeInterval | None]] = []
    if meter_reading.reading is not None:
        sourced.append((meter_reading.reading, None))
    for reading_set in meter_reading.reading_sets:
        sourced.extend((reading, reading_set.time_period) for reading in reading_set.readings)
    records = []
    for reading, set_period in sourced:
        if reading.value is None:
            continue  # nothing was measured: a Reading's value is optional in the XSD
        period = reading.time_period or set_period
        records.append(
            {
                "lfdi": lfdi,
                "mup": mup,
                "mmr": meter_reading.mrid,
                "quantity": quantity.name,
                "unit": quantity.unit,
                "value": scale(reading.value, power),
                "raw": {"value": reading.value, "powerOfTenMultiplier": power},
                "time": period.start if period is not None else meter_reading.last_update_time,
                "interval": (
                    reading.time_period.duration
                    if reading.time_period is not None
                    else kind.interval_length
                ),
                "phase": kind.phase,
                "dataQualifier": kind.data_qualifier,
                "flowDirection": kind.flow_direction,
                "kind": kind.kind,
                "uom": kind.uom,
                "qualityFlags": reading.quality_flags,
            }
        )
    return records


def normalize_usage_point(value: MirrorUsagePoint) -> list[dict[str, Any]]:
    """``normalize`` for every reading of a MirrorUsagePoint body, keyed by its deviceLFDI
    and mRID."""
    return [
        record
        for meter_reading in value.meter_readings
        for record in normalize(lfdi=value.device_lfdi, mup=value.mrid, meter_reading=meter_reading)
    ]


__all__ = [
    "MIRROR_METER_READING_LIST",
    "MIRROR_USAGE_POINT_LIST",
    "MirrorMeterReading",
    "MirrorReadingSet",
    "MirrorUsagePoint",
    "Reading",
    "ReadingType",
    "UnitValue",
    "mirror_meter_reading",
    "mirror_meter_reading_list",
    "mirror_usage_point",
    "mirror_usage_point_list",
    "normalize",
    "normalize_usage_point",
    "parse_mirror_meter_reading",
    "parse_mirror_meter_readings",
    "parse_mirror_usage_point",
]
