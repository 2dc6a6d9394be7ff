"""The kernel-events benchmark measures what it says on a small fleet."""

from __future__ import annotations

from benchmarks import bench_kernel_events as bke


def test_every_device_gets_its_records_whatever_the_number_of_engines() -> None:
    one = bke.measure(120, 1, 60)
    two = bke.measure(120, 2, 60)
    # each device: its effective control and two lifecycle records; each engine: one status
    assert one["records"] == 3 * 120 + 1
    assert two["records"] == 3 * 120 + 2
    for run in (one, two):
        assert run["enrolment_us"] > 0 and run["move_us"] > 0 and run["system_s"] > 0
        assert run["dumps_s"] > 0 and run["encode_s"] > 0  # (measure checks they agree)
        # its end: back to the default for each device, and the completed response
        assert run["end_records"] == 2 * 120
        assert run["end_s"] > 0


def test_the_event_stream_is_bench_kafkas() -> None:
    stream = bke.Events(50)
    first, second = stream.make("enrolment", 2)
    assert first.programs[-1] == bke.OPTIONAL and second.lfdi != first.lfdi
    moved = bke.Events(50).make("move", 1)[0]
    assert bke.OPTIONAL not in moved.programs and moved.programs != first.programs[:-1]
