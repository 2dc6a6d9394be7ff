"""One test per rule of CSIP_RULES (named after it), plus the readings of docs/semantics.md."""

from __future__ import annotations

import hashlib

import pytest

from engine.kernel import InvalidInput, sfdi_from_lfdi
from engine.kernel.draw import draw
from engine.kernel.identity import lfdi_from_certificate, normalize_lfdi
from engine.kernel.model import Curve, DERControl
from engine.kernel.modes import freeze, scaled
from tests.kernel.helpers import DEV, DEV2, control, effective, replay, responses, statuses

P1_P2 = [{"id": "P1", "primacy": 1}, {"id": "P2", "primacy": 2}]


def expected_draw(lfdi: str, mrid: str, kind: str, bound: int) -> int:
    """CSIP_RULES §2.4 written out again, independently of the kernel."""
    if bound == 0:
        return 0
    digest = hashlib.sha256(f"{lfdi.upper()}|{mrid.upper()}|{kind}".encode()).digest()
    value = int.from_bytes(digest[:8], "big") % (abs(bound) + 1)
    return value if bound > 0 else -value


# -- §1 inputs ----------------------------------------------------------------------------


def test_rule_1_fifteen_programs_and_24_events_per_device() -> None:
    programs = [{"id": f"P{i}", "primacy": i} for i in range(15)]
    steps = [
        {"t": 0, "control": control(f"E{p:02d}{k:02d}", 100 + k * 100, 50, f"P{p}", opModFixedW=k)}
        for p in range(15)
        for k in range(24)
    ]
    lines = replay(
        steps,
        programs=programs,
        devices=[{"lfdi": DEV, "programs": [f"P{i}" for i in range(15)]}],
        until=3000,
    )
    got = responses(lines)
    assert sum(1 for _, _, s in got if s == 1) == 15 * 24
    # At each slot the primacy-0 program's event wins; all others are superseded at start.
    assert sum(1 for _, _, s in got if s == 2) == 24
    assert sum(1 for _, _, s in got if s == 7) == 14 * 24
    assert [v for _, v, _, e in effective(lines, "opModFixedW") if e][:3] == [0, 1, 2]


def test_rule_1_ramp_tms_is_not_a_mode() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 100, rampTms=10, opModFixedW=1)},
            {"t": 0, "control": control("B1", 150, 100, "P2", rampTms=20, opModMaxLimW=5)},
        ],
        programs=P1_P2,
        devices=[{"lfdi": DEV, "programs": ["P1", "P2"]}],
    )
    # Sharing only rampTms is not a conflict: both run to completion.
    assert (200, "A1", 3) in responses(lines)
    assert (250, "B1", 3) in responses(lines)


# -- §2 event rules -----------------------------------------------------------------------


def test_rule_2_1_immutable_events() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 100, opModMaxLimW=5000)},
            {"t": 10, "control": control("A1", 300, 500, opModMaxLimW=1)},
        ]
    )
    assert effective(lines, "opModMaxLimW") == [(100, 5000, "P1", "A1"), (200, None, None, None)]
    assert responses(lines) == [(0, "A1", 1), (100, "A1", 2), (200, "A1", 3)]


def test_rule_2_2_disappearance_is_not_cancellation() -> None:
    # A positive duration draw keeps the event running past its scheduled end, when the
    # server no longer lists it.
    extra = expected_draw(DEV, "A1", "duration", 600)
    assert extra > 0
    lines = replay(
        [{"t": 0, "control": control("A1", 100, 100, randomizeDuration=600, opModMaxLimW=7)}],
        until=2000,
    )
    assert responses(lines) == [(0, "A1", 1), (100, "A1", 2), (200 + extra, "A1", 3)]


def test_rule_2_3_effective_period_is_half_open() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 100, "P1", opModMaxLimW=1)},
            {"t": 0, "control": control("B1", 200, 100, "P2", opModMaxLimW=2)},
        ],
        programs=[{"id": "P1", "primacy": 2}, {"id": "P2", "primacy": 1}],
        devices=[{"lfdi": DEV, "programs": ["P1", "P2"]}],
    )
    # Touching events do not overlap: A1 completes at 200 although B1 outranks it.
    assert (200, "A1", 3) in responses(lines)
    assert (200, "B1", 2) in responses(lines)
    assert effective(lines, "opModMaxLimW")[1] == (200, 2, "P2", "B1")


