"""What devices report, in the Kafka runtime: written to the telemetry topics, read back into
local views with the same layout as the embedded runtime's ``Reporting`` (so the gateway's
routes read both the same way)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

import orjson

from engine.runtime.embedded import reporting as layout
from engine.runtime.embedded.store import View
from topics import catalog

if TYPE_CHECKING:
    from engine.runtime.kafka.backend import KafkaBackend

# Event type (the embedded telemetry log's) -> telemetry topic.
TELEMETRY_TOPIC = {
    "der_capability": "der-capability",
    "der_settings": "der-settings",
    "der_status": "der-status",
    "der_availability": "der-availability",
    "reading": "readings",
    "log_event": "log-events",
    "mirror_usage_point": "mirror-usage-points",
    "meter_reading_state": "mirror-usage-points",
    "response": "responses",
}


def mup_id(lfdi: str, mrid: str) -> int:
    """A mirror usage point's id, the same in every replica: a hash of (device, mRID)."""
    digest = blake2b(f"{lfdi.upper()}/{mrid.upper()}".encode(), digest_size=5).digest()
    return int.from_bytes(digest, "big") or 1


class KafkaReporting:
    """What devices report, written to the telemetry topics and read back into local views
    (the same view layout as the embedded runtime's ``Reporting``)."""

    def __init__(self, backend: KafkaBackend) -> None:
        self.backend = backend
        # Called with a device's LFDI when its reports change in this replica (the view cache).
        self.on_write: list[Callable[[str], None]] = []

    async def _write(self, kind: str, t: int, lfdi: str, data: dict[str, Any]) -> int:
        name = TELEMETRY_TOPIC[kind]
        topic = self.backend.topic(catalog.TELEMETRY_BY_KIND[name])
        record_id = uuid.uuid4().hex
        value = orjson.dumps(
            {"v": 1, "id": record_id, "type": kind, "t": t, "lfdi": lfdi, "data": data}
        )
        partition = catalog.partition_for(lfdi, self.backend.shards)
        return await self.backend.produce(topic, value, key=lfdi.encode(), partition=partition)

    def view_items(self, record: dict[str, Any], offset: int) -> list[View]:
        kind, lfdi, data, t = record["type"], record["lfdi"], record["data"], record["t"]
        if kind.startswith("der_"):
            return [
                (layout.DER + f"{lfdi}/{kind[4:]}".encode(), orjson.dumps({"t": t, "value": data}))
            ]
        if kind == "mirror_usage_point":
            number = data["mup"]
            stored = {
                "id": number,
                "lfdi": lfdi,
                "mRID": data["mRID"],
                "t": t,
                "value": data["value"],
            }
            return [
                (layout.MUP + number.to_bytes(8, "big"), orjson.dumps(stored)),
                (layout.MUP_INDEX + f"{lfdi}/{data['mRID']}".encode(), str(number).encode()),
            ]
        if kind == "meter_reading_state":
            key = layout.MMR + data["mup"].to_bytes(8, "big") + f"/{data['mRID']}".encode()
            owner = layout.MMR_OWNER + data["mRID"].upper().encode()
            return [(key, orjson.dumps(data["state"])), (owner, str(data["mup"]).encode())]
        if kind == "log_event":
            stored = {
                "id": offset,
                "t": t,
                "value": {k: v for k, v in data.items() if k != "alarm"},
            }
            # The newest LOG_EVENTS_KEPT of each device, as in the embedded runtime. A record
            # read again (this replica re-reads the topic on start) is not counted twice.
            store = self.backend.store
            prefix = layout.LOG_EVENT + f"{lfdi}/".encode()
            key = prefix + offset.to_bytes(8, "big")
            if store.get(key) is not None:
                return [(key, orjson.dumps(stored))]
            count_key = layout.log_event_count_key(lfdi)
            trimmed, dropped = store.trim(prefix, count_key, [key], layout.LOG_EVENTS_KEPT)
            return trimmed if dropped else [(key, orjson.dumps(stored)), *trimmed]
        if kind == "response":
            value = {k: v for k, v in data.items() if k != "program"}
            stored = {"id": offset, "t": t, "program": data["program"], "value": value}
            key = (
                layout.RESPONSE + f"{lfdi}/{value['subject']}/".encode() + offset.to_bytes(8, "big")
            )
            return [(key, orjson.dumps(stored))]
        return []  # readings: telemetry only

    # -- the Reports protocol (gateway/context.py) -------------------------------------------

    async def put_der(self, lfdi: str, kind: str, t: int, value: dict[str, Any]) -> None:
        await self._write(f"der_{kind}", t, lfdi, value)

    def der(self, lfdi: str, kind: str) -> dict[str, Any] | None:
        raw = self.backend.store.get(layout.DER + f"{lfdi}/{kind}".encode())
        return None if raw is None else dict(orjson.loads(raw))

    def mup_id(self, lfdi: str, mrid: str) -> int | None:
        raw = self.backend.store.get(layout.MUP_INDEX + f"{lfdi}/{mrid.upper()}".encode())
        return None if raw is None else int(raw)

    async def put_mup(
        self, lfdi: str, mrid: str, t: int, value: dict[str, Any]
    ) -> tuple[int, bool]:
        created = self.mup_id(lfdi, mrid) is None
        number = mup_id(lfdi, mrid)
        await self._write(
            "mirror_usage_point", t, lfdi, {"mup": number, "mRID": mrid.upper(), "value": value}
        )
        return number, created

    def mup_count(self, lfdi: str) -> int:
        return sum(1 for _ in self.backend.store.scan(layout.MUP_INDEX + f"{lfdi}/".encode()))

    def mups_of(self, lfdi: str) -> list[dict[str, Any]]:
        """A device's mirror usage points (through its index)."""
        found = []
        for _, value in self.backend.store.scan(layout.MUP_INDEX + f"{lfdi}/".encode()):
            record = self.mup(int(value))
            if record is not None:
                found.append(record)
        return found

    def mup(self, mup_id: int) -> dict[str, Any] | None:
        raw = self.backend.store.get(layout.MUP + mup_id.to_bytes(8, "big"))
        return None if raw is None else dict(orjson.loads(raw))

    async def post_readings(
        self,
        mup_id: int,
        lfdi: str,
        t: int,
        meter_readings: list[dict[str, Any]],
        records: list[dict[str, Any]],
    ) -> None:
        for reading in meter_readings:
            previous = self.meter_reading(mup_id, reading["mRID"]) or {}
            merged = {**previous, **{k: v for k, v in reading.items() if v is not None}}
            await self._write(
                "meter_reading_state",
                t,
                lfdi,
                {"mup": mup_id, "mRID": reading["mRID"].upper(), "state": merged},
            )
        for record in records:
            await self._write("reading", t, lfdi, record)

    def meter_reading(self, mup_id: int, mrid: str) -> dict[str, Any] | None:
        raw = self.backend.store.get(
            layout.MMR + mup_id.to_bytes(8, "big") + f"/{mrid.upper()}".encode()
        )
        return None if raw is None else dict(orjson.loads(raw))

    def meter_readings(self, mup_id: int) -> list[dict[str, Any]]:
        prefix = layout.MMR + mup_id.to_bytes(8, "big") + b"/"
        return [dict(orjson.loads(v)) for _, v in self.backend.store.scan(prefix)]

    def meter_reading_owner(self, mrid: str) -> int | None:
        raw = self.backend.store.get(layout.MMR_OWNER + mrid.upper().encode())
        return None if raw is None else int(raw)

    async def post_log_event(
        self, lfdi: str, t: int, value: dict[str, Any], telemetry: dict[str, Any] | None = None
    ) -> int:
        return await self._write(
            "log_event", t, lfdi, telemetry if telemetry is not None else value
        )

    def log_events(self, lfdi: str) -> list[dict[str, Any]]:
        return [
            dict(orjson.loads(v))
            for _, v in self.backend.store.scan(layout.LOG_EVENT + f"{lfdi}/".encode())
        ]

    async def post_response(self, lfdi: str, program: str, t: int, value: dict[str, Any]) -> int:
        return await self._write("response", t, lfdi, {"program": program, **value})

    def responses(self, lfdi: str, mrid: str | None = None) -> list[dict[str, Any]]:
        prefix = layout.RESPONSE + f"{lfdi}/".encode()
        if mrid is not None:
            prefix += f"{mrid.upper()}/".encode()
        return [dict(orjson.loads(v)) for _, v in self.backend.store.scan(prefix)]

    def telemetry(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]] | None:
        return None  # no log of its own: the telemetry topics are the log (topics/README.md)
