"""The durable delivery queue: what is still to be POSTed, in order per subscription.

Theory of operation. Every delivery lives in its own rocksdict database (one directory) from
the moment ``enqueue`` returns (a synced write) until it is delivered or dead-lettered, so a
restart resumes exactly where the last process stopped, attempt counts and schedules included.
Deliveries with the same ``key`` (a subscription) go out in the order they were queued, one at
a time: only the *head* of a key is ever handed out, and the next one is read from disk when
the head is done. Memory therefore grows with the number of keys that have something queued,
not with the number of queued deliveries (a subscriber that is down for 30 minutes can build a
large backlog).

The on-disk layout is in ``engine.notify.records``.

Only ``enqueue`` is synced: a delivery must never be lost. The writes that follow an attempt are
not: after a power loss (not a process crash, which keeps the write-ahead log) the delivery may be
sent once more, which is the at-least-once that deterministic ids exist for.

This class does no I/O besides the database and never reads a clock: ``now`` is an argument.
It is not thread-safe; the ``Notifier`` calls it from its event loop only.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from engine.notify.records import (
    DEAD,
    DONE,
    DONE_BY_AGE,
    MAX_KEY_BYTES,
    META_SEQ,
    ORDER,
    QUEUED,
    DeadLetter,
    Delivery,
    by_age_key,
    decode,
    delivery_from,
    done_value,
    encode,
    header,
    order_key,
    order_prefix,
)

_NO_HEAD = Delivery(id="", key="", uri="", body=b"", created=0.0, seq=-1)


class DeliveryQueue:
    """Queued deliveries on disk, with the heads of their keys scheduled in memory."""

    def __init__(self, directory: Path, *, remember_done: float = 3600.0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "notify.rocksdb"
        self.remember_done = remember_done
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(self.path), options)
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        raw_seq = self._get(META_SEQ)
        self._next_seq = 1 if raw_seq is None else int.from_bytes(raw_seq, "big")
        # key -> its head (the only delivery of that key in memory); key -> queued count.
        self._heads: dict[str, Delivery] = {}
        self._counts: dict[str, int] = {}
        self._in_flight: set[str] = set()
        # (due, seq, key) of heads waiting; stale entries are skipped when popped.
        self._timers: list[tuple[float, int, str]] = []
        # (created, seq, key) of heads, for the oldest age; stale entries skipped likewise.
        self._ages: list[tuple[float, int, str]] = []
        self._prune_from = DONE_BY_AGE
        self.queued = 0
        self._load()

    def close(self) -> None:
        self._db.close()

    # -- reading the database ---------------------------------------------------------------

    def _get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        assert value is None or isinstance(value, bytes)
        return value

    def _first(self, start: bytes, prefix: bytes) -> tuple[bytes, bytes] | None:
        """The first (key, value) at or after ``start`` whose key starts with ``prefix``."""
        cursor = self._db.iter()
        cursor.seek(start)
        if not cursor.valid():
            return None
        key, value = cursor.key(), cursor.value()
        assert isinstance(key, bytes) and isinstance(value, bytes)
        return (key, value) if key.startswith(prefix) else None

    def _scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=start or prefix):
            assert isinstance(key, bytes) and isinstance(value, bytes)
            if not key.startswith(prefix):
                return
            yield key, value

    def _load(self) -> None:
        """Find every key's head and count what is queued (one pass over the order index)."""
        for index_key, delivery_id in self._scan(ORDER):
            key_length = int.from_bytes(index_key[1:3], "big")
            key = index_key[3 : 3 + key_length].decode()
            self.queued += 1
            self._counts[key] = self._counts.get(key, 0) + 1
            if key not in self._heads:
                record = self._get(QUEUED + delivery_id)
                if record is not None:
                    self._set_head(delivery_from(delivery_id.decode(), record))

    # -- scheduling -------------------------------------------------------------------------

    def _set_head(self, head: Delivery) -> None:
        new_head = self._heads.get(head.key) is not head
        self._heads[head.key] = head
        heapq.heappush(self._timers, (head.next_attempt, head.seq, head.key))
        if new_head:
            if len(self._ages) > 2 * len(self._heads) + 1024:  # drop the stale entries
                self._ages = [(h.created, h.seq, h.key) for h in self._heads.values()]
                heapq.heapify(self._ages)
            else:
                heapq.heappush(self._ages, (head.created, head.seq, head.key))

    def _is_waiting(self, due: float, seq: int, key: str) -> bool:
        head = self._heads.get(key)
        return (
            head is not None
            and head.seq == seq
            and head.next_attempt == due
            and key not in self._in_flight
        )

    def take_due(self, now: float, limit: int) -> list[Delivery]:
        """Up to ``limit`` heads due at ``now``, earliest first; they are in flight until
        ``delivered``, ``retry``, ``dead_letter`` or ``release`` is called for them."""
        taken: list[Delivery] = []
        timers = self._timers
        while timers and len(taken) < limit and timers[0][0] <= now:
            due, seq, key = heapq.heappop(timers)
            if self._is_waiting(due, seq, key):
                self._in_flight.add(key)
                taken.append(self._heads[key])
        return taken

    def next_due(self) -> float | None:
        """When the earliest waiting head is due (None: nothing waits)."""
        timers = self._timers
        while timers and not self._is_waiting(*timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def oldest_created(self) -> float | None:
        """The creation time of the oldest head (within a key, heads are the oldest)."""
        ages = self._ages
        while ages and self._heads.get(ages[0][2], _NO_HEAD).seq != ages[0][1]:
            heapq.heappop(ages)
        return ages[0][0] if ages else None

    # -- enqueue ----------------------------------------------------------------------------

    def enqueue(self, deliveries: Iterable[Delivery], now: float) -> list[Delivery]:
        """Queue the deliveries whose id is new, durably (synced) before returning them.

        An id already queued, or done within ``remember_done`` seconds, is dropped, as is a
        repeat within ``deliveries``. Each new delivery is due at once (``next_attempt=now``).
        """
        fresh: list[Delivery] = []
        seen: set[str] = set()
        for delivery in deliveries:
            _check(delivery)
            if delivery.id in seen:
                continue
            seen.add(delivery.id)
            encoded_id = delivery.id.encode()
            if (
                self._get(QUEUED + encoded_id) is not None
                or self._get(DONE + encoded_id) is not None
            ):
                continue
            fresh.append(
                replace(
                    delivery,
                    seq=self._next_seq + len(fresh),
                    attempts=0,
                    next_attempt=now,
                    last_attempt=None,
                    last_status=None,
                    last_error=None,
                )
            )
        if not fresh:
            return fresh
        batch = WriteBatch(raw_mode=True)
        for delivery in fresh:
            batch.put(QUEUED + delivery.id.encode(), encode(header(delivery), delivery.body))
            batch.put(order_key(delivery.key, delivery.seq), delivery.id.encode())
        next_seq = self._next_seq + len(fresh)
        batch.put(META_SEQ, next_seq.to_bytes(8, "big"))
        self._db.write(batch, self._sync)
        self._next_seq = next_seq
        for delivery in fresh:
            self.queued += 1
            self._counts[delivery.key] = self._counts.get(delivery.key, 0) + 1
            if delivery.key not in self._heads:
                self._set_head(delivery)
        return fresh

    # -- outcomes of an attempt (the delivery must be in flight) ----------------------------

    def delivered(self, delivery: Delivery, now: float) -> None:
        """The subscriber took it: forget it (but remember its id) and move the key on."""
        batch = self._finish(delivery, now, b"d")
        self._db.write(batch, self._nosync)
        self._advance(delivery)

    def dead_letter(self, delivery: Delivery, now: float, reason: str) -> DeadLetter:
        """Give up on it: keep it as a dead letter with ``reason`` and move the key on."""
        letter = DeadLetter(delivery=delivery, reason=reason, dead_lettered=now)
        batch = self._finish(delivery, now, b"x")
        fields = {**header(delivery), "reason": reason, "dead_lettered": now}
        batch.put(DEAD + delivery.id.encode(), encode(fields, delivery.body))
        self._db.write(batch, self._nosync)
        self._advance(delivery)
        return letter

    def retry(self, delivery: Delivery) -> None:
        """Keep it at the head of its key, due again at ``delivery.next_attempt`` (the caller
        has updated attempts, the schedule and the last status/error)."""
        record = encode(header(delivery), delivery.body)
        self._db.put(QUEUED + delivery.id.encode(), record, self._nosync)
        self._in_flight.discard(delivery.key)
        self._set_head(delivery)

    def release(self, delivery: Delivery) -> None:
        """An attempt that did not finish (shutdown): the delivery waits as it was."""
        self._in_flight.discard(delivery.key)
        self._set_head(delivery)

    def _finish(self, delivery: Delivery, now: float, outcome: bytes) -> WriteBatch:
        encoded_id = delivery.id.encode()
        batch = WriteBatch(raw_mode=True)
        batch.delete(QUEUED + encoded_id)
        batch.delete(order_key(delivery.key, delivery.seq))
        batch.put(DONE + encoded_id, done_value(now, outcome))
        batch.put(by_age_key(now, delivery.id), b"")
        return batch

    def _advance(self, done: Delivery) -> None:
        """The key's head is done: read the next of that key from disk, if any."""
        key = done.key
        self._in_flight.discard(key)
        self.queued -= 1
        remaining = self._counts.get(key, 1) - 1
        prefix = order_prefix(key)
        found = (
            self._first(prefix + (done.seq + 1).to_bytes(8, "big"), prefix) if remaining else None
        )
        record = None if found is None else self._get(QUEUED + found[1])
        if found is None or record is None:
            self._heads.pop(key, None)
            self._counts.pop(key, None)
            return
        self._counts[key] = remaining
        self._set_head(delivery_from(found[1].decode(), record))

    # -- housekeeping -----------------------------------------------------------------------

    def prune_done(self, now: float, limit: int = 10_000) -> int:
        """Forget up to ``limit`` ids done more than ``remember_done`` seconds before ``now``."""
        cutoff = by_age_key(now - self.remember_done, "")
        batch = WriteBatch(raw_mode=True)
        pruned = 0
        for age_key, _ in self._scan(DONE_BY_AGE, self._prune_from):
            if age_key >= cutoff or pruned >= limit:
                break
            batch.delete(age_key)
            batch.delete(DONE + age_key[9:])
            self._prune_from = age_key  # seek past the tombstones next time
            pruned += 1
        if pruned:
            self._db.write(batch, self._nosync)
        return pruned

    def dead_letters(self, limit: int = 100, after: str | None = None) -> list[DeadLetter]:
        """Dead letters in id order, ``limit`` at a time, from just after the id ``after``."""
        start = DEAD + (after.encode() + b"\x00" if after is not None else b"")
        letters: list[DeadLetter] = []
        for dead_key, record in self._scan(DEAD, start):
            if len(letters) >= limit:
                break
            fields, body = decode(record)
            reason = fields.pop("reason")
            dead_lettered = fields.pop("dead_lettered")
            delivery = Delivery(id=dead_key[1:].decode(), body=body, **fields)
            letters.append(DeadLetter(delivery, reason, dead_lettered))
        return letters

    def drop_dead_letter(self, delivery_id: str) -> bool:
        """Acknowledge (delete) a dead letter; False if there was none with that id."""
        dead_key = DEAD + delivery_id.encode()
        if self._get(dead_key) is None:
            return False
        self._db.delete(dead_key, self._nosync)
        return True

    def prune_dead_letters(self, before: float) -> int:
        """Delete the dead letters given up before ``before`` (a full scan: an operator task)."""
        stale = [
            dead_key
            for dead_key, record in self._scan(DEAD)
            if decode(record)[0]["dead_lettered"] < before
        ]
        batch = WriteBatch(raw_mode=True)
        for dead_key in stale:
            batch.delete(dead_key)
        if stale:
            self._db.write(batch, self._nosync)
        return len(stale)


def _check(delivery: Delivery) -> None:
    """Refuse what cannot be stored or keyed, before anything is written."""
    if not delivery.id or not delivery.key:
        raise ValueError("a delivery needs an id and a key")
    if len(delivery.key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"a delivery key is at most {MAX_KEY_BYTES} bytes")
    if not isinstance(delivery.body, bytes):
        raise TypeError("a delivery body is bytes")