def test_rule_2_3_effective_period_uses_both_draws() -> None:
    start = expected_draw(DEV, "A1", "start", -300)
    extra = expected_draw(DEV, "A1", "duration", 120)
    lines = replay(
        [
            {
                "t": 0,
                "control": control(
                    "A1", 1000, 500, randomizeStart=-300, randomizeDuration=120, opModFixedW=3
                ),
            }
        ],
        until=3000,
    )
    assert responses(lines)[1:] == [
        (1000 + start, "A1", 2),
        (1000 + start + 500 + extra, "A1", 3),
    ]


def test_rule_2_4_randomization_draw() -> None:
    assert draw(DEV, "A1", "start", 30) == 20  # tests/scenarios/05
    assert draw(DEV2, "A1", "start", 30) == 13
    assert draw(DEV.lower(), "a1", "start", 30) == 20  # LFDI and mRID upper-cased
    for bound in (-3600, -1, 1, 7, 3600):
        for kind in ("start", "duration", "cancel"):
            got = draw(DEV, "ABCDEF", kind, bound)  # type: ignore[arg-type]
            assert got == expected_draw(DEV, "ABCDEF", kind, bound)
            assert abs(got) <= abs(bound) and (got == 0 or (got > 0) == (bound > 0))
    assert draw(DEV, "A1", "start", 0) == 0


def test_rule_2_5_successive_events_follow_the_effective_end() -> None:
    a_start = expected_draw(DEV, "A1", "start", 60)
    lines = replay(
        [
            {"t": 0, "control": control("A1", 0, 100, randomizeStart=60, opModMaxLimW=1)},
            {"t": 0, "control": control("B1", 100, 100, randomizeStart=60, opModMaxLimW=2)},
            {"t": 0, "control": control("C1", 200, 100, randomizeStart=60, opModMaxLimW=3)},
        ],
    )
    # B1's own start draw is not used; chains compose; neither is a supersession.
    assert responses(lines) == sorted(
        [
            (0, "A1", 1),
            (0, "B1", 1),
            (0, "C1", 1),
            (a_start, "A1", 2),
            (a_start + 100, "A1", 3),
            (a_start + 100, "B1", 2),
            (a_start + 200, "B1", 3),
            (a_start + 200, "C1", 2),
            (a_start + 300, "C1", 3),
        ]
    )


def test_rule_2_5_successive_needs_a_shared_mode() -> None:
    b_start = expected_draw(DEV, "B1", "start", 60)
    lines = replay(
        [
            {"t": 0, "control": control("A1", 0, 100, randomizeStart=60, opModMaxLimW=1)},
            {"t": 0, "control": control("B1", 100, 100, randomizeStart=60, opModFixedW=2)},
        ],
    )
    assert (100 + b_start, "B1", 2) in responses(lines)


def test_rule_2_5_predecessor_set_is_fixed_when_first_seen() -> None:
    # A1 arrives after B1 was seen: B1 keeps its own draw.
    b_start = expected_draw(DEV, "B1", "start", 60)
    lines = replay(
        [
            {"t": 0, "control": control("B1", 300, 100, randomizeStart=60, opModMaxLimW=2)},
            {"t": 10, "control": control("A1", 200, 100, randomizeDuration=60, opModMaxLimW=1)},
        ],
    )
    assert (300 + b_start, "B1", 2) in responses(lines)


