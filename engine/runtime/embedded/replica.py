"""A read replica of the embedded runtime, in another process: ``csip serve --processes N``.

Theory of operation. One process (the primary) owns the data directory: it folds commands,
writes the log, runs the device kernel, the timers and the notifier. Each other server process
opens the same RocksDB as a *secondary instance* (read-only, beside the writer) and keeps its
own fold of the log, so it can answer the device listener's GETs on its own core:

- Every ``interval`` (and right after a write it forwarded), ``catch_up()`` makes the secondary
  see what the primary has written, folds the new log entries into its registry and its
  program engine (programs and controls only: device state is the primary's; the lifecycle and
  effective-control views the primary writes are read from the store), and reads the new
  telemetry events to tell the view cache whose reports changed.
- Writes never happen here: the gateway forwards them to the primary (``gateway.replicas``),
  which answers once they are durable; this replica catches up before relaying the answer, so
  a client reads its own writes whichever process its next request reaches.
- Time: the program engine follows the wall clock ``LAG`` seconds behind, so that log entries
  (stamped by the primary when it folded them) arrive at or after its current instant and are
  applied at exactly their own instant, as in the primary. What a GET shows for *now* does not
  depend on it: statuses and listings are computed for the request's instant.

A replica is as fresh as its last catch-up: a write made through another process shows here
within ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from engine.kernel import Engine
from engine.runtime.embedded.reporting import Reporting
from engine.runtime.embedded.store import HISTORY, LIFECYCLE, Store
from engine.runtime.kafka.shards import ShardedKernel
from engine.state import commands as c
from engine.state.errors import Rejected
from engine.state.registry import Executed, Registry

log = logging.getLogger("csip.replica")

LAG = 5  # seconds the program engine stays behind the wall clock


class ReplicaBackend:
    """The gateway's ``Backend`` over a secondary instance of the primary's store."""

    def __init__(
        self,
        data_dir: Path,
        secondary_dir: Path,
        *,
        profile: str = "csip",
        interval: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = Store(data_dir, secondary=secondary_dir)
        self.reporting = Reporting(self.store)  # its read side; writes go to the primary
        self.registry = Registry()
        self.kernel = ShardedKernel(1, profile=profile)  # programs only, no device shards
        self.interval = interval
        self._clock = clock
        self.on_change: list[Callable[[], None]] = []
        self.ready = False
        self.recovery: dict[str, int] = {}
        self._seq = 0
        self._telemetry_seq = 0
        self._task: asyncio.Task[None] | None = None
        self.caught_up_at = 0.0  # perf_counter when the last catch-up began

    @property
    def engine(self) -> Engine:
        return self.kernel.program

    def now(self) -> int:
        current = self.kernel.program.now
        instant = int(self._clock())
        return instant if current is None or instant > current else current

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.store.catch_up()
        checkpoint = self.store.load_checkpoint()
        if checkpoint is not None:
            self.registry = Registry.from_json(checkpoint["registry"])
            # The checkpoint holds every device's state too: a replica needs only programs.
            self.kernel.program = Engine.restore({**checkpoint["kernel"], "cohorts": []})
            self._seq = checkpoint["seq"]
        self._telemetry_seq = self.reporting.telemetry_seq
        replayed = self._fold()
        self.recovery = {"checkpoint_seq": self._seq - replayed, "replayed": replayed}
        self._task = asyncio.create_task(self._follow(), name="csip-replica")
        self.ready = True
        log.info("replica ready", extra={"seq": self._seq, "replayed": replayed})

    async def stop(self) -> None:
        self.ready = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.store.close()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.catch_up()
            except Exception:
                log.exception("catch-up failed; retrying")

    # -- following the primary --------------------------------------------------------------

    def catch_up(self) -> None:
        """See what the primary has written; fold it; tell the hooks what changed."""
        self.caught_up_at = time.perf_counter()
        self.store.catch_up()
        changed = self._fold() > 0
        behind = int(self._clock()) - LAG
        current = self.kernel.program.now
        if current is not None and behind > current:
            changed = bool(self.kernel.advance(behind)) or changed
        if changed:
            for hook in self.on_change:
                hook()
        self._reports()

    def _fold(self) -> int:
        folded = 0
        for seq, entry in self.store.entries_after(self._seq):
            t = int(entry["t"])
            current = self.kernel.program.now
            if current is not None and t < current:
                log.warning("log entry older than the replica's instant", extra={"seq": seq})
                t = current
            try:
                self.registry.execute(c.from_json(entry["command"]), t, self.kernel)
            except Rejected as exc:  # the primary logs only what it accepted
                log.error("replica refused a logged command", extra={"seq": seq, "why": str(exc)})
            self._seq = seq
            folded += 1
        return folded

    def _reports(self) -> None:
        """Tell the report hooks which devices reported since the last catch-up."""
        while True:
            events = self.reporting.telemetry(after=self._telemetry_seq, limit=5000)
            if not events:
                return
            for lfdi in {event["lfdi"] for event in events}:
                for hook in self.reporting.on_write:
                    hook(lfdi)
            self._telemetry_seq = events[-1]["seq"]

    # -- writes: never here -----------------------------------------------------------------

    async def submit(self, command: c.Command) -> Executed:
        raise RuntimeError("a replica does not write: the gateway forwards writes to the primary")

    async def submit_many(self, commands: list[c.Command]) -> list[Executed | Rejected]:
        raise RuntimeError("a replica does not write: the gateway forwards writes to the primary")

    # -- reads ------------------------------------------------------------------------------

    def lifecycle(self, lfdi: str, mrid: str | None = None) -> list[dict[str, Any]]:
        prefix = LIFECYCLE + lfdi.upper().encode() + b"/"
        if mrid is not None:
            prefix += mrid.upper().encode() + b"/"
        found = [orjson.loads(v) for _, v in self.store.scan(prefix)]
        return sorted(found, key=lambda r: (r["mRID"], r["t"], r["status"]))

    def effective_history(self, lfdi: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, v in self.store.scan(HISTORY + lfdi.upper().encode() + b"/")]
