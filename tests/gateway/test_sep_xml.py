"""The 2030.5 XML codec: every builder's output is valid against the 2018 XSD (which proves the
element order), every mode of the kernel's catalog renders, EndDevice round-trips, and hostile
bodies are refused quickly with a reason a client can read."""

from __future__ import annotations

import time as clock
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from engine.kernel.model import Curve, DERControl
from engine.kernel.modes import (
    AUS_MODES,
    CURVE_TYPES,
    DEFAULT_ONLY_SETTINGS,
    MODES,
    Kind,
    ModeValue,
    freeze,
)
from gateway import sep, sep_der
from gateway.xmlio import NS, XmlRejected, parse, serialize
from tests.xsd import assert_valid

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
RENDERED_MODES = tuple(name for name in MODES if name not in AUS_MODES)


def curve_href(mrid: str) -> str:
    return f"/derp/1/dc/{mrid}"


def children(element: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in element]


def roundtrip(element: etree._Element) -> etree._Element:
    """Through bytes and our own hardened parser, as a client would see it."""
    body = serialize(element)
    assert not body.startswith(b"<?xml")  # no declaration: clients may parse decoded text
    parsed = parse(body)
    assert_valid(body)
    return parsed


# -- builders: minimal and full ------------------------------------------------------------


def control(**overrides: Any) -> etree._Element:
    arguments: dict[str, Any] = {
        "href": "/derp/1/derc/A1",
        "mrid": "A1",
        "description": None,
        "creation_time": 1_700_000_000,
        "current_status": 0,
        "status_time": 1_700_000_000,
        "potentially_superseded": False,
        "potentially_superseded_time": None,
        "reason": None,
        "start": 1_700_000_600,
        "duration": 300,
        "randomize_start": None,
        "randomize_duration": None,
        "reply_to": None,
        "response_required": None,
        "device_category": None,
        "base": (("opModMaxLimW", 5000),),
        "ramp_tms": None,
        "curve_href": curve_href,
    }
    arguments.update(overrides)
    return sep_der.der_control(**arguments)


FULL_CONTROL = {
    "description": "evening peak",
    "potentially_superseded": True,
    "potentially_superseded_time": 1_700_000_100,
    "reason": "superseded by a higher-primacy program",
    "randomize_start": -60,
    "randomize_duration": 120,
    "reply_to": "/rsps/1/rsp",
    "response_required": 3,
    "device_category": 0x40000,
    "base": (
        ("opModTargetW", (("value", 500), ("multiplier", 1))),
        ("opModConnect", True),
        ("opModVoltVar", (("curve", "C1"),)),
    ),
    "ramp_tms": 100,
    "subscribable": 1,
}

