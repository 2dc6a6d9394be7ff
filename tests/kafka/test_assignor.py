"""The csip-shards assignor's plan: balanced, sticky, standbys on other workers, warm first."""

from __future__ import annotations

import random

import orjson
import pytest
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from engine.runtime.kafka.assignor import Held, ShardAssignor, plan, strategies

SHARDS = list(range(12))


def owners(shares: dict[str, object]) -> dict[int, str]:
    return {s: m for m, share in shares.items() for s in share.owned}  # type: ignore[attr-defined]


def check(shares: dict, shards: list[int], standbys: int) -> None:  # type: ignore[type-arg]
    owned = [s for share in shares.values() for s in share.owned]
    assert sorted(owned) == sorted(shards)  # each shard owned exactly once
    counts = [len(share.owned) for share in shares.values()]
    assert max(counts) - min(counts) <= 1  # balanced
    who = owners(shares)
    for shard in shards:
        keepers = [m for m, share in shares.items() if shard in share.standby]
        assert who[shard] not in keepers  # never a standby of its own shard
        assert len(keepers) == len(set(keepers)) == min(standbys, len(shares) - 1)


def test_one_worker_owns_everything_and_keeps_no_standby() -> None:
    shares = plan(SHARDS, {"a": Held()}, standbys=1)
    assert shares["a"].owned == SHARDS and shares["a"].standby == []


@pytest.mark.parametrize("members", [2, 3, 5, 12, 13])
@pytest.mark.parametrize("standbys", [0, 1, 2])
def test_fresh_plans_are_balanced_with_standbys_elsewhere(members: int, standbys: int) -> None:
    held = {f"m{n}": Held() for n in range(members)}
    shares = plan(SHARDS, held, standbys)
    check(shares, SHARDS, standbys)
    if standbys and members > 1:
        loads = [len(share.standby) for share in shares.values()]
        assert max(loads) - min(loads) <= 1  # standbys spread evenly too


def test_a_joining_worker_takes_only_from_the_fullest() -> None:
    before = plan(SHARDS, {"a": Held(), "b": Held(), "c": Held()}, standbys=0)
    held = {m: Held(owned=frozenset(share.owned)) for m, share in before.items()}
    held["d"] = Held()
    after = plan(SHARDS, held, standbys=0)
    check(after, SHARDS, 0)
    moved = [s for s, m in owners(after).items() if owners(before)[s] != m]
    assert len(moved) == 3 and all(owners(after)[s] == "d" for s in moved)
    # round robin would move 9 of the 12 shards here (shard i to member i mod 4, not 3)


def reported(shares: dict[str, object]) -> dict[str, Held]:
    """What members tell the leader after a plan, every standby built: owned and warm."""
    return {
        m: Held(owned=frozenset(s.owned), warm=frozenset(s.owned + s.standby), warmup=True)  # type: ignore[attr-defined]
        for m, s in shares.items()
    }


@pytest.mark.parametrize("standbys", [0, 1])
def test_with_warmup_a_joining_worker_builds_shards_before_it_owns_them(standbys: int) -> None:
    before = plan(SHARDS, {m: Held(warmup=True) for m in "abc"}, standbys, warmup=True)
    held = reported(before)
    held["d"] = Held(warmup=True)
    first = plan(SHARDS, held, standbys, warmup=True)
    assert owners(first) == owners(before)  # nothing moves away from a live owner yet
    assert len(first["d"].warming) == 3 and set(first["d"].warming) <= set(first["d"].standby)
    assert not any(share.warming for m, share in first.items() if m != "d")
    second = plan(SHARDS, reported(first), standbys, warmup=True)  # d is warm now, asks again
    check(second, SHARDS, standbys)
    moved = {s for s, m in owners(second).items() if owners(before)[s] != m}
    assert moved == set(first["d"].warming)  # exactly the shards it warmed up
    assert not any(share.warming for share in second.values())


def test_a_standby_its_owner_has_yet_to_complete_is_warmed_up_not_taken() -> None:
    first_half = frozenset(range(6))
    held = {
        "a": Held(owned=frozenset(SHARDS), warm=frozenset(SHARDS), warmup=True),
        "b": Held(warm=first_half, ready=frozenset(), warmup=True),  # built, not complete
    }
    shares = plan(SHARDS, held, 0, warmup=True)
    assert shares["a"].owned == SHARDS and shares["b"].warming == sorted(first_half)
    held["b"] = Held(warm=first_half, ready=first_half, warmup=True)
    shares = plan(SHARDS, held, 0, warmup=True)
    assert shares["b"].owned == sorted(first_half) and not shares["b"].warming


def test_warmup_never_holds_back_shards_whose_owner_left() -> None:
    before = plan(SHARDS, {m: Held(warmup=True) for m in "ab"}, 0, warmup=True)
    held = reported(before)
    del held["b"]
    held["c"] = Held(warmup=True)
    after = plan(SHARDS, held, 0, warmup=True)
    assert sorted(owners(after)) == SHARDS  # b's shards have an owner at once
    assert set(before["b"].owned) <= set(owners(after)) and "b" not in owners(after).values()
    assert set(before["a"].owned) == set(after["a"].owned)  # a keeps its own


