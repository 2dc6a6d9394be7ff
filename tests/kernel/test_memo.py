"""One Memo for several engines (a Kafka worker's shard engines): results are shared only
between catalogs with the same content, whatever their version counters say."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import compiled
from engine.kernel import (
    CancelControl,
    DefaultControl,
    DefineProgram,
    Engine,
    Input,
    Output,
    SetDefault,
    SetMembership,
    expand,
)
from engine.kernel.catalog import Catalog
from engine.kernel.engine import Memo
from tests.kernel.test_engine import T0, lfdi, make_control


def _lines(outputs: list[Output]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in expand(outputs))


def test_equal_content_gives_equal_digests_and_different_content_different_ones() -> None:
    a, b = Engine(), Engine()
    for engine in (a, b):
        engine.apply(T0, [DefineProgram("SYS", 1), make_control("A", T0 + 10, 60, opModFixedW=1)])
    assert a.catalog.digest == b.catalog.digest
    b.apply(T0 + 1, [make_control("B", T0 + 20, 60, opModFixedW=2)])
    assert a.catalog.digest != b.catalog.digest
    a.apply(T0 + 1, [make_control("B", T0 + 20, 60, opModFixedW=3)])  # same mRID, other value
    assert a.catalog.digest != b.catalog.digest
    assert a.catalog.version == b.catalog.version  # what a version-keyed memo would have mixed


def test_a_restored_catalog_is_told_by_its_content() -> None:
    engine = Engine()
    engine.apply(T0, [DefineProgram("SYS", 1), make_control("A", T0 + 10, 60, opModFixedW=1)])
    raw = json.loads(json.dumps(engine.catalog.to_json()))
    one, two = Catalog.from_json(raw), Catalog.from_json(raw)
    assert one.digest == two.digest
    assert one.version == 0  # restored: the counter starts again, the digest does not
    assert one.digest != Catalog().digest


def test_a_change_orjson_cannot_encode_still_moves_the_digest() -> None:
    """Integers beyond 64 bits take the standard library's encoder (catalog._chain)."""
    catalog = Catalog()
    before = catalog.digest
    catalog._changed("test", 2**70)
    after_big = catalog.digest
    assert after_big != before
    other = Catalog()
    other._changed("test", 2**70 + 1)
    assert other.digest != after_big
    again = Catalog()
    again._changed("test", 2**70)
    assert again.digest == after_big


def test_engines_with_different_catalogs_do_not_take_each_others_results() -> None:
    """Same device state, same instant, same version count, different controls."""
    memo = Memo()
    with_a, with_b = Engine(memo=memo), Engine(memo=memo)
    with_a.apply(T0, [DefineProgram("P", 1), make_control("A", T0, 600, "P", opModFixedW=10)])
    with_b.apply(T0, [DefineProgram("P", 1), make_control("B", T0, 600, "P", opModFixedW=20)])
    out_a = with_a.apply(T0 + 1, [SetMembership(lfdi(1), ("P",))])
    out_b = with_b.apply(T0 + 1, [SetMembership(lfdi(2), ("P",))])
    held_a = {r["event"] for r in expand(out_a) if r["type"] == "effective"}
    held_b = {r["event"] for r in expand(out_b) if r["type"] == "effective"}
    assert held_a == {"A"} and held_b == {"B"}


def _plan(devices: range) -> list[tuple[int, list[Input]]]:
    default = DefaultControl.from_json({"opModMaxLimW": 9})
    catalog: list[Input] = [
        DefineProgram("SYS", 1),
        DefineProgram("F", 0),
        SetDefault("SYS", default),
    ]
    return [
        (T0, catalog),
        (T0, [SetMembership(lfdi(i), ("SYS", "F") if i % 3 else ("SYS",)) for i in devices]),
        (T0 + 5, [make_control("A", T0 + 10, 100, randomizeStart=20, opModFixedW=1)]),
        (T0 + 6, [make_control("B", T0 + 50, 100, "F", opModFixedW=2)]),
        (T0 + 6, [SetMembership(lfdi(i), ("SYS",)) for i in devices if i % 5 == 0]),
        (T0 + 70, [CancelControl("SYS", "A")]),
        (T0 + 80, [make_control("C", T0 + 80, 300, opModMaxLimW=4)]),
    ]


def test_shard_engines_sharing_a_memo_resolve_like_one_engine() -> None:
    devices = range(40)
    whole = Engine()
    expected: list[Output] = []
    for t, inputs in _plan(devices):
        expected += whole.apply(t, inputs)
    expected += whole.advance(T0 + 1000)

    memo = Memo()
    shards = [Engine(memo=memo) for _ in range(4)]
    got: list[Output] = []
    for t, inputs in _plan(devices):
        for n, engine in enumerate(shards):
            mine = [
                i
                for i in inputs
                if not isinstance(i, SetMembership) or int(i.lfdi, 16) % len(shards) == n
            ]
            got += engine.apply(t, mine)
    for engine in shards:
        got += engine.advance(T0 + 1000)
    # the catalog's own status records come once per engine; device records once in all
    device_lines = [line for line in _lines(got) if '"type": "status"' not in line]
    assert device_lines == [line for line in _lines(expected) if '"type": "status"' not in line]
    assert len({e.catalog.digest for e in shards}) == 1


@pytest.mark.skipif(
    compiled.status().get("engine.kernel.engine", False),
    reason="counts calls through a module attribute, which compiled code does not look up",
)
def test_engines_sharing_a_memo_share_it_through_several_instants(monkeypatch: Any) -> None:
    """Shard engines run one after another, each through every instant due: the second asks
    for the first instant again after the first went on to later ones, and still finds it."""
    from engine.kernel import engine as kernel_engine

    memo = Memo()
    first, second = Engine(memo=memo), Engine(memo=memo)
    catalog: list[Input] = [
        DefineProgram("SYS", 1),
        make_control("A", T0 + 10, 10, opModFixedW=1),
        make_control("B", T0 + 30, 10, opModFixedW=2),
    ]
    for n, engine in enumerate((first, second)):
        engine.apply(T0, [*catalog, SetMembership(lfdi(n), ("SYS",))])
    calls: list[int] = []
    settle = kernel_engine.dev.settle

    def counted(*args: Any) -> Any:
        calls.append(1)
        return settle(*args)

    monkeypatch.setattr(kernel_engine.dev, "settle", counted)
    late = T0 + 100  # A starts and ends, B starts and ends: four instants before it
    one = first.apply(late, [])
    worked_out = len(calls)
    two = second.apply(late, [])
    assert worked_out >= 4
    assert len(calls) == worked_out  # the second engine found every instant's results
    assert [r["event"] for r in expand(one) if r["type"] == "effective"] == [
        r["event"] for r in expand(two) if r["type"] == "effective"
    ]


def test_a_memo_keeps_a_bounded_number_of_instants() -> None:
    memo = Memo(instants=3)
    for t in range(10):
        memo.at(t)
        memo.flags[("x", t)] = ()
    memo.at(9)
    assert ("x", 9) in memo.flags
    memo.at(7)
    assert ("x", 7) in memo.flags
    memo.at(2)  # long gone: starts empty
    assert memo.flags == {}