BUILDERS: dict[str, tuple[Callable[[], etree._Element], Callable[[], etree._Element]]] = {
    "DeviceCapability": (
        lambda: sep.device_capability(
            href="/dcap",
            poll_rate=900,
            time_href="/tm",
            end_device_list_href="/edev",
            end_device_list_all=1,
        ),
        lambda: sep.device_capability(
            href="/dcap",
            poll_rate=300,
            time_href="/tm",
            end_device_list_href="/edev",
            end_device_list_all=1,
            mirror_usage_point_list_href="/mup",
            mirror_usage_point_list_all=0,
            self_device_href="/sdev",
            response_set_list_href="/rsps",
            response_set_list_all=1,
        ),
    ),
    "Time": (
        lambda: sep.time(
            href="/tm",
            current_time=1_700_000_000,
            dst_end_time=0,
            dst_offset=0,
            dst_start_time=0,
            local_time=None,
            quality=7,
            tz_offset=0,
            poll_rate=None,
        ),
        lambda: sep.time(
            href="/tm",
            current_time=1_700_000_000,
            dst_end_time=1_712_400_000,
            dst_offset=3600,
            dst_start_time=1_696_089_600,
            local_time=1_700_036_000,
            quality=3,
            tz_offset=36000,
            poll_rate=900,
        ),
    ),
    "EndDevice": (
        lambda: sep.end_device(
            href="/edev/1",
            lfdi=LFDI,
            sfdi=167261211391,
            changed_time=0,
            enabled=True,
            device_category=None,
            fsa_list_href="/edev/1/fsa",
            fsa_list_all=0,
            registration_href="/edev/1/rg",
        ),
        lambda: sep.end_device(
            href="/edev/1",
            lfdi=LFDI.lower(),
            sfdi=167261211391,
            changed_time=1_700_000_000,
            enabled=False,
            device_category=0x40000,
            fsa_list_href="/edev/1/fsa",
            fsa_list_all=2,
            registration_href="/edev/1/rg",
            subscribable=1,
            der_list_href="/edev/1/der",
            der_list_all=1,
            log_event_list_href="/edev/1/lel",
            log_event_list_all=0,
            post_rate=300,
            subscription_list_href="/edev/1/sub",
            subscription_list_all=0,
        ),
    ),
    "Registration": (
        lambda: sep.registration(href="/edev/1/rg", date_time_registered=0, pin=111115),
        lambda: sep.registration(
            href="/edev/1/rg", date_time_registered=1_700_000_000, pin=111115, poll_rate=86400
        ),
    ),
    "FunctionSetAssignments": (
        lambda: sep.function_set_assignments(
            href="/edev/1/fsa/1",
            mrid="0F",
            description=None,
            der_program_list_href="/edev/1/fsa/1/derp",
            der_program_list_all=0,
        ),
        lambda: sep.function_set_assignments(
            href="/edev/1/fsa/1",
            mrid="00112233445566778899AABBCCDDEEFF",
            description="x" * 32,
            der_program_list_href="/edev/1/fsa/1/derp",
            der_program_list_all=3,
            time_href="/tm",
            subscribable=1,
        ),
    ),
    "DERProgram": (
        lambda: sep_der.der_program(
            href="/derp/1",
            mrid="B1",
            description=None,
            primacy=0,
            active_der_control_list_href="/derp/1/actderc",
            active_der_control_list_all=0,
            default_der_control_href=None,
            der_control_list_href="/derp/1/derc",
            der_control_list_all=0,
            der_curve_list_href="/derp/1/dc",
            der_curve_list_all=0,
        ),
        lambda: sep_der.der_program(
            href="/derp/1",
            mrid="B1",
            description="network support",
            primacy=255,
            active_der_control_list_href="/derp/1/actderc",
            active_der_control_list_all=1,
            default_der_control_href="/derp/1/dderc",
            der_control_list_href="/derp/1/derc",
            der_control_list_all=24,
            der_curve_list_href="/derp/1/dc",
            der_curve_list_all=2,
            subscribable=1,
        ),
    ),
    "DERControl": (control, lambda: control(**FULL_CONTROL)),
    "DefaultDERControl": (
        lambda: sep_der.default_der_control(
            href="/derp/1/dderc",
            mrid="D1",
            description=None,
            items=(),
            ramp_tms=None,
            curve_href=curve_href,
        ),
        lambda: sep_der.default_der_control(
            href="/derp/1/dderc",
            mrid="D1",
            description="site default",
            items=(
                ("setSoftGradW", 10),
                ("opModMaxLimW", 10000),
                ("setESDelay", 300),
                ("opModWattPF", (("curve", "C2"),)),
                ("setGradW", 27),
            ),
            ramp_tms=60,
            curve_href=curve_href,
            subscribable=1,
        ),
    ),
    "DERCurve": (
        lambda: sep_der.der_curve(
            href="/derp/1/dc/C1",
            mrid="C1",
            description=None,
            creation_time=0,
            curve=Curve(mrid="C1", curve_type=11, points=((100, 0),)),
        ),
        lambda: sep_der.der_curve(
            href="/derp/1/dc/C1",
            mrid="C1",
            description="volt-var",
            creation_time=1_700_000_000,
            curve=Curve(
                mrid="C1",
                curve_type=11,
                points=tuple((9000 + 200 * i, 3000 - 600 * i) for i in range(10)),
                x_multiplier=-2,
                y_multiplier=-2,
                y_ref_type=2,
            ),
        ),
    ),
}


