"""A device's log events are kept up to a bound (the newest), in both runtimes' views; the
telemetry log keeps every one. Real rocksdict stores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.runtime.embedded import reporting as layout
from engine.runtime.embedded.reporting import Reporting
from engine.runtime.embedded.store import Store
from engine.runtime.kafka.reporting import KafkaReporting

LFDI = "AB" * 20
OTHER = "CD" * 20


def _event(n: int) -> dict[str, Any]:
    return {"createdDateTime": 1_800_000_000 + n, "logEventID": n, "logEventCode": 3}


def test_trim_drops_the_oldest_and_counts_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    try:
        store.write_views([(b"E/" + bytes([n]), b"x") for n in (1, 2, 3)])
        items, dropped = store.trim(b"E/", b"#E", [b"E/\x04", b"E/\x05"], keep=3)
        assert dropped == set()
        assert items == [(b"E/\x01", None), (b"E/\x02", None), (b"#E", b"3")]
        store.write_views([*items, (b"E/\x04", b"x"), (b"E/\x05", b"x")])
        # a key older than all kept (read again after it went) is not written back
        items, dropped = store.trim(b"E/", b"#E", [b"E/\x00"], keep=3)
        assert dropped == {b"E/\x00"} and items == [(b"#E", b"3")]
        assert [k for k, _ in store.scan(b"E/")] == [b"E/\x03", b"E/\x04", b"E/\x05"]
    finally:
        store.close()


def test_the_embedded_runtime_keeps_the_newest_log_events(tmp_path: Path) -> None:
    async def post(count: int, start: int, lfdi: str = LFDI) -> list[int]:
        store = Store(tmp_path / "db")
        reporting = Reporting(store, log_events_kept=3)
        await reporting.start()
        try:
            # posted together: one writer group trims several at once
            return list(
                await asyncio.gather(
                    *(
                        reporting.post_log_event(lfdi, 100 + n, _event(n))
                        for n in range(start, start + count)
                    )
                )
            )
        finally:
            await reporting.stop()
            store.close()

    asyncio.run(post(5, 0))
    asyncio.run(post(2, 5))  # after a restart: the stored count goes on
    asyncio.run(post(1, 0, OTHER))  # another device's are its own
    store = Store(tmp_path / "db")
    try:
        reporting = Reporting(store, log_events_kept=3)
        kept = [e["value"]["logEventID"] for e in reporting.log_events(LFDI)]
        assert kept == [4, 5, 6]
        assert [e["value"]["logEventID"] for e in reporting.log_events(OTHER)] == [0]
        assert store.get(layout.log_event_count_key(LFDI)) == b"3"
        logged = [e for e in reporting.telemetry(limit=100) if e["type"] == "log_event"]
        assert len(logged) == 8  # the telemetry log keeps them all
    finally:
        store.close()


class _Backend:
    def __init__(self, store: Store) -> None:
        self.store = store


def test_a_kafka_replica_keeps_the_newest_and_reads_the_topic_again_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layout, "LOG_EVENTS_KEPT", 3)
    store = Store(tmp_path / "replica")
    try:
        reporting = KafkaReporting(_Backend(store))  # type: ignore[arg-type]

        def apply(offset: int) -> None:
            record = {"type": "log_event", "lfdi": LFDI, "t": 100 + offset, "data": _event(offset)}
            store.write_views(reporting.view_items(record, offset))

        for offset in range(6):
            apply(offset)
        first = [e["value"]["logEventID"] for e in reporting.log_events(LFDI)]
        for offset in range(6):  # a restarted replica reads the topic from the start
            apply(offset)
        again = [e["value"]["logEventID"] for e in reporting.log_events(LFDI)]
        assert first == again == [3, 4, 5]
        assert orjson.loads(store.get(layout.log_event_count_key(LFDI)) or b"0") == 3
    finally:
        store.close()
