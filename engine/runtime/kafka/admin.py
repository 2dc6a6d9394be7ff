"""Topic administration from the catalog (used by workers, replays and ``csip topics``)."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import InvalidConfigurationError, TopicAlreadyExistsError
from topics import catalog

log = logging.getLogger("csip.topics")


def ensure_topics(
    broker: str, *, prefix: str = "", shards: int = catalog.DEFAULT_SHARDS, replication: int = 1
) -> dict[str, str]:
    """Create every catalog topic that is missing; grow shard-partitioned ones to ``shards``.

    Idempotent. Returns what happened to each topic (created, exists, grown). A broker that
    refuses a topic config (Tansu ignores compaction and retention) gets the topic without it.
    """
    admin = KafkaAdminClient(bootstrap_servers=broker, client_id="csip-topics")
    try:
        existing = set(admin.list_topics())
        done: dict[str, str] = {}
        for topic in catalog.TOPICS:
            name = catalog.named(topic, prefix)
            wanted = topic.partition_count(shards)
            if name in existing:
                done[name] = "exists"
                if topic.partitions is None:
                    done[name] = _grow(admin, name, wanted) or "exists"
                continue
            done[name] = _create(admin, name, wanted, replication, topic.topic_config())
        return done
    finally:
        admin.close()


def _create(
    admin: KafkaAdminClient, name: str, partitions: int, replication: int, config: dict[str, str]
) -> str:
    try:
        admin.create_topics([NewTopic(name, partitions, replication, topic_configs=config)])
    except TopicAlreadyExistsError:
        return "exists"
    except InvalidConfigurationError:
        log.warning("broker refused topic config; created without it", extra={"topic": name})
        admin.create_topics([NewTopic(name, partitions, replication)])
    return "created"


def _grow(admin: KafkaAdminClient, name: str, wanted: int) -> str | None:
    described = admin.describe_topics([name])
    have = len(described[0]["partitions"]) if described else wanted
    if have >= wanted:
        return None
    admin.create_partitions({name: NewPartitions(total_count=wanted)})
    return f"grown {have}->{wanted}"
