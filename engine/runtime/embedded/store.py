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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from rocksdict import AccessType, Options, Rdict, WriteBatch, WriteOptions

LOG = b"L"
CHECKPOINT = b"C"
LIFECYCLE = b"R"
HISTORY = b"H"


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

    def append(self, entries: list[dict[str, Any]], views: list[tuple[bytes, bytes]]) -> int:
        """Append log entries (and view updates) in one synced write; returns the last seq."""
        batch = WriteBatch(raw_mode=True)
        for entry in entries:
            self.last_seq += 1
            batch.put(_seq_key(self.last_seq), orjson.dumps(entry))
        for key, value in views:
            batch.put(key, value)
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

    def write_views(self, items: list[tuple[bytes, bytes]]) -> None:
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

    @staticmethod
    def _batch(items: list[tuple[bytes, bytes]]) -> WriteBatch:
        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            batch.put(key, value)
        return batch
