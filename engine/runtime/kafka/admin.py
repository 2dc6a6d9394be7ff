"""Topic creation for runtimes and replays: ``topics.admin`` (the logic behind ``csip topics
create``) with a client made from a broker address."""

from __future__ import annotations

from topics import catalog
from topics.admin import connect
from topics.admin import ensure_topics as _ensure


def ensure_topics(
    broker: str, *, prefix: str = "", shards: int = catalog.DEFAULT_SHARDS, replication: int = 1
) -> None:
    """Create every missing catalog topic (idempotent); raises when the layout is wrong."""
    admin = connect(broker)
    try:
        report = _ensure(admin, shards=shards, replication=replication, prefix=prefix)
    finally:
        admin.close()
    if report.problems:
        raise RuntimeError("; ".join(report.problems))
