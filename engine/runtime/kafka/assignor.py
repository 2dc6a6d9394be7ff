"""Who owns which shard, and who keeps which shards warm: the csip-workers group's assignor.

aiokafka's default (round robin) deals the shards out afresh at every rebalance: a worker
joining a group of three moves most of the shards (9 of 12 when it sorts last), and each moved
shard is rebuilt from the start of the command log. This assignor, chosen by the group leader,
instead

- keeps each shard with the worker that owns it (sticky), as far as balance allows: owned
  counts differ by at most one, and a joining worker takes shards only from the fullest;
- gives a shard whose owner left to a worker that kept it warm (a standby), if one did;
- names, for every shard, up to ``standbys`` other workers that keep a standby engine of it:
  they fold the same log and advance the same clock, hold back its outputs, and take it over
  without a rebuild when its owner goes;
- with ``warmup`` (the workers' default), does not move a shard away from a live owner to a
  worker that has no current engine of it (a worker that joins, or one whose share grows):
  that worker keeps the shard as a *warm-up* standby first, builds its engine in the
  background while the owner goes on publishing, and asks for a new rebalance once it is
  ready; the shard moves then, with nothing rebuilt and no pause in its outputs. Shards whose
  owner left are given at once (nobody publishes them meanwhile).

Each worker tells the leader, in its join metadata, the shards it owns, the shards it has
current engines for (owned and standby) and of those the ones it could own at once (not a
standby whose engine its owner's notes have yet to complete), the number of standbys it asks
for and whether it warms up; the leader uses the largest number asked, so a rolling change of
``--standby`` takes effect as workers restart, and warm-ups only if every member asks for
them. The standby and warm-up shards of each worker travel in its assignment's user data. The
plan itself (``plan``) is a pure function, tested on its own.

Workers of an older release offer only "roundrobin"; the group uses a strategy every member
offers, so this one also offers round robin (with no standbys) during a rolling upgrade.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

log = logging.getLogger("csip.worker")
NAME = "csip-shards"
VERSION = 0


@dataclass(frozen=True)
class Held:
    """What one member told the leader."""

    owned: frozenset[int] = frozenset()
    warm: frozenset[int] = frozenset()  # shards it has current engines for (owned, standby)
    standbys: int = 0  # standbys per shard it asks for
    warmup: bool = False  # shards it gains from a live owner are warmed up first
    # of ``warm``, those it could own at once (not a standby still to be completed by its
    # owner's notes); None: all of ``warm``
    ready: frozenset[int] | None = None

    def can_take(self, shard: int) -> bool:
        return shard in (self.warm if self.ready is None else self.ready)


@dataclass
class Share:
    """One member's part of a plan."""

    owned: list[int] = field(default_factory=list)
    standby: list[int] = field(default_factory=list)
    # standbys it is to own once warm (also in ``standby``): it asks for a rebalance then
    warming: list[int] = field(default_factory=list)


def plan(
    shards: Sequence[int], members: Mapping[str, Held], standbys: int, warmup: bool = False
) -> dict[str, Share]:
    """Owners and standbys for ``shards`` among ``members`` (see the module doc).

    Owned counts differ by at most one once every warm-up has moved: with ``warmup``, a
    balance move of a shard its owner keeps (sticky) to a member without a current engine of
    it becomes a warm-up standby of that member instead.

    Deterministic: the same members and shards give the same plan, whichever member leads."""
    ids = sorted(members)
    shares = {m: Share() for m in ids}
    if not ids:
        return shares
    cap = math.ceil(len(shards) / len(ids))
    owner: dict[int, str] = {}
    # 1. Sticky: each shard stays with its owner, up to an even share each (with ``warmup``,
    # all of them: the balance below moves the excess once warm). Two members claiming one
    # shard (a stale claim after a rebalance it missed): the first keeps it.
    keep = len(shards) if warmup else cap
    for m in ids:
        for shard in sorted(members[m].owned):
            if shard in owner or shard not in shards or len(shares[m].owned) >= keep:
                continue
            owner[shard] = m
            shares[m].owned.append(shard)
    # 2. Orphans: to a member under its share that kept the shard warm, else the least loaded.
    for shard in shards:
        if shard in owner:
            continue
        under = [m for m in ids if len(shares[m].owned) < cap]
        m = min(under, key=lambda m: (shard not in members[m].warm, len(shares[m].owned), m))
        owner[shard] = m
        shares[m].owned.append(shard)
    # 3. Balance: from the fullest to the emptiest until counts differ by at most one (counting
    # warm-ups as moved); the shard moved is one the receiver could own at once if any, else
    # one it has warm, else the giver's last. With ``warmup``, a shard the giver owned before
    # and the receiver could not own at once stays with the giver for now and is the
    # receiver's to warm up.
    load = {m: len(shares[m].owned) for m in ids}
    warming: set[int] = set()  # shards to move once warm (still their giver's)
    while True:
        fullest = max(ids, key=lambda m: (load[m], m))
        emptiest = min(ids, key=lambda m: (load[m], m))
        if load[fullest] - load[emptiest] <= 1:
            break
        given = [s for s in shares[fullest].owned if s not in warming]
        ready = [s for s in given if members[emptiest].can_take(s)]
        warm = [s for s in given if s in members[emptiest].warm]
        shard = ready[0] if ready else warm[0] if warm else given[-1]
        load[fullest] -= 1
        load[emptiest] += 1
        if not ready and warmup and shard in members[fullest].owned:
            shares[emptiest].warming.append(shard)
            warming.add(shard)
            continue
        shares[fullest].owned.remove(shard)
        shares[emptiest].owned.append(shard)
        owner[shard] = emptiest
    # 4. Standbys: per shard, up to ``standbys`` members other than its owner: those already
    # warm first, then those keeping the fewest of the same owner's shards, then the least
    # loaded with standbys (each at most an even share if it can).
    wanted = min(standbys, len(ids) - 1)
    standby_cap = math.ceil(len(shards) * wanted / len(ids)) if wanted else 0
    place = {m: n for n, m in enumerate(ids)}
    # (keeper, owner) -> shards of that owner it keeps: spread, so that the shards of a worker
    # that leaves are taken over warm by several others, each within its even share
    kept: Counter[tuple[str, str]] = Counter()
    for m in ids:  # warm-ups are standbys of their shards (beyond ``standbys`` if need be)
        for shard in shares[m].warming:
            shares[m].standby.append(shard)
            kept[m, owner[shard]] += 1
    for shard in sorted(shards):
        have = sum(1 for m in ids if shard in shares[m].warming)
        for _ in range(wanted - have):
            others = [m for m in ids if m != owner[shard] and shard not in shares[m].standby]
            if not others:
                break
            room = [m for m in others if len(shares[m].standby) < standby_cap] or others
            m = min(
                room,
                key=lambda m: (
                    shard not in members[m].warm,
                    kept[m, owner[shard]],  # an owner's shards kept on different members
                    len(shares[m].standby),
                    (place[m] - place[owner[shard]]) % len(ids),
                ),
            )
            shares[m].standby.append(shard)
            kept[m, owner[shard]] += 1
    for share in shares.values():
        share.owned.sort()
        share.standby.sort()
        share.warming.sort()
    return shares


