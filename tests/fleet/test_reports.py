"""What a device posts: XSD-valid bodies the server's own parsers accept, and a DER that obeys."""

from __future__ import annotations

from fleet import reports
from gateway import sep_mirror, sep_notify, sep_report
from gateway.xmlio import parse
from tests.xsd import assert_valid

LFDI = "D1D907752314F590E9DFC8A604E3339D662D719F"
NOW = 1_767_225_600


def test_der_bodies_are_valid_and_parse_on_the_server() -> None:
    capability = reports.der_capability(LFDI)
    settings = reports.der_settings(LFDI, NOW)
    status = reports.der_status(NOW, True)
    for body in (capability, settings, status):
        assert_valid(body)
    rating = reports.rating_w(LFDI)
    parsed = sep_report.parse_der_capability(parse(capability))
    assert parsed.rtg_max_w.value == rating and parsed.type == reports.PV
    assert sep_report.parse_der_settings(parse(settings)).set_max_w.value == rating
    parsed_status = sep_report.parse_der_status(parse(status))
    assert parsed_status.reading_time == NOW
    assert parsed_status.gen_connect_status is not None
    assert parsed_status.gen_connect_status.value == reports.CONNECTED
    idle = sep_report.parse_der_status(parse(reports.der_status(NOW, False)))
    assert (
        idle.gen_connect_status is not None and idle.gen_connect_status.value != reports.CONNECTED
    )


def test_mirror_and_readings_are_valid_and_named_by_the_telemetry_table() -> None:
    usage_point = reports.mirror_usage_point(LFDI)
    readings = reports.meter_readings(LFDI, NOW, 4200, 300)
    assert_valid(usage_point)
    assert_valid(readings)
    mup = sep_mirror.parse_mirror_usage_point(parse(usage_point))
    assert mup.device_lfdi == LFDI and mup.mrid == reports.usage_point_mrid(LFDI)
    types = {m.mrid: m.reading_type for m in mup.meter_readings}
    posted = sep_mirror.parse_mirror_meter_readings(parse(readings))
    records = [
        record
        for reading in posted
        for record in sep_mirror.normalize(
            lfdi=LFDI, mup=mup.mrid, meter_reading=reading, reading_type=types[reading.mrid]
        )
    ]
    by_quantity = {r["quantity"]: r for r in records}
    assert by_quantity["active_power_forward_avg"]["value"] == 4200
    assert by_quantity["active_power_forward_avg"]["interval"] == 300
    assert by_quantity["active_power_forward_avg"]["time"] == NOW - 300
    assert 200 < by_quantity["voltage_avg_phase_an"]["value"] < 260


def test_control_response_is_valid_and_parses() -> None:
    body = reports.control_response(LFDI, "AB" * 16, 2, NOW)
    assert_valid(body)
    parsed = sep_notify.parse_response(parse(body))
    assert (parsed.end_device_lfdi, parsed.subject, parsed.status) == (LFDI, "AB" * 16, 2)
    assert parsed.created_date_time == NOW


def test_output_follows_the_sun_and_the_effective_control() -> None:
    rating = reports.rating_w(LFDI)
    noon, midnight = 12 * 3600, 0
    free = reports.output_w(LFDI, rating, noon, ())
    assert 0.8 * rating <= free <= rating
    assert reports.output_w(LFDI, rating, midnight, ()) == 0
    assert reports.output_w(LFDI, rating, noon, [("opModMaxLimW", 2500)]) == round(rating / 4)
    assert reports.output_w(LFDI, rating, noon, [("opModConnect", False)]) == 0
    assert reports.output_w(LFDI, rating, noon, [("opModEnergize", True)]) == free


def test_identities_are_stable() -> None:
    assert reports.usage_point_mrid(LFDI) == reports.usage_point_mrid(LFDI.upper())
    assert len(reports.mrid("x")) == 32
    assert 3000 <= reports.rating_w(LFDI) <= 10000