@pytest.mark.parametrize("resource", sorted(BUILDERS))
def test_minimal_builder_output_is_valid(resource: str) -> None:
    element = roundtrip(BUILDERS[resource][0]())
    assert element.tag == f"{{{NS}}}{resource}"


@pytest.mark.parametrize("resource", sorted(BUILDERS))
def test_builder_output_with_every_option_is_valid(resource: str) -> None:
    roundtrip(BUILDERS[resource][1]())


def test_sep_is_the_one_import_for_every_builder() -> None:
    assert sep.der_control is sep_der.der_control
    assert set(sep.__all__) >= {"der_program", "default_der_control", "der_curve_list"}


def test_root_declares_the_default_namespace_and_href() -> None:
    body = serialize(BUILDERS["EndDevice"][0]())
    assert b'<EndDevice xmlns="urn:ieee:std:2030.5:ns" href="/edev/1">' in body


def test_function_set_assignments_mrid_follows_its_links() -> None:
    element = BUILDERS["FunctionSetAssignments"][1]()
    assert children(element) == ["DERProgramListLink", "TimeLink", "mRID", "description"]


def test_der_control_renders_randomize_duration_before_start() -> None:
    element = control(**FULL_CONTROL)
    names = children(element)
    assert names.index("randomizeDuration") < names.index("randomizeStart")
    assert element.get("responseRequired") == "03"
    assert element.findtext(f"{{{NS}}}deviceCategory") == "00040000"


def test_default_der_control_settings_follow_the_control_base() -> None:
    element = BUILDERS["DefaultDERControl"][1]()
    assert children(element) == [
        "mRID",
        "description",
        "DERControlBase",
        "setESDelay",
        "setGradW",
        "setSoftGradW",
    ]


# -- lists ---------------------------------------------------------------------------------

LISTS: dict[str, tuple[Callable[..., etree._Element], str, str, bool, bool]] = {
    # builder, root tag, item resource, subscribable, pollRate
    "end_device_list": (sep.end_device_list, "EndDeviceList", "EndDevice", True, True),
    "function_set_assignments_list": (
        sep.function_set_assignments_list,
        "FunctionSetAssignmentsList",
        "FunctionSetAssignments",
        True,
        True,
    ),
    "der_program_list": (sep_der.der_program_list, "DERProgramList", "DERProgram", True, True),
    "der_control_list": (sep_der.der_control_list, "DERControlList", "DERControl", True, False),
    "active_der_control_list": (
        sep_der.active_der_control_list,
        "DERControlList",
        "DERControl",
        True,
        False,
    ),
    "der_curve_list": (sep_der.der_curve_list, "DERCurveList", "DERCurve", False, False),
}


@pytest.mark.parametrize("name", sorted(LISTS))
def test_empty_list_is_valid(name: str) -> None:
    builder, tag, _, _, _ = LISTS[name]
    element = roundtrip(builder(href="/list", all=0, results=0, items=()))
    assert element.tag == f"{{{NS}}}{tag}"


@pytest.mark.parametrize("name", sorted(LISTS))
def test_list_with_items_and_its_attributes_is_valid(name: str) -> None:
    builder, _, item, subscribable, poll_rate = LISTS[name]
    items = [BUILDERS[item][0](), BUILDERS[item][1]()]
    options: dict[str, int] = {}
    if subscribable:
        options["subscribable"] = 1
    if poll_rate:
        options["poll_rate"] = 300
    element = roundtrip(builder(href="/list", all=10, results=2, items=items, **options))
    assert children(element) == [item, item]


