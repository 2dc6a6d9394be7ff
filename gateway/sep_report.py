"""2030.5 DER reporting: what a device tells the server about itself, parsed and rendered back.

A CSIP device PUTs its DERCapability (nameplate ratings, CSIP Table 12), DERSettings, DERStatus
(CSIP Table 13) and DERAvailability under its DER, and POSTs LogEvents (alarms, CSIP Table 14;
see ``engine/telemetry/alarms.py``). The server stores them and serves them back on GET, so each
is a ``Record`` (``gateway/sep_record.py``): one declaration in XSD order gives the parser, the
XSD-valid renderer and the JSON form for storage and telemetry. The DER and DERList resources
are only links and are built directly.

XSD notes the routes depend on: DERCapability requires modesSupported, rtgMaxW and type;
DERSettings requires setGradW, setMaxW and updatedTime; DERStatus and DERAvailability require
readingTime, and each status element is a (dateTime, value) pair with dateTime *first*.
Composite ratings put multiplier before value (PowerFactor: displacement, then multiplier).
ActivePower and ReactivePower values are Int16 (``FixedPoint``); ApparentPower, VoltageRMS,
CurrentRMS, AmpereHour, WattHour and ReactiveSusceptance are UInt16 (``UnsignedFixedPoint``).
DERCapability and LogEvent are plain Resources: they have no ``subscribable`` attribute.
"""

# xsd() returns dataclasses.field(...): a declaration, not a shared mutable default.
# ruff: noqa: RUF009

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lxml import etree

from engine.telemetry.quantities import scale
from gateway.sep_base import ListShape, build_list, optional_checked
from gateway.sep_record import Bitmap, Integer, One, Record, Text, xsd
from gateway.xmlio import INT8, INT16, INT64, UINT8, UINT16, UINT32, add_link, aus, root

PERCENT = (0, 10000)  # PerCent: hundredths of a percent, 10000 = 100 %

