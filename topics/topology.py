"""The Kafka runtime's topology, printed the way Kafka Streams' ``Topology.describe()`` does.

Which topics each process reads (sources) and writes (sinks) comes from the catalog's
``consumers`` and ``producers``, so it cannot drift from what ``csip topics create`` makes.
What happens in between (processors and the state stores they use) is a small static
description kept here, next to the catalog: it is what an SRE needs to see to size a process
and what a data team needs to see to trust a topic. ``problems()`` checks that the two halves
agree (every source is read by a processor, every sink written by one, nothing else is), and
the tests keep it empty.

Inputs and outputs of a processor name a catalog topic, another processor of the same
process, or something outside Kafka (``EXTERNAL``: the clock, HTTPS clients, files).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from topics.catalog import BY_NAME, COMMANDS, TOPICS, WORKER_GROUP

EXTERNAL = frozenset({"clock", "devices", "admin clients", "subscribers", "scenario files"})
# Readers and writers in the catalog that are not processes of ours.
EXTERNAL_PARTIES = frozenset({"data teams", "DERMS", "SRE"})


@dataclass(frozen=True)
class Store:
    name: str
    kind: str  # where it lives
    description: str
    changelog: str | None = None  # the topic that makes it durable, if any


@dataclass(frozen=True)
class Processor:
    name: str
    description: str
    inputs: tuple[str, ...]  # topics, upstream processors or EXTERNAL sources
    outputs: tuple[str, ...] = ()  # topics, downstream processors or EXTERNAL sinks
    stores: tuple[str, ...] = ()


@dataclass(frozen=True)
class Process:
    name: str  # as in the catalog's producers and consumers
    command: str
    description: str
    processors: tuple[Processor, ...]
    stores: tuple[Store, ...] = ()
    group: str | None = None  # consumer group, when Kafka assigns it partitions

    def sources(self) -> list[str]:
        return [t.name for t in TOPICS if self.name in t.consumers]

    def sinks(self) -> list[str]:
        return [t.name for t in TOPICS if self.name in t.producers]


_WORKER_OUTPUTS = ("csip.effective-control", "csip.response-lifecycle", "csip.event-status")
# The gateway's views follow the catalog: whatever it says a gateway reads besides the command
# log (telemetry, and the workers' outputs if listed) feeds the views, whatever it writes the
# device API may write.
_GATEWAY_VIEWS = tuple(t.name for t in TOPICS if "gateway" in t.consumers and t is not COMMANDS)
_GATEWAY_WRITES = tuple(t.name for t in TOPICS if "gateway" in t.producers)

PROCESSES: tuple[Process, ...] = (
    Process(
        name="gateway",
        command="csip gateway",
        description="IEEE 2030.5 and admin listeners; stateless replicas behind a TCP balancer.",
        group=None,  # every gateway reads every partition: no consumer group
        processors=(
            Processor(
                "replica",
                "applies every command to a local copy of what GETs read (registry, programs, "
                "FSAs, subscriptions)",
                inputs=("csip.commands",),
                stores=("replica",),
            ),
            Processor(
                "views",
                "per-device views of every other topic the gateway reads: what devices "
                "reported (latest DER status, settings, capability, availability, readings, "
                "log events)",
                inputs=_GATEWAY_VIEWS,
                stores=("views",),
            ),
            Processor(
                "device-api",
                "2030.5 over mutual TLS: GETs from the replica and views (304 when unchanged); "
                "posts become telemetry records, registrations and subscriptions commands; "
                "answered once the broker has the write (acks=all)",
                inputs=("devices",),
                outputs=_GATEWAY_WRITES,
                stores=("replica", "views", "render-cache"),
            ),
            Processor(
                "admin-api",
                "the utility's JSON API: every write is a command",
                inputs=("admin clients",),
                outputs=(COMMANDS.name,),
                stores=("replica", "views"),
            ),
        ),
        stores=(
            Store(
                "replica",
                "rocksdict under --data",
                "registry and programs folded from csip.commands; rebuilt on start "
                "(readiness waits for it)",
            ),
            Store("views", "rocksdict under --data", "the per-device views; rebuilt on start"),
            Store("render-cache", "memory", "shared program resources, rendered once per ETag"),
        ),
    ),
    Process(
        name="worker",
        command="csip worker",
        description="The engine: each worker resolves the devices of the shards it owns.",
        group=WORKER_GROUP,
        processors=(
            Processor(
                "shard-assignment",
                "the group (its csip-shards assignor: sticky, balanced) assigns partitions of "
                "csip.shards to owners and names --standby other workers per shard to keep it "
                "warm; a shard gained is taken from a current standby engine (publishing again "
                "what it held back) or the local checkpoint, else rebuilt by folding "
                "csip.commands from the start (its outputs are published again; ids drop the "
                "duplicates)",
                inputs=("csip.shards",),
                outputs=("apply-commands",),
                stores=("checkpoint", "engine"),
            ),
            Processor(
                "apply-commands",
                "reads the whole log and applies each command with the kernel to the owned "
                "devices (programs are global, devices per shard)",
                inputs=("csip.commands", "shard-assignment"),
                outputs=(*_WORKER_OUTPUTS, "checkpoint"),
                stores=("engine",),
            ),
            Processor(
                "timers",
                "wakes at each next-change instant (a control starting or ending) and emits "
                "what changed",
                inputs=("clock",),
                outputs=_WORKER_OUTPUTS,
                stores=("engine",),
            ),
            Processor(
                "progress",
                "owner: once a batch of outputs is acknowledged, notes on csip.shard-progress "
                "how far each owned shard has published; standby: reads it for its standby "
                "shards and drops the outputs held back up to there",
                inputs=("csip.shard-progress", "apply-commands", "timers"),
                outputs=("csip.shard-progress",),
                stores=("held",),
            ),
            Processor(
                "checkpoint",
                "every N commands and on shutdown, writes the registry, the engines and the "
                "command offset they include to the local store",
                inputs=("apply-commands",),
                outputs=(),
                stores=("engine", "checkpoint"),
            ),
        ),
        stores=(
            Store(
                "checkpoint",
                "rocksdict under --data",
                "registry, program engine, owned and standby shards' engines, next "
                "csip.commands offset",
            ),
            Store(
                "engine",
                "memory",
                "kernel state: all programs, the owned and standby shards' devices",
            ),
            Store(
                "held",
                "memory",
                "outputs of standby shards not yet known published by their owners",
            ),
        ),
    ),
    Process(
        name="notifier",
        command="csip notifier",
        description="Turns changes of subscribed resources into Notification POSTs.",
        group=None,
        processors=(
            Processor(
                "subscriptions",
                "follows subscriptions, allowed notification hosts and the resources they name",
                inputs=("csip.commands",),
                outputs=("change-detection",),
                stores=("subscriptions",),
            ),
            Processor(
                "change-detection",
                "renders each subscribed resource after a change and queues a Notification "
                "when it differs from what was last sent",
                inputs=("subscriptions", "csip.event-status"),
                outputs=("delivery",),
                stores=("subscriptions", "last-notified"),
            ),
            Processor(
                "delivery",
                "POSTs over mutual TLS in order per subscription, retries for 30 minutes "
                "(not after a 4xx), records every Notification and every one given up",
                inputs=("change-detection",),
                outputs=("subscribers", "csip.notifications", "csip.notifications.dead-letter"),
                stores=("pending",),
            ),
        ),
        stores=(
            Store("subscriptions", "memory", "subscriptions and the replica they render from"),
            Store(
                "last-notified",
                "rocksdict under --data",
                "digest of the last body sent per subscription: a restart does not re-send",
            ),
            Store(
                "pending",
                "rocksdict under --data",
                "deliveries waiting for their next attempt: a restart does not drop a retry",
            ),
        ),
    ),
    Process(
        name="replay",
        command="csip replay",
        description="Feeds scenario files (commands and time ticks) into the log.",
        processors=(
            Processor(
                "scenario",
                "each scenario input, in order, as a command",
                inputs=("scenario files",),
                outputs=("csip.commands",),
            ),
        ),
    ),
)
BY_PROCESS = {process.name: process for process in PROCESSES}


def problems() -> list[str]:
    """Where the static processors disagree with the catalog (empty when consistent)."""
    found: list[str] = []
    for topic in TOPICS:
        for party in (*topic.producers, *topic.consumers):
            if party not in BY_PROCESS and party not in EXTERNAL_PARTIES:
                found.append(f"{topic.name}: unknown producer or consumer {party!r}")
    for process in PROCESSES:
        found.extend(_process_problems(process))
    return found


def _process_problems(process: Process) -> list[str]:
    found = []
    local = {p.name for p in process.processors}
    store_names = {s.name for s in process.stores}
    sources, sinks = set(process.sources()), set(process.sinks())
    read = {i for p in process.processors for i in p.inputs if i in BY_NAME}
    written = {o for p in process.processors for o in p.outputs if o in BY_NAME}
    for missing in sorted(sources - read):
        found.append(f"{process.name}: reads {missing} but no processor does")
    for extra in sorted(read - sources):
        found.append(f"{process.name}: a processor reads {extra}, not in its consumers")
    for missing in sorted(sinks - written):
        found.append(f"{process.name}: writes {missing} but no processor does")
    for extra in sorted(written - sinks):
        found.append(f"{process.name}: a processor writes {extra}, not in its producers")
    for processor in process.processors:
        for name in (*processor.inputs, *processor.outputs):
            if name not in BY_NAME and name not in local and name not in EXTERNAL:
                found.append(f"{process.name}.{processor.name}: unknown input/output {name!r}")
        for store in processor.stores:
            if store not in store_names:
                found.append(f"{process.name}.{processor.name}: unknown store {store!r}")
    for declared in process.stores:
        if declared.changelog is not None and declared.changelog not in BY_NAME:
            found.append(f"{process.name}: store {declared.name} has unknown changelog")
    return found


def _partitions(topic: str, shards: int) -> str:
    count = BY_NAME[topic].partition_count(shards)
    return f"{count} partition{'s' if count != 1 else ''}"


def _label(name: str, local: set[str]) -> str:
    return name if name in BY_NAME or name in local else f"({name})"


def describe(shards: int) -> dict[str, Any]:
    """The topology as data (``csip topics describe --format json``)."""
    processes = []
    for process in PROCESSES:
        processes.append(
            {
                "name": process.name,
                "command": process.command,
                "description": process.description,
                "group": process.group,
                "sources": [
                    {
                        "topic": topic,
                        "partitions": BY_NAME[topic].partition_count(shards),
                        "to": [p.name for p in process.processors if topic in p.inputs],
                    }
                    for topic in process.sources()
                ],
                "processors": [
                    {
                        "name": p.name,
                        "description": p.description,
                        "inputs": list(p.inputs),
                        "outputs": list(p.outputs),
                        "stores": list(p.stores),
                    }
                    for p in process.processors
                ],
                "stores": [
                    {
                        "name": s.name,
                        "kind": s.kind,
                        "description": s.description,
                        "changelog": s.changelog,
                    }
                    for s in process.stores
                ],
                "sinks": [
                    {
                        "topic": topic,
                        "partitions": BY_NAME[topic].partition_count(shards),
                        "from": [p.name for p in process.processors if topic in p.outputs],
                    }
                    for topic in process.sinks()
                ],
            }
        )
    return {"shards": shards, "processes": processes}


def _wrap(lead: str, text: str, width: int = 96) -> list[str]:
    """One logical line folded under its lead: ``-->`` lists align after the arrow, comments
    repeat their ``#``."""
    follow = lead if lead.strip() == "#" else " " * len(lead)
    return textwrap.wrap(
        text, width, initial_indent=lead, subsequent_indent=follow, break_on_hyphens=False
    )


