"""The server's clock as Time bodies bound it."""

from __future__ import annotations

import pytest

from fleet.clock import ServerClock


def test_no_sample_means_the_local_clock() -> None:
    clock = ServerClock(local=lambda: 1000.25)
    assert clock.offset == 0.0 and clock.uncertainty is None
    assert clock.instant() == 1000


def test_each_sample_narrows_the_offset() -> None:
    clock = ServerClock(local=lambda: 0.0)
    # The server is 100.3 s ahead; each request takes 0.1 s; polls fall at varied phases.
    widths = []
    for n in range(20):
        sent = 10.0 + n * 0.37
        current = int(sent + 0.05 + 100.3)  # read in the middle of the round trip
        clock.observe(current, sent, sent + 0.1)
        assert clock.low is not None and clock.high is not None
        assert clock.low <= 100.3 <= clock.high
        widths.append(clock.high - clock.low)
    assert widths[0] == pytest.approx(1.1)
    assert widths[-1] < 0.2
    assert clock.offset == pytest.approx(100.3, abs=0.1)


def test_a_stepped_clock_restarts_the_window() -> None:
    clock = ServerClock(local=lambda: 0.0)
    clock.observe(1000, sent=0.0, received=0.1)
    clock.observe(5000, sent=1.0, received=1.1)  # outside the window: the server stepped
    assert 4998.9 <= clock.offset <= 5000.0


def test_instant_is_whole_server_seconds() -> None:
    clock = ServerClock(local=lambda: 50.7)
    clock.observe(1050, sent=50.0, received=50.0)  # offset in [1000, 1001]
    assert clock.instant() in (1050, 1051)
