"""DER reporting (gateway/sep_report.py): every resource renders XSD-valid (minimal and full),
parses back to what was rendered, survives JSON, and bad device bodies are refused with a
reason. Mirror metering and subscriptions/responses have their own files (test_sep_mirror.py,
test_sep_notify.py); the telemetry tables are pinned in test_telemetry.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway import sep_report
from gateway.sep_mirror import (
    MirrorMeterReading,
    MirrorReadingSet,
    MirrorUsagePoint,
    Reading,
    ReadingType,
    UnitValue,
)
from gateway.sep_notify import Condition, Response, Subscription
from gateway.sep_record import DateTimeInterval, Record, elements
from gateway.sep_report import (
    DERAvailability,
    DERCapability,
    DERSettings,
    DERStatus,
    FixedPoint,
    LogEvent,
    UnsignedFixedPoint,
)
from gateway.xmlio import AUS_NS, NS, XmlRejected, parse, serialize
from tests.gateway.record_samples import records, sample
from tests.xsd import assert_valid

RESOURCES: dict[type[Record], tuple[Callable[..., etree._Element], Callable[..., Any]]] = {
    DERCapability: (sep_report.der_capability, sep_report.parse_der_capability),
    DERSettings: (sep_report.der_settings, sep_report.parse_der_settings),
    DERStatus: (sep_report.der_status, sep_report.parse_der_status),
    DERAvailability: (sep_report.der_availability, sep_report.parse_der_availability),
    LogEvent: (sep_report.log_event, sep_report.parse_log_event),
}
NAMES = sorted(RESOURCES, key=lambda cls: cls.__name__)
ALL_RECORDS = (
    *NAMES,
    FixedPoint,
    UnsignedFixedPoint,
    sep_report.PowerFactor,
    sep_report.ConnectStatus,
    sep_report.StatusCode,
    sep_report.StateOfCharge,
    sep_report.ManufacturerStatus,
    DateTimeInterval,
    MirrorUsagePoint,
    MirrorMeterReading,
    MirrorReadingSet,
    Reading,
    ReadingType,
    UnitValue,
    Subscription,
    Condition,
    Response,
)


def through_the_wire(element: etree._Element) -> etree._Element:
    """Serialize, check against the XSD (CSIP-AUS's, which extends the 2018 one, when the
    record carries csipaus elements), and parse back with our hardened parser."""
    body = serialize(element)
    aus = any(etree.QName(child).namespace == AUS_NS for child in element.iter())
    assert_valid(body, schema_name="csipaus-core.xsd" if aus else "sep2_schema_2018.xsd")
    return parse(body)


def children(element: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in element]


def body(tag: str, inner: str) -> etree._Element:
    return parse(f'<{tag} xmlns="{NS}">{inner}</{tag}>'.encode())


# -- declarations --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_RECORDS, ids=lambda cls: cls.__name__)
def test_every_field_is_declared_as_an_xsd_element(cls: type[Record]) -> None:
    assert len({item.name for item in elements(cls)}) == len(elements(cls))


# -- render and parse ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", NAMES, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_resource_renders_valid_and_parses_back(cls: type[Record], full: bool) -> None:
    build, parse_back = RESOURCES[cls]
    value = sample(cls, full=full)
    element = through_the_wire(build(href="/edev/1/der/1/x", value=value))
    assert element.tag == f"{{{NS}}}{cls.TAG}"
    assert element.get("href") == "/edev/1/der/1/x"
    assert parse_back(element) == value


@pytest.mark.parametrize("cls", NAMES, ids=lambda cls: cls.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_valid_resource_round_trips_through_xml_and_json(
    cls: type[Record], data: st.DataObject
) -> None:
    build, parse_back = RESOURCES[cls]
    value = data.draw(records(cls))
    assert parse_back(through_the_wire(build(href="/r", value=value))) == value
    stored = json.loads(json.dumps(value.to_json()))
    assert type(value).from_json(stored) == value


def test_capability_children_follow_the_xsd_sequence() -> None:
    element = sep_report.der_capability(href="/c", value=sample(DERCapability, full=True))
    names = children(element)
    assert names[0] == "modesSupported" and names[-2:] == ["type", "doeModesSupported"]
    assert names.index("rtgMaxVarNeg") < names.index("rtgMaxW") < names.index("rtgMaxWh")
    assert children(element.find(f"{{{NS}}}rtgMaxW")) == ["multiplier", "value"]
    assert children(element.find(f"{{{NS}}}rtgMinPFOverExcited")) == [
        "displacement",
        "multiplier",
    ]


def test_status_values_put_their_date_time_first() -> None:
    element = sep_report.der_status(href="/s", value=sample(DERStatus, full=True))
    for status in element:
        if len(status):
            assert children(status) == ["dateTime", "value"]


def test_mode_bitmaps_render_in_whole_bytes_without_leading_zeros() -> None:
    value = DERCapability(
        modes_supported=0x500040, rtg_max_w=FixedPoint(multiplier=3, value=5), type=83
    )
    element = sep_report.der_capability(href="/c", value=value)
    assert element.findtext(f"{{{NS}}}modesSupported") == "500040"
    assert value.to_json() == {
        "modesSupported": "500040",
        "rtgMaxW": {"multiplier": 3, "value": 5},
        "type": 83,
    }
    assert value.rtg_max_w.scaled == 5000.0


def test_der_status_json_keeps_element_names_and_pairs() -> None:
    status = DERStatus(
        reading_time=1_700_000_000,
        gen_connect_status=sep_report.ConnectStatus(date_time=1_700_000_000, value=0b111),
        state_of_charge_status=sep_report.StateOfCharge(date_time=1_700_000_000, value=8550),
    )
    assert status.to_json() == {
        "genConnectStatus": {"dateTime": 1_700_000_000, "value": "07"},
        "readingTime": 1_700_000_000,
        "stateOfChargeStatus": {"dateTime": 1_700_000_000, "value": 8550},
    }


def test_a_real_device_capability_body_is_read() -> None:
    element = body(
        "DERCapability",
        "<modesSupported>00500040</modesSupported>"
        "<rtgMaxVA><multiplier>0</multiplier><value>5000</value></rtgMaxVA>"
        "<rtgMaxVar><multiplier>0</multiplier><value>3000</value></rtgMaxVar>"
        "<rtgMaxW><multiplier>0</multiplier><value>5000</value></rtgMaxW>"
        "<rtgMinPFOverExcited><displacement>80</displacement><multiplier>-2</multiplier>"
        "</rtgMinPFOverExcited><rtgVNom><multiplier>0</multiplier><value>230</value></rtgVNom>"
        "<type>4</type>",
    )
    capability = sep_report.parse_der_capability(element)
    assert capability.rtg_max_w == FixedPoint(multiplier=0, value=5000)
    assert capability.rtg_v_nom == UnsignedFixedPoint(multiplier=0, value=230)
    assert capability.modes_supported == 0x500040 and capability.type == 4


# -- refusals ------------------------------------------------------------------------------

W = "<rtgMaxW><multiplier>0</multiplier><value>5000</value></rtgMaxW>"


@pytest.mark.parametrize(
    ("tag", "inner", "reason"),
    [
        (
            "DERCapability",
            "<modesSupported>01</modesSupported><type>4</type>",
            "rtgMaxW is missing",
        ),
        (
            "DERCapability",
            "<modesSupported>01</modesSupported>"
            "<rtgMaxW><multiplier>0</multiplier><value>40000</value></rtgMaxW><type>4</type>",
            "rtgMaxW/value must be an integer in -32768..32767",
        ),
        ("DERCapability", f"<modesSupported>XYZ</modesSupported>{W}<type>4</type>", "hexBinary"),
        (
            "DERCapability",
            f"<modesSupported>01</modesSupported>{W}{W}<type>4</type>",
            "appears more than once",
        ),
        ("DERCapability", f"<modesSupported>01</modesSupported>{W}<type>256</type>", "0..255"),
        (
            "DERCapability",
            "<modesSupported>01</modesSupported><rtgMaxW>5000</rtgMaxW><type>4</type>",
            "rtgMaxW/multiplier is missing",
        ),
        (
            "DERSettings",
            "<setGradW>0</setGradW><updatedTime>0</updatedTime>",
            "setMaxW is missing",
        ),
        (
            "DERStatus",
            "<readingTime>0</readingTime><stateOfChargeStatus><dateTime>0</dateTime>"
            "<value>10001</value></stateOfChargeStatus>",
            "0..10000",
        ),
        (
            "DERStatus",
            "<manufacturerStatus><dateTime>0</dateTime><value>TOOLONG</value>"
            "</manufacturerStatus><readingTime>0</readingTime>",
            "limited to 6 characters",
        ),
        (
            "DERStatus",
            "<genConnectStatus><value>01</value></genConnectStatus><readingTime>0</readingTime>",
            "genConnectStatus/dateTime is missing",
        ),
        ("DERAvailability", "<reservePercent>50</reservePercent>", "readingTime is missing"),
        (
            "LogEvent",
            "<createdDateTime>0</createdDateTime><details>" + "x" * 33 + "</details>"
            "<functionSet>11</functionSet><logEventCode>0</logEventCode><logEventID>1</logEventID>"
            "<logEventPEN>40732</logEventPEN><profileID>2</profileID>",
            "limited to 32 characters",
        ),
        ("LogEvent", "<createdDateTime>soon</createdDateTime>", "must be an integer"),
    ],
)
def test_bad_reports_are_refused_with_a_reason(tag: str, inner: str, reason: str) -> None:
    parser = RESOURCES[getattr(sep_report, tag)][1]
    with pytest.raises(XmlRejected, match=reason):
        parser(body(tag, inner))


def test_a_report_of_another_resource_is_refused() -> None:
    with pytest.raises(XmlRejected, match="expected a DERStatus, not DERSettings"):
        sep_report.parse_der_status(body("DERSettings", ""))


def test_builders_refuse_values_the_xsd_forbids() -> None:
    with pytest.raises(ValueError, match=r"rtgMaxW.value must be an integer"):
        sep_report.der_capability(
            href="/c",
            value=DERCapability(
                modes_supported=1, rtg_max_w=FixedPoint(multiplier=0, value=40000), type=4
            ),
        )
    with pytest.raises(ValueError, match="not a SubscribableResource"):
        sample(DERCapability, full=False).render(href="/c", subscribable=1)
    with pytest.raises(ValueError, match=r"0\.\.4294967295"):
        sep_report.der_capability(
            href="/c",
            value=DERCapability(
                modes_supported=2**32, rtg_max_w=FixedPoint(multiplier=0, value=1), type=4
            ),
        )


def test_stored_json_is_checked_when_loaded() -> None:
    stored = sample(DERSettings, full=False).to_json()
    with pytest.raises(ValueError, match="unknown keys"):
        DERSettings.from_json({**stored, "setMaxWatts": 5})
    with pytest.raises(ValueError, match="setGradW is required"):
        DERSettings.from_json({key: value for key, value in stored.items() if key != "setGradW"})
    with pytest.raises(ValueError, match="setMaxW must be an object"):
        DERSettings.from_json({**stored, "setMaxW": 5000})
    with pytest.raises(ValueError, match="modesEnabled must be hex text or an integer"):
        DERSettings.from_json({**stored, "modesEnabled": "0x1G"})
    assert DERSettings.from_json({**stored, "modesEnabled": "0001"}).modes_enabled == 1


# -- DER, lists ----------------------------------------------------------------------------


def test_der_links_render_in_xsd_order() -> None:
    element = through_the_wire(
        sep_report.der(
            href="/edev/1/der/1",
            capability_href="/edev/1/der/1/dercap",
            settings_href="/edev/1/der/1/derg",
            status_href="/edev/1/der/1/ders",
            availability_href="/edev/1/der/1/dera",
            current_program_href="/derp/1",
            associated_program_list_href="/edev/1/der/1/derp",
            associated_program_list_all=2,
            associated_usage_point_href="/mup/1",
            subscribable=1,
        )
    )
    assert children(element) == [
        "AssociatedDERProgramListLink",
        "AssociatedUsagePointLink",
        "CurrentDERProgramLink",
        "DERAvailabilityLink",
        "DERCapabilityLink",
        "DERSettingsLink",
        "DERStatusLink",
    ]


def test_a_der_with_no_links_is_valid() -> None:
    element = sep_report.der(
        href="/edev/1/der/1",
        capability_href=None,
        settings_href=None,
        status_href=None,
        availability_href=None,
        current_program_href=None,
        associated_program_list_href=None,
        associated_program_list_all=None,
    )
    assert children(through_the_wire(element)) == []


def test_der_list_has_poll_rate_but_is_not_subscribable() -> None:
    items = [
        sep_report.der(
            href=f"/edev/1/der/{index}",
            capability_href=f"/edev/1/der/{index}/dercap",
            settings_href=None,
            status_href=None,
            availability_href=None,
            current_program_href=None,
            associated_program_list_href=None,
            associated_program_list_all=None,
        )
        for index in (1, 2)
    ]
    element = sep_report.der_list(href="/edev/1/der", all=2, results=2, items=items, poll_rate=300)
    assert through_the_wire(element).get("pollRate") == "300"
    assert sep_report.DER_LIST.subscribable is False
    empty = sep_report.der_list(href="/edev/1/der", all=0, results=0, items=(), poll_rate=None)
    through_the_wire(empty)


def test_log_event_list_is_valid_with_items_and_attributes() -> None:
    items = [
        sep_report.log_event(href=f"/edev/1/lel/{index}", value=sample(LogEvent, full=index == 2))
        for index in (1, 2)
    ]
    element = sep_report.log_event_list(
        href="/edev/1/lel", all=5, results=2, items=items, poll_rate=60, subscribable=1
    )
    assert children(through_the_wire(element)) == ["LogEvent", "LogEvent"]
    with pytest.raises(ValueError, match="holds LogEvent"):
        sep_report.log_event_list(href="/l", all=1, results=1, items=[etree.Element("x")])