def test_rule_2_6_ranking_primacy_then_creation_time_then_mrid() -> None:
    programs = [{"id": "P1", "primacy": 3}, {"id": "P2", "primacy": 3}]
    devices = [{"lfdi": DEV, "programs": ["P1", "P2"]}]
    # Same primacy: later creationTime wins.
    lines = replay(
        [
            {"t": 0, "control": control("B9", 100, 100, "P1", creation=5, opModFixedW=1)},
            {"t": 0, "control": control("A1", 100, 100, "P2", creation=6, opModFixedW=2)},
        ],
        programs=programs,
        devices=devices,
    )
    assert effective(lines, "opModFixedW")[0] == (100, 2, "P2", "A1")
    # Same creationTime too: the greater mRID wins.
    lines = replay(
        [
            {"t": 0, "control": control("B9", 100, 100, "P1", creation=5, opModFixedW=1)},
            {"t": 0, "control": control("A1", 100, 100, "P2", creation=5, opModFixedW=2)},
        ],
        programs=programs,
        devices=devices,
    )
    assert effective(lines, "opModFixedW")[0] == (100, 1, "P1", "B9")
    # Primacy beats both.
    lines = replay(
        [
            {"t": 0, "control": control("B9", 100, 100, "P2", creation=9, opModFixedW=1)},
            {"t": 0, "control": control("A1", 100, 100, "P1", creation=0, opModFixedW=2)},
        ],
        programs=P1_P2,
        devices=devices,
    )
    assert effective(lines, "opModFixedW")[0] == (100, 2, "P1", "A1")


def test_rule_2_7_conflict_is_per_mode_with_no_resume() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("B1", 0, 600, "P2", opModMaxLimW=8000, opModConnect=True)},
            {"t": 60, "control": control("A1", 120, 240, "P1", opModMaxLimW=2000)},
        ],
        programs=P1_P2,
        devices=[{"lfdi": DEV, "programs": ["P1", "P2"]}],
    )
    assert effective(lines, "opModMaxLimW") == [
        (0, 8000, "P2", "B1"),
        (120, 2000, "P1", "A1"),
        (360, None, None, None),  # B1 does not get it back
    ]
    assert effective(lines, "opModConnect") == [(0, True, "P2", "B1"), (600, None, None, None)]
    assert (600, "B1", 3) in responses(lines)


def test_rule_2_7_a_running_event_takes_what_it_carries_even_if_it_lost_it() -> None:
    # V (top) takes m from W; after V ends, W still carries m and takes it from X.
    programs = [{"id": f"P{i}", "primacy": i} for i in (1, 2, 3)]
    lines = replay(
        [
            {"t": 0, "control": control("V", 0, 100, "P1", opModMaxLimW=1)},
            {"t": 0, "control": control("W", 50, 250, "P2", opModMaxLimW=2, opModFixedW=2)},
            {"t": 0, "control": control("X", 150, 250, "P3", opModMaxLimW=3)},
        ],
        programs=programs,
        devices=[{"lfdi": DEV, "programs": ["P1", "P2", "P3"]}],
    )
    assert (150, "X", 7) in responses(lines)
    assert effective(lines, "opModMaxLimW") == [(0, 1, "P1", "V"), (100, None, None, None)]


def test_rule_2_8_superseded_when_every_mode_is_lost() -> None:
    lines = replay(
        [
            {
                "t": 0,
                "control": control("A1", 100, 1000, opModTargetW={"value": 5, "multiplier": 2}),
            },
            {
                "t": 50,
                "control": control(
                    "A2", 300, 100, creation=50, opModTargetW={"value": 1, "multiplier": 2}
                ),
            },
        ]
    )
    assert responses(lines) == [
        (0, "A1", 1),
        (50, "A2", 1),
        (100, "A1", 2),
        (300, "A1", 7),
        (300, "A2", 2),
        (400, "A2", 3),
    ]


def test_rule_2_8_never_starts_when_all_modes_are_taken_at_its_start() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("B1", 0, 1000, "P2", opModMaxLimW=5000)},
            {"t": 0, "control": control("A1", 200, 100, "P1", opModMaxLimW=1000)},
            {"t": 100, "primacy": {"program": "P2", "primacy": 0}},
        ],
        programs=P1_P2,
        devices=[{"lfdi": DEV, "programs": ["P1", "P2"]}],
    )
    assert [r for r in responses(lines) if r[1] == "A1"] == [(0, "A1", 1), (200, "A1", 7)]


def test_rule_2_9_cancel_before_start_never_starts() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 100, opModMaxLimW=5)},
            {"t": 50, "cancel": {"program": "P1", "mRID": "A1"}},
        ]
    )
    assert responses(lines) == [(0, "A1", 1), (50, "A1", 6)]
    assert effective(lines, "opModMaxLimW") == []
    assert statuses(lines) == [(0, "A1", 0), (50, "A1", 2)]


