"""What a simulated device tells the server: its DER's ratings, settings and status, its meter,
and its responses to controls, as 2030.5 bodies.

Built with the server's own record types (``gateway/sep_report.py``, ``sep_mirror.py``,
``sep_notify.py``), so every body is in XSD order and within the XSD's ranges by construction.

The simulated DER is a PV inverter: its output follows the sun (server time of day, UTC, so a
run shows the same curve wherever it is started) and obeys its effective control, as the
fleet's kernel resolved it: opModConnect or opModEnergize false gives 0 W, opModMaxLimW caps
the output at that share of setMaxW. So the readings a utility sees move when it issues a
control, as a real fleet's would.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from hashlib import blake2b

from lxml import etree

from engine.kernel.modes import ModeValue
from gateway.sep_mirror import MirrorMeterReading, MirrorUsagePoint, Reading, ReadingType
from gateway.sep_notify import Response
from gateway.sep_record import DateTimeInterval
from gateway.sep_report import (
    ConnectStatus,
    DERCapability,
    DERSettings,
    DERStatus,
    FixedPoint,
    StatusCode,
)
from gateway.xmlio import container, root, serialize

PV = 4  # DERType: photovoltaic system
# DERControlType bits 2-26: opModConnect .. opModWattVar (no charge/discharge: not storage).
MODES_SUPPORTED = 0x07FFFFFC
CONNECTED = 0b111  # ConnectStatusType: connected, available, operating
INVERTER_ON = 4  # InverterStatusType: on (grid-connected and producing)
OPERATIONAL_MODE = 2  # OperationalModeStatusType: operational
MIRROR_ROLES = 0x0049  # RoleFlags: isMirror | isDER | isSubmeter
ELECTRICITY = 0  # ServiceKind
USAGE_POINT_ON = 1

# The two quantities each device mirrors (engine/telemetry/quantities.py names them):
# active_power_forward_avg and voltage_avg_phase_an.
POWER_TYPE = ReadingType(uom=38, data_qualifier=2, flow_direction=1, kind=37)
VOLTAGE_TYPE = ReadingType(uom=29, data_qualifier=2, phase=129, power_of_ten_multiplier=-1)


def _body(element: etree._Element) -> bytes:
    return serialize(element)


def mrid(*parts: str) -> str:
    """A deterministic mRID (32 hex digits), so a device is the same from one run to the next."""
    return blake2b("/".join(parts).encode(), digest_size=16).hexdigest().upper()


def rating_w(lfdi: str) -> int:
    """The device's nameplate rating: 3 to 10 kW, fixed by its LFDI."""
    return 3000 + int(lfdi[:6], 16) % 71 * 100


def output_w(
    lfdi: str, rating: int, server_time: float, effective: Iterable[tuple[str, ModeValue]]
) -> int:
    """What the PV inverter produces now: the sun's share of its rating (a half sine from 06:00
    to 18:00 UTC, each device a little shaded), then its effective control applied."""
    hour = (server_time % 86400) / 3600
    sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))
    shade = 0.8 + (int(lfdi[-4:], 16) % 21) / 100
    produced = rating * sun * shade
    for mode, value in effective:
        if mode in ("opModConnect", "opModEnergize") and value is False:
            return 0
        if mode == "opModMaxLimW" and isinstance(value, int):
            produced = min(produced, rating * value / 10000)
    return round(produced)


def der_capability(lfdi: str) -> bytes:
    rating = rating_w(lfdi)
    value = DERCapability(
        modes_supported=MODES_SUPPORTED,
        rtg_max_w=FixedPoint(multiplier=0, value=rating),
        type=PV,
    )
    return _body(value.render(href=None))


def der_settings(lfdi: str, now: int) -> bytes:
    rating = rating_w(lfdi)
    value = DERSettings(
        modes_enabled=MODES_SUPPORTED,
        set_grad_w=100,  # hundredths of a percent of setMaxW per second: 1 %/s
        set_max_w=FixedPoint(multiplier=0, value=rating),
        updated_time=now,
    )
    return _body(value.render(href=None))


@lru_cache(maxsize=16)
def der_status(now: int, producing: bool) -> bytes:
    """Every device producing (or not) in the same second posts the same body: made once."""
    value = DERStatus(
        gen_connect_status=ConnectStatus(date_time=now, value=CONNECTED if producing else 0b011),
        inverter_status=StatusCode(date_time=now, value=INVERTER_ON if producing else 2),
        operational_mode_status=StatusCode(date_time=now, value=OPERATIONAL_MODE),
        reading_time=now,
    )
    return _body(value.render(href=None))


def usage_point_mrid(lfdi: str) -> str:
    return mrid("fleet-mup", lfdi)


def _reading_mrids(lfdi: str) -> tuple[str, str]:
    return mrid("fleet-mmr-power", lfdi), mrid("fleet-mmr-voltage", lfdi)


def mirror_usage_point(lfdi: str) -> bytes:
    """The device's MirrorUsagePoint with its two MirrorMeterReadings (ReadingTypes only)."""
    power, voltage = _reading_mrids(lfdi)
    value = MirrorUsagePoint(
        mrid=usage_point_mrid(lfdi),
        description="fleet PV meter",
        role_flags=MIRROR_ROLES,
        service_category_kind=ELECTRICITY,
        status=USAGE_POINT_ON,
        device_lfdi=lfdi,
        meter_readings=(
            MirrorMeterReading(mrid=power, description="active power", reading_type=POWER_TYPE),
            MirrorMeterReading(mrid=voltage, description="voltage", reading_type=VOLTAGE_TYPE),
        ),
    )
    return _body(value.render(href=None))


def meter_readings(lfdi: str, now: int, watts: int, interval: int) -> bytes:
    """A MirrorMeterReadingList: average power and voltage over the last ``interval`` s."""
    power, voltage = _reading_mrids(lfdi)
    volts_tenths = 2300 + int(lfdi[-2:], 16) % 60 - 30 + (watts // 1000)
    element = root("MirrorMeterReadingList", all=2, results=2)
    period = DateTimeInterval(duration=interval, start=now - interval)
    for reading_mrid, value in ((power, watts), (voltage, volts_tenths)):
        item = MirrorMeterReading(
            mrid=reading_mrid,
            last_update_time=now,
            reading=Reading(time_period=period, value=value),
        )
        item.write(container(element, "MirrorMeterReading"), "MirrorMeterReading")
    return _body(element)


def control_response(lfdi: str, subject: str, status: int, now: int) -> bytes:
    """A DERControlResponse (a Response with nothing added) for a control's replyTo."""
    value = Response(created_date_time=now, end_device_lfdi=lfdi, status=status, subject=subject)
    element = root("DERControlResponse")
    value.write(element, "DERControlResponse")
    return _body(element)
