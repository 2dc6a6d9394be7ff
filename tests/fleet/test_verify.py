"""The comparison with the server's view: each kind of disagreement, and agreement."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fleet.device import Device
from fleet.verify import compare_effective, compare_lifecycle, compare_posted, sample, verify

LFDI = "AA" * 20
A, B = "A1" * 16, "B2" * 16


def expected(mrid: str, status: int, t: int, posted: bool = True) -> dict[str, object]:
    return {"mRID": mrid, "program": "system", "status": status, "t": t, "posted": posted}


def test_same_statuses_at_other_instants_agree() -> None:
    # The server's engine sees a control when it is created; the device when it fetches it.
    server = [expected(A, 1, 100), expected(A, 2, 100), expected(A, 3, 700)]
    fleet = [(A, 1, True, 104), (A, 2, True, 104)]
    assert compare_lifecycle(LFDI, server, fleet, {A}, cutoff=600) == []


def test_a_missing_status_is_a_lifecycle_disagreement() -> None:
    server = [expected(A, 1, 100), expected(A, 2, 100)]
    fleet = [(A, 1, True, 104)]
    (found,) = compare_lifecycle(LFDI, server, fleet, {A}, cutoff=600)
    assert (found.kind, found.mrid) == ("lifecycle", A)
    assert "[1, 2]" in found.detail and "[1]" in found.detail


def test_a_different_posted_flag_is_a_disagreement() -> None:
    server = [expected(A, 1, 100, posted=False)]
    fleet = [(A, 1, True, 104)]
    (found,) = compare_lifecycle(LFDI, server, fleet, {A}, cutoff=600)
    assert "posted" in found.detail


def test_controls_out_of_scope_are_not_compared() -> None:
    server = [expected(B, 1, 100)]
    assert compare_lifecycle(LFDI, server, [], {A}, cutoff=600) == []


def test_posted_responses() -> None:
    server_expected = [expected(A, 1, 100), expected(A, 2, 100), expected(B, 1, 100)]
    stored = [
        {"t": 105, "program": "system", "subject": A, "status": 1, "endDeviceLFDI": LFDI},
        {"t": 90, "program": "system", "subject": A, "status": 2, "endDeviceLFDI": LFDI},
        {"t": 106, "program": "system", "subject": B, "status": 6, "endDeviceLFDI": LFDI},
    ]
    sent = [(A, 1, 1.0), (B, 1, 2.0)]
    found = compare_posted(LFDI, server_expected, stored, sent, {A, B}, cutoff=600, since=100)
    kinds = sorted((d.kind, d.mrid, re.findall(r"status (\d+)", d.detail)[0]) for d in found)
    assert kinds == [
        ("lost", B, "1"),  # accepted but not stored
        ("not posted", A, "2"),  # the stored 2 is older than this run
        ("unexpected", B, "6"),
    ]


def test_posted_responses_agree() -> None:
    server_expected = [expected(A, 1, 100), expected(A, 2, 100)]
    stored = [{"t": 105, "subject": A.lower(), "status": s} for s in (1, 2)]
    sent = [(A, 1, 1.0), (A, 2, 1.5)]
    assert compare_posted(LFDI, server_expected, stored, sent, {A}, cutoff=600, since=100) == []


def test_effective_maps_program_ids_to_mrids() -> None:
    programs = {"system": "5Y5" * 10 + "AB"}
    key = programs["system"]
    server = {
        "opModMaxLimW": {"value": 5000, "program": "system", "event": A.lower()},
        "opModVoltVar": {"value": {"curve": "c0ffee"}, "program": "system", "event": None},
    }
    fleet = {
        "opModMaxLimW": {"value": 5000, "program": key, "event": A},
        "opModVoltVar": {"value": {"curve": "C0FFEE"}, "program": key, "event": None},
    }
    assert compare_effective(LFDI, server, fleet, programs) == []
    fleet["opModMaxLimW"] = {"value": 6000, "program": key, "event": A}
    del fleet["opModVoltVar"]
    found = compare_effective(LFDI, server, fleet, programs)
    assert [d.detail.split(":")[0] for d in found] == ["opModMaxLimW", "opModVoltVar"]
    assert all(d.kind == "effective" for d in found)


def test_sample_is_bounded_and_spread() -> None:
    devices = list(range(1000))
    chosen = sample(devices, 10)  # type: ignore[arg-type]
    assert chosen == list(range(0, 1000, 100))
    assert sample(devices[:5], 10) == devices[:5]  # type: ignore[arg-type]
    assert sample(devices, 0) == []  # type: ignore[arg-type]


class View:
    """The server's view of one device, as ``fleet.verify.verify`` reads it."""

    def __init__(self, expected: list[dict[str, object]], posted: list[dict[str, object]]):
        self.answer: dict[str, Any] = {"expected": expected, "posted": posted}

    async def responses(self, lfdi: str) -> dict[str, Any]:
        return self.answer

    async def effective(self, lfdi: str, at: int) -> dict[str, Any]:
        return {"modes": {}}


def _verify(server_t: int, fleet_posted: list[tuple[str, int, float]]) -> dict[str, Any]:
    """A device that first met control A during the run, already superseded (1, 7), while
    the server recorded 1, 2 and 7 for it, the first two at ``server_t``."""
    device = Device(0, "fleet-000001", LFDI, "")
    device.fetched = {A: 1.0}
    device.lifecycle = [(A, 1, True, 500), (A, 7, True, 500)]
    device.posted = fleet_posted
    server = [expected(A, 1, server_t), expected(A, 2, server_t), expected(A, 7, 500)]
    stored: list[dict[str, object]] = [
        {"t": 501, "subject": A, "status": status} for _, status, _ in fleet_posted
    ]
    view = View(server, stored)
    result = asyncio.run(
        verify(
            view,
            [device],
            known_controls={A},
            fleet_effective=lambda lfdi, t: {},
            programs={},
            cutoff=600,
            since=400,
        )
    )
    return result.to_json()


def test_a_control_from_before_the_run_is_compared_on_its_posts_only() -> None:
    report = _verify(100, [(A, 1, 1.0), (A, 7, 1.1)])
    assert report["disagreements"] == 0, report
    assert report["preexisting_controls"] == 1


def test_a_control_of_the_run_is_compared_in_full() -> None:
    report = _verify(450, [(A, 1, 1.0), (A, 7, 1.1)])
    assert report["by_kind"] == {"lifecycle": 1, "not posted": 1}, report
    assert report["preexisting_controls"] == 0