def test_rule_2_9_cancel_while_running_stops_at_once() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 600, opModMaxLimW=5)},
            {"t": 300, "cancel": {"program": "P1", "mRID": "A1"}},
        ]
    )
    assert responses(lines) == [(0, "A1", 1), (100, "A1", 2), (300, "A1", 6)]
    assert effective(lines, "opModMaxLimW") == [(100, 5, "P1", "A1"), (300, None, None, None)]


def test_rule_2_9_randomized_cancel_stops_after_its_draw() -> None:
    delay = expected_draw(DEV, "A1", "cancel", 600)
    assert 0 < delay < 1000
    start = expected_draw(DEV, "A1", "start", 600)
    lines = replay(
        [
            {"t": 0, "control": control("A1", 1000, 3000, randomizeStart=600, opModFixedW=5)},
            {"t": 2000, "cancel": {"program": "P1", "mRID": "A1"}},
        ],
        until=6000,
    )
    assert responses(lines) == [(0, "A1", 1), (1000 + start, "A1", 2), (2000 + delay, "A1", 6)]
    assert (2000, "A1", 3) in statuses(lines)  # cancelled with randomization


def test_rule_2_9_randomized_cancel_after_the_end_completes_normally() -> None:
    delay = expected_draw(DEV, "A1", "cancel", 600)
    start = expected_draw(DEV, "A1", "start", 600)
    end = 1000 + start + 1000
    cancel_at = end - delay  # the stop would land exactly on the end: completes (3)
    assert cancel_at > 1000 + start
    lines = replay(
        [
            {"t": 0, "control": control("A1", 1000, 1000, randomizeStart=600, opModFixedW=5)},
            {"t": cancel_at, "cancel": {"program": "P1", "mRID": "A1"}},
        ],
        until=6000,
    )
    assert responses(lines)[-1] == (end, "A1", 3)


def test_rule_2_9_first_seen_already_cancelled_never_starts() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 500, opModMaxLimW=5)},
            {"t": 10, "cancel": {"program": "P1", "mRID": "A1"}},
            {"t": 200, "membership": {"lfdi": DEV2, "programs": ["P1"]}},
        ],
        devices=[{"lfdi": DEV, "programs": ["P1"]}, {"lfdi": DEV2, "programs": []}],
    )
    assert responses(lines, DEV2) == [(200, "A1", 1), (200, "A1", 6)]


def test_rule_2_10_joining_sees_listed_events_only() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("OLD", 0, 100, opModFixedW=1)},
            {"t": 0, "control": control("NOW", 150, 300, opModMaxLimW=2)},
            {"t": 200, "membership": {"lfdi": DEV2, "programs": ["P1"]}},
        ],
        devices=[{"lfdi": DEV, "programs": ["P1"]}, {"lfdi": DEV2, "programs": []}],
    )
    # OLD's scheduled end has passed: not listed, not seen. NOW is seen after its start and
    # starts when seen.
    assert responses(lines, DEV2) == [(200, "NOW", 1), (200, "NOW", 2), (450, "NOW", 3)]


def test_rule_2_10_late_event_is_seen_then_ignored() -> None:
    lines = replay([{"t": 700, "control": control("A1", 0, 300, opModMaxLimW=1)}])
    assert responses(lines) == [(700, "A1", 1), (700, "A1", 254)]
    assert effective(lines, "opModMaxLimW") == []


def test_rule_2_10_scheduled_end_at_the_instant_seen_is_late() -> None:
    lines = replay([{"t": 300, "control": control("A1", 0, 300, opModMaxLimW=1)}])
    assert responses(lines) == [(300, "A1", 1), (300, "A1", 254)]


def test_rule_2_11_program_removal_aborts_running_and_scheduled() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("B1", 0, 1000, "P2", opModMaxLimW=5000)},
            {"t": 0, "control": control("B2", 800, 100, "P2", opModFixedW=1)},
            {"t": 500, "membership": {"lfdi": DEV, "programs": ["P1"]}},
        ],
        programs=[{"id": "P1", "primacy": 1, "default": {"opModMaxLimW": 9000}}, P1_P2[1]],
        devices=[{"lfdi": DEV, "programs": ["P1", "P2"]}],
    )
    assert [r for r in responses(lines) if r[0] == 500] == [(500, "B1", 14), (500, "B2", 14)]
    assert effective(lines, "opModMaxLimW")[-1] == (500, 9000, "P1", None)


