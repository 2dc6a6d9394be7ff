"""The worker-fold benchmark folds bench_kafka's commands and resolves only the owned shards."""

from __future__ import annotations

from benchmarks import bench_worker_fold as bwf
from benchmarks.bench_kernel import lfdi
from topics.catalog import shard_of


def test_a_worker_resolves_only_the_devices_of_its_shards() -> None:
    everything = bwf.measure(240, 12, 60)
    some = bwf.measure(240, 3, 60)
    none = bwf.measure(240, 0, 60)
    mine = sum(1 for j in range(240) if shard_of(lfdi(j), 12) < 3)
    assert everything["devices_resolved"] == 240
    assert some["devices_resolved"] == mine
    assert none["devices_resolved"] == 0
    for run in (everything, some, none):
        assert run["enrolment_us"] > 0 and run["move_us"] > 0
        assert run["enrolment_mean_us"] > 0 and run["move_mean_us"] > 0