def test_with_warmup_random_histories_balance_once_warm() -> None:
    rng = random.Random(5)
    held: dict[str, Held] = {"m0": Held(warmup=True)}
    for step in range(150):
        if len(held) > 1 and rng.random() < 0.4:
            del held[rng.choice(sorted(held))]
        elif len(held) < 8:
            held[f"m{step + 1}"] = Held(warmup=True)
        standbys = rng.randint(0, 2)
        shares = plan(SHARDS, held, standbys, warmup=True)
        owned = sorted(s for share in shares.values() for s in share.owned)
        assert owned == SHARDS  # every shard has one owner meanwhile
        for share in shares.values():
            assert not set(share.warming) & set(share.owned)
        settled = plan(SHARDS, reported(shares), standbys, warmup=True)  # warm-ups built
        check(settled, SHARDS, standbys)
        held = reported(settled)


def test_a_leaving_workers_shards_go_to_their_standbys() -> None:
    before = plan(SHARDS, {"a": Held(), "b": Held(), "c": Held()}, standbys=1)
    held = {
        m: Held(owned=frozenset(share.owned), warm=frozenset(share.owned + share.standby))
        for m, share in before.items()
        if m != "b"
    }
    after = plan(SHARDS, held, standbys=1)
    check(after, SHARDS, 1)
    for shard in before["b"].owned:
        keeper = next(m for m, share in before.items() if shard in share.standby)
        assert owners(after)[shard] == keeper  # taken over warm, no rebuild
    for m in ("a", "c"):  # and nothing the survivors owned moved
        assert set(before[m].owned) <= set(after[m].owned)


def test_stale_and_unknown_claims_are_ignored() -> None:
    held = {
        "a": Held(owned=frozenset({0, 1, 2, 99})),
        "b": Held(owned=frozenset({2, 3})),  # 2 is also a's (a rebalance it missed)
    }
    shares = plan([0, 1, 2, 3], held, standbys=1)
    # a keeps an even share (0, 1: claims in order up to two), 2 stays with b, 99 is no shard
    assert owners(shares) == {0: "a", 1: "a", 2: "b", 3: "b"}
    check(shares, [0, 1, 2, 3], 1)


def test_the_plan_does_not_depend_on_the_order_members_come_in() -> None:
    rng = random.Random(7)
    held = {
        f"m{n}": Held(owned=frozenset(rng.sample(SHARDS, 3)), warm=frozenset(rng.sample(SHARDS, 5)))
        for n in range(4)
    }
    items = list(held.items())
    rng.shuffle(items)
    assert plan(SHARDS, dict(items), 1) == plan(SHARDS, held, 1)


def test_random_histories_stay_valid() -> None:
    rng = random.Random(11)
    held: dict[str, Held] = {"m0": Held()}
    for step in range(200):
        if len(held) > 1 and rng.random() < 0.4:
            del held[rng.choice(sorted(held))]
        elif len(held) < 8:
            held[f"m{step + 1}"] = Held()
        standbys = rng.randint(0, 2)
        shares = plan(SHARDS, held, standbys)
        check(shares, SHARDS, standbys)
        held = {
            m: Held(owned=frozenset(s.owned), warm=frozenset(s.owned + s.standby))
            for m, s in shares.items()
        }


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(4))


def test_the_kafka_side_carries_owned_shards_and_standbys() -> None:
    mine = ShardAssignor(lambda: ({1}, {1, 2}, {1, 2}), standbys=0)
    theirs = ShardAssignor(lambda: (set(), set(), set()), standbys=1)
    members = {
        "a": ConsumerProtocolMemberMetadata.decode(mine.metadata(["csip.shards"]).encode()),
        "b": ConsumerProtocolMemberMetadata.decode(theirs.metadata(["csip.shards"]).encode()),
    }
    assignments = mine.assign(_Cluster(), members)  # the largest standby count asked wins
    got = {m: ConsumerProtocolMemberAssignment.decode(a.encode()) for m, a in assignments.items()}
    assert 1 in {tp.partition for tp in got["a"].partitions()}  # sticky
    for member, assignment in got.items():
        mine.on_assignment(assignment)
        owned = {tp.partition for tp in assignment.partitions()}
        assert len(mine.standby) == 2 and not (mine.standby & owned), member
    assert orjson.loads(got["b"].user_data)["standby"] == sorted(mine.standby)


def test_the_kafka_side_carries_warmups_and_uses_them_only_if_all_ask() -> None:
    owner = ShardAssignor(lambda: ({0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3}), standbys=0)
    joining = ShardAssignor(lambda: (set(), set(), set()), standbys=0)
    old = ShardAssignor(lambda: (set(), set(), set()), standbys=0, warmup=False)

    def assign(*assignors: ShardAssignor) -> dict[str, ConsumerProtocolMemberAssignment]:
        members = {
            name: ConsumerProtocolMemberMetadata.decode(a.metadata(["csip.shards"]).encode())
            for name, a in zip("abc", assignors, strict=False)
        }
        got = owner.assign(_Cluster(), members)
        return {m: ConsumerProtocolMemberAssignment.decode(a.encode()) for m, a in got.items()}

    got = assign(owner, joining)
    joining.on_assignment(got["b"])
    assert {tp.partition for tp in got["a"].partitions()} == {0, 1, 2, 3}
    assert len(joining.warming) == 2 and joining.warming <= joining.standby
    got = assign(owner, joining, old)  # a member that does not warm up: shards move at once
    assert all(not orjson.loads(a.user_data)["warming"] for a in got.values())


def test_round_robin_during_a_rolling_upgrade_means_no_standbys() -> None:
    ours, fallback = strategies(lambda: (set(), set(), set()), standbys=1)
    ours.standby = frozenset({3})
    fallback.on_assignment(ConsumerProtocolMemberAssignment(0, [("csip.shards", [0])], b""))
    assert ours.standby == frozenset()
