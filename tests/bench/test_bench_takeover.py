"""The take-over benchmark, tiny: two workers with a standby each; the one left takes the
killed one's shards over warm (none rebuilt)."""

from __future__ import annotations

import asyncio

from benchmarks import bench_takeover as bt


def test_a_standby_takes_the_killed_workers_shards_over() -> None:
    result = asyncio.run(bt.measure(300, 1, bt.Options(scheduled=1, session_ms=2000)))
    assert result["taken_over"] == bt.SHARDS // 2 and result["rebuilt"] == 0
    assert result["to_own_all_s"] > 0 and len(result["setup_cpu_s"]) == 2
    assert "| 300 | 2 | 1 |" in bt.table([result])


def test_a_joining_worker_warms_its_share_up_and_takes_it_over() -> None:
    options = bt.Options(scheduled=1, session_ms=2000)
    result = asyncio.run(bt.measure_join(300, True, options))
    assert result["taken_over"] == bt.SHARDS // 3 and result["rebuilt"] == 0
    assert result["warmups"] == 1 and result["to_balance_s"] > 0
    assert "| 300 | 2, 3 | yes |" in bt.join_table([result])
