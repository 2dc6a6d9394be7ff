"""The topic catalog's invariants, the topology derived from it, the generated README, and
``csip topics create`` making the catalog real on a broker (Tansu, and fakes for what Tansu
cannot do).

These are the checks that keep the catalog the single source of truth: names and partitioning
that the runtime relies on, examples a data team can trust, and docs that match the code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.kafka.broker_fixtures import Broker, free_port
from topics import catalog, topology
from topics.admin import ensure_topics, format_report
from topics.catalog import BY_NAME, COMMANDS, DEFAULT_SHARDS, FOREVER, TOPICS, named
from topics.cli import main
from topics.docs import README, generate, human_duration, is_current

KAFKA_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
SHARDED = [topic for topic in TOPICS if topic.partitions is None]


def _keyed_by_device_or_shard(topic: catalog.Topic) -> bool:
    return topic.key.startswith("LFDI") or topic.key == "shard number"


def test_topic_names_are_unique_and_valid_kafka_names() -> None:
    names = [topic.name for topic in TOPICS]
    assert len(names) == len(set(names))
    for name in names:
        assert KAFKA_NAME.match(name), name
        assert name.startswith("csip."), name
    assert set(BY_NAME) == set(names)


def test_every_shard_keyed_topic_is_partitioned_by_shards() -> None:
    sharded = [t.name for t in TOPICS if _keyed_by_device_or_shard(t)]
    assert "csip.effective-control" in sharded and "csip.telemetry.readings" in sharded
    for topic in TOPICS:
        if _keyed_by_device_or_shard(topic) or topic.name == catalog.SHARDS.name:
            assert topic.partitions is None, f"{topic.name} must have one partition per shard"
            assert topic.partition_count(7) == 7
        else:
            assert topic.partitions is not None and topic.partitions >= 1, topic.name


def test_the_command_log_is_one_partition_kept_forever() -> None:
    assert catalog.COMMANDS.partitions == 1
    assert catalog.COMMANDS.retention_ms == FOREVER
    assert catalog.COMMANDS.cleanup == "delete"  # every command matters, not the latest per key


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: t.name)
def test_example_has_exactly_the_documented_value_fields(topic: catalog.Topic) -> None:
    assert set(topic.example) == set(topic.value)
    json.dumps(topic.example)  # serializable as the JSON the topic carries
    if topic.value:
        assert topic.example["v"] == catalog.SCHEMA_VERSION


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: t.name)
def test_topic_configs_are_ones_kafka_knows(topic: catalog.Topic) -> None:
    assert topic.cleanup in {"delete", "compact"}
    assert topic.retention_ms == FOREVER or topic.retention_ms > 0
    config = topic.topic_config()
    assert config["cleanup.policy"] == topic.cleanup
    assert int(config["retention.ms"]) == topic.retention_ms


def test_producers_and_consumers_are_known_processes_or_parties() -> None:
    known = set(topology.BY_PROCESS) | topology.EXTERNAL_PARTIES
    for topic in TOPICS:
        for party in (*topic.producers, *topic.consumers):
            assert party in known, f"{topic.name}: {party!r}"


def test_lfdi_keyed_records_land_on_the_devices_shard() -> None:
    lfdi = catalog.LFDI
    assert catalog.partition_for(lfdi, 12) == catalog.shard_of(lfdi.lower(), 12)
    assert 0 <= catalog.shard_of(lfdi, DEFAULT_SHARDS) < DEFAULT_SHARDS


def test_a_devices_shard_is_pinned() -> None:
    """Stable across processes, versions and builds (compiled or not: topics/partition.py): a
    changed hash would move every device to another partition."""
    lfdi = "AF5570F5A1810B7AF78CAF4BC70A660F0DF51E42"
    assert catalog.shard_of(lfdi, 2**32) == 268022464  # its CRC-32
    assert catalog.shard_of(lfdi.lower(), 12) == catalog.partition_for(lfdi, 12) == 4


def test_topology_agrees_with_the_catalog() -> None:
    assert topology.problems() == []


def test_topology_sources_and_sinks_come_from_the_catalog() -> None:
    described = topology.describe(5)
    processes = {p["name"]: p for p in described["processes"]}
    assert set(processes) == {"gateway", "worker", "notifier", "replay"}
    worker = processes["worker"]
    assert {s["topic"] for s in worker["sources"]} == {
        t.name for t in TOPICS if "worker" in t.consumers
    }
    assert {s["topic"] for s in worker["sinks"]} == {
        t.name for t in TOPICS if "worker" in t.producers
    }
    shards = next(s for s in worker["sources"] if s["topic"] == "csip.shards")
    assert shards["partitions"] == 5 and shards["to"] == ["shard-assignment"]
    stores = {s["name"]: s for s in worker["stores"]}
    assert stores["checkpoint"]["kind"].startswith("rocksdict")
    assert worker["group"] == catalog.WORKER_GROUP
    assert "replica" in {s["name"] for s in processes["gateway"]["stores"]}


def test_describe_prints_a_kafka_streams_like_topology(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "describe", "--shards", "24"]) == 0
    text = capsys.readouterr().out
    assert "Process: worker  (csip worker; consumer group csip-workers)" in text
    assert "    Source: csip.shards (24 partitions)\n      --> shard-assignment" in text
    assert "Sink: csip.commands (1 partition)" in text
    assert "Store: checkpoint (rocksdict under --data)" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_describe_json_is_the_same_topology(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "describe", "--format", "json", "--shards", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == topology.describe(3)


@pytest.mark.parametrize(
    ("ms", "words"),
    [
        (FOREVER, "forever"),
        (7 * catalog.DAY_MS, "7 days"),
        (catalog.DAY_MS, "1 day"),
        (90 * 60_000, "90 minutes"),
        (1500, "1500 ms"),
    ],
)
def test_retention_in_human_units(ms: int, words: str) -> None:
    assert human_duration(ms) == words


def test_readme_is_up_to_date_with_the_catalog() -> None:
    assert is_current(), "topics/README.md is stale: run `csip topics docs`"


def test_readme_documents_every_topic_and_field() -> None:
    text = README.read_text(encoding="utf-8")
    for topic in TOPICS:
        assert f"### `{topic.name}`" in text
        for field in topic.value:
            assert f"| `{field}` |" in text
    assert "| retention | forever |" in text
    assert "```text\nTopologies (shards: 12):" in text


def test_docs_check_fails_on_a_stale_file_and_write_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "README.md"
    target.write_text("stale\n", encoding="utf-8")
    assert main(["topics", "docs", "--check", "--output", str(target)]) == 1
    assert main(["topics", "docs", "--output", str(target)]) == 0
    assert main(["topics", "docs", "--check", "--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == generate()
    assert "out of date" in capsys.readouterr().err


# --- csip topics create, against Tansu -------------------------------------------------------


def _partition_counts(broker: Broker, prefix: str) -> dict[str, int]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.url, client_id="csip-topics-test")
    try:
        names = [named(topic, prefix) for topic in TOPICS]
        return {
            entry["name"].removeprefix(prefix): len(entry["partitions"])
            for entry in admin.describe_topics(names)
            if entry["error_code"] == 0
        }
    finally:
        admin.close()


def _create(broker: Broker, prefix: str, shards: int) -> int:
    argv = ["topics", "create", "--broker", broker.url, "--prefix", prefix, "--timeout", "10"]
    return main([*argv, "--shards", str(shards)])


def test_create_makes_every_topic_with_its_partitions(
    broker: Broker, topic_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(broker, topic_prefix, shards=4) == 0
    assert _partition_counts(broker, topic_prefix) == {
        topic.name: topic.partition_count(4) for topic in TOPICS
    }
    table = capsys.readouterr().out
    assert f"{topic_prefix}{COMMANDS.name} " in table and "created" in table


def test_a_second_create_is_a_no_op(
    broker: Broker, topic_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(broker, topic_prefix, shards=3) == 0
    before = _partition_counts(broker, topic_prefix)
    capsys.readouterr()
    assert _create(broker, topic_prefix, shards=3) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(topic_prefix)]
    assert len(rows) == len(TOPICS)
    assert all(row.split()[-1] == "exists" for row in rows)
    assert _partition_counts(broker, topic_prefix) == before


def test_raising_shards_adds_partitions_or_says_the_broker_cannot(
    broker: Broker, topic_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(broker, topic_prefix, shards=2) == 0
    capsys.readouterr()
    code = _create(broker, topic_prefix, shards=3)
    counts = _partition_counts(broker, topic_prefix)
    output = capsys.readouterr().out
    if code == 0:  # a broker with CreatePartitions (real Kafka)
        assert all(counts[topic.name] == 3 for topic in SHARDED)
    else:  # Tansu 0.6 has no CreatePartitions: a clear error, nothing half-done
        assert code == 1
        assert "does not support CreatePartitions" in output
        assert all(counts[topic.name] == 2 for topic in SHARDED)
    assert counts[COMMANDS.name] == 1


def test_an_unreachable_broker_exits_2_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["topics", "create", "--broker", f"127.0.0.1:{free_port()}", "--timeout", "0.5"]
    assert main(argv) == 2
    assert "no Kafka broker answered" in capsys.readouterr().err


# --- csip topics create, against a fake admin client (paths Tansu cannot show) ---------------


class FakeAdmin:
    """Enough of KafkaAdminClient for ensure_topics, with the quirks a test asks for."""

    def __init__(self, *, refuse_configs: bool = False) -> None:
        self.topics: dict[str, int] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self.refuse_configs = refuse_configs
        self.grown: dict[str, int] = {}

    def list_topics(self) -> list[str]:
        return list(self.topics)

    def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "error_code": 0, "partitions": [{}] * self.topics[name]}
            for name in topics
            if name in self.topics
        ]

    def create_topics(self, new_topics: dict[str, Any], **options: Any) -> dict[str, Any]:
        results = []
        for name, spec in new_topics.items():
            if self.refuse_configs and spec["configs"]:
                results.append({"name": name, "error_code": 40, "error_message": "no configs"})
                continue
            self.topics[name] = spec["num_partitions"]
            self.configs[name] = dict(spec["configs"])
            results.append({"name": name, "error_code": 0, "error_message": None})
        return {"topics": results}

    def create_partitions(self, topic_partitions: dict[str, int], **options: Any) -> Any:
        self.grown.update(topic_partitions)
        self.topics.update(topic_partitions)
        return SimpleNamespace(results=[SimpleNamespace(error_code=0, error_message=None)])

    def describe_configs(self, config_resources: list[Any], **options: Any) -> Any:
        return {
            "topic": {
                r.name: {k: {"value": v} for k, v in self.configs.get(r.name, {}).items()}
                for r in config_resources
            }
        }

    def close(self) -> None:
        pass


def test_raising_shards_grows_every_sharded_topic_and_nothing_else() -> None:
    admin = FakeAdmin()
    assert ensure_topics(admin, shards=4).ok
    report = ensure_topics(admin, shards=6)
    assert report.ok, format_report(report)
    assert admin.grown == {topic.name: 6 for topic in SHARDED}
    actions = {o.topic: o.action for o in report.outcomes}
    assert actions["csip.shards"] == "partitions added"
    assert actions[COMMANDS.name] == "exists"


def test_fewer_shards_than_the_cluster_has_is_an_error_and_removes_nothing() -> None:
    admin = FakeAdmin()
    ensure_topics(admin, shards=8)
    report = ensure_topics(admin, shards=4)
    assert not report.ok
    assert "never removed" in format_report(report)
    assert admin.topics["csip.shards"] == 8


def test_refused_configs_are_dropped_with_a_warning() -> None:
    admin = FakeAdmin(refuse_configs=True)
    report = ensure_topics(admin, shards=2, prefix="p.")
    assert report.ok
    assert set(admin.topics) == {named(topic, "p.") for topic in TOPICS}
    assert "refused the configs" in format_report(report)


def test_configs_are_applied_on_create() -> None:
    admin = FakeAdmin()
    ensure_topics(admin, shards=2)
    assert admin.configs[catalog.EFFECTIVE.name]["retention.ms"] == str(7 * 86_400_000)
    assert admin.configs[COMMANDS.name]["retention.ms"] == "-1"


def test_a_multi_partition_command_log_is_an_error() -> None:
    admin = FakeAdmin()
    admin.topics[COMMANDS.name] = 2
    report = ensure_topics(admin, shards=2)
    assert not report.ok
    assert "exactly 1" in format_report(report)


def test_unequal_shard_topics_are_reported() -> None:
    admin = FakeAdmin()
    ensure_topics(admin, shards=4)
    admin.topics["csip.telemetry.readings"] = 5  # grown by hand
    report = ensure_topics(admin, shards=4)
    assert any("differ in partitions" in problem for problem in report.problems)
