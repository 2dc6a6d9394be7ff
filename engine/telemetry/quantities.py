"""What a mirrored reading measures: a stable machine name and a unit from its ReadingType codes.

Theory of operation. A CSIP device mirrors its DER measurements (CSIP IG v2.1 §4.6.1 "Monitor
Data", Tables 10-11: active and reactive power, voltage, frequency, power factor, energy, per
phase where it applies, as average / minimum / maximum or plain values) as MirrorMeterReadings
whose ReadingType says what the numbers are. Five codes decide the quantity; ``quantity_of``
composes a name from them, in this order::

    base (from uom) [_demand] [_flow] [_qualifier] [_phase]
    active_power_avg_phase_a, voltage_max_phase_an, energy_forward, frequency

An unqualified reading (dataQualifier absent, 0 Not Applicable or 12 Normal) is the plain,
instantaneous value and gets no qualifier. Any code this table does not know turns the whole
name generic (``uom38_dq5``, ``uom99_phase128``) rather than raising: the data team still gets
the reading, with its raw codes, and the unknown name shows what to add here.

Where each code comes from (all from the annotations of the 2030.5 schema, which quote
IEC 61968-9; cross-checked with bsgip/envoy-schema ``sep2/types.py``):

- uom (UomType): 5 A, 23 degrees Celsius (not percent), 29 V, 33 Hz, 38 W, 61 VA, 63 var,
  65 cos theta (displacement power factor), 71 VAh, 72 Wh, 73 varh, 106 Ah.
- dataQualifier (DataQualifierType): 0 n/a, 2 average, 8 maximum, 9 minimum, 12 normal,
  29 standard deviation of a population, 30 standard deviation of a sample.
- flowDirection (FlowDirectionType): 0 n/a, 1 forward, 19 reverse (2018 schema); 2 lagging,
  3 leading, 4 net, 20 total, 21 total by phase (added by the 2023 schema).
- phase (PhaseCode): 0 n/a, 128 A (S1), 129 AN (S1N), 64 B, 65 BN, 32 C (S2), 33 CN (S2N),
  132 AB, 66 BC, 40 CA, 224 ABC. A and AN stay distinct names: the code distinguishes them
  (CSIP-AUS tags line-to-neutral voltage AN/BN/CN, envoy's admin site-reading mapper).
- kind (KindType): 0 n/a, 12 energy and 37 power add nothing to the name; 8 demand adds
  ``_demand``; 3 currency (not a DER measurement) gives a generic name.

The monitored set is the CSIP one as implemented by public CSIP code we could read (the
IG's own tables were not reachable from here): envoy's CSIP-AUS site readings (W, var, Hz, V
per phase AN/BN/CN, average readings as SAPN's dynamic-exports handbook requires) and the
py20305 client (W, var, Hz, V, PF, VA, A, Wh per phase). State of charge is not a reading in
2030.5 (no uom for percent): a storage DER reports it in DERStatus.stateOfChargeStatus as a
PerCent (hundredths of a percent), named here by ``STATE_OF_CHARGE`` and ``percent``.
"""

from __future__ import annotations

from dataclasses import dataclass

# uom -> (base name, unit)
UOMS: dict[int, tuple[str, str]] = {
    5: ("current", "A"),
    23: ("temperature", "degC"),
    29: ("voltage", "V"),
    33: ("frequency", "Hz"),
    38: ("active_power", "W"),
    61: ("apparent_power", "VA"),
    63: ("reactive_power", "var"),
    65: ("power_factor", "cos"),
    71: ("apparent_energy", "VAh"),
    72: ("energy", "Wh"),
    73: ("reactive_energy", "varh"),
    106: ("charge", "Ah"),
}
DATA_QUALIFIERS: dict[int, str] = {
    0: "",
    2: "avg",
    8: "max",
    9: "min",
    12: "",
    29: "stddev",
    30: "stddev_sample",
}
FLOW_DIRECTIONS: dict[int, str] = {
    0: "",
    1: "forward",
    2: "lagging",
    3: "leading",
    4: "net",
    19: "reverse",
    20: "total",
    21: "total_by_phase",
}
PHASES: dict[int, str] = {
    0: "",
    32: "phase_c",
    33: "phase_cn",
    40: "phase_ca",
    64: "phase_b",
    65: "phase_bn",
    66: "phase_bc",
    128: "phase_a",
    129: "phase_an",
    132: "phase_ab",
    224: "phase_abc",
}
KINDS: dict[int, str] = {0: "", 8: "demand", 12: "", 37: ""}