@pytest.mark.parametrize("name", sorted(LISTS))
def test_list_refuses_attributes_its_type_lacks(name: str) -> None:
    builder, _, _, subscribable, poll_rate = LISTS[name]
    if not poll_rate:
        with pytest.raises(ValueError, match="pollRate"):
            builder(href="/list", all=0, results=0, items=(), poll_rate=300)
    if not subscribable:
        with pytest.raises(ValueError, match="subscribable"):
            builder(href="/list", all=0, results=0, items=(), subscribable=1)


def test_list_results_must_count_its_items() -> None:
    with pytest.raises(ValueError, match="results"):
        sep_der.der_control_list(href="/l", all=5, results=2, items=[control()])


def test_list_refuses_items_of_another_resource() -> None:
    with pytest.raises(ValueError, match="holds DERControl"):
        sep_der.der_control_list(href="/l", all=1, results=1, items=[BUILDERS["DERCurve"][0]()])


# -- modes ---------------------------------------------------------------------------------


def json_values(name: str) -> st.SearchStrategy[Any]:
    """Valid JSON-shaped values of a mode or setting, within the kernel's and the XSD's ranges."""
    kind = MODES.get(name) or DEFAULT_ONLY_SETTINGS[name]
    int16 = st.integers(-(2**15), 2**15 - 1)
    multiplier = st.integers(-9, 9)
    shapes: dict[Kind, st.SearchStrategy[Any]] = {
        Kind.BOOLEAN: st.booleans(),
        Kind.PERCENT: st.integers(0, 10000),
        Kind.SIGNED_PERCENT: st.integers(-10000, 10000),
        Kind.ACTIVE_POWER: st.fixed_dictionaries({"value": int16, "multiplier": multiplier}),
        Kind.REACTIVE_POWER: st.fixed_dictionaries({"value": int16, "multiplier": multiplier}),
        Kind.POWER_FACTOR: st.fixed_dictionaries(
            {
                "displacement": st.integers(0, 65535),
                "multiplier": multiplier,
                "excitation": st.booleans(),
            }
        ),
        Kind.FIXED_VAR: st.fixed_dictionaries(
            {"refType": st.integers(0, 255), "value": st.integers(-10000, 10000)}
        ),
        Kind.FREQ_DROOP: st.fixed_dictionaries(
            {
                "dBOF": st.integers(0, 2**32 - 1),
                "dBUF": st.integers(0, 2**32 - 1),
                "kOF": st.integers(0, 65535),
                "kUF": st.integers(0, 65535),
                "openLoopTms": st.integers(0, 65535),
            }
        ),
        Kind.CURVE: st.fixed_dictionaries({"curve": st.sampled_from(["C1", "0A0B", "FF"])}),
    }
    if kind in shapes:
        return shapes[kind]
    low, high = dict(sep_der.SETTINGS_ORDER)[name]  # the XSD type of the setting
    return st.integers(low, high)


@st.composite
def frozen_items(draw: st.DrawFn, names: tuple[str, ...]) -> tuple[tuple[str, ModeValue], ...]:
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    return tuple((name, freeze(name, draw(json_values(name)))) for name in chosen)


def test_renderer_knows_every_mode_of_the_catalog_in_xsd_order() -> None:
    assert set(sep_der.BASE_ORDER) == set(RENDERED_MODES)
    assert list(sep_der.BASE_ORDER) == sorted(sep_der.BASE_ORDER, key=str.lower)
    assert {name for name, _ in sep_der.SETTINGS_ORDER} == set(DEFAULT_ONLY_SETTINGS)
    assert set(CURVE_TYPES) <= set(sep_der.BASE_ORDER)


@pytest.mark.parametrize("mode", RENDERED_MODES)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_each_mode_renders_valid(mode: str, data: st.DataObject) -> None:
    value = freeze(mode, data.draw(json_values(mode)))
    element = control(base=((mode, value),))
    roundtrip(element)
    base = element.find(f"{{{NS}}}DERControlBase")
    assert base is not None
    assert children(base) == [mode]