def test_rule_2_12_device_category_without_common_bit_is_ignored() -> None:
    steps = [
        {"t": 0, "control": control("A1", 100, 100, deviceCategory="02", opModFixedW=1)},
        {"t": 0, "control": control("A2", 300, 100, deviceCategory=6, opModFixedW=2)},
    ]
    lines = replay(steps, devices=[{"lfdi": DEV, "programs": ["P1"], "deviceCategory": 4}])
    assert [r[1] for r in responses(lines)] == ["A2", "A2", "A2"]
    assert effective(lines, "opModFixedW")[0] == (300, 2, "P1", "A2")
    # A device without a category gets every event.
    lines = replay(steps)
    assert {r[1] for r in responses(lines)} == {"A1", "A2"}


def test_rule_2_13_invalid_curve_links_are_rejected() -> None:
    programs = [
        {
            "id": "P1",
            "primacy": 1,
            "curves": [{"mRID": "VV", "curveType": 11, "points": [[95, 30], [105, -30]]}],
        }
    ]
    lines = replay(
        [
            {"t": 0, "control": control("OK", 100, 100, opModVoltVar={"curve": "VV"})},
            {"t": 0, "control": control("WRONG", 300, 100, opModVoltWatt={"curve": "VV"})},
            {"t": 0, "control": control("MISSING", 500, 100, opModVoltVar={"curve": "NONE"})},
        ],
        programs=programs,
    )
    got = responses(lines)
    assert (0, "WRONG", 253) in got and (0, "MISSING", 253) in got
    assert (200, "OK", 3) in got
    assert effective(lines, "opModVoltVar")[0] == (100, {"curve": "VV"}, "P1", "OK")
    assert effective(lines, "opModVoltWatt") == []


def test_rule_2_13_curve_added_later_keeps_the_event_invalid() -> None:
    curve = {"mRID": "VV", "curveType": 11, "points": [[95, 30]]}
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 100, opModVoltVar={"curve": "VV"})},
            {"t": 10, "curve": {"program": "P1", "curve": curve}},
        ]
    )
    assert responses(lines) == [(0, "A1", 1), (0, "A1", 253)]


# -- §3 effective control -----------------------------------------------------------------


def test_rule_3_default_of_the_highest_ranked_program_applies() -> None:
    programs = [
        {"id": "P1", "primacy": 1, "default": {"opModMaxLimW": 3000}},
        {"id": "P2", "primacy": 2, "default": {"opModMaxLimW": 0, "opModConnect": True}},
    ]
    lines = replay(
        [
            {"t": 100, "control": control("B1", 100, 200, "P2", creation=100, opModMaxLimW=9000)},
            {"t": 400, "default": {"program": "P1", "base": None}},
        ],
        programs=programs,
        devices=[{"lfdi": DEV, "programs": ["P2", "P1"]}],
    )
    assert effective(lines, "opModMaxLimW") == [
        (0, 3000, "P1", None),
        (100, 9000, "P2", "B1"),  # any running event beats any default
        (300, 3000, "P1", None),
        (400, 0, "P2", None),  # removing P1's default exposes P2's
    ]
    # P1's default lacks opModConnect: uncontrolled while it is the top default.
    assert effective(lines, "opModConnect") == [(400, True, "P2", None)]


def test_rule_3_default_ties_go_by_membership_order() -> None:
    programs = [
        {"id": "P1", "primacy": 1, "default": {"opModMaxLimW": 1}},
        {"id": "P2", "primacy": 1, "default": {"opModMaxLimW": 2}},
    ]
    lines = replay([], programs=programs, devices=[{"lfdi": DEV, "programs": ["P2", "P1"]}])
    assert effective(lines, "opModMaxLimW") == [(0, 2, "P2", None)]


