"""What devices report: DER resources, mirror usage points and readings, log events and
responses; every accepted post is also an event on the telemetry log.

Reports do not go through the kernel (nothing a device reports changes what is in force), so
they have their own durable path: one writer task takes each post's records, appends them in
one synced write (the event on the telemetry log and the updated views together), and only then
lets the gateway answer 201/204. A single writer keeps the telemetry log gap-free: a consumer
reading after sequence number N never misses an event that becomes visible later.

Keys in the runtime's rocksdict (``Store``), by prefix:

- ``T`` + seq: telemetry events ``{"seq", "type", "t", "lfdi", "data"}``;
- ``D`` + LFDI + ``/`` + kind: the latest DERCapability, DERSettings, DERStatus or
  DERAvailability of a device ``{"t", "value"}``;
- ``U`` + id: mirror usage points; ``u`` + LFDI + ``/`` + mRID: the id of a device's MUP;
- ``V`` + id + ``/`` + mRID: the latest state of each MirrorMeterReading of a MUP;
  ``m`` + mRID: the id of the MUP a MirrorMeterReading mRID belongs to (mRIDs are global);
- ``E`` + LFDI + ``/`` + seq: log events, the newest ``log_events_kept`` of each device
  (``#lel/`` + LFDI: how many it has; every one stays on the telemetry log);
  ``S`` + LFDI + ``/`` + mRID + ``/`` + seq: posted responses; ``#`` + name: counters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.runtime.embedded.store import Store, View

TELEMETRY = b"T"
DER = b"D"
MUP = b"U"
MUP_INDEX = b"u"
MMR = b"V"
MMR_OWNER = b"m"
LOG_EVENT = b"E"
RESPONSE = b"S"
COUNTER = b"#"

DER_KINDS = ("capability", "settings", "status", "availability")
# Log events kept per device for LogEventList and EndDevice (a device's alarms must not grow
# its resources, and the server's disk, without end); the telemetry log keeps them all.
LOG_EVENTS_KEPT = 1000


def log_event_count_key(lfdi: str) -> bytes:
    return COUNTER + f"lel/{lfdi}".encode()


def _n(value: int) -> bytes:
    return value.to_bytes(8, "big")


@dataclass
class _Write:
    items: Sequence[View]
    # (prefix, count key, key): the write adds ``key`` under a prefix kept bounded (Store.trim)
    bounded: tuple[bytes, bytes, bytes] | None = None
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Reporting:
    def __init__(self, store: Store, *, log_events_kept: int = LOG_EVENTS_KEPT) -> None:
        self.store = store
        self.log_events_kept = log_events_kept
        self._queue: asyncio.Queue[_Write] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.telemetry_seq = self._counter(b"telemetry")
        self._next_mup = self._counter(b"mup")
        self._next_log_event = self._counter(b"lel")
        self._next_response = self._counter(b"rsp")
        # Called with the device's LFDI once what it reported is durable (the view cache).
        self.on_write: list[Callable[[str], None]] = []

    def _counter(self, name: bytes) -> int:
        raw = self.store.get(COUNTER + name)
        return 0 if raw is None else int(raw)

    # -- the writer -------------------------------------------------------------------------

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="csip-reporting")

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            first = await self._queue.get()
            group = [first]
            while not self._queue.empty() and len(group) < 512:
                group.append(self._queue.get_nowait())
            try:
                await asyncio.to_thread(self._write_group, group)
            except Exception as exc:  # the posts are refused, nothing half-written
                for write in group:
                    write.done.set_exception(exc)
                continue
            for write in group:
                write.done.set_result(None)

    def _write_group(self, group: list[_Write]) -> None:
        """One synced write of a group of posts (in the writer's thread: the only writer, so
        what it reads of bounded lists is what earlier groups wrote)."""
        items: list[View] = [item for write in group for item in write.items]
        added: dict[tuple[bytes, bytes], list[bytes]] = {}
        for write in group:
            if write.bounded is not None:
                prefix, count_key, key = write.bounded
                added.setdefault((prefix, count_key), []).append(key)
        dropped: set[bytes] = set()
        for (prefix, count_key), keys in added.items():
            trimmed, gone = self.store.trim(prefix, count_key, keys, self.log_events_kept)
            items += trimmed
            dropped |= gone
        if dropped:  # more new ones in this group than are kept
            items = [item for item in items if item[0] not in dropped]
        self.store.append([], items)

    async def _commit(
        self, lfdi: str, items: Sequence[View], bounded: tuple[bytes, bytes, bytes] | None = None
    ) -> None:
        assert self._queue is not None, "Reporting.start() was not called"
        write = _Write(items, bounded)
        self._queue.put_nowait(write)
        await write.done
        for hook in self.on_write:
            hook(lfdi)

    def _event(self, kind: str, t: int, lfdi: str, data: dict[str, Any]) -> tuple[bytes, bytes]:
        """The next telemetry event (its sequence number is taken now, in order)."""
        self.telemetry_seq += 1
        seq = self.telemetry_seq
        event = {"seq": seq, "type": kind, "t": t, "lfdi": lfdi, "data": data}
        return TELEMETRY + _n(seq), orjson.dumps(event)

    def _counters(self) -> list[tuple[bytes, bytes]]:
        return [
            (COUNTER + b"telemetry", str(self.telemetry_seq).encode()),
            (COUNTER + b"mup", str(self._next_mup).encode()),
            (COUNTER + b"lel", str(self._next_log_event).encode()),
            (COUNTER + b"rsp", str(self._next_response).encode()),
        ]

    # -- DER resources ----------------------------------------------------------------------

    async def put_der(self, lfdi: str, kind: str, t: int, value: dict[str, Any]) -> None:
        assert kind in DER_KINDS
        items = [
            (DER + f"{lfdi}/{kind}".encode(), orjson.dumps({"t": t, "value": value})),
            self._event(f"der_{kind}", t, lfdi, value),
        ]
        await self._commit(lfdi, items + self._counters())

    def der(self, lfdi: str, kind: str) -> dict[str, Any] | None:
        raw = self.store.get(DER + f"{lfdi}/{kind}".encode())
        return None if raw is None else dict(orjson.loads(raw))

    # -- mirror usage points ----------------------------------------------------------------

    def mup_id(self, lfdi: str, mrid: str) -> int | None:
        raw = self.store.get(MUP_INDEX + f"{lfdi}/{mrid.upper()}".encode())
        return None if raw is None else int(raw)

    async def put_mup(
        self, lfdi: str, mrid: str, t: int, value: dict[str, Any]
    ) -> tuple[int, bool]:
        """Create, or update, a device's MUP by mRID; returns (id, created)."""
        existing = self.mup_id(lfdi, mrid)
        created = existing is None
        if existing is None:
            self._next_mup += 1
            existing = self._next_mup
        record = {"id": existing, "lfdi": lfdi, "mRID": mrid.upper(), "t": t, "value": value}
        items = [
            (MUP + _n(existing), orjson.dumps(record)),
            (MUP_INDEX + f"{lfdi}/{mrid.upper()}".encode(), str(existing).encode()),
            self._event("mirror_usage_point", t, lfdi, {"mup": existing, **value}),
        ]
        await self._commit(lfdi, items + self._counters())
        return existing, created

    def mup_count(self, lfdi: str) -> int:
        """How many mirror usage points a device has (from its index: no full scan)."""
        return sum(1 for _ in self.store.scan(MUP_INDEX + f"{lfdi}/".encode()))

    def mups_of(self, lfdi: str) -> list[dict[str, Any]]:
        """A device's mirror usage points (through its index)."""
        found = []
        for _, value in self.store.scan(MUP_INDEX + f"{lfdi}/".encode()):
            record = self.mup(int(value))
            if record is not None:
                found.append(record)
        return found

    def mup(self, mup_id: int) -> dict[str, Any] | None:
        raw = self.store.get(MUP + _n(mup_id))
        return None if raw is None else dict(orjson.loads(raw))

    async def post_readings(
        self,
        mup_id: int,
        lfdi: str,
        t: int,
        meter_readings: list[dict[str, Any]],
        records: list[dict[str, Any]],
    ) -> None:
        """Store the latest state of each posted MirrorMeterReading; one event per reading."""
        items: list[tuple[bytes, bytes]] = []
        for reading in meter_readings:
            key = MMR + _n(mup_id) + f"/{reading['mRID'].upper()}".encode()
            previous = self.store.get(key)
            merged = dict(orjson.loads(previous)) if previous is not None else {}
            merged.update({k: v for k, v in reading.items() if v is not None})
            items.append((key, orjson.dumps(merged)))
            items.append((MMR_OWNER + reading["mRID"].upper().encode(), str(mup_id).encode()))
        for record in records:
            items.append(self._event("reading", t, lfdi, record))
        await self._commit(lfdi, items + self._counters())

    def meter_reading(self, mup_id: int, mrid: str) -> dict[str, Any] | None:
        raw = self.store.get(MMR + _n(mup_id) + f"/{mrid.upper()}".encode())
        return None if raw is None else dict(orjson.loads(raw))

    def meter_readings(self, mup_id: int) -> list[dict[str, Any]]:
        return [dict(orjson.loads(v)) for _, v in self.store.scan(MMR + _n(mup_id) + b"/")]

    def meter_reading_owner(self, mrid: str) -> int | None:
        """The MUP that holds MirrorMeterReading ``mrid``, if any."""
        raw = self.store.get(MMR_OWNER + mrid.upper().encode())
        return None if raw is None else int(raw)

    # -- log events and responses -----------------------------------------------------------

    async def post_log_event(
        self, lfdi: str, t: int, value: dict[str, Any], telemetry: dict[str, Any] | None = None
    ) -> int:
        """Store a LogEvent; ``telemetry`` is what its event carries (default: the value)."""
        self._next_log_event += 1
        number = self._next_log_event
        stored = {"id": number, "t": t, "value": value}
        prefix = LOG_EVENT + f"{lfdi}/".encode()
        key = prefix + _n(number)
        items: list[View] = [
            (key, orjson.dumps(stored)),
            self._event("log_event", t, lfdi, telemetry if telemetry is not None else value),
        ]
        items += self._counters()
        await self._commit(lfdi, items, (prefix, log_event_count_key(lfdi), key))
        return number

    def log_events(self, lfdi: str) -> list[dict[str, Any]]:
        return [dict(orjson.loads(v)) for _, v in self.store.scan(LOG_EVENT + f"{lfdi}/".encode())]

    async def post_response(self, lfdi: str, program: str, t: int, value: dict[str, Any]) -> int:
        self._next_response += 1
        number = self._next_response
        stored = {"id": number, "t": t, "program": program, "value": value}
        key = RESPONSE + f"{lfdi}/{value['subject']}/".encode() + _n(number)
        items = [
            (key, orjson.dumps(stored)),
            self._event("response", t, lfdi, {"program": program, **value}),
        ]
        await self._commit(lfdi, items + self._counters())
        return number

    def responses(self, lfdi: str, mrid: str | None = None) -> list[dict[str, Any]]:
        prefix = RESPONSE + f"{lfdi}/".encode()
        if mrid is not None:
            prefix += f"{mrid.upper()}/".encode()
        return [dict(orjson.loads(v)) for _, v in self.store.scan(prefix)]

    # -- the telemetry log ------------------------------------------------------------------

    def telemetry(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _, value in self.store.scan_from(TELEMETRY, TELEMETRY + _n(after + 1)):
            out.append(dict(orjson.loads(value)))
            if len(out) >= limit:
                break
        return out
