"""The embedded runtime: the whole engine in one process, durable in one data directory.

Writes: ``submit(command)`` folds the command into the registry and the kernel at the current
instant, appends it to the log with a synced write, and only then returns (the gateway answers
201/204 after that). Commands are applied one at a time, in log order. The synced write is a
group commit: one writer task appends every command folded while the previous write was on
disk in one batch, so a burst of writes costs one fsync, not one each, and the order of the
log is the order of folding. If the disk refuses a write, the folded state is ahead of the log:
the waiting clients get an error and the process exits, to recover from the log on restart.

Time: a timer task sleeps until the kernel's next change (``Engine.next_change``) and advances
it then; a new command wakes it, since it may bring an earlier change.

Recovery: on start, the latest checkpoint is loaded and the log entries after it are applied
again, each at its recorded instant, then the kernel advances to now. The kernel is
deterministic, so this rebuilds exactly the state before the stop or crash. A checkpoint is
written after ``checkpoint_every`` commands, at most once per ``checkpoint_interval`` seconds,
and on a clean stop. It is serialized in a thread while the runtime's lock keeps commands out:
polls are still answered meanwhile (at 100,000 devices a checkpoint takes seconds).

Readers (the gateway's GETs) read the registry and the kernel's catalog directly; they may see a
command's effect a moment before its log entry is synced, never an effect that is later undone
while the process lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from engine.kernel import EffectiveChange, Engine, Output, ResponseDue
from engine.runtime.embedded.reporting import Reporting
from engine.runtime.embedded.store import HISTORY, LIFECYCLE, Store
from engine.state import commands as c
from engine.state.errors import Rejected
from engine.state.registry import Executed, Registry

log = logging.getLogger("csip.runtime")

Listener = Callable[[list[Output]], None]
ChangeHook = Callable[[], None]


class EmbeddedRuntime:
    def __init__(
        self,
        data_dir: Path,
        *,
        profile: str = "csip",
        clock: Callable[[], float] = time.time,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
    ) -> None:
        self.data_dir = data_dir
        self.profile = profile
        self._clock = clock
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._checkpointed_at = -math.inf  # time.monotonic() of the last checkpoint
        self.store = Store(data_dir)
        self.reporting = Reporting(self.store)
        self.registry = Registry()
        self.engine = Engine(profile=profile)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        # Folded but not yet durable: (log entry, view items, waiter), in log order.
        self._pending: list[tuple[dict[str, Any], list[tuple[bytes, bytes]], asyncio.Future[None]]]
        self._pending = []
        self._pending_ready = asyncio.Event()
        self._since_checkpoint = 0
        self._checkpoint_seq = 0
        self.listeners: list[Listener] = []
        # Called after anything that may change what a client can GET (a command, or time).
        self.on_change: list[ChangeHook] = []
        self.ready = False
        self.recovery: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def recover(self) -> None:
        """Load the checkpoint and replay the log after it (synchronous; call before serving)."""
        started = time.perf_counter()
        checkpoint = self.store.load_checkpoint()
        seq = 0
        if checkpoint is not None:
            self.registry = Registry.from_json(checkpoint["registry"])
            self.engine = Engine.restore(checkpoint["kernel"])
            seq = checkpoint["seq"]
        self._checkpoint_seq = seq
        replayed = 0
        for entry_seq, entry in self.store.entries_after(seq):
            command = c.from_json(entry["command"])
            executed = self.registry.execute(command, entry["t"], self.engine)
            self._record_views(executed.outputs)
            replayed += 1
            if replayed % 10_000 == 0:  # a long recovery shows progress
                log.info("recovering", extra={"replayed": replayed, "seq": entry_seq})
        self.recovery = {"checkpoint_seq": seq, "replayed": replayed}
        self._since_checkpoint = replayed
        self._record_views(self.engine.advance(self.now()))
        log.info(
            "recovered",
            extra={
                "checkpoint_seq": seq,
                "replayed": replayed,
                "seconds": round(time.perf_counter() - started, 3),
                **self.engine.stats(),
            },
        )

    async def start(self) -> None:
        self.recover()
        await self.reporting.start()
        self._timer = asyncio.create_task(self._run_timers(), name="csip-timers")
        self._writer = asyncio.create_task(self._write_log(), name="csip-log-writer")
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.reporting.stop()
        async with self._lock:
            await self._flush()
            if self._writer is not None:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
            await self._checkpoint()
        self.store.close()

    # -- time -------------------------------------------------------------------------------

    def now(self) -> int:
        """The current instant: wall-clock seconds, never before what the kernel has seen."""
        instant = int(self._clock())
        current = self.engine.now
        return instant if current is None or instant > current else current

    async def _run_timers(self) -> None:
        while True:
            upcoming = self.engine.next_change()
            delay = None if upcoming is None else max(0.0, upcoming - self._clock())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
                continue  # woken by a new command: look again
            except TimeoutError:
                pass
            async with self._lock:
                outputs = self.engine.advance(self.now())
                self._record_views(outputs)
            self._publish(outputs)
            if outputs:
                self._changed()

    # -- writes -----------------------------------------------------------------------------

    async def submit(self, command: c.Command) -> Executed:
        """Apply a command and make it durable; raises ``Rejected`` when it is refused."""
        (verdict,) = await self.submit_many([command])
        if isinstance(verdict, Rejected):
            raise verdict
        return verdict

    async def submit_many(self, commands: list[c.Command]) -> list[Executed | Rejected]:
        """Apply commands in order, each accepted or refused on its own, and make the accepted
        ones durable (one group commit); the verdicts, in order."""
        verdicts: list[Executed | Rejected] = []
        outputs: list[Output] = []
        durable: list[asyncio.Future[None]] = []
        async with self._lock:
            t = self.now()
            for command in commands:
                try:
                    executed = self.registry.execute(command, t, self.engine)
                except Rejected as refused:
                    verdicts.append(refused)
                    continue
                verdicts.append(executed)
                outputs.extend(executed.outputs)
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                entry = {"t": t, "command": command.to_json()}
                self._pending.append((entry, _view_items(executed.outputs), done))
                durable.append(done)
            if durable:
                self._pending_ready.set()
        if not durable:
            return verdicts
        # Shielded: a client that hangs up does not cancel the write others share.
        await asyncio.shield(asyncio.gather(*durable))
        self._wake.set()
        self._publish(outputs)
        self._changed()
        return verdicts

    async def _write_log(self) -> None:
        """The group-commit writer: everything folded so far, in one synced write."""
        while True:
            await self._pending_ready.wait()
            self._pending_ready.clear()
            await self._flush_once()

    async def _flush(self) -> None:
        """Write whatever is pending now (called with the lock held on stop)."""
        while self._pending:
            await self._flush_once()

    async def _flush_once(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        entries = [entry for entry, _, _ in batch]
        views = [item for _, items, _ in batch for item in items]
        try:
            await asyncio.to_thread(self.store.append, entries, views)
        except Exception as exc:
            log.critical(
                "the log write failed: the folded state is ahead of the log; exiting to recover",
                exc_info=True,
            )
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            self.ready = False
            os._exit(70)  # EX_SOFTWARE: a supervisor restarts us, recovery replays the log
        for _, _, done in batch:
            if not done.done():
                done.set_result(None)
        self._since_checkpoint += len(batch)
        due = time.monotonic() - self._checkpointed_at >= self.checkpoint_interval
        if self._since_checkpoint >= self.checkpoint_every and due and not self._lock.locked():
            async with self._lock:
                if not self._pending:  # a checkpoint holds exactly the logged commands
                    await self._checkpoint()

    async def _checkpoint(self) -> None:
        """Write a checkpoint; called with the lock held (no command changes the state while
        a thread serializes it; reads go on)."""
        seq = self.store.last_seq
        if seq == self._checkpoint_seq:
            return
        started = time.perf_counter()

        def write() -> None:
            state = {"registry": self.registry.to_json(), "kernel": self.engine.snapshot()}
            self.store.checkpoint(seq, state)

        await asyncio.to_thread(write)
        self._checkpoint_seq = seq
        self._since_checkpoint = 0
        self._checkpointed_at = time.monotonic()
        log.info(
            "checkpoint", extra={"seq": seq, "seconds": round(time.perf_counter() - started, 3)}
        )

    # -- outputs ----------------------------------------------------------------------------

    def _record_views(self, outputs: list[Output]) -> None:
        self.store.write_views(_view_items(outputs))

    def _changed(self) -> None:
        for hook in self.on_change:
            try:
                hook()
            except Exception:
                log.exception("change hook failed")

    def _publish(self, outputs: list[Output]) -> None:
        if not outputs:
            return
        for listener in self.listeners:
            try:
                listener(outputs)
            except Exception:  # a listener must never break the engine
                log.exception("output listener failed")

    # -- reads ------------------------------------------------------------------------------

    def lifecycle(self, lfdi: str, mrid: str | None = None) -> list[dict[str, Any]]:
        """The responses the kernel expects of a device, per control, in order."""
        prefix = LIFECYCLE + lfdi.upper().encode() + b"/"
        if mrid is not None:
            prefix += mrid.upper().encode() + b"/"
        out = []
        for _key, value in self.store.scan(prefix):
            record = orjson.loads(value)
            out.append(record)
        out.sort(key=lambda r: (r["mRID"], r["t"], r["status"]))
        return out

    def effective_history(self, lfdi: str) -> list[dict[str, Any]]:
        prefix = HISTORY + lfdi.upper().encode() + b"/"
        return [orjson.loads(value) for _, value in self.store.scan(prefix)]


def _view_items(outputs: Iterable[Output]) -> list[tuple[bytes, bytes]]:
    items: list[tuple[bytes, bytes]] = []
    for output in outputs:
        if isinstance(output, ResponseDue):
            body = {
                "mRID": output.mrid,
                "program": output.program,
                "status": output.status,
                "t": output.t,
                "posted": output.posted,
            }
            value = orjson.dumps(body)
            suffix = f"/{output.mrid.upper()}/{output.status:03d}".encode()
            for lfdi in output.lfdis:
                items.append((LIFECYCLE + lfdi.encode() + suffix, value))
        elif isinstance(output, EffectiveChange):
            for record in output.records():
                key = (
                    HISTORY
                    + record["lfdi"].encode()
                    + b"/"
                    + output.t.to_bytes(8, "big")
                    + output.mode.encode()
                )
                items.append((key, orjson.dumps(record)))
    return items