@settings(max_examples=150, deadline=None)
@given(base=frozen_items(RENDERED_MODES), ramp=st.none() | st.integers(0, 65535))
def test_any_control_base_renders_valid(
    base: tuple[tuple[str, ModeValue], ...], ramp: int | None
) -> None:
    roundtrip(control(base=base, ramp_tms=ramp))


@settings(max_examples=150, deadline=None)
@given(items=frozen_items(RENDERED_MODES + tuple(DEFAULT_ONLY_SETTINGS)))
def test_any_default_control_renders_valid(items: tuple[tuple[str, ModeValue], ...]) -> None:
    roundtrip(
        sep_der.default_der_control(
            href="/derp/1/dderc",
            mrid="D1",
            description=None,
            items=items,
            ramp_tms=None,
            curve_href=curve_href,
        )
    )


def test_composites_render_their_fields_in_xsd_order() -> None:
    element = control(
        base=(
            ("opModTargetW", freeze("opModTargetW", {"value": 5, "multiplier": 3})),
            (
                "opModFixedPFInjectW",
                freeze(
                    "opModFixedPFInjectW",
                    {"displacement": 95, "multiplier": -2, "excitation": False},
                ),
            ),
            ("opModVoltVar", freeze("opModVoltVar", {"curve": "C1"})),
        )
    )
    base = element.find(f"{{{NS}}}DERControlBase")
    assert base is not None
    assert children(base) == ["opModFixedPFInjectW", "opModTargetW", "opModVoltVar"]
    assert children(base[0]) == ["displacement", "excitation", "multiplier"]
    assert children(base[1]) == ["multiplier", "value"]
    assert base[2].get("href") == "/derp/1/dc/C1"


def test_a_kernel_control_renders_as_the_kernel_built_it() -> None:
    kernel_control = DERControl.from_json(
        {
            "mRID": "A7",
            "program": "P1",
            "creationTime": 0,
            "start": 100,
            "duration": 60,
            "responseRequired": "03",
            "base": {"opModFixedVar": {"refType": 2, "value": -500}, "rampTms": 30},
        }
    )
    roundtrip(
        control(
            mrid=kernel_control.mrid,
            base=kernel_control.base,
            ramp_tms=kernel_control.ramp_tms,
            response_required=kernel_control.response_required,
        )
    )


CSIPAUS_12_MODES = ("opModExpLimW", "opModGenLimW", "opModImpLimW", "opModLoadLimW")


def test_csip_aus_modes_follow_ramp_tms_in_the_csipaus_namespace() -> None:
    base = tuple((m, freeze(m, {"value": 15, "multiplier": 3})) for m in CSIPAUS_12_MODES)
    element = control(base=(("opModConnect", True), *base), ramp_tms=100)
    body = serialize(element)
    assert_valid(body, schema_name="csipaus-core.xsd")
    names = [etree.QName(c).text for c in element.find(f"{{{NS}}}DERControlBase")]
    aus_ns = "{https://csipaus.org/ns}"
    assert names == [
        f"{{{NS}}}opModConnect",
        f"{{{NS}}}rampTms",
        *(aus_ns + m for m in ("opModImpLimW", "opModExpLimW", "opModGenLimW", "opModLoadLimW")),
    ]


def test_storage_target_is_in_the_v13_storage_namespace() -> None:
    value = freeze("opModStorageTargetW", {"value": -5, "multiplier": 3})
    element = control(base=(("opModStorageTargetW", value),))
    base = element.find(f"{{{NS}}}DERControlBase")
    assert [etree.QName(c).namespace for c in base] == ["https://csipaus.org/ns/v1.3-beta/storage"]


def test_a_setting_in_a_der_control_is_refused() -> None:
    with pytest.raises(ValueError, match="setGradW is not a DERControlBase mode"):
        control(base=(("setGradW", 10),))


