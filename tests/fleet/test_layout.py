"""Program layouts: groups, counts, primacies, and which device is in which program."""

from __future__ import annotations

import pytest

from fleet.layout import Layout


def test_groups_counts_and_default_primacies() -> None:
    layout = Layout.parse("system,substation-4,feeder-16")
    assert [(g.name, g.count, g.primacy) for g in layout.groups] == [
        ("system", 1, 10),
        ("substation", 4, 20),
        ("feeder", 16, 30),
    ]
    programs = layout.programs()
    assert len(programs) == 21
    assert programs[0] == ("system", 10, "system")
    assert ("feeder-16", 30, "feeder-16") in programs


def test_explicit_primacy_and_hyphenated_names() -> None:
    layout = Layout.parse("north-zone:5, feeder-north-3:1")
    assert [(g.name, g.count, g.primacy) for g in layout.groups] == [
        ("north-zone", 1, 5),
        ("feeder-north", 3, 1),
    ]


def test_devices_spread_as_a_tree() -> None:
    layout = Layout.parse("system,substation-4,feeder-16")
    for index in range(64):
        system, substation, feeder = layout.memberships(index)
        assert system == "system"
        feeder_number = int(feeder.rsplit("-", 1)[1])
        assert substation == f"substation-{(feeder_number - 1) % 4 + 1}"
    feeders = {layout.memberships(i)[2] for i in range(64)}
    assert len(feeders) == 16


def test_one_fsa_per_group() -> None:
    layout = Layout.parse("system,feeder-3")
    assert layout.fsas(4) == [
        {"description": "system", "programs": ["system"]},
        {"description": "feeder", "programs": ["feeder-2"]},
    ]


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "system,system",
        "bad name",
        "system:300",
        "feeder-0",
        "a:b",
        ",".join(f"g{i}" for i in range(16)),
    ],
)
def test_bad_layouts_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        Layout.parse(spec)
