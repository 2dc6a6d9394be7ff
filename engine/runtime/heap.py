"""Long-lived kernel state and Python's cyclic garbage collector.

A worker's state (device states, tracks, cohorts, memo entries: about 80 objects per device,
millions at 100,000 devices) lives as long as the process and is replaced piece by piece as
commands change it. The collector's full passes walk every tracked object and find nothing
there to free (the fold makes no reference cycles: ``tests/runtime/test_heap.py``), yet they
run each time the objects that survived since the last one reach a quarter of the rest: a
pause of about 0.3 s at 10,000 devices and seconds at 100,000, which at 10,000 devices came to
98 µs per feeder move (half of its cost, ``benchmarks/RESULTS.md``) and stalls a worker's group
heartbeats at 100,000.

``Survivors.step()``, called between two steps of a process's loop, freezes (``gc.freeze``)
whatever is alive once a full collection has run since its last call: the next full passes
walk only objects made since. Freezing is a few list splices, not a walk. What is frozen is
still freed by reference counting when dropped; only a reference cycle formed among frozen
objects would stay (the test counts none after folding commands of every kind).
"""

from __future__ import annotations

import gc


def full_collections() -> int:
    """Full (generation 2) collections this process has run."""
    return int(gc.get_stats()[2]["collections"])


class Survivors:
    """Freezes what survived each full collection, at the caller's step boundaries."""

    def __init__(self) -> None:
        self._seen = full_collections()
        self.freezes = 0
        self._frozen = gc.get_freeze_count()

    def step(self) -> bool:
        """Freeze what is alive if a full collection ran since the last call; whether it did."""
        collections = full_collections()
        if collections == self._seen:
            return False
        self._seen = collections
        gc.freeze()
        self.freezes += 1
        self._frozen = gc.get_freeze_count()
        return True

    def frozen(self) -> int:
        """Objects the collector left out of its passes, as counted at the last freeze.

        Counted once per freeze, not per call: ``gc.get_freeze_count`` walks the whole frozen
        list (18 ms for 900,000 objects here, and the state grows with the fleet), too long for
        each metrics scrape on a worker's event loop. Frozen objects freed since
        are still in the figure until the next freeze."""
        return self._frozen
