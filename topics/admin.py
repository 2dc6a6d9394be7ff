"""``csip topics create``: make a Kafka cluster hold every catalog topic, idempotently.

Creating topics is the one deployment step every process depends on, and operators re-run it:
after an upgrade adds a topic, after raising the shard count, after a half-finished first try.
So each run compares the cluster with the catalog and only closes the gap, reporting one line per
topic (``Outcome``) rather than failing on what already exists.

Rules it keeps, and why:

- Partitions are only ever *added*, and only to shard-partitioned topics (``partitions=None``):
  Kafka cannot remove partitions, and records keyed by LFDI live on ``shard_of(lfdi, shards)``,
  so every shard-partitioned topic must have the same count as ``csip.shards``. A run that
  leaves them unequal exits 1.
- ``csip.commands`` must have exactly one partition: its readers rely on one total order.
- Topic configs (cleanup.policy, retention.ms) are applied on create only. An existing topic
  whose configs differ is reported, not altered: changing the cleanup policy of a live topic is
  an operator's decision.
- A broker that refuses the configs (Tansu, some managed services) gets the topic created
  without them, with a warning; Tansu 0.6 accepts and silently ignores them, which the config
  check after creation reports.
- Brokers without CreatePartitions (Tansu 0.6) get a clear error, never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from topics.catalog import TOPICS, Topic, named

# Errors that say nothing about the configs: retrying without them would only hide the cause.
# 17 InvalidTopic, 29 TopicAuthorizationFailed, 36 TopicAlreadyExists, 37 InvalidPartitions,
# 38 InvalidReplicationFactor.
_NOT_CONFIG_ERRORS = frozenset({17, 29, 36, 37, 38})
_TOPIC_ALREADY_EXISTS = 36


class BrokerUnreachable(Exception):
    """No broker answered within the timeout: nothing was changed."""


class AdminClient(Protocol):
    """The part of kafka-python's ``KafkaAdminClient`` this module uses (tests pass fakes)."""

    def list_topics(self) -> list[str]: ...
    def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]: ...
    def create_topics(self, new_topics: dict[str, Any], **options: Any) -> dict[str, Any]: ...
    def create_partitions(self, topic_partitions: dict[str, int], **options: Any) -> Any: ...
    def describe_configs(self, config_resources: list[Any], **options: Any) -> Any: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What one run did to one topic."""

    topic: str
    action: str  # created | exists | partitions added | failed | ...
    partitions: int | None  # partitions the topic has now (None: unknown)
    wanted: int
    notes: tuple[str, ...] = ()
    ok: bool = True


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # cluster-wide, e.g. unequal shard counts

    @property
    def ok(self) -> bool:
        return not self.problems and all(outcome.ok for outcome in self.outcomes)


def connect(broker: str, timeout_s: float = 30.0) -> Any:
    """A ``KafkaAdminClient`` for ``broker`` (``host:port``, comma-separated for several), or
    ``BrokerUnreachable`` after ``timeout_s``."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = max(1, int(timeout_s * 1000))
    try:
        return KafkaAdminClient(
            bootstrap_servers=broker,
            client_id="csip-topics",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=max(timeout_ms, 5000),
        )
    except KafkaError as exc:
        raise BrokerUnreachable(f"no Kafka broker answered at {broker}: {exc}") from exc


def ensure_topics(
    admin: AdminClient, *, shards: int, replication: int = 1, prefix: str = ""
) -> Report:
    """Create missing catalog topics and add shard partitions; report what was done."""
    from kafka.errors import KafkaError

    report = Report()
    names = [named(topic, prefix) for topic in TOPICS]
    try:
        present = set(admin.list_topics())
        counts = _partition_counts(admin, [name for name in names if name in present])
        for topic, name in zip(TOPICS, names, strict=True):
            wanted = topic.partition_count(shards)
            if name in counts:
                outcome = _reconcile(admin, topic, name, counts[name], wanted)
            else:
                outcome = _create(admin, topic, name, wanted, replication)
            report.outcomes.append(outcome)
        deployed = {name: topic for topic, name in zip(TOPICS, names, strict=True)}
        report.outcomes = _check_configs(admin, report.outcomes, deployed)
    except KafkaError as exc:
        if _is_unreachable(exc):
            raise BrokerUnreachable(f"the broker stopped answering: {exc}") from exc
        raise
    report.problems.extend(shard_problems(report.outcomes, shards, prefix))
    return report


