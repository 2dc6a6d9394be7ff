"""The progress display: a bar redrawn in place on a terminal, a plain line now and then otherwise.

``describe`` formats one snapshot and is pure (tested); ``Progress`` decides where and how often.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

BAR = 20


@dataclass(frozen=True, slots=True)
class Snapshot:
    elapsed: float
    duration: float
    devices: int
    ready: int
    requests: int
    rate: float  # requests per second since the previous snapshot
    not_modified: int
    gets: int
    errors: int
    responses: int
    lag_p99: float | None
    control: tuple[int, int, int] | None = None  # fetched, received, of how many devices


def describe(snapshot: Snapshot, *, bar: bool) -> str:
    parts = []
    share = min(1.0, snapshot.elapsed / snapshot.duration) if snapshot.duration > 0 else 0.0
    if bar:
        filled = round(share * BAR)
        parts.append(f"[{'#' * filled}{'.' * (BAR - filled)}] {share:4.0%}")
    parts.append(f"{snapshot.elapsed:.0f}s/{snapshot.duration:.0f}s")
    parts.append(f"ready {snapshot.ready:,}/{snapshot.devices:,}")
    parts.append(f"{snapshot.requests:,} req ({snapshot.rate:,.0f}/s)")
    if snapshot.gets:
        parts.append(f"304 {snapshot.not_modified / snapshot.gets:.0%}")
    parts.append(f"errors {snapshot.errors:,}")
    parts.append(f"responses {snapshot.responses:,}")
    if snapshot.control is not None:
        fetched, received, expected = snapshot.control
        parts.append(f"control fetched {fetched:,}/{expected:,} received {received:,}")
    if snapshot.lag_p99 is not None:
        parts.append(f"lag p99 {snapshot.lag_p99:.2f}s")
    return " | ".join(parts)


class Progress:
    def __init__(self, stream: TextIO = sys.stderr, *, plain_every: float = 10.0) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = 0.5 if self.tty else plain_every
        self._drawn = False

    def show(self, snapshot: Snapshot) -> None:
        text = describe(snapshot, bar=self.tty)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self._drawn = True
        else:
            self.stream.write("fleet: " + text + "\n")
        self.stream.flush()

    def done(self) -> None:
        """End the redrawn line, so what follows starts on its own."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def note(self, text: str) -> None:
        """A message between progress updates (setup steps, the issued control)."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")
        self.stream.write(f"fleet: {text}\n")
        self.stream.flush()
        self._drawn = False

    async def run(self, stopping: asyncio.Event, snapshot: Callable[[], Snapshot]) -> None:
        """Show ``snapshot()`` every ``every`` seconds until ``stopping``."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self.every)
            except TimeoutError:
                self.show(snapshot())