def test_rule_3_default_change_applies_at_once_and_settings_are_modes() -> None:
    programs = [{"id": "P1", "primacy": 1, "default": {"setGradW": 27, "opModMaxLimW": 10}}]
    lines = replay(
        [{"t": 90, "default": {"program": "P1", "base": {"setGradW": 30, "setSoftGradW": 5}}}],
        programs=programs,
    )
    assert effective(lines, "setGradW") == [(0, 27, "P1", None), (90, 30, "P1", None)]
    assert effective(lines, "setSoftGradW") == [(90, 5, "P1", None)]
    assert effective(lines, "opModMaxLimW") == [(0, 10, "P1", None), (90, None, None, None)]
    assert responses(lines) == []  # nothing is posted for defaults


def test_rule_3_primacy_change_reselects_the_default() -> None:
    programs = [
        {"id": "P1", "primacy": 1, "default": {"opModMaxLimW": 1}},
        {"id": "P2", "primacy": 2, "default": {"opModMaxLimW": 2}},
    ]
    lines = replay(
        [{"t": 100, "primacy": {"program": "P2", "primacy": 0}}],
        programs=programs,
        devices=[{"lfdi": DEV, "programs": ["P1", "P2"]}],
    )
    assert effective(lines, "opModMaxLimW") == [(0, 1, "P1", None), (100, 2, "P2", None)]


# -- §4 responses -------------------------------------------------------------------------


def test_rule_4_response_required_gating() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("R1", 100, 100, rr="01", opModFixedW=1)},
            {"t": 0, "control": control("R2", 300, 100, rr="02", opModFixedW=2)},
            {"t": 0, "control": control("R0", 500, 100, rr="00", opModFixedW=3)},
            {"t": 0, "control": control("NR", 700, 100, replyTo=None, opModFixedW=4)},
        ]
    )
    assert responses(lines) == [(0, "R1", 1), (300, "R2", 2), (400, "R2", 3)]
    # The lifecycle runs regardless of gating.
    assert effective(lines, "opModFixedW")[-2:] == [(700, 4, "P1", "NR"), (800, None, None, None)]


def test_rule_4_csip_aus_profile_drops_other_statuses() -> None:
    steps = [
        {"t": 0, "control": control("A1", 0, 1000, "P2", opModMaxLimW=1)},
        {"t": 0, "control": control("LATE", -300, 100, "P2", opModFixedW=1)},
        {"t": 500, "membership": {"lfdi": DEV, "programs": ["P1"]}},
    ]
    kwargs = {"programs": P1_P2, "devices": [{"lfdi": DEV, "programs": ["P1", "P2"]}]}
    csip = responses(replay(steps, **kwargs))  # type: ignore[arg-type]
    aus = responses(replay(steps, profile="csip-aus", **kwargs))  # type: ignore[arg-type]
    assert (0, "LATE", 254) in csip and (500, "A1", 14) in csip
    assert aus == [r for r in csip if r[2] in (1, 2, 3, 6, 7)]


def test_rule_4_no_response_twice_or_after_a_terminal_one() -> None:
    # Leave and rejoin: the event is not seen again.
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 500, opModMaxLimW=5)},
            {"t": 200, "membership": {"lfdi": DEV, "programs": []}},
            {"t": 300, "membership": {"lfdi": DEV, "programs": ["P1"]}},
        ]
    )
    assert responses(lines) == [(0, "A1", 1), (100, "A1", 2), (200, "A1", 14)]


# -- §5 server-side status ----------------------------------------------------------------


def test_rule_5_created_scheduled_then_active_at_earliest_start() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 500, 100, randomizeStart=-100, opModFixedW=1)},
            {"t": 0, "control": control("A2", 0, 100, opModMaxLimW=1)},
        ]
    )
    assert statuses(lines) == [(0, "A1", 0), (0, "A2", 1), (400, "A1", 1)]


def test_rule_5_cancel_gives_2_or_3_with_randomization() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 500, 100, opModFixedW=1)},
            {"t": 0, "control": control("A2", 500, 100, randomizeDuration=10, opModMaxLimW=1)},
            {"t": 10, "cancel": {"program": "P1", "mRID": "A1"}},
            {"t": 10, "cancel": {"program": "P1", "mRID": "A2"}},
        ]
    )
    assert statuses(lines) == [(0, "A1", 0), (0, "A2", 0), (10, "A1", 2), (10, "A2", 3)]


