"""Metering mirror (gateway/sep_mirror.py): the bodies a CSIP device posts are read, render back
XSD-valid, survive JSON, and normalize() turns them into the telemetry records a data team
reads."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway import sep_mirror
from gateway.sep_base import build_list
from gateway.sep_mirror import (
    MirrorMeterReading,
    MirrorReadingSet,
    MirrorUsagePoint,
    Reading,
    ReadingType,
    normalize,
)
from gateway.sep_record import DateTimeInterval
from gateway.xmlio import NS, XmlRejected, parse, serialize
from tests.gateway.record_samples import records, sample
from tests.xsd import assert_valid

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"

# A CSIP DER creating its mirror: one MMR per quantity, ReadingType only (no readings yet).
CREATE_MUP = f"""<MirrorUsagePoint xmlns="{NS}">
  <mRID>0600006CC8</mRID>
  <description>DER site</description>
  <roleFlags>49</roleFlags>
  <serviceCategoryKind>0</serviceCategoryKind>
  <status>1</status>
  <deviceLFDI>{LFDI}</deviceLFDI>
  <MirrorMeterReading>
    <mRID>0700006CC8</mRID>
    <description>Average W, phase A</description>
    <ReadingType>
      <accumulationBehaviour>12</accumulationBehaviour>
      <commodity>1</commodity>
      <dataQualifier>2</dataQualifier>
      <intervalLength>300</intervalLength>
      <kind>37</kind>
      <phase>128</phase>
      <powerOfTenMultiplier>-1</powerOfTenMultiplier>
      <uom>38</uom>
    </ReadingType>
  </MirrorMeterReading>
  <postRate>300</postRate>
</MirrorUsagePoint>""".encode()

# Five minutes later: the readings, without the ReadingType, in a MirrorMeterReadingList.
POST_READINGS = f"""<MirrorMeterReadingList xmlns="{NS}" all="1" results="1">
  <MirrorMeterReading>
    <mRID>0700006CC8</mRID>
    <lastUpdateTime>1700000300</lastUpdateTime>
    <MirrorReadingSet>
      <mRID>0800006CC8</mRID>
      <timePeriod><duration>300</duration><start>1700000000</start></timePeriod>
      <Reading>
        <qualityFlags>01</qualityFlags>
        <timePeriod><duration>300</duration><start>1700000000</start></timePeriod>
        <value>12345</value>
        <localID>01</localID>
      </Reading>
    </MirrorReadingSet>
    <nextUpdateTime>1700000600</nextUpdateTime>
  </MirrorMeterReading>
