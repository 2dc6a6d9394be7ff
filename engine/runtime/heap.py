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

Once the state is frozen, the rest of the collector's generation 2 is small, so its "a quarter
of the rest" rule no longer holds full passes back: they come every 10 passes of generation 1
(some 70,000 objects that lived through two passes), and a large step (a system-wide control
at 10,000 devices: 30,000 records) ran three or four of them, each walking everything the step
had made so far and still held (its outputs, until published), to free nothing. So a process
can ``own()`` its full collections: the collector then runs none by itself (generation 2's
threshold is set out of reach while any owner holds it), and ``step()`` runs one at the same
cadence, 10 passes of generation 1 since the last, but between steps, when a step's outputs
are gone, and freezes what survives it.

An owner may also ``pause()`` the collector for a step: its passes of the young generations
would walk everything the step makes and still holds (the same system-wide control: some 440
passes, 18% of its instructions), where one pass after the step, at ``step()``, walks only
what outlived it. The fold makes no reference
cycles, so a paused step leaves nothing for the collector that reference counting does not
free, and what else runs meanwhile (the Kafka clients) is collected at the step's end.
"""

from __future__ import annotations

import gc

# A generation-2 threshold no process reaches (passes of generation 1 since the last full one).
_OUT_OF_REACH = 1 << 30
_owners = 0
_saved_threshold = 10


def full_collections() -> int:
    """Full (generation 2) collections this process has run."""
    return int(gc.get_stats()[2]["collections"])


class Survivors:
    """Freezes what survived each full collection, at the caller's step boundaries."""

    def __init__(self, *, every: int = 10) -> None:
        self._seen = full_collections()
        self.freezes = 0
        self.every = every  # generation-1 passes between full collections, when owned
        self.owned = False
        self._frozen = gc.get_freeze_count()

    def own(self) -> None:
        """Take over this process's full collections (until ``release``): ``step`` runs them."""
        global _owners, _saved_threshold
        if self.owned:
            return
        self.owned = True
        if _owners == 0:
            first, second, _saved_threshold = gc.get_threshold()
            gc.set_threshold(first, second, _OUT_OF_REACH)
        _owners += 1

    def release(self) -> None:
        """Give full collections back to the collector (its threshold as before ``own``)."""
        global _owners
        if not self.owned:
            return
        gc.enable()
        self.owned = False
        _owners -= 1
        if _owners == 0:
            first, second, _ = gc.get_threshold()
            gc.set_threshold(first, second, _saved_threshold)

    def pause(self) -> None:
        """At the start of a step: no automatic collection until ``step()`` (owners only)."""
        if self.owned:
            gc.disable()

    def step(self) -> bool:
        """Between two steps: collect the young generations if ``pause()`` held them back, run
        the full collection that is due, if this owns them, and freeze what is alive if a full
        collection ran since the last call; whether it did."""
        if self.owned:
            if not gc.isenabled():
                gc.enable()
                first, second, _ = gc.get_threshold()
                count = gc.get_count()
                if count[1] >= second:
                    gc.collect(1)
                elif count[0] >= first:
                    gc.collect(0)
            if gc.get_count()[2] >= self.every:
                gc.collect()
        collections = full_collections()
        if collections == self._seen:
            return False
        self._seen = collections
        # What this freeze moves: the objects in the collector's generations, which its full
        # pass has just walked anyway. Not ``gc.get_freeze_count()`` after it: that walks
        # everything frozen so far (36 ms for the 780,000 objects of 10,000 devices here),
        # and a worker freezes every few thousand commands.
        self._frozen += len(gc.get_objects())
        gc.freeze()
        self.freezes += 1
        return True

    def frozen(self) -> int:
        """Objects moved out of the collector's passes, summed over this process's freezes.

        Frozen objects freed since (a replaced device state) are not subtracted: an exact
        count walks the whole frozen list, too long for the worker's event loop, at a scrape
        or at a freeze. So the figure grows with the state's turnover, not only its size."""
        return self._frozen
