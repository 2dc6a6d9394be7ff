"""The catalog of every topic: the single source of truth for names, keys, value schemas,
partitioning and retention. The engine, the gateways, ``csip topics create``, the deploy
manifests and ``topics/README.md`` (generated) all read it.

The Kafka runtime's topology in one paragraph: every write (admin or device structure) is a
command on ``csip.commands``, one partition, so all its readers see one total order, exactly the
embedded runtime's log. Workers read the whole log; each owns some *shards* of the devices
(shard = a stable hash of the LFDI; the shards are the partitions of ``csip.shards``, assigned by
the ``csip-workers`` consumer group) and resolves only those devices, so a program change is one
message that every worker applies to its own devices, never one message per device. Gateways
read the whole log too, into a local replica that answers GETs. What devices report goes to the
telemetry topics, keyed by LFDI. Workers publish effective control, response lifecycles and
event status; the notifier turns changes into Notifications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from topics.partition import partition_for as partition_for  # (re-exported)
from topics.partition import shard_of as shard_of

DAY_MS = 86_400_000
FOREVER = -1
DEFAULT_SHARDS = 12
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    key: str  # what the record key is
    value: dict[str, str]  # field -> meaning (JSON, orjson, with "v": schema version)
    example: dict[str, Any]
    partitions: int | None  # None: as many as there are shards
    cleanup: str = "delete"  # or "compact"
    retention_ms: int = 7 * DAY_MS
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    config: dict[str, str] = field(default_factory=dict)

    def partition_count(self, shards: int) -> int:
        return self.partitions if self.partitions is not None else shards

    def topic_config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup,
            "retention.ms": str(self.retention_ms),
            **self.config,
        }


LFDI = "D1D907752314F590E9DFC8A604E3339D662D719F"
T = 1_767_225_600

COMMANDS = Topic(
    name="csip.commands",
    description=(
        "Every write, in one total order: programs, controls, defaults, curves, aggregators, "
        "authorizations, registrations, FSAs, subscriptions, poll and post rates; and time "
        "ticks for replays. The source of truth: kept forever (snapshots make replays short)."
    ),
    key="the command kind (informational; one partition)",
    value={
        "v": "schema version",
        "id": "unique id of the write (drops a duplicate after a producer retry)",
        "t": "the instant it applies at (Unix seconds)",
        "command": "the command: {kind, ...} (engine/state/commands.py)",
    },
    example={
        "v": 1,
        "id": "6F1C0E8E5E3B4B33A1D2C3B4A5968778",
        "t": T,
        "command": {"kind": "cancel_control", "program": "feeder-1", "mrid": "AA01"},
    },
    partitions=1,
    retention_ms=FOREVER,
    producers=("gateway", "replay"),
    consumers=("worker", "gateway", "notifier"),
)

SHARDS = Topic(
    name="csip.shards",
    description=(
        "No records: its partitions are the device shards, and the csip-workers consumer "
        "group assigns them to workers. Add partitions (shards) to spread devices wider."
    ),
    key="-",
    value={},
    example={},
    partitions=None,
    producers=(),
    consumers=("worker",),
)


PROGRESS = Topic(
    name="csip.shard-progress",
    description=(
        "How far the owner of each shard has published: after its outputs up to a log "
        "position and instant are acknowledged, the owner says so here (when either moved, "
        "at most every half second). Workers keeping a shard warm as a standby drop the "
        "outputs they hold back for it up to there; on taking the shard over they publish "
        "the rest again. Also a per-shard view of which worker owns it and how far it is."
    ),
    key="shard number",
    value={
        "v": "schema version",
        "shard": "the shard (= the partition)",
        "worker": "the owner's name",
        "position": "csip.commands offset up to which its outputs are published",
        "now": "the instant up to which its outputs are published (Unix seconds)",
    },
    example={"v": 1, "shard": 3, "worker": "worker-0", "position": 120345, "now": T},
    partitions=None,
    cleanup="compact",
    retention_ms=DAY_MS,
    producers=("worker",),
    consumers=("worker", "SRE"),
)


def _telemetry(kind: str, description: str, data: dict[str, Any]) -> Topic:
    return Topic(
        name=f"csip.telemetry.{kind}",
        description=description,
        key="LFDI of the device (upper-case hex)",
        value={
            "v": "schema version",
            "id": "unique id (drops duplicates)",
            "type": "what was reported (der_status, reading, log_event, response, ...)",
            "t": "when the server received it (Unix seconds)",
            "lfdi": "the device",
            "data": "the typed, normalized content (JSON names of IEEE 2030.5)",
        },
        example={
            "v": 1,
            "id": f"{LFDI}:{kind}:1",
            "type": kind,
            "t": T,
            "lfdi": LFDI,
            "data": data,
        },
        partitions=None,
        retention_ms=30 * DAY_MS,
        producers=("gateway",),
        consumers=("gateway", "data teams"),
    )


TELEMETRY = [
    _telemetry(
        "readings",
        "Mirrored meter readings, one record per reading, normalized (CSIP Tables 10-11).",
        {
            "quantity": "active_power_forward_avg_phase_a",
            "unit": "W",
            "value": 1234.5,
            "raw": {"value": 12345, "powerOfTenMultiplier": -1},
            "time": T,
            "interval": 300,
            "mup": "AA00000000000000000000000000BB01",
            "mmr": "CC00000000000000000000000000DD01",
            "uom": 38,
            "dataQualifier": 2,
            "phase": 128,
        },
    ),
    _telemetry(
        "der-status",
        "DERStatus as posted (CSIP Table 13).",
        {"inverterStatus": {"dateTime": T, "value": 4}, "readingTime": T},
    ),
    _telemetry(
        "der-settings",
        "DERSettings as posted.",
        {"setMaxW": {"multiplier": 3, "value": 4}, "setGradW": 100, "updatedTime": T},
    ),
    _telemetry(
        "der-capability",
        "DERCapability (nameplate ratings, CSIP Table 12).",
        {"rtgMaxW": {"multiplier": 3, "value": 5}, "modesSupported": "00500040", "type": 4},
    ),
    _telemetry(
        "der-availability",
        "DERAvailability as posted.",
        {"statWAvail": {"multiplier": 3, "value": 2}, "readingTime": T},
    ),
    _telemetry(
        "log-events",
        "LogEvents (DER alarms and returns to normal, CSIP Table 14), decoded.",
        {
            "functionSet": 11,
            "logEventCode": 2,
            "logEventID": 7,
            "createdDateTime": T,
            "alarm": {"name": "DER_FAULT_OVER_VOLTAGE", "returnToNormal": False},
        },
    ),
    _telemetry(
        "mirror-usage-points",
        "MirrorUsagePoints created or updated by devices.",
        {"mup": 3, "mRID": "AA00000000000000000000000000BB01", "roleFlags": "0049"},
    ),
    _telemetry(
        "responses",
        "DERControlResponses posted by devices, validated.",
        {"program": "feeder-1", "subject": "AA01", "status": 1, "createdDateTime": T},
    ),
]

EFFECTIVE = Topic(
    name="csip.effective-control",
    description="What is in force for each device and mode, on every change (CSIP_RULES §3).",
    key="LFDI",
    value={
        "v": "schema version",
        "id": "deterministic id (drop duplicates after a retry or a worker restart)",
        "t": "the instant of the change",
        "lfdi": "the device",
        "mode": "DERControlBase mode or default-only setting",
        "value": "IEEE 2030.5 JSON shape, null when uncontrolled",
        "program": "the program that sets it, or null",
        "event": "the control's mRID, or null for a default",
    },
    example={
        "v": 1,
        "id": f"eff:{LFDI}:opModMaxLimW@{T}:1a2b3c4d5e6f",
        "t": T,
        "lfdi": LFDI,
        "mode": "opModMaxLimW",
        "value": 5000,
        "program": "feeder-1",
        "event": "AA01",
    },
    partitions=None,
    producers=("worker",),
    consumers=("gateway", "data teams", "DERMS"),
)

LIFECYCLE = Topic(
    name="csip.response-lifecycle",
    description="The responses each device must post, as the engine expects them (§4).",
    key="LFDI",
    value={
        "v": "schema version",
        "id": "deterministic id: device, control, status",
        "t": "the instant",
        "lfdi": "the device",
        "mRID": "the control",
        "program": "its program",
        "status": "response status code",
        "posted": "whether responseRequired, replyTo and the profile let the device post it",
    },
    example={
        "v": 1,
        "id": f"resp:{LFDI}:AA01:2",
        "t": T,
        "lfdi": LFDI,
        "mRID": "AA01",
        "program": "feeder-1",
        "status": 2,
        "posted": True,
    },
    partitions=None,
    retention_ms=30 * DAY_MS,
    producers=("worker",),
    consumers=("gateway", "data teams"),
)

EVENT_STATUS = Topic(
    name="csip.event-status",
    description="Each change of a control's server-side currentStatus (§5).",
    key="mRID of the control",
    value={
        "v": "schema version",
        "id": "deterministic id: control, status",
        "t": "the instant",
        "program": "the program",
        "mRID": "the control",
        "currentStatus": "0 scheduled, 1 active, 2 cancelled, 3 cancelled with randomization, "
        "4 superseded",
    },
    example={
        "v": 1,
        "id": "status:AA01:1",
        "t": T,
        "program": "feeder-1",
        "mRID": "AA01",
        "currentStatus": 1,
    },
    partitions=3,
    retention_ms=30 * DAY_MS,
    producers=("worker",),
    consumers=("notifier", "data teams"),
)

NOTIFICATIONS = Topic(
    name="csip.notifications",
    description="Every Notification queued for a subscriber (an audit trail of what was sent).",
    key="subscription id",
    value={
        "v": "schema version",
        "id": "delivery id",
        "t": "when it was queued",
        "subscription": "subscription id",
        "uri": "notificationURI",
        "resource": "subscribedResource",
        "status": "Notification status",
    },
    example={
        "v": 1,
        "id": "12:3",
        "t": T,
        "subscription": 12,
        "uri": "https://notify.aggregator.example/csip",
        "resource": "/derp/feeder-1/derc",
        "status": 0,
    },
    partitions=3,
    producers=("notifier",),
    consumers=("data teams", "SRE"),
)

DEAD_LETTERS = Topic(
    name="csip.notifications.dead-letter",
    description="Notifications given up on (a 4xx, or 30 minutes of failures), with the reason.",
    key="subscription id",
    value={
        "v": "schema version",
        "id": "delivery id",
        "t": "when it was given up",
        "subscription": "subscription id",
        "uri": "notificationURI",
        "reason": "rejected or expired",
        "lastStatus": "the last HTTP status, if any",
        "attempts": "attempts made",
    },
    example={
        "v": 1,
        "id": "12:3",
        "t": T,
        "subscription": 12,
        "uri": "https://notify.aggregator.example/csip",
        "reason": "rejected",
        "lastStatus": 404,
        "attempts": 1,
    },
    partitions=3,
    retention_ms=30 * DAY_MS,
    producers=("notifier",),
    consumers=("SRE",),
)

TOPICS: tuple[Topic, ...] = (
    COMMANDS,
    SHARDS,
    PROGRESS,
    *TELEMETRY,
    EFFECTIVE,
    LIFECYCLE,
    EVENT_STATUS,
    NOTIFICATIONS,
    DEAD_LETTERS,
)
BY_NAME = {topic.name: topic for topic in TOPICS}
TELEMETRY_BY_KIND = {topic.name.removeprefix("csip.telemetry."): topic for topic in TELEMETRY}

WORKER_GROUP = "csip-workers"


def named(topic: Topic, prefix: str = "") -> str:
    """A topic's name in a deployment: an optional prefix lets several installations (or test
    runs) share one Kafka cluster."""
    return prefix + topic.name