def test_rule_5_supersede_by_newer_same_modes_overlapping() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 1000, opModFixedW=1)},
            {"t": 50, "control": control("A2", 300, 100, creation=50, opModFixedW=2)},
            # Different modes: no server-side supersede.
            {"t": 60, "control": control("A3", 300, 100, creation=60, opModMaxLimW=2)},
        ]
    )
    assert (300, "A1", 4) in statuses(lines)
    assert not [s for s in statuses(lines) if s[1] == "A3" and s[2] == 4]


def test_rule_5_cancel_first_prevents_supersede_and_terminal_never_changes() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 1000, opModFixedW=1)},
            {"t": 50, "control": control("A2", 300, 100, creation=50, opModFixedW=2)},
            {"t": 300, "cancel": {"program": "P1", "mRID": "A2"}},
            {"t": 400, "cancel": {"program": "P1", "mRID": "A2"}},
        ]
    )
    assert [s for s in statuses(lines) if s[1] == "A1"] == [(0, "A1", 0), (100, "A1", 1)]
    assert [s for s in statuses(lines) if s[1] == "A2"] == [(50, "A2", 0), (300, "A2", 2)]


def test_rule_5_older_control_arriving_later_is_superseded() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("NEW", 100, 100, creation=50, opModFixedW=1)},
            {"t": 20, "control": control("OLD", 150, 100, creation=10, opModFixedW=2)},
        ]
    )
    assert (100, "OLD", 4) in statuses(lines)


# -- §6 units -----------------------------------------------------------------------------


def test_rule_6_units_and_ranges() -> None:
    assert scaled("opModTargetW", freeze("opModTargetW", {"value": 5, "multiplier": 3})) == 5000
    assert scaled("opModTargetVar", freeze("opModTargetVar", {"value": 5, "multiplier": -1})) == 0.5
    assert scaled("opModMaxLimW", freeze("opModMaxLimW", 5050)) == 50.5
    assert scaled("opModFixedW", freeze("opModFixedW", -10000)) == -100.0
    pf = freeze("opModFixedPFInjectW", {"displacement": 95, "multiplier": -2, "excitation": True})
    assert scaled("opModFixedPFInjectW", pf) == {"powerFactor": 0.95, "absorbing": True}
    for mode, bad in [
        ("opModMaxLimW", 10001),
        ("opModMaxLimW", -1),
        ("opModFixedW", 10001),
        ("opModConnect", 1),
        ("opModTargetW", {"value": 1}),
        ("opModTargetW", 5),
        ("opModNope", 1),
    ]:
        with pytest.raises(InvalidInput):
            freeze(mode, bad)


def test_rule_6_curves() -> None:
    curve = Curve.from_json(
        {"mRID": "C", "curveType": 12, "xMultiplier": -1, "yMultiplier": 2, "points": [[2300, 1]]}
    )
    assert curve.scaled() == [(230.0, 100.0)]
    for bad in ([], [[1, 2]] * 11, [[1]], [[1, 2.5]]):
        with pytest.raises(InvalidInput):
            Curve.from_json({"mRID": "C", "curveType": 11, "points": bad})
    with pytest.raises(InvalidInput):
        Curve.from_json({"mRID": "C", "curveType": 15, "points": [[1, 1]]})


def test_rule_6_randomization_limits() -> None:
    with pytest.raises(InvalidInput):
        DERControl.from_json(control("A", 0, 10, randomizeStart=3601, opModFixedW=1))


# -- §7 identity --------------------------------------------------------------------------


DEV_UPPER = "D1D907752314F590E9DFC8A604E3339D662D719F"