def test_setting_beyond_its_xsd_type_is_refused() -> None:
    # The kernel allows setGradW up to 2^32-1; the XSD says UInt16.
    with pytest.raises(ValueError, match="setGradW"):
        sep_der.default_der_control(
            href="/d",
            mrid="D1",
            description=None,
            items=(("setGradW", 70000),),
            ramp_tms=None,
            curve_href=curve_href,
        )


@pytest.mark.parametrize("mrid", ["ctl-1", "A", "0" * 34, ""])
def test_mrid_must_be_hex_binary_128(mrid: str) -> None:
    with pytest.raises(ValueError, match="mRID"):
        control(mrid=mrid)


def test_mrid_is_upper_cased() -> None:
    assert control(mrid="a1").findtext(f"{{{NS}}}mRID") == "A1"


def test_curve_point_beyond_int32_is_refused() -> None:
    with pytest.raises(ValueError, match="xvalue"):
        sep_der.der_curve(
            href="/c",
            mrid="C1",
            description=None,
            creation_time=0,
            curve=Curve(mrid="C1", curve_type=11, points=((2**31, 0),)),
        )


# -- EndDevice in ----------------------------------------------------------------------------


def test_end_device_round_trips() -> None:
    element = roundtrip(BUILDERS["EndDevice"][1]())
    assert sep.parse_end_device(element) == sep.EndDeviceInput(
        sfdi=167261211391,
        lfdi=LFDI,
        device_category=0x40000,
        changed_time=1_700_000_000,
        enabled=False,
        post_rate=300,
    )


def test_posted_end_device_needs_only_sfdi() -> None:
    body = f'<EndDevice xmlns="{NS}"><sFDI> 16726121139 </sFDI></EndDevice>'.encode()
    assert sep.parse_end_device(parse(body, expected_root="EndDevice")) == sep.EndDeviceInput(
        sfdi=16726121139,
        lfdi=None,
        device_category=None,
        changed_time=None,
        enabled=None,
        post_rate=None,
    )


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        ("", "EndDevice/sFDI is missing"),
        ("<sFDI>12ab</sFDI>", "EndDevice/sFDI must be an integer"),
        ("<sFDI>1_000</sFDI>", "EndDevice/sFDI must be an integer"),
        ("<sFDI>-1</sFDI>", "EndDevice/sFDI must be an integer in 0..1099511627775"),
        ("<sFDI>1</sFDI><sFDI>2</sFDI>", "EndDevice/sFDI appears more than once"),
        ("<lFDI>XYZ</lFDI><sFDI>1</sFDI>", "EndDevice/lFDI must be hexBinary"),
        (f"<lFDI>{LFDI}00</lFDI><sFDI>1</sFDI>", "EndDevice/lFDI must be hexBinary"),
        ("<deviceCategory>4</deviceCategory><sFDI>1</sFDI>", "EndDevice/deviceCategory"),
        ("<sFDI>1</sFDI><enabled>yes</enabled>", "EndDevice/enabled must be true or false"),
        ("<sFDI>1</sFDI><postRate>0x10</postRate>", "EndDevice/postRate must be an integer"),
    ],
)
def test_posted_end_device_with_bad_fields_is_refused(inner: str, reason: str) -> None:
    element = parse(f'<EndDevice xmlns="{NS}">{inner}</EndDevice>'.encode())
    with pytest.raises(XmlRejected, match=reason):
        sep.parse_end_device(element)


def test_parse_end_device_refuses_another_resource() -> None:
    with pytest.raises(XmlRejected, match="expected an EndDevice"):
        sep.parse_end_device(parse(f'<DERControl xmlns="{NS}"/>'.encode()))


# -- hostile input -------------------------------------------------------------------------


