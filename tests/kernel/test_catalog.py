"""The catalog's lookups used by device transitions: by mRID as given (and case-insensitively),
and each program's lasting controls by scheduled end (a new control's possible predecessors,
§2.5), kept as controls come, are forgotten and are restored from a snapshot."""

from __future__ import annotations

from engine.kernel.catalog import Catalog
from engine.kernel.model import DERControl


def make(mrid: str, program: str, start: int, duration: int, **modes: int) -> DERControl:
    base = modes or {"opModMaxLimW": 1000}
    return DERControl.from_json(
        {
            "mRID": mrid,
            "program": program,
            "creationTime": 0,
            "start": start,
            "duration": duration,
            "base": base,
        }
    )


def catalog_with(*controls: DERControl, retention: int = 100) -> Catalog:
    catalog = Catalog(retention)
    for program in sorted({c.program for c in controls}):
        catalog.define_program(program, 1)
    for control in controls:
        assert catalog.check_control(control)
        catalog.add_control(control, 0)
    return catalog


def ending(catalog: Catalog, program: str, t: int) -> list[str]:
    return sorted(c.mrid for c in catalog.ending(program, t))


def test_controls_by_program_and_scheduled_end_leave_out_those_without_duration() -> None:
    catalog = catalog_with(
        make("A1", "P1", 100, 50),
        make("B1", "P1", 120, 30),
        make("C1", "P2", 100, 50),
        make("Z1", "P1", 150, 0),  # no duration: never a predecessor
    )
    assert ending(catalog, "P1", 150) == ["A1", "B1"]
    assert ending(catalog, "P2", 150) == ["C1"]
    assert ending(catalog, "P1", 149) == [] and ending(catalog, "P3", 150) == []


def test_lookups_take_the_mrid_as_given_or_in_another_case() -> None:
    catalog = catalog_with(make("ab12", "P1", 100, 50))
    control = catalog.control("ab12")
    assert control is not None and control.mrid == "ab12"
    assert catalog.control("AB12") is control and catalog.control("Ab12") is control
    assert catalog.control("AB13") is None


def test_forgotten_controls_leave_both_lookups() -> None:
    catalog = catalog_with(make("A1", "P1", 100, 50), make("B1", "P1", 120, 30), retention=10)
    catalog.due(155)  # A1 and B1 ended at 150: forgotten 10 s later
    assert ending(catalog, "P1", 150) == ["A1", "B1"]
    catalog.due(160)
    assert ending(catalog, "P1", 150) == []
    assert catalog.control("A1") is None and catalog.control("b1") is None
    # The mRID may come again, with other times.
    later = make("A1", "P1", 300, 10)
    assert catalog.check_control(later)
    catalog.add_control(later, 200)
    assert ending(catalog, "P1", 310) == ["A1"] and catalog.control("a1") is later


def test_a_restored_catalog_answers_the_same() -> None:
    catalog = catalog_with(
        make("A1", "P1", 100, 50), make("B1", "P1", 120, 30), make("C1", "P2", 100, 50)
    )
    restored = Catalog.from_json(catalog.to_json())
    for program, t in (("P1", 150), ("P2", 150), ("P1", 100)):
        assert ending(restored, program, t) == ending(catalog, program, t)
    assert restored.control("a1") == catalog.control("A1")