def _held(raw: bytes) -> Held:
    try:
        data = orjson.loads(raw) if raw else {}
        return Held(
            owned=frozenset(int(s) for s in data.get("owned", ())),
            warm=frozenset(int(s) for s in data.get("warm", ())),
            standbys=max(0, int(data.get("standbys", 0))),
            warmup=data.get("warmup") is True,
            ready=frozenset(int(s) for s in data["ready"]) if "ready" in data else None,
        )
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return Held()  # a member we cannot read: treated as holding nothing


class ShardAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """The aiokafka side of ``plan``: one instance per worker (its state goes into its join
    metadata; its standby shards come back in ``standby``)."""

    name = NAME
    version = VERSION

    def __init__(
        self,
        held: Callable[[], tuple[Iterable[int], Iterable[int], Iterable[int]]],
        standbys: int,
        warmup: bool = True,
    ):
        self._held = held  # () -> (owned, with current engines, of those: could own at once)
        self.standbys = standbys
        self.warmup = warmup
        # this worker's, from the last assignment
        self.standby: frozenset[int] = frozenset()
        self.warming: frozenset[int] = frozenset()  # standbys to own once warm

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        owned, warm, ready = self._held()
        data = {
            "owned": sorted(owned),
            "warm": sorted(warm),
            "ready": sorted(ready),
            "standbys": self.standbys,
            "warmup": self.warmup,
        }
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), orjson.dumps(data))

    def assign(
        self,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({t for m in members.values() for t in m.subscription})
        if len(topics) != 1:
            raise ValueError(f"the {NAME} assignor assigns one topic's partitions, not {topics}")
        (topic,) = topics
        partitions = sorted(cluster.partitions_for_topic(topic) or ())
        held = {m: _held(meta.user_data) for m, meta in members.items()}
        standbys = max(h.standbys for h in held.values())
        warmup = all(h.warmup for h in held.values())
        shares = plan(partitions, held, standbys, warmup)
        log.info(
            "shards planned",
            extra={"plan": {m: [s.owned, s.standby, s.warming] for m, s in shares.items()}},
        )
        return {
            m: ConsumerProtocolMemberAssignment(
                self.version,
                [(topic, share.owned)],
                orjson.dumps({"standby": share.standby, "warming": share.warming}),
            )
            for m, share in shares.items()
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        try:
            data = orjson.loads(assignment.user_data) if assignment.user_data else {}
            self.standby = frozenset(int(s) for s in data.get("standby", ()))
            self.warming = frozenset(int(s) for s in data.get("warming", ())) & self.standby
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            self.standby = self.warming = frozenset()


class RoundRobinFallback(RoundRobinPartitionAssignor):  # type: ignore[misc]
    """Round robin, for a group with members of an older release; no standbys meanwhile."""

    def __init__(self, assignor: ShardAssignor) -> None:
        self._assignor = assignor

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self._assignor.standby = self._assignor.warming = frozenset()


def strategies(
    held: Callable[[], tuple[Iterable[int], Iterable[int], Iterable[int]]],
    standbys: int,
    warmup: bool = True,
) -> tuple[ShardAssignor, RoundRobinFallback]:
    """The worker's ``partition_assignment_strategy``: this assignor first, round robin next."""
    assignor = ShardAssignor(held, standbys, warmup)
    return assignor, RoundRobinFallback(assignor)