def shard_problems(outcomes: Iterable[Outcome], shards: int, prefix: str = "") -> list[str]:
    """Shard-partitioned topics with unequal partition counts break ``shard_of``: say so."""
    sharded = {named(topic, prefix) for topic in TOPICS if topic.partitions is None}
    seen = {o.topic: o.partitions for o in outcomes if o.topic in sharded and o.partitions}
    counts = sorted(set(seen.values()))
    if len(counts) <= 1:
        return []
    detail = ", ".join(f"{name}={count}" for name, count in sorted(seen.items()))
    return [
        f"shard-partitioned topics differ in partitions ({detail}); they must all equal the "
        f"shard count: re-run with --shards {counts[-1]} on a broker that can add partitions"
        + ("" if counts[-1] == shards else f" (asked for {shards})")
    ]


def _partition_counts(admin: AdminClient, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    return {
        entry["name"]: len(entry["partitions"])
        for entry in admin.describe_topics(names)
        if entry.get("error_code", 0) == 0
    }


def _create(admin: AdminClient, topic: Topic, name: str, wanted: int, replication: int) -> Outcome:
    configs = topic.topic_config()
    error = _try_create(admin, name, wanted, replication, configs)
    if error is None:
        return Outcome(name, "created", wanted, wanted)
    code, message = error
    if code == _TOPIC_ALREADY_EXISTS:  # another run got there first
        return Outcome(name, "exists", None, wanted, ("created concurrently by another run",))
    if code in _NOT_CONFIG_ERRORS:
        return Outcome(name, "failed", None, wanted, (message,), ok=False)
    retry = _try_create(admin, name, wanted, replication, {})
    if retry is not None:
        return Outcome(name, "failed", None, wanted, (f"ERROR: {message}",), ok=False)
    dropped = ", ".join(f"{key}={value}" for key, value in configs.items())
    return Outcome(
        name,
        "created",
        wanted,
        wanted,
        (f"WARNING: broker refused the configs ({message}); created without {dropped}",),
    )


def _try_create(
    admin: AdminClient, name: str, partitions: int, replication: int, configs: dict[str, str]
) -> tuple[int, str] | None:
    """None on success, else (error code, message); -1 when the request itself failed."""
    from kafka.errors import KafkaError

    request = {
        name: {"num_partitions": partitions, "replication_factor": replication, "configs": configs}
    }
    try:
        response = admin.create_topics(request, raise_errors=False)
    except KafkaError as exc:
        if _is_unreachable(exc):
            raise
        return -1, f"{type(exc).__name__}: {exc}"
    for result in response.get("topics", []):
        code = int(result.get("error_code") or 0)
        if code:
            detail = result.get("error_message") or ""
            return code, f"{_error_name(code)}{': ' + detail if detail else ''}"
    return None


def _reconcile(admin: AdminClient, topic: Topic, name: str, have: int, wanted: int) -> Outcome:
    if topic.partitions == 1 and have != 1:
        note = f"ERROR: has {have} partitions; it must have exactly 1 (its readers need one order)"
        return Outcome(name, "wrong partitions", have, wanted, (note,), ok=False)
    if have == wanted:
        return Outcome(name, "exists", have, wanted)
    if topic.partitions is not None:  # a fixed count: a design choice, not ours to change
        note = f"has {have} partitions, the catalog says {wanted}: left as it is"
        return Outcome(name, "exists", have, wanted, (f"WARNING: {note}",))
    if have > wanted:  # processes run with --shards wanted would mis-route by shard_of
        note = (
            f"ERROR: has {have} partitions, more than --shards {wanted}: partitions are never "
            f"removed; use --shards {have} here and in every process"
        )
        return Outcome(name, "too many partitions", have, wanted, (note,), ok=False)
    return _add_partitions(admin, name, have, wanted)


def _add_partitions(admin: AdminClient, name: str, have: int, wanted: int) -> Outcome:
    from kafka.errors import IncompatibleBrokerVersion, KafkaError

    try:
        response = admin.create_partitions({name: wanted}, raise_errors=False)
    except IncompatibleBrokerVersion:
        note = (
            f"ERROR: cannot grow {have} -> {wanted} partitions: the broker does not support "
            "CreatePartitions (Tansu 0.6 does not); nothing changed"
        )
        return Outcome(name, "cannot add partitions", have, wanted, (note,), ok=False)
    except KafkaError as exc:
        if _is_unreachable(exc):
            raise
        note = f"ERROR: cannot grow {have} -> {wanted} partitions: {type(exc).__name__}: {exc}"
        return Outcome(name, "cannot add partitions", have, wanted, (note,), ok=False)
    for result in getattr(response, "results", ()):
        if result.error_code:
            note = f"ERROR: cannot grow {have} -> {wanted}: {_error_name(result.error_code)}"
            if result.error_message:
                note += f": {result.error_message}"
            return Outcome(name, "cannot add partitions", have, wanted, (note,), ok=False)
    return Outcome(name, "partitions added", wanted, wanted, (f"{have} -> {wanted}",))


def _check_configs(
    admin: AdminClient, outcomes: list[Outcome], deployed: dict[str, Topic]
) -> list[Outcome]:
    """Compare each topic's reported configs with the catalog's. Best effort: a broker that
    cannot describe configs only loses the check, never the run."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    checkable = [o for o in outcomes if o.partitions is not None]
    if not checkable:
        return outcomes
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, o.topic) for o in checkable]
        )
    except (KafkaError, ValueError) as exc:
        if isinstance(exc, KafkaError) and _is_unreachable(exc):
            raise
        return outcomes
    reported: dict[str, dict[str, Any]] = described.get("topic", {})
    checked = []
    for outcome in outcomes:
        topic = deployed.get(outcome.topic)
        notes = list(outcome.notes)
        if outcome.topic in reported and topic is not None:
            notes.extend(_config_notes(topic, outcome, reported[outcome.topic]))
        checked.append(_with_notes(outcome, notes))
    return checked


def _config_notes(topic: Topic, outcome: Outcome, reported: dict[str, Any]) -> list[str]:
    wanted = topic.topic_config()
    values = {key: (entry or {}).get("value") for key, entry in reported.items()}
    if outcome.action == "created" and not any(key in values for key in wanted):
        if any(note.startswith("WARNING: broker refused") for note in outcome.notes):
            return []
        return ["WARNING: the broker reports none of the topic configs (it may ignore them)"]
    differing = [
        f"{key}={values[key]} (catalog: {value})"
        for key, value in wanted.items()
        if key in values and values[key] is not None and str(values[key]) != value
    ]
    if differing:
        return [f"WARNING: configs differ, not changed: {', '.join(differing)}"]
    return []


def _with_notes(outcome: Outcome, notes: list[str]) -> Outcome:
    return Outcome(
        outcome.topic, outcome.action, outcome.partitions, outcome.wanted, tuple(notes), outcome.ok
    )


def _error_name(code: int) -> str:
    from kafka.errors import for_code

    return str(for_code(code).__name__)


def _is_unreachable(exc: BaseException) -> bool:
    from kafka.errors import KafkaTimeoutError, NoBrokersAvailable, NodeNotReadyError

    return isinstance(exc, KafkaTimeoutError | NoBrokersAvailable | NodeNotReadyError)


def format_report(report: Report) -> str:
    """A plain table, one line per topic, then the notes and problems."""
    rows = [("topic", "partitions", "action")]
    for outcome in report.outcomes:
        have = "?" if outcome.partitions is None else str(outcome.partitions)
        count = have if outcome.partitions == outcome.wanted else f"{have} (want {outcome.wanted})"
        rows.append((outcome.topic, count, outcome.action))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    # One line per distinct note, naming its topics: a broker quirk hits every topic alike.
    topics_by_note: dict[str, list[str]] = {}
    for outcome in report.outcomes:
        for note in outcome.notes:
            topics_by_note.setdefault(note, []).append(outcome.topic)
    for note, names in topics_by_note.items():
        which = f"all {len(names)} topics" if len(names) == len(report.outcomes) > 1 else None
        lines += [note, f"  topics: {which or ', '.join(names)}"]
    lines.extend(f"ERROR: {problem}" for problem in report.problems)
    failed = sum(not o.ok for o in report.outcomes)
    if failed or report.problems:
        lines.append(f"FAILED: {failed} topic(s) not as the catalog wants")
    return "\n".join(lines)
