"""The fleet's worker pool: one dispatcher that moves due jobs to a queue, N workers that run them.

N (``--connections``) bounds how many requests are in flight, hence the memory and sockets the
fleet uses, whatever the number of devices: 100k devices are 100k small state objects and a heap
of due times, not 100k tasks. A device runs one job at a time (one connection, one set of
ETags); a job that comes due while its device is busy waits a moment and tries again.

How late a job starts compared with its due time is the schedule *lag*: near zero while the
fleet and the server keep up, growing when either is saturated (the summary reports it, so a
run that could not keep its own schedule says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback

from fleet.client import FleetClient
from fleet.device import Device
from fleet.schedule import Due, Job

BUSY_RETRY = 0.05  # seconds a job waits when its device is busy with another
IDLE_WAIT = 1.0


class WorkerPool:
    def __init__(self, client: FleetClient, workers: int) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self.client = client
        self.workers = workers
        # (0 for responses, 1 for the rest; then due time and sequence): responses first.
        self.queue: asyncio.PriorityQueue[tuple[int, Due]] = asyncio.PriorityQueue()
        self.active = 0
        self.stopping = False
        self.crashes: list[str] = []  # tracebacks of unexpected errors (a bug), first few
        self._wake = asyncio.Event()
        self._planned = float("inf")
        self._tasks: list[asyncio.Task[None]] = []
        client.wake = self._pushed

    def _pushed(self, when: float) -> None:
        if when < self._planned:
            self._wake.set()

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._dispatch(), name="fleet-dispatch"))
        for number in range(self.workers):
            self._tasks.append(asyncio.create_task(self._work(), name=f"fleet-worker-{number}"))

    async def stop(self, grace: float) -> None:
        """Stop taking jobs, let the ones in flight finish (at most ``grace`` seconds)."""
        self.stopping = True
        self._wake.set()
        deadline = time.monotonic() + grace
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _dispatch(self) -> None:
        schedule = self.client.schedule
        while not self.stopping:
            for due in schedule.pop_due(time.monotonic()):
                self.queue.put_nowait((0 if due.job is Job.RESPOND else 1, due))
            upcoming = schedule.next_time()
            now = time.monotonic()
            delay = IDLE_WAIT if upcoming is None else min(IDLE_WAIT, upcoming - now)
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            self._planned = now + delay
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._planned = float("inf")

    async def _work(self) -> None:
        client = self.client
        while not self.stopping:
            _, due = await self.queue.get()
            if self.stopping:
                return
            device = client.devices[due.device]
            if device.busy:
                client.push(time.monotonic() + BUSY_RETRY, device, due.job, extra=due.extra)
                continue
            await self.run(device, due)

    async def run(self, device: Device, due: Due) -> None:
        device.busy = True
        self.active += 1
        self.client.lag.add(max(0.0, time.monotonic() - due.when))
        try:
            await self.client.run_job(device, due.job, due.when, extra=due.extra)
        except Exception:
            self.client.job_failures[f"{due.job.name.lower()}: crash"] += 1
            if len(self.crashes) < 5:
                self.crashes.append(traceback.format_exc())
        finally:
            device.busy = False
            self.active -= 1