def test_rule_7_lfdi_and_sfdi() -> None:
    assert sfdi_from_lfdi("D1D907752314F590E9DFC8A604E3339D662D719F") == 563305818425
    assert sfdi_from_lfdi("d1d907752314f590e9dfc8a604e3339d662d719f") == 563305818425
    der = b"\x30\x03\x02\x01\x01"
    assert lfdi_from_certificate(der) == hashlib.sha256(der).hexdigest()[:40].upper()
    for lfdi in (DEV, DEV2, "0" * 40, "F" * 40):
        sfdi = sfdi_from_lfdi(lfdi)
        assert sfdi < 10**12 and sum(map(int, str(sfdi))) % 10 == 0
        assert sfdi // 10 == int(lfdi[:9], 16)
    with pytest.raises(InvalidInput):
        sfdi_from_lfdi("XYZ")
    assert normalize_lfdi(" d1d907752314f590e9dfc8a604e3339d662d719f\n") == DEV_UPPER
    # 40 characters, not 40 hex digits: a prefix, a sign, a digit separator, a space inside,
    # whitespace between digit pairs (which ``bytes.fromhex`` accepts: 14 bytes here), digits
    # that are not ASCII.
    spaced = "AA " * 12 + "AAAA"
    assert len(spaced) == 40 and len(bytes.fromhex(spaced)) == 14
    for bad in (
        "0x" + "A" * 38,
        "-" + "A" * 39,
        "A_" * 20,
        "A" * 20 + " " + "A" * 19,
        "G" * 40,
        spaced,
        "A" * 38 + "\t" + "A",
        "\uff10" + "A" * 39,
        "\u0661" * 40,
    ):
        with pytest.raises(InvalidInput, match="hexadecimal"):
            normalize_lfdi(bad)


# -- docs/semantics.md: the instant model and the choices -----------------------------------


def test_semantics_cancel_at_the_start_instant_never_starts() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 100, opModFixedW=1)},
            {"t": 100, "cancel": {"program": "P1", "mRID": "A1"}},
        ]
    )
    assert responses(lines) == [(0, "A1", 1), (100, "A1", 6)]
    assert statuses(lines) == [(0, "A1", 0), (100, "A1", 2)]


def test_semantics_cancel_or_removal_at_the_end_instant_finds_it_completed() -> None:
    for step in (
        {"t": 200, "cancel": {"program": "P1", "mRID": "A1"}},
        {"t": 200, "membership": {"lfdi": DEV, "programs": []}},
    ):
        lines = replay([{"t": 0, "control": control("A1", 100, 100, opModFixedW=1)}, step])
        assert responses(lines) == [(0, "A1", 1), (100, "A1", 2), (200, "A1", 3)]


def test_semantics_created_and_cancelled_in_one_instant() -> None:
    lines = replay(
        [
            {"t": 50, "control": control("A1", 0, 100, opModFixedW=1)},
            {"t": 50, "cancel": {"program": "P1", "mRID": "A1"}},
        ]
    )
    assert statuses(lines) == [(50, "A1", 1), (50, "A1", 2)]
    assert responses(lines) == [(50, "A1", 1), (50, "A1", 6)]


def test_semantics_empty_effective_period_starts_and_completes() -> None:
    extra = expected_draw(DEV, "A1", "duration", -3600)
    assert extra < -100
    lines = replay(
        [{"t": 0, "control": control("A1", 100, 100, randomizeDuration=-3600, opModFixedW=1)}]
    )
    assert responses(lines) == [(0, "A1", 1), (100, "A1", 2), (100, "A1", 3)]
    assert effective(lines, "opModFixedW") == []


def test_semantics_zero_length_event_is_no_predecessor() -> None:
    b_start = expected_draw(DEV, "B1", "start", 60)
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 0, opModMaxLimW=1)},
            {"t": 0, "control": control("B1", 100, 100, randomizeStart=60, opModMaxLimW=2)},
        ]
    )
    assert (100 + b_start, "B1", 2) in responses(lines)


def test_semantics_cancel_of_a_superseded_event_changes_nothing() -> None:
    lines = replay(
        [
            {"t": 0, "control": control("A1", 100, 1000, opModFixedW=1)},
            {"t": 50, "control": control("A2", 300, 100, creation=50, opModFixedW=2)},
            {"t": 500, "cancel": {"program": "P1", "mRID": "A1"}},
        ]
    )
    assert [s for s in statuses(lines) if s[1] == "A1"][-1] == (300, "A1", 4)
    assert not [r for r in responses(lines) if r[2] == 6]
