"""What a DER LogEvent means: the CSIP alarm codes and their return-to-normal counterparts.

Theory of operation. A CSIP device reports an alarm twice (CSIP IG v2.1 §4.6.3 "Alarms",
§5.2.5 Table 14): a LogEvent with the alarm's code when the condition starts, and one with the
matching "return to normal" (RTN) code when it clears, both with profileID 2 (IEEE 2030.5) and
functionSet 11 (Distributed Energy Resources). The condition is also visible as a bit of
DERStatus.alarmStatus while it lasts. This module is the table between the three: LogEvent
code, alarmStatus bit and name.

The table (functionSet 11):

    bit  alarm                           code  return to normal
    0    DER_FAULT_OVER_CURRENT          0     1
    1    DER_FAULT_OVER_VOLTAGE          2     3
    2    DER_FAULT_UNDER_VOLTAGE         4     5
    3    DER_FAULT_OVER_FREQUENCY        6     7
    4    DER_FAULT_UNDER_FREQUENCY       8     9
    5    DER_FAULT_VOLTAGE_IMBALANCE     10    11
    6    DER_FAULT_CURRENT_IMBALANCE     12    13
    7    DER_FAULT_EMERGENCY_LOCAL       14    15
    8    DER_FAULT_EMERGENCY_REMOTE      16    17
    9    DER_FAULT_LOW_POWER_INPUT       18    19
    10   DER_FAULT_PHASE_ROTATION        20    21

Sources. The names and bit positions are the 2030.5 schema's annotation of
DERStatus.alarmStatus (bits 11-31 reserved), also in the IEEE 2030.5-2023 information model.
The code numbering (alarm 2 x bit, RTN 2 x bit + 1, in bit order) is CSIP Table 14 as
implemented by the py20305 client (``telemetry/log_events.py``, citing CSIP §5.2.5.3 Table 14);
the CSIP guide itself was not reachable from here, so tests/gateway/test_telemetry.py pins the
table and names its source: re-check it against the guide before relying on a code for
anything but display. The function set numbers are the schema's annotation of
LogEvent.functionSet.
"""

from __future__ import annotations

from dataclasses import dataclass

PROFILE_IEEE_2030_5 = 2  # LogEvent.profileID: 0 not profile specific, 1 vendor, 2 IEEE 2030.5
FUNCTION_SET_DER = 11

# LogEvent.functionSet for profileID 2 (2018 schema; the 2023 schema adds 20-24).
FUNCTION_SETS: dict[int, str] = {
    0: "General",
    1: "Publish and Subscribe",
    2: "End Device",
    3: "Function Set Assignment",
    4: "Response",
    5: "Demand Response and Load Control",
    6: "Metering",
    7: "Pricing",
    8: "Messaging",
    9: "Billing",
    10: "Prepayment",
    11: "Distributed Energy Resources",
    12: "Time",
    13: "Software Download",
    14: "Device Information",
    15: "Power Status",
    16: "Network Status",
    17: "Log Event List",
    18: "Configuration",
    19: "Security",
}

# alarmStatus bit -> (name, description), in bit order.
_DER_ALARMS: tuple[tuple[str, str], ...] = (
    ("DER_FAULT_OVER_CURRENT", "over current"),
    ("DER_FAULT_OVER_VOLTAGE", "over voltage"),
    ("DER_FAULT_UNDER_VOLTAGE", "under voltage"),
    ("DER_FAULT_OVER_FREQUENCY", "over frequency"),
    ("DER_FAULT_UNDER_FREQUENCY", "under frequency"),
    ("DER_FAULT_VOLTAGE_IMBALANCE", "voltage imbalance"),
    ("DER_FAULT_CURRENT_IMBALANCE", "current imbalance"),
    ("DER_FAULT_EMERGENCY_LOCAL", "local emergency"),
    ("DER_FAULT_EMERGENCY_REMOTE", "remote emergency"),
    ("DER_FAULT_LOW_POWER_INPUT", "low input power"),
    ("DER_FAULT_PHASE_ROTATION", "phase rotation"),
)


@dataclass(frozen=True, slots=True)
class AlarmCode:
    """One LogEvent code of a function set.

    For an alarm, ``return_code`` is the code of its RTN event and ``alarm_code`` is None; for
    an RTN event it is the other way round. ``bit`` is the DERStatus.alarmStatus bit of the
    condition, for both.
    """

    function_set: int
    code: int
    name: str
    description: str
    bit: int
    return_code: int | None
    alarm_code: int | None

    @property
    def is_return_to_normal(self) -> bool:
        return self.alarm_code is not None


def _der_table() -> dict[int, AlarmCode]:
    table: dict[int, AlarmCode] = {}
    for bit, (name, description) in enumerate(_DER_ALARMS):
        alarm, back = 2 * bit, 2 * bit + 1
        table[alarm] = AlarmCode(FUNCTION_SET_DER, alarm, name, description, bit, back, None)
        table[back] = AlarmCode(
            FUNCTION_SET_DER,
            back,
            f"{name}_RETURN_TO_NORMAL",
            f"{description}: return to normal",
            bit,
            None,
            alarm,
        )
    return table


DER_LOG_EVENTS: dict[int, AlarmCode] = _der_table()
_TABLES: dict[int, dict[int, AlarmCode]] = {FUNCTION_SET_DER: DER_LOG_EVENTS}


def describe(function_set: int, code: int) -> AlarmCode | None:
    """The meaning of an IEEE 2030.5 LogEvent code (profileID 2), or None if we do not know it."""
    return _TABLES.get(function_set, {}).get(code)


def is_return_to_normal(code: int) -> bool:
    """Whether a DER LogEvent ``code`` reports that an alarm condition has cleared."""
    entry = DER_LOG_EVENTS.get(code)
    return entry is not None and entry.is_return_to_normal


def alarm_for(return_code: int) -> int | None:
    """The DER alarm code that RTN code ``return_code`` clears, or None if it is not an RTN."""
    entry = DER_LOG_EVENTS.get(return_code)
    return None if entry is None else entry.alarm_code


def alarms_in(alarm_status: int) -> tuple[AlarmCode, ...]:
    """The alarms set in a DERStatus.alarmStatus bitmap (reserved bits 11-31 are ignored)."""
    return tuple(
        entry
        for entry in DER_LOG_EVENTS.values()
        if not entry.is_return_to_normal and alarm_status >> entry.bit & 1
    )