# -- composite values ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedPoint(Record):
    """value x 10^multiplier with an Int16 value: the shape of ActivePower and ReactivePower."""

    multiplier: int = xsd("multiplier", Integer(INT8), required=True)
    value: int = xsd("value", Integer(INT16), required=True)

    @property
    def scaled(self) -> float:
        return scale(self.value, self.multiplier)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsignedFixedPoint(Record):
    """value x 10^multiplier with a UInt16 value: ApparentPower, VoltageRMS, CurrentRMS,
    AmpereHour, WattHour and ReactiveSusceptance all have this shape."""

    multiplier: int = xsd("multiplier", Integer(INT8), required=True)
    value: int = xsd("value", Integer(UINT16), required=True)

    @property
    def scaled(self) -> float:
        return scale(self.value, self.multiplier)


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerFactor(Record):
    """A power factor displacement x 10^multiplier (no excitation: that is PFWithExcitation)."""

    displacement: int = xsd("displacement", Integer(UINT16), required=True)
    multiplier: int = xsd("multiplier", Integer(INT8), required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectStatus(Record):
    """ConnectStatusType: a bitmap (0 connected, 1 available, 2 operating, 3 test, 4 fault)."""

    date_time: int = xsd("dateTime", Integer(INT64), required=True)
    value: int = xsd("value", Bitmap(8), required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusCode(Record):
    """An enumerated status at a time: inverter, operational mode, storage mode, local control."""

    date_time: int = xsd("dateTime", Integer(INT64), required=True)
    value: int = xsd("value", Integer(UINT8), required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateOfCharge(Record):
    """StateOfChargeStatusType: PerCent, in hundredths of a percent."""

    date_time: int = xsd("dateTime", Integer(INT64), required=True)
    value: int = xsd("value", Integer(PERCENT), required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManufacturerStatus(Record):
    """ManufacturerStatusType: a String6 code of the manufacturer's own."""

    date_time: int = xsd("dateTime", Integer(INT64), required=True)
    value: str = xsd("value", Text(6), required=True)


SIGNED = One(FixedPoint)
UNSIGNED = One(UnsignedFixedPoint)
PF = One(PowerFactor)

# -- resources -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DERCapability(Record):
    """Nameplate ratings (CSIP Table 12). ``modes_supported`` is a DERControlType bitmap."""

    TAG: ClassVar[str] = "DERCapability"

    modes_supported: int = xsd("modesSupported", Bitmap(32, minimal=True), required=True)
    rtg_abnormal_category: int | None = xsd("rtgAbnormalCategory", Integer(UINT8))
    rtg_max_a: UnsignedFixedPoint | None = xsd("rtgMaxA", UNSIGNED)
    rtg_max_ah: UnsignedFixedPoint | None = xsd("rtgMaxAh", UNSIGNED)
    rtg_max_charge_rate_va: UnsignedFixedPoint | None = xsd("rtgMaxChargeRateVA", UNSIGNED)
    rtg_max_charge_rate_w: FixedPoint | None = xsd("rtgMaxChargeRateW", SIGNED)
    rtg_max_discharge_rate_va: UnsignedFixedPoint | None = xsd("rtgMaxDischargeRateVA", UNSIGNED)
    rtg_max_discharge_rate_w: FixedPoint | None = xsd("rtgMaxDischargeRateW", SIGNED)
    rtg_max_v: UnsignedFixedPoint | None = xsd("rtgMaxV", UNSIGNED)
    rtg_max_va: UnsignedFixedPoint | None = xsd("rtgMaxVA", UNSIGNED)
    rtg_max_var: FixedPoint | None = xsd("rtgMaxVar", SIGNED)
    rtg_max_var_neg: FixedPoint | None = xsd("rtgMaxVarNeg", SIGNED)
    rtg_max_w: FixedPoint = xsd("rtgMaxW", SIGNED, required=True)
    rtg_max_wh: UnsignedFixedPoint | None = xsd("rtgMaxWh", UNSIGNED)
    rtg_min_pf_over_excited: PowerFactor | None = xsd("rtgMinPFOverExcited", PF)
    rtg_min_pf_under_excited: PowerFactor | None = xsd("rtgMinPFUnderExcited", PF)
    rtg_min_v: UnsignedFixedPoint | None = xsd("rtgMinV", UNSIGNED)
    rtg_normal_category: int | None = xsd("rtgNormalCategory", Integer(UINT8))
    rtg_over_excited_pf: PowerFactor | None = xsd("rtgOverExcitedPF", PF)
    rtg_over_excited_w: FixedPoint | None = xsd("rtgOverExcitedW", SIGNED)
    rtg_reactive_susceptance: UnsignedFixedPoint | None = xsd("rtgReactiveSusceptance", UNSIGNED)
    rtg_under_excited_pf: PowerFactor | None = xsd("rtgUnderExcitedPF", PF)
    rtg_under_excited_w: FixedPoint | None = xsd("rtgUnderExcitedW", SIGNED)
    rtg_v_nom: UnsignedFixedPoint | None = xsd("rtgVNom", UNSIGNED)
    type: int = xsd("type", Integer(UINT8), required=True)  # DERType: 4 PV, 80 storage...
    # CSIP-AUS (csipaus-core.xsd appends it; required there): DOEControlType bitmap, bit 0
    # opModExpLimW, 1 opModImpLimW, 2 opModGenLimW, 3 opModLoadLimW.
    doe_modes_supported: int | None = xsd(aus("doeModesSupported"), Bitmap(8))


@dataclass(frozen=True, slots=True, kw_only=True)
class DERSettings(Record):
    """The device's active settings; ``modes_enabled`` is a DERControlType bitmap."""

    TAG: ClassVar[str] = "DERSettings"
    SUBSCRIBABLE: ClassVar[bool] = True

    modes_enabled: int | None = xsd("modesEnabled", Bitmap(32, minimal=True))
    set_es_delay: int | None = xsd("setESDelay", Integer(UINT32))
    set_es_high_freq: int | None = xsd("setESHighFreq", Integer(UINT16))
    set_es_high_volt: int | None = xsd("setESHighVolt", Integer(INT16))
    set_es_low_freq: int | None = xsd("setESLowFreq", Integer(UINT16))
    set_es_low_volt: int | None = xsd("setESLowVolt", Integer(INT16))
    set_es_ramp_tms: int | None = xsd("setESRampTms", Integer(UINT32))
    set_es_random_delay: int | None = xsd("setESRandomDelay", Integer(UINT32))
    set_grad_w: int = xsd("setGradW", Integer(UINT16), required=True)
    set_max_a: UnsignedFixedPoint | None = xsd("setMaxA", UNSIGNED)
    set_max_ah: UnsignedFixedPoint | None = xsd("setMaxAh", UNSIGNED)
    set_max_charge_rate_va: UnsignedFixedPoint | None = xsd("setMaxChargeRateVA", UNSIGNED)
    set_max_charge_rate_w: FixedPoint | None = xsd("setMaxChargeRateW", SIGNED)
    set_max_discharge_rate_va: UnsignedFixedPoint | None = xsd("setMaxDischargeRateVA", UNSIGNED)
    set_max_discharge_rate_w: FixedPoint | None = xsd("setMaxDischargeRateW", SIGNED)
    set_max_v: UnsignedFixedPoint | None = xsd("setMaxV", UNSIGNED)
    set_max_va: UnsignedFixedPoint | None = xsd("setMaxVA", UNSIGNED)
    set_max_var: FixedPoint | None = xsd("setMaxVar", SIGNED)
    set_max_var_neg: FixedPoint | None = xsd("setMaxVarNeg", SIGNED)
    set_max_w: FixedPoint = xsd("setMaxW", SIGNED, required=True)
    set_max_wh: UnsignedFixedPoint | None = xsd("setMaxWh", UNSIGNED)
    set_min_pf_over_excited: PowerFactor | None = xsd("setMinPFOverExcited", PF)
    set_min_pf_under_excited: PowerFactor | None = xsd("setMinPFUnderExcited", PF)
    set_min_v: UnsignedFixedPoint | None = xsd("setMinV", UNSIGNED)
    set_soft_grad_w: int | None = xsd("setSoftGradW", Integer(UINT16))
    set_v_nom: UnsignedFixedPoint | None = xsd("setVNom", UNSIGNED)
    set_v_ref: UnsignedFixedPoint | None = xsd("setVRef", UNSIGNED)
    set_v_ref_ofs: UnsignedFixedPoint | None = xsd("setVRefOfs", UNSIGNED)
    updated_time: int = xsd("updatedTime", Integer(INT64), required=True)
    doe_modes_enabled: int | None = xsd(aus("doeModesEnabled"), Bitmap(8))  # CSIP-AUS


@dataclass(frozen=True, slots=True, kw_only=True)
class DERStatus(Record):
    """Status (CSIP Table 13). ``alarm_status`` is the bitmap of ``engine.telemetry.alarms``."""

    TAG: ClassVar[str] = "DERStatus"
    SUBSCRIBABLE: ClassVar[bool] = True

    alarm_status: int | None = xsd("alarmStatus", Bitmap(32))
    gen_connect_status: ConnectStatus | None = xsd("genConnectStatus", One(ConnectStatus))
    inverter_status: StatusCode | None = xsd("inverterStatus", One(StatusCode))
    local_control_mode_status: StatusCode | None = xsd("localControlModeStatus", One(StatusCode))
    manufacturer_status: ManufacturerStatus | None = xsd(
        "manufacturerStatus", One(ManufacturerStatus)
    )
    operational_mode_status: StatusCode | None = xsd("operationalModeStatus", One(StatusCode))
    reading_time: int = xsd("readingTime", Integer(INT64), required=True)
    state_of_charge_status: StateOfCharge | None = xsd("stateOfChargeStatus", One(StateOfCharge))
    storage_mode_status: StatusCode | None = xsd("storageModeStatus", One(StatusCode))
    stor_connect_status: ConnectStatus | None = xsd("storConnectStatus", One(ConnectStatus))


@dataclass(frozen=True, slots=True, kw_only=True)
class DERAvailability(Record):
    """Reserve the DER can still deliver (or absorb), as of ``reading_time``."""

    TAG: ClassVar[str] = "DERAvailability"
    SUBSCRIBABLE: ClassVar[bool] = True

    availability_duration: int | None = xsd("availabilityDuration", Integer(UINT32))
    max_charge_duration: int | None = xsd("maxChargeDuration", Integer(UINT32))
    reading_time: int = xsd("readingTime", Integer(INT64), required=True)
    reserve_charge_percent: int | None = xsd("reserveChargePercent", Integer(PERCENT))
    reserve_percent: int | None = xsd("reservePercent", Integer(PERCENT))
    stat_var_avail: FixedPoint | None = xsd("statVarAvail", SIGNED)
    stat_w_avail: FixedPoint | None = xsd("statWAvail", SIGNED)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEvent(Record):
    """A device's log entry; for DER alarms profileID 2, functionSet 11 (CSIP Table 14)."""

    TAG: ClassVar[str] = "LogEvent"

    created_date_time: int = xsd("createdDateTime", Integer(INT64), required=True)
    details: str | None = xsd("details", Text(32))
    extended_data: int | None = xsd("extendedData", Integer(UINT32))
    function_set: int = xsd("functionSet", Integer(UINT8), required=True)
    log_event_code: int = xsd("logEventCode", Integer(UINT8), required=True)
    log_event_id: int = xsd("logEventID", Integer(UINT16), required=True)
    log_event_pen: int = xsd("logEventPEN", Integer(UINT32), required=True)
    profile_id: int = xsd("profileID", Integer(UINT8), required=True)


# -- parsers (parse the body with ``xmlio.parse`` first; they raise XmlRejected) ------------


def parse_der_capability(element: etree._Element) -> DERCapability:
    return DERCapability.parse(element)


def parse_der_settings(element: etree._Element) -> DERSettings:
    return DERSettings.parse(element)


def parse_der_status(element: etree._Element) -> DERStatus:
    return DERStatus.parse(element)


def parse_der_availability(element: etree._Element) -> DERAvailability:
    return DERAvailability.parse(element)


def parse_log_event(element: etree._Element) -> LogEvent:
    return LogEvent.parse(element)


# -- builders (ValueError on values the XSD forbids) ---------------------------------------


def der_capability(*, href: str, value: DERCapability) -> etree._Element:
    return value.render(href=href)


def der_settings(
    *, href: str, value: DERSettings, subscribable: int | None = None
) -> etree._Element:
    return value.render(href=href, subscribable=subscribable)


def der_status(*, href: str, value: DERStatus, subscribable: int | None = None) -> etree._Element:
    return value.render(href=href, subscribable=subscribable)


def der_availability(
    *, href: str, value: DERAvailability, subscribable: int | None = None
) -> etree._Element:
    return value.render(href=href, subscribable=subscribable)


def log_event(*, href: str, value: LogEvent) -> etree._Element:
    return value.render(href=href)


def der(
    *,
    href: str,
    capability_href: str | None,
    settings_href: str | None,
    status_href: str | None,
    availability_href: str | None,
    current_program_href: str | None,
    associated_program_list_href: str | None,
    associated_program_list_all: int | None,
    associated_usage_point_href: str | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    """DER: only links, all optional, in the XSD's (alphabetical) order."""
    element = root(
        "DER", href=href, subscribable=optional_checked(subscribable, UINT8, "subscribable")
    )
    add_link(
        element,
        "AssociatedDERProgramListLink",
        associated_program_list_href,
        associated_program_list_all,
    )
    add_link(element, "AssociatedUsagePointLink", associated_usage_point_href)
    add_link(element, "CurrentDERProgramLink", current_program_href)
    add_link(element, "DERAvailabilityLink", availability_href)
    add_link(element, "DERCapabilityLink", capability_href)
    add_link(element, "DERSettingsLink", settings_href)
    add_link(element, "DERStatusLink", status_href)
    return element


DER_LIST = ListShape("DERList", "DER", subscribable=False, poll_rate=True)
LOG_EVENT_LIST = ListShape("LogEventList", "LogEvent", subscribable=True, poll_rate=True)


def der_list(
    *, href: str, all: int, results: int, items: Sequence[etree._Element], poll_rate: int | None
) -> etree._Element:
    """DERList: a plain List (no subscribable) with pollRate."""
    return build_list(
        DER_LIST, href=href, all=all, results=results, items=items, poll_rate=poll_rate
    )


def log_event_list(
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    return build_list(
        LOG_EVENT_LIST,
        href=href,
        all=all,
        results=results,
        items=items,
        poll_rate=poll_rate,
        subscribable=subscribable,
    )


__all__ = [
    "DER_LIST",
    "LOG_EVENT_LIST",
    "ConnectStatus",
    "DERAvailability",
    "DERCapability",
    "DERSettings",
    "DERStatus",
    "FixedPoint",
    "LogEvent",
    "ManufacturerStatus",
    "PowerFactor",
    "StateOfCharge",
    "StatusCode",
    "UnsignedFixedPoint",
    "der",
    "der_availability",
    "der_capability",
    "der_list",
    "der_settings",
    "der_status",
    "log_event",
    "log_event_list",
    "parse_der_availability",
    "parse_der_capability",
    "parse_der_settings",
    "parse_der_status",
    "parse_log_event",
]
