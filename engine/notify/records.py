"""What the notification queue stores: deliveries, dead letters, and their on-disk layout.

Keys (raw bytes) of the queue's rocksdict database, by prefix:

- ``M`` + name: counters (``Mseq``: the next sequence number, written with each enqueue).
- ``Q`` + id: a queued delivery: 4-byte header length, the JSON header, then the body.
- ``K`` + key length (2 bytes) + key + seq (8 bytes): the per-key order index, value the id.
- ``D`` + id: done (delivered or dead-lettered) at that time, kept ``remember_done`` seconds so
  a duplicate enqueue is dropped; ``T`` + time (ms, 8 bytes) + id indexes them by age for pruning.
- ``X`` + id: a dead letter: the delivery's header and body plus ``reason`` and
  ``dead_lettered``.

The body stays raw bytes after a small JSON header, so a large Notification is never
re-encoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import orjson

SEP_XML = "application/sep+xml"
META_SEQ = b"Mseq"
QUEUED = b"Q"
ORDER = b"K"
DONE = b"D"
DONE_BY_AGE = b"T"
DEAD = b"X"
MAX_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Delivery:
    """One Notification to POST to one subscriber.

    The caller gives ``id`` (deterministic, e.g. subscription and version: it is how duplicates
    are recognized), ``key`` (the subscription: same key, same order), ``uri``, ``body`` and
    ``created`` (epoch seconds, on the notifier's clock: the retry window counts from it). The
    queue fills in ``seq`` (its position) and the runtime state: ``attempts`` made so far,
    ``next_attempt`` (when it is due), and what the last attempt saw.
    """

    id: str
    key: str
    uri: str
    body: bytes
    created: float
    content_type: str = SEP_XML
    seq: int = 0
    attempts: int = 0
    next_attempt: float = 0.0
    last_attempt: float | None = None
    last_status: int | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery given up on: ``reason`` is "rejected" (the subscriber answered a status that
    is not retried, or the URI cannot be used) or "expired" (still failing when too old)."""

    delivery: Delivery
    reason: str
    dead_lettered: float


def order_prefix(key: str) -> bytes:
    encoded = key.encode()
    return ORDER + len(encoded).to_bytes(2, "big") + encoded


def order_key(key: str, seq: int) -> bytes:
    return order_prefix(key) + seq.to_bytes(8, "big")


def header(delivery: Delivery) -> dict[str, Any]:
    return {
        "key": delivery.key,
        "uri": delivery.uri,
        "content_type": delivery.content_type,
        "created": delivery.created,
        "seq": delivery.seq,
        "attempts": delivery.attempts,
        "next_attempt": delivery.next_attempt,
        "last_attempt": delivery.last_attempt,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
    }


def encode(header: dict[str, Any], body: bytes) -> bytes:
    head = orjson.dumps(header)
    return len(head).to_bytes(4, "big") + head + body


def decode(record: bytes) -> tuple[dict[str, Any], bytes]:
    length = int.from_bytes(record[:4], "big")
    return orjson.loads(record[4 : 4 + length]), record[4 + length :]


def delivery_from(delivery_id: str, record: bytes) -> Delivery:
    fields, body = decode(record)
    return Delivery(id=delivery_id, body=body, **fields)


def done_value(now: float, outcome: bytes) -> bytes:
    return struct.pack(">d", now) + outcome


def by_age_key(now: float, delivery_id: str) -> bytes:
    return DONE_BY_AGE + int(max(now, 0) * 1000).to_bytes(8, "big") + delivery_id.encode()