def render_text(shards: int) -> str:
    """Kafka Streams' ``Topology.describe()`` layout, one block per process."""
    lines = [f"Topologies (shards: {shards}):"]
    for process in PROCESSES:
        local = {p.name for p in process.processors}
        group = f"; consumer group {process.group}" if process.group else ""
        lines.append(f"   Process: {process.name}  ({process.command}{group})")
        lines += _wrap("    # ", process.description)
        for topic in process.sources():
            readers = [p.name for p in process.processors if topic in p.inputs]
            lines.append(f"    Source: {topic} ({_partitions(topic, shards)})")
            lines += _wrap("      --> ", ", ".join(readers))
        for p in process.processors:
            lines.append(f"    Processor: {p.name} (stores: [{', '.join(p.stores)}])")
            if p.outputs:
                lines += _wrap("      --> ", ", ".join(_label(o, local) for o in p.outputs))
            lines += _wrap("      <-- ", ", ".join(_label(i, local) for i in p.inputs))
            lines += _wrap("      # ", p.description)
        for store in process.stores:
            lines.append(f"    Store: {store.name} ({store.kind})")
            if store.changelog:
                lines.append(f"      changelog: {store.changelog}")
            lines += _wrap("      # ", store.description)
        for topic in process.sinks():
            writers = [p.name for p in process.processors if topic in p.outputs]
            lines.append(f"    Sink: {topic} ({_partitions(topic, shards)})")
            lines += _wrap("      <-- ", ", ".join(writers))
    return "\n".join(lines)