</MirrorMeterReadingList>""".encode()


def through_the_wire(element: etree._Element) -> etree._Element:
    body = serialize(element)
    assert_valid(body)
    return parse(body)


# -- render and parse ----------------------------------------------------------------------


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_mirror_usage_point_renders_valid_and_parses_back(full: bool) -> None:
    value = sample(MirrorUsagePoint, full=full)
    element = through_the_wire(sep_mirror.mirror_usage_point(href="/mup/1", value=value))
    assert sep_mirror.parse_mirror_usage_point(element) == value


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_mirror_meter_reading_renders_valid_and_parses_back(full: bool) -> None:
    value = sample(MirrorMeterReading, full=full)
    element = through_the_wire(sep_mirror.mirror_meter_reading(href="/mup/1/mr/1", value=value))
    assert sep_mirror.parse_mirror_meter_reading(element) == value
    assert sep_mirror.parse_mirror_meter_readings(element) == (value,)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records(MirrorUsagePoint))
def test_any_mirror_usage_point_round_trips_through_xml_and_json(value: MirrorUsagePoint) -> None:
    element = through_the_wire(sep_mirror.mirror_usage_point(href="/mup/1", value=value))
    assert sep_mirror.parse_mirror_usage_point(element) == value
    assert MirrorUsagePoint.from_json(json.loads(json.dumps(value.to_json()))) == value


def test_a_device_creating_its_mirror_is_read() -> None:
    mup = sep_mirror.parse_mirror_usage_point(parse(CREATE_MUP))
    assert (mup.mrid, mup.device_lfdi, mup.role_flags, mup.post_rate) == (
        "0600006CC8",
        LFDI,
        0x49,
        300,
    )
    (meter_reading,) = mup.meter_readings
    assert meter_reading.reading_type is not None
    assert meter_reading.reading_type.quantity.name == "active_power_avg_phase_a"
    assert (
        sep_mirror.mirror_usage_point(href="/mup/1", value=mup).findtext(f"{{{NS}}}roleFlags")
        == "0049"
    )


def test_a_reading_list_and_a_single_reading_are_both_accepted() -> None:
    readings = sep_mirror.parse_mirror_meter_readings(parse(POST_READINGS))
    assert [reading.mrid for reading in readings] == ["0700006CC8"]
    (reading_set,) = readings[0].reading_sets
    assert reading_set.readings[0].value == 12345
    assert reading_set.readings[0].local_id == "01"


def test_mirror_meter_reading_children_follow_the_xsd_sequence() -> None:
    element = sep_mirror.mirror_meter_reading(
        href="/m", value=sample(MirrorMeterReading, full=True)
    )
    names = [etree.QName(child).localname for child in element]
    assert names == [
        "mRID",
        "description",
        "version",
        "lastUpdateTime",
        "MirrorReadingSet",
        "MirrorReadingSet",
        "nextUpdateTime",
        "Reading",
        "ReadingType",
    ]


def test_lists_render_valid_and_only_the_usage_point_list_has_poll_rate() -> None:
    mups = [
        sep_mirror.mirror_usage_point(href="/mup/1", value=sample(MirrorUsagePoint, full=False))
    ]
    through_the_wire(
        sep_mirror.mirror_usage_point_list(href="/mup", all=1, results=1, items=mups, poll_rate=900)
    )
    readings = [
        sep_mirror.mirror_meter_reading(
            href="/mup/1/mr/1", value=sample(MirrorMeterReading, full=True)
        )
    ]
    through_the_wire(
        sep_mirror.mirror_meter_reading_list(href="/mup/1/mr", all=3, results=1, items=readings)
    )
    with pytest.raises(ValueError, match="pollRate"):
        build_list(
            sep_mirror.MIRROR_METER_READING_LIST, href="/x", all=0, results=0, items=(), poll_rate=1
        )


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (
            b"<MirrorUsagePoint><mRID>01</mRID><roleFlags>49</roleFlags>"
            b"<serviceCategoryKind>0</serviceCategoryKind><status>1</status></MirrorUsagePoint>",
            "deviceLFDI is missing",
        ),
        (
            b"<MirrorMeterReading><mRID>01</mRID><MirrorReadingSet><mRID>02</mRID>"
            b"</MirrorReadingSet></MirrorMeterReading>",
            "MirrorReadingSet/timePeriod is missing",
        ),
        (
            b"<MirrorMeterReading><mRID>01</mRID><Reading><value>140737488355328</value>"
            b"</Reading></MirrorMeterReading>",
            "Reading/value must be an integer",
        ),
        (
            b"<MirrorMeterReading><mRID>01</mRID><ReadingType><uom>W</uom></ReadingType>"
            b"</MirrorMeterReading>",
            "ReadingType/uom must be an integer",
        ),
        (
            b"<MirrorMeterReading><mRID>" + b"0" * 34 + b"</mRID></MirrorMeterReading>",
            "mRID must be hexBinary of at most 32 digits",
        ),
        (b"<EndDevice><sFDI>1</sFDI></EndDevice>", "expected a MirrorMeterReading or a"),
    ],
)
def test_bad_mirror_bodies_are_refused_with_a_reason(xml: bytes, reason: str) -> None:
    element = parse(xml.replace(b">", f' xmlns="{NS}">'.encode(), 1))
    with pytest.raises(XmlRejected, match=reason):
        if element.tag.endswith("MirrorUsagePoint"):
            sep_mirror.parse_mirror_usage_point(element)
        else:
            sep_mirror.parse_mirror_meter_readings(element)


# -- normalize -----------------------------------------------------------------------------


def test_average_active_power_on_phase_a_becomes_one_telemetry_record() -> None:
    mup = sep_mirror.parse_mirror_usage_point(parse(CREATE_MUP))
    remembered = mup.meter_readings[0].reading_type  # what the server stored at creation
    (posted,) = sep_mirror.parse_mirror_meter_readings(parse(POST_READINGS))
    records = normalize(lfdi=LFDI, mup="1", meter_reading=posted, reading_type=remembered)
    assert records == [
        {
            "lfdi": LFDI,
            "mup": "1",
            "mmr": "0700006CC8",
            "quantity": "active_power_avg_phase_a",
            "unit": "W",
            "value": 1234.5,
            "raw": {"value": 12345, "powerOfTenMultiplier": -1},
            "time": 1_700_000_000,
            "interval": 300,
            "phase": 128,
            "dataQualifier": 2,
            "flowDirection": None,
            "kind": 37,
            "uom": 38,
            "qualityFlags": 1,
        }
    ]
    assert json.loads(json.dumps(records)) == records


def test_times_fall_back_to_the_set_then_to_the_last_update() -> None:
    kind = ReadingType(
        uom=29, data_qualifier=8, phase=129, interval_length=60, power_of_ten_multiplier=-1
    )
    meter_reading = MirrorMeterReading(
        mrid="0A",
        last_update_time=1_700_000_900,
        reading=Reading(value=2301),
        reading_sets=(
            MirrorReadingSet(
                mrid="0B",
                time_period=DateTimeInterval(duration=600, start=1_700_000_000),
                readings=(Reading(value=2405), Reading()),
            ),
        ),
        reading_type=kind,
    )
    records = normalize(lfdi=LFDI, mup="1", meter_reading=meter_reading)
    assert [(r["quantity"], r["value"], r["time"], r["interval"]) for r in records] == [
        ("voltage_max_phase_an", 230.1, 1_700_000_900, 60),
        ("voltage_max_phase_an", 240.5, 1_700_000_000, 60),
    ]  # the valueless reading is skipped


def test_the_body_reading_type_wins_and_without_one_the_quantity_is_generic() -> None:
    body_kind = ReadingType(uom=33)
    meter_reading = MirrorMeterReading(
        mrid="0A", reading=Reading(value=5000), reading_type=body_kind
    )
    remembered = ReadingType(uom=38)
    (record,) = normalize(lfdi=LFDI, mup="1", meter_reading=meter_reading, reading_type=remembered)
    assert (record["quantity"], record["unit"]) == ("frequency", "Hz")
    bare = MirrorMeterReading(mrid="0A", reading=Reading(value=7))
    (record,) = normalize(lfdi=LFDI, mup="1", meter_reading=bare)
    assert (record["quantity"], record["value"], record["time"], record["interval"]) == (
        "uom0",
        7.0,
        None,
        None,
    )


def test_a_whole_usage_point_is_normalized_with_its_own_identity() -> None:
    mup = MirrorUsagePoint(
        mrid="0C",
        role_flags=0x49,
        service_category_kind=0,
        status=1,
        device_lfdi=LFDI,
        meter_readings=(
            MirrorMeterReading(
                mrid="01", reading=Reading(value=1), reading_type=ReadingType(uom=38)
            ),
            MirrorMeterReading(
                mrid="02", reading=Reading(value=2), reading_type=ReadingType(uom=63)
            ),
        ),
    )
    records = sep_mirror.normalize_usage_point(mup)
    assert [(r["lfdi"], r["mup"], r["mmr"], r["quantity"]) for r in records] == [
        (LFDI, "0C", "01", "active_power"),
        (LFDI, "0C", "02", "reactive_power"),
    ]


@given(st.integers(-(2**47), 2**47 - 1), st.integers(-9, 9))
def test_normalize_keeps_the_raw_value_next_to_the_scaled_one(value: int, power: int) -> None:
    meter_reading = MirrorMeterReading(
        mrid="01",
        reading=Reading(value=value),
        reading_type=ReadingType(uom=38, power_of_ten_multiplier=power),
    )
    (record,) = normalize(lfdi=LFDI, mup="1", meter_reading=meter_reading)
    assert record["raw"] == {"value": value, "powerOfTenMultiplier": power}
    assert record["value"] == pytest.approx(value * 10.0**power, rel=1e-12)
