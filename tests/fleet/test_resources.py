"""What a device reads: the server's own renderers' bodies, parsed back into kernel values.

Each test renders with ``gateway/sep*.py`` (what the server sends) and checks that the fleet's
parser gives back exactly the kernel value the server started from.
"""

from __future__ import annotations

import pytest

from engine.kernel import Curve, DefaultControl, DERControl
from fleet import resources
from gateway import sep, sep_report
from gateway.sep_mirror import MirrorUsagePoint, mirror_usage_point
from gateway.xmlio import serialize

CURVE = "C0FFEE00C0FFEE00C0FFEE00C0FFEE00"
LFDI = "D1D907752314F590E9DFC8A604E3339D662D719F"


def curve_href(mrid: str) -> str:
    return f"/derp/system/dc/{mrid}"


def rendered(control: DERControl, status: int = 1) -> bytes:
    element = sep.der_control(
        href=f"/derp/system/derc/{control.mrid}",
        mrid=control.mrid,
        description="a control",
        creation_time=control.creation_time,
        current_status=status,
        status_time=control.creation_time,
        potentially_superseded=False,
        potentially_superseded_time=None,
        reason=None,
        start=control.start,
        duration=control.duration,
        randomize_start=control.randomize_start or None,
        randomize_duration=control.randomize_duration or None,
        reply_to="/rsps/system/rsp" if control.reply_to else None,
        response_required=control.response_required,
        device_category=control.device_category,
        base=control.base,
        ramp_tms=control.ramp_tms,
        curve_href=curve_href,
    )
    listed = sep.der_control_list(href="/derp/system/derc", all=3, results=1, items=[element])
    return serialize(listed)


CONTROLS = [
    {
        "mRID": "A1" * 16,
        "creationTime": 1_700_000_000,
        "start": 1_700_000_100,
        "duration": 900,
        "randomizeStart": -120,
        "randomizeDuration": 60,
        "responseRequired": "03",
        "deviceCategory": 0x00040000,
        "base": {
            "opModMaxLimW": 5000,
            "opModConnect": True,
            "opModFixedW": -2500,
            "opModTargetW": {"value": 1500, "multiplier": 1},
            "opModFixedPFInjectW": {"displacement": 95, "multiplier": -2, "excitation": True},
            "opModFixedVar": {"refType": 2, "value": -300},
            "opModFreqDroop": {"dBOF": 36, "dBUF": 36, "kOF": 5, "kUF": 5, "openLoopTms": 100},
            "opModVoltVar": {"curve": CURVE},
            "rampTms": 600,
        },
    },
    {
        "mRID": "B2" * 16,
        "creationTime": 1_700_000_000,
        "start": 1_700_000_000,
        "duration": 60,
        "responseRequired": "00",
        "replyTo": None,
        "base": {"opModEnergize": False},
    },
]


@pytest.mark.parametrize("raw", CONTROLS, ids=["every-shape", "bare"])
def test_a_listed_control_round_trips_to_the_kernel_value(raw: dict[str, object]) -> None:
    original = DERControl.from_json({**raw, "program": "P"})
    parsed = resources.control_list(rendered(original, status=3))
    assert (parsed.all, parsed.results) == (3, 1)
    (listed,) = parsed.controls
    assert listed.mrid == original.mrid.upper()
    assert listed.current_status == 3
    assert listed.reply_to == ("/rsps/system/rsp" if original.reply_to else None)
    control = dict(listed.control, program="P")
    control["base"] = resources.resolve_curves(control["base"], {curve_href(CURVE): CURVE})
    assert DERControl.from_json(control) == original
    expected_curves = (curve_href(CURVE),) if "opModVoltVar" in raw["base"] else ()  # type: ignore[operator]
    assert listed.curve_hrefs == expected_curves


def test_a_curve_link_the_program_does_not_list_stays_dangling() -> None:
    base = {"opModVoltVar": {"curve": "/derp/x/dc/9"}, "opModMaxLimW": 10}
    assert resources.resolve_curves(base, {}) == base


def test_default_control_with_settings_round_trips() -> None:
    original = DefaultControl.from_json(
        {"opModMaxLimW": 8000, "opModVoltVar": {"curve": CURVE}, "setGradW": 50, "setESDelay": 300}
    )
    body = serialize(
        sep.default_der_control(
            href="/derp/system/dderc",
            mrid="D0" * 16,
            description=None,
            items=original.items,
            ramp_tms=original.ramp_tms,
            curve_href=curve_href,
        )
    )
    parsed = resources.default_control(body)
    assert parsed.curve_hrefs == (curve_href(CURVE),)
    resolved = resources.resolve_curves(parsed.base, {curve_href(CURVE): CURVE})
    assert DefaultControl.from_json(resolved) == original


def test_curve_list_round_trips() -> None:
    original = Curve.from_json(
        {
            "mRID": CURVE,
            "curveType": 11,
            "points": [[92, 30], [97, 0], [103, 0], [108, -30]],
            "xMultiplier": 0,
            "yMultiplier": -1,
            "yRefType": 2,
        }
    )
    element = sep.der_curve(
        href=curve_href(CURVE), mrid=CURVE, description="vv", creation_time=5, curve=original
    )
    body = serialize(sep.der_curve_list(href="/derp/system/dc", all=1, results=1, items=[element]))
    parsed = resources.curve_list(body)
    ((href, curve),) = parsed.curves
    assert href == curve_href(CURVE)
    assert Curve.from_json(curve) == original