@contextmanager
def refused(reason: str) -> Iterator[None]:
    """The body is refused with ``reason`` (a substring) in well under a second."""
    started = clock.perf_counter()
    with pytest.raises(XmlRejected) as caught:
        yield
    assert clock.perf_counter() - started < 1.0
    assert reason in caught.value.reason, caught.value.reason
    assert "root:" not in caught.value.reason  # never a line of /etc/passwd


XXE = (
    b'<?xml version="1.0"?>\n'
    b'<!DOCTYPE EndDevice [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>\n'
    b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&passwd;</sFDI></EndDevice>'
)
BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE EndDevice [<!ENTITY lol0 "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (level, b"&lol%d;" % (level - 1) * 10) for level in range(1, 10)
    )
    + b']>\n<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&lol9;</sFDI></EndDevice>'
)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (XXE, "DTDs are not accepted"),
        (BILLION_LAUGHS, "DTDs are not accepted"),
        (b'<!DOCTYPE EndDevice>\n<EndDevice xmlns="urn:ieee:std:2030.5:ns"/>', "DTDs"),
        (b'<!DOCTYPE EndDevice SYSTEM "http://example.invalid/x.dtd"><EndDevice/>', "DTDs"),
        (
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x><EndDevice/>'.encode("utf-16"),
            "not UTF-8",
        ),
        (
            # UTF-7 would turn +ADw- into "<" and hide a DOCTYPE from a byte scan.
            b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE x+AD4-<EndDevice/>',
            "malformed XML",
        ),
        (b"<a>" * 10_000 + b"</a>" * 10_000, "nesting deeper than 32 levels"),
        (
            f'<EndDevice xmlns="{NS}">'.encode() + b"<a>" * 32 + b"</a>" * 32 + b"</EndDevice>",
            "nesting deeper than 32 levels",
        ),
        (
            b'<?xml version="1.0"?>\n<EndDevice xmlns="urn:ieee:std:2030.5:ns">\n<a>\n</b>',
            "malformed XML at line 4",
        ),
        (b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&x;</sFDI></EndDevice>', "entities"),
        (b'<EndDevice xmlns="urn:example:other"/>', "wrong namespace"),
        (b"<EndDevice/>", "wrong namespace"),
        (b'<DERControl xmlns="urn:ieee:std:2030.5:ns"/>', "root element DERControl is not one of"),
        (b"\xff\xfe\xfa\xc3\x28<EndDevice/>", "not valid UTF-8"),
        (b"", "empty body"),
        (b" \r\n\t", "empty body"),
        (b"<?xml version='1.0'?>", "malformed XML"),
    ],
    ids=[
        "xxe",
        "billion-laughs",
        "doctype",
        "external-dtd",
        "utf16-doctype",
        "utf7-doctype",
        "10000-levels",
        "33-levels",
        "malformed",
        "undefined-entity",
        "other-namespace",
        "no-namespace",
        "wrong-root",
        "utf8-garbage",
        "empty",
        "blank",
        "declaration-only",
    ],
)
def test_hostile_body_is_refused(body: bytes, reason: str) -> None:
    with refused(reason):
        parse(body, expected_root="EndDevice")


def test_nesting_up_to_the_limit_is_accepted() -> None:
    body = f'<EndDevice xmlns="{NS}">'.encode() + b"<a>" * 31 + b"</a>" * 31 + b"</EndDevice>"
    assert parse(body, expected_root="EndDevice").tag == f"{{{NS}}}EndDevice"


def test_the_parser_itself_never_resolves_an_external_entity() -> None:
    # Defence in depth: even past the DOCTYPE refusal, lxml is configured not to read files.
    from gateway.xmlio import _parser

    root = etree.fromstring(XXE, _parser())
    assert "root:" not in etree.tostring(root).decode()


def test_processing_instructions_and_comments_are_dropped() -> None:
    body = f'<EndDevice xmlns="{NS}"><?evil x?><!-- c --><sFDI>1<!-- c -->2</sFDI></EndDevice>'
    element = parse(body.encode())
    assert sep.parse_end_device(element).sfdi == 12
