"""The embedded runtime's data directory: one rocksdict database.

Keys (raw bytes), by prefix:

- ``L`` + seq (8 bytes, big-endian): the command log, one entry per accepted command:
  ``{"t": instant, "command": {...}}``. Appended with a synced write before the client is
  answered, so an acknowledged write survives a crash.
- ``C``: the latest checkpoint, ``{"seq", "registry", "kernel"}``: the state after applying
  every log entry up to ``seq``. Recovery loads it and replays the entries after it.
- ``R`` + LFDI + ``/`` + mRID: the response lifecycle the kernel expects of a device for a
  control (a view: rebuilt by replay, so written without sync).
- ``H`` + LFDI + ``/`` + instant (8 bytes) + mode: effective-control history (a view).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from rocksdict import AccessType, Options, Rdict, WriteBatch, WriteOptions

LOG = b"L"
CHECKPOINT = b"C"
LIFECYCLE = b"R"
HISTORY = b"H"

View = tuple[bytes, bytes | None]  # a view key and its new value; None deletes the key


def _seq_key(seq: int) -> bytes:
    return LOG + seq.to_bytes(8, "big")


class Store:
    """The rocksdict database under the data directory.

    ``secondary`` opens it as a RocksDB secondary instance instead: read-only, beside the
    process that writes it, and as fresh as the last ``catch_up()`` (a read replica; its own
    bookkeeping lives in the ``secondary`` directory).
    """

    def __init__(self, directory: Path, *, secondary: Path | None = None) -> None:
        self.path = directory / "state.rocksdb"
        options = Options(raw_mode=True)
        if secondary is None:
            directory.mkdir(parents=True, exist_ok=True)
            options.create_if_missing(True)
            self._db = Rdict(str(self.path), options)
        else:
            secondary.mkdir(parents=True, exist_ok=True)
            options.set_max_open_files(-1)  # RocksDB requires it of secondary instances
            access = AccessType.secondary(str(secondary))
            self._db = Rdict(str(self.path), options, access_type=access)
        self.secondary = secondary is not None
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        self.last_seq = 0 if self.secondary else self._find_last_seq()

    def catch_up(self) -> None:
        """A secondary instance: see everything the writer has written so far."""
        self._db.try_catch_up_with_primary()

    def close(self) -> None:
        self._db.close()

    def _items(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Raw (key, value) pairs whose key starts with ``prefix``, from ``start`` on."""
        for key, value in self._db.items(from_key=start or prefix):
            assert isinstance(key, bytes) and isinstance(value, bytes)
            if not key.startswith(prefix):
                return
            yield key, value

    def _find_last_seq(self) -> int:
        last = 0
        for key, _ in self._items(LOG):
            last = int.from_bytes(key[1:], "big")
        return last

    # -- the log ----------------------------------------------------------------------------

    def append(self, entries: list[dict[str, Any]], views: Sequence[View]) -> int:
        """Append log entries (and view updates; a None value deletes the key) in one synced
        write; returns the last seq."""
        batch = self._batch(views)
        for entry in entries:
            self.last_seq += 1
            batch.put(_seq_key(self.last_seq), orjson.dumps(entry))
        self._db.write(batch, self._sync)
        return self.last_seq

    def entries_after(self, seq: int) -> Iterator[tuple[int, dict[str, Any]]]:
        for key, value in self._items(LOG, _seq_key(seq + 1)):
            yield int.from_bytes(key[1:], "big"), orjson.loads(value)

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self, seq: int, state: dict[str, Any]) -> None:
        self._db.write(self._batch([(CHECKPOINT, orjson.dumps({"seq": seq, **state}))]), self._sync)

    def load_checkpoint(self) -> dict[str, Any] | None:
        raw = self.get(CHECKPOINT)
        return None if raw is None else dict(orjson.loads(raw))

    # -- views ------------------------------------------------------------------------------

    def write_views(self, items: Sequence[View]) -> None:
        if items:
            self._db.write(self._batch(items), self._nosync)

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        assert value is None or isinstance(value, bytes)
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._items(prefix)

    def scan_from(self, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._items(prefix, start)

    def trim(
        self, prefix: bytes, count_key: bytes, new: Sequence[bytes], keep: int
    ) -> tuple[list[View], set[bytes]]:
        """Keep at most ``keep`` keys under ``prefix`` once the keys ``new`` (not written yet,
        none of them there already) are in: the oldest (first in key order) go. Returns the
        view items that delete the existing ones to go and store the new count at
        ``count_key`` (so no write has to count the keys; a store without it is counted
        once), and the keys of ``new`` not to write at all (older than every one kept)."""
        assert keep >= 1
        raw = self.get(count_key)
        count = (int(raw) if raw is not None else sum(1 for _ in self._items(prefix))) + len(new)
        items: list[View] = []
        dropped: set[bytes] = set()
        pending = sorted(new)
        existing = (key for key, _ in self._items(prefix))
        current = next(existing, None)
        while count > keep:
            if pending and (current is None or pending[0] < current):
                dropped.add(pending.pop(0))
            else:
                assert current is not None
                items.append((current, None))
                current = next(existing, None)
            count -= 1
        items.append((count_key, str(count).encode()))
        return items, dropped

    @staticmethod
    def _batch(items: Sequence[View]) -> WriteBatch:
        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        return batch
