"""The Kafka runtime prints exactly what the embedded runtime prints: scenarios and random
scenarios through a real broker, one and two workers (with the rebalance a second one causes),
and two worker processes, one of them killed mid-replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from engine.replay import Scenario, compare, run
from engine.runtime.kafka.replay import kafka_driver
from tests.kafka.broker_fixtures import Broker
from tests.kafka.test_standby import stepped_scenario
from tests.strategies import scenarios

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.json"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_through_kafka(broker: Broker, path: Path) -> None:
    scenario = Scenario.load(path)
    lines = run(scenario, kafka_driver(broker.url, shards=4))
    assert compare(scenario, lines) == []
    assert lines == run(scenario)  # every line, not only those in expect


@pytest.mark.parametrize("standby", [0, 1], ids=["alone", "with-standbys"])
def test_two_workers_share_the_shards(broker: Broker, standby: int) -> None:
    raw: dict[str, Any] = json.loads(SCENARIOS[4].read_text())  # randomized, two devices
    raw["devices"] += [{"lfdi": f"{n:040X}", "programs": ["P1"]} for n in range(1, 30)]
    scenario = Scenario.parse(raw)
    driver = kafka_driver(broker.url, workers=2, shards=6, standby=standby)
    assert run(scenario, driver) == run(scenario)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_random_scenarios_through_kafka(broker: Broker, raw: dict[str, Any]) -> None:
    scenario = Scenario.parse(raw)
    assert run(scenario, kafka_driver(broker.url, shards=3)) == run(scenario)


@pytest.mark.parametrize("standby", [0, 1], ids=["rebuilt", "standby"])
def test_a_replay_with_a_worker_process_killed_prints_the_same(
    broker: Broker, standby: int
) -> None:
    """`csip replay --workers 2 --kill-worker-at 8`: one of two `csip worker` processes is
    killed a third of the way through; the other takes its shards over."""
    scenario = stepped_scenario()  # 120 devices: every shard has some
    driver = kafka_driver(broker.url, workers=2, processes=True, standby=standby, kill_at=8)
    assert run(scenario, driver) == run(scenario)


def test_a_kill_needs_two_worker_processes(broker: Broker) -> None:
    with pytest.raises(ValueError):
        kafka_driver(broker.url, workers=2, kill_at=3)  # in-process workers: nothing to kill
    with pytest.raises(ValueError):
        kafka_driver(broker.url, workers=1, processes=True, kill_at=3)
