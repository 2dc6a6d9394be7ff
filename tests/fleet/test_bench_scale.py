"""The scale benchmark's own bookkeeping: the server's metrics as it counts them, and a report
that renders even when the fleet gave no summary (a run cut short must still say so)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from benchmarks.bench_scale import Marks, Sample, Server, markdown, parse_metrics, report

METRICS = """\
# HELP csip_http_requests_total HTTP requests served, by listener, method, route and status.
csip_http_requests_total{listener="device",method="GET",route="/derp/{program}/derc",status="304"} 1200.0
csip_http_requests_total{listener="device",method="POST",route="/rsps/{program}/rsp",status="201"} 40.0
csip_http_requests_total{listener="device",method="POST",route="/rsps/{program}/rsp",status="400"} 2.0
csip_http_requests_total{listener="admin",method="GET",route="/admin/stats",status="200"} 7.0
"""  # noqa: E501


def test_metrics_count_the_device_listener_and_stored_responses() -> None:
    counted = parse_metrics(METRICS)
    assert counted == {
        "requests": 1242,
        "by_status": {"304": 1200, "201": 40, "400": 2},
        "responses_stored": 40,
    }


def test_a_run_without_a_fleet_summary_still_reports() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    server = Server(process, 1, 2, samples=[Sample(0.0, 1.0, 50.0), Sample(10.0, 4.0, 60.0)])
    args = argparse.Namespace(devices=10, connections=8, control_start=3600)
    marks = Marks(running=1.0, ended=9.0)
    results = report(
        args, {"cores": 2, "cpu": "x", "memory_gib": 1, "python": "3", "platform": "p",
               "load_average_at_start": [0], "commit": "c"},
        "not pinned", 30.0, 20.0, 1.0, 30.0, 600.0, {"derp": 600, "edev": 12000},
        {"edev": 12000}, ["csip", "fleet"], server, marks, 0.0, 1,
        {"requests": 0, "by_status": {}, "responses_stored": 0}, None, None, 0.0,
    )  # fmt: skip
    assert results["control"]["every_device_received"] is None
    assert results["server"]["phases"]["whole_fleet_run"] == {
        "seconds": 8.0,
        "cpu_s": 0.0,
        "cpu_share": 0.0,
    }
    text = markdown(results)
    assert "| control fetched by every device | None s after issuing (n/a) |" in text