def test_program_list() -> None:
    program = sep.der_program(
        href="/derp/feeder-1",
        mrid="ab" * 16,
        description="feeder",
        primacy=20,
        active_der_control_list_href="/derp/feeder-1/actderc",
        active_der_control_list_all=0,
        default_der_control_href=None,
        der_control_list_href="/derp/feeder-1/derc",
        der_control_list_all=30,
        der_curve_list_href="/derp/feeder-1/dc",
        der_curve_list_all=0,
    )
    body = serialize(
        sep.der_program_list(
            href="/edev/1/fsa/1/derp", all=1, results=1, items=[program], poll_rate=600
        )
    )
    parsed = resources.program_list(body)
    assert parsed.poll_rate == 600 and parsed.all == 1
    (found,) = parsed.programs
    assert found.key == "AB" * 16 and found.primacy == 20 and found.default is None
    assert found.controls == resources.Link("/derp/feeder-1/derc", 30)
    assert found.curves == resources.Link("/derp/feeder-1/dc", 0)


def test_discovery_resources() -> None:
    dcap = serialize(
        sep.device_capability(
            href="/dcap",
            poll_rate=900,
            time_href="/tm",
            end_device_list_href="/edev",
            end_device_list_all=1,
            mirror_usage_point_list_href="/mup",
            mirror_usage_point_list_all=0,
        )
    )
    found = resources.device_capability(dcap)
    assert found.poll_rate == 900 and found.time == resources.Link("/tm")
    assert found.end_devices == resources.Link("/edev", 1)
    assert found.mirror_usage_points == resources.Link("/mup", 0)

    device = sep.end_device(
        href="/edev/7",
        lfdi=LFDI,
        sfdi=563305818425,
        changed_time=1,
        enabled=True,
        device_category=0x40000,
        fsa_list_href="/edev/7/fsa",
        fsa_list_all=2,
        registration_href="/edev/7/rg",
        der_list_href="/edev/7/der",
        der_list_all=1,
        post_rate=120,
    )
    edev = resources.end_device_list(
        serialize(
            sep.end_device_list(href="/edev", all=1, results=1, items=[device], poll_rate=300)
        )
    )
    mine = edev.find(LFDI.lower())
    assert mine is not None and edev.poll_rate == 300
    assert (mine.href, mine.category, mine.post_rate) == ("/edev/7", 0x40000, 120)
    assert mine.fsas == resources.Link("/edev/7/fsa", 2)
    assert edev.find("00" * 20) is None

    fsa = sep.function_set_assignments(
        href="/edev/7/fsa/1",
        mrid="01" * 16,
        description="system",
        der_program_list_href="/edev/7/fsa/1/derp",
        der_program_list_all=1,
    )
    fsas = resources.fsa_list(
        serialize(
            sep.function_set_assignments_list(
                href="/edev/7/fsa", all=1, results=1, items=[fsa], poll_rate=300
            )
        )
    )
    assert fsas.program_lists == (resources.Link("/edev/7/fsa/1/derp", 1),)

    time = resources.time(
        serialize(
            sep.time(
                href="/tm",
                current_time=1_700_000_000,
                dst_end_time=0,
                dst_offset=0,
                dst_start_time=0,
                local_time=None,
                quality=4,
                tz_offset=0,
                poll_rate=900,
            )
        )
    )
    assert (time.current_time, time.poll_rate) == (1_700_000_000, 900)


def test_der_list_and_mirror() -> None:
    der = sep_report.der(
        href="/edev/7/der/1",
        capability_href="/edev/7/der/1/dercap",
        settings_href="/edev/7/der/1/derg",
        status_href="/edev/7/der/1/ders",
        availability_href="/edev/7/der/1/dera",
        current_program_href=None,
        associated_program_list_href=None,
        associated_program_list_all=None,
    )
    rate, ders = resources.der_list(
        serialize(
            sep_report.der_list(href="/edev/7/der", all=1, results=1, items=[der], poll_rate=300)
        )
    )
    assert rate == 300
    assert ders == (
        resources.DER("/edev/7/der/1/dercap", "/edev/7/der/1/derg", "/edev/7/der/1/ders"),
    )
    mup = MirrorUsagePoint(
        mrid="0A" * 16,
        role_flags=0x49,
        service_category_kind=0,
        status=1,
        device_lfdi=LFDI,
        post_rate=60,
    )
    assert (
        resources.mirror_usage_point_post_rate(
            serialize(mirror_usage_point(href="/mup/3", value=mup))
        )
        == 60
    )


def test_bodies_are_read_with_the_servers_hardened_parser() -> None:
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><Time xmlns="urn:ieee:std:2030.5:ns"/>'
    )
    with pytest.raises(resources.XmlRejected):
        resources.time(hostile)
    wrong = serialize(sep.registration(href="/edev/1/rg", date_time_registered=1, pin=1))
    with pytest.raises(resources.XmlRejected):
        resources.time(wrong)