# The quantities a CSIP DER mirrors (see the module docstring for the sources).
CSIP_MONITORING_UOMS: tuple[int, ...] = (38, 63, 29, 33, 65, 61, 5, 72, 73)


@dataclass(frozen=True, slots=True)
class Quantity:
    """A reading's quantity: ``name`` is stable across releases and safe as a column name.

    The raw codes are kept as the device sent them (None when absent) so nothing is lost by
    naming; ``known`` is False when the name is the generic fallback (then ``unit`` may be None).
    """

    name: str
    unit: str | None
    uom: int
    data_qualifier: int | None
    flow_direction: int | None
    phase: int | None
    kind: int | None
    known: bool


STATE_OF_CHARGE = Quantity(
    name="state_of_charge",
    unit="%",
    uom=0,
    data_qualifier=None,
    flow_direction=None,
    phase=None,
    kind=None,
    known=True,
)


def quantity_of(
    uom: int,
    data_qualifier: int | None,
    flow_direction: int | None,
    phase: int | None,
    kind: int | None,
) -> Quantity:
    """Name the quantity of a ReadingType; never raises (unknown codes give a generic name)."""
    parts = [
        UOMS[uom][0] if uom in UOMS else None,
        _part(KINDS, kind),
        _part(FLOW_DIRECTIONS, flow_direction),
        _part(DATA_QUALIFIERS, data_qualifier),
        _part(PHASES, phase),
    ]
    known = all(part is not None for part in parts)
    if known:
        name = "_".join(part for part in parts if part)
        unit: str | None = UOMS[uom][1]
    else:
        name = _generic_name(uom, data_qualifier, flow_direction, phase, kind)
        unit = UOMS[uom][1] if uom in UOMS else None
    return Quantity(
        name=name,
        unit=unit,
        uom=uom,
        data_qualifier=data_qualifier,
        flow_direction=flow_direction,
        phase=phase,
        kind=kind,
        known=known,
    )


def _part(table: dict[int, str], code: int | None) -> str | None:
    """The name part of ``code`` ("" adds nothing), or None when the table does not know it."""
    if code is None:
        return ""
    return table.get(code)


def _generic_name(
    uom: int,
    data_qualifier: int | None,
    flow_direction: int | None,
    phase: int | None,
    kind: int | None,
) -> str:
    parts = [f"uom{uom}"]
    for prefix, code in (
        ("dq", data_qualifier),
        ("flow", flow_direction),
        ("phase", phase),
        ("kind", kind),
    ):
        if code:
            parts.append(f"{prefix}{code}")
    return "_".join(parts)


def scale(value: int, power_of_ten: int) -> float:
    """``value`` x 10^``power_of_ten`` as a float, e.g. scale(2301, -1) == 230.1.

    Divides by the power of ten for negative exponents (exact integers in, one correctly
    rounded division out) instead of multiplying by 0.1, which would give 230.10000000000002.
    """
    factor: int = 10 ** abs(power_of_ten)  # an int: typeshed types int ** int as Any
    return float(value * factor) if power_of_ten >= 0 else value / factor


def percent(per_cent: int) -> float:
    """A 2030.5 PerCent (hundredths of a percent, 10000 = 100 %) in percent."""
    return per_cent / 100
