"""The fleet's idea of the server's clock, learnt from Time resources as a device would.

A 2030.5 device sets its clock from the server's Time resource, and every instant the kernel
works with (control starts, randomized draws, responses) is a server instant. The Time body says
``currentTime`` in whole seconds, read somewhere between the moment the request was sent and the
moment the answer came back, so each sample bounds the offset (server minus local)::

    currentTime - received  <=  offset  <=  currentTime + 1 - sent

The clock keeps the intersection of every sample's bounds (a narrower window with each poll)
and uses its middle. A sample outside the window means one of the clocks was stepped: the
window restarts from that sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ServerClock:
    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self._local = local
        self.low: float | None = None
        self.high: float | None = None
        self.samples = 0

    @property
    def offset(self) -> float:
        """Server time minus local time, in seconds (0 until the first sample)."""
        if self.low is None or self.high is None:
            return 0.0
        return (self.low + self.high) / 2

    @property
    def uncertainty(self) -> float | None:
        """Half the width of the window, in seconds (None before the first sample)."""
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2

    def observe(self, current_time: int, sent: float, received: float) -> None:
        """A Time body's ``currentTime`` from a request sent and answered at these local times."""
        low = current_time - received
        high = current_time + 1 - sent
        self.samples += 1
        if self.low is None or self.high is None or low > self.high or high < self.low:
            self.low, self.high = low, high
            return
        self.low = max(self.low, low)
        self.high = min(self.high, high)

    def now(self) -> float:
        return self._local() + self.offset

    def instant(self) -> int:
        """The server's current instant, whole seconds (what the kernel takes)."""
        return int(self.now())

    def local(self) -> float:
        return self._local()
