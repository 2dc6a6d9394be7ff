"""Which shard (partition) a device's records belong to: a stable hash of its LFDI.

``topics.catalog`` re-exports both functions; they live in a module of their own so that the
optional mypyc build (``engine/compiled.py``) compiles them with the fold, which calls them for
every device input and every record it publishes.
"""

from __future__ import annotations

import zlib


def shard_of(lfdi: str, shards: int) -> int:
    """The shard of a device: stable across processes and Python versions (CRC-32 of the
    upper-cased LFDI). Records keyed by LFDI land on the partition of the same number when
    the producer uses ``partition_for``."""
    return zlib.crc32(lfdi.upper().encode()) % shards


def partition_for(lfdi: str, partitions: int) -> int:
    return shard_of(lfdi, partitions)
