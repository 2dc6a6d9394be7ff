"""The fleet's schedule: intervals from the server's rates, jitter, phases, the due-job heap."""

from __future__ import annotations

import random

import pytest

from fleet.schedule import (
    DEFAULT_POLL_RATE,
    Job,
    Schedule,
    first_due,
    interval,
    next_due,
    ramp_start,
)


def test_interval_divides_the_rate_by_the_compression() -> None:
    rng = random.Random(1)
    assert interval(300, 60, 0.0, rng) == pytest.approx(5.0)
    assert interval(600, 1, 0.0, rng) == pytest.approx(600.0)


def test_a_missing_rate_is_the_2030_5_default() -> None:
    rng = random.Random(1)
    assert interval(None, 1, 0.0, rng) == DEFAULT_POLL_RATE
    assert interval(0, 10, 0.0, rng) == DEFAULT_POLL_RATE / 10


def test_jitter_stays_within_its_bounds_and_spreads() -> None:
    rng = random.Random(7)
    values = [interval(300, 60, 0.1, rng) for _ in range(2000)]
    assert min(values) >= 4.5 and max(values) <= 5.5
    assert max(values) - min(values) > 0.8  # not lockstep


def test_interval_refuses_nonsense() -> None:
    rng = random.Random(1)
    with pytest.raises(ValueError):
        interval(300, 0, 0.1, rng)
    with pytest.raises(ValueError):
        interval(300, 1, 1.0, rng)


def test_first_runs_fall_across_the_whole_period() -> None:
    rng = random.Random(3)
    firsts = [first_due(100.0, 10.0, rng) for _ in range(1000)]
    assert all(100.0 <= t <= 110.0 for t in firsts)
    buckets = {int(t - 100) for t in firsts}
    assert buckets == set(range(10))


def test_next_run_follows_the_due_time_not_the_completion() -> None:
    assert next_due(previous_due=10.0, period=5.0, now=11.0) == 15.0


def test_a_late_device_does_not_burst_to_catch_up() -> None:
    assert next_due(previous_due=10.0, period=5.0, now=40.0) == 40.0


def test_ramp_spreads_devices_evenly() -> None:
    offsets = [ramp_start(i, 4, 8.0) for i in range(4)]
    assert offsets == [0.0, 2.0, 4.0, 6.0]
    assert ramp_start(3, 1, 8.0) == 0.0
    assert ramp_start(3, 10, 0.0) == 0.0


def test_schedule_pops_what_is_due_in_time_order() -> None:
    schedule = Schedule()
    schedule.push(3.0, 1, Job.TIME)
    schedule.push(1.0, 2, Job.DCAP)
    schedule.push(2.0, 3, Job.DERP, extra=True)
    schedule.push(9.0, 4, Job.EDEV)
    assert schedule.next_time() == 1.0
    due = schedule.pop_due(3.0)
    assert [(d.when, d.device, d.job) for d in due] == [
        (1.0, 2, Job.DCAP),
        (2.0, 3, Job.DERP),
        (3.0, 1, Job.TIME),
    ]
    assert due[1].extra and not due[0].extra
    assert len(schedule) == 1 and schedule.next_time() == 9.0


def test_same_instant_keeps_push_order_and_limit_holds() -> None:
    schedule = Schedule()
    for device in range(5):
        schedule.push(1.0, device, Job.STATUS)
    first = schedule.pop_due(1.0, limit=2)
    rest = schedule.pop_due(1.0)
    assert [d.device for d in first] == [0, 1]
    assert [d.device for d in rest] == [2, 3, 4]
    assert schedule.next_time() is None
