"""Durability: what was acknowledged survives SIGKILL; a clean stop and start changes nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from gateway.pki import Pki
from tests.gateway.server_fixtures import Server


def test_write_sigkill_start_read_back(server_pki: Pki, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Server(server_pki, data).start()
    device = first.identity("device1")
    first.admin_ok("PUT", "/programs/p", json={"primacy": 3})
    first.admin_ok("POST", "/devices", json={"lfdi": device.lfdi})
    first.admin_ok("PUT", f"/devices/{device.lfdi}/fsas", json=[{"programs": ["p"]}])
    start = int(time.time()) - 5
    mrid = first.admin_ok(
        "POST",
        "/programs/p/controls",
        json={"start": start, "duration": 3600, "base": {"opModMaxLimW": 1}},
    )["mRIDs"][0]
    before = first.client("device1").get(f"/derp/p/derc/{mrid}").content
    lifecycle = first.admin_ok("GET", f"/devices/{device.lfdi}/responses")
    first.kill()

    second = Server(server_pki, data).start()
    try:
        after = second.client("device1").get(f"/derp/p/derc/{mrid}")
        assert after.status_code == 200 and after.content == before
        assert second.admin_ok("GET", f"/devices/{device.lfdi}/responses") == lifecycle
        assert (
            second.admin_ok("GET", f"/devices/{device.lfdi}/effective")["modes"]["opModMaxLimW"][
                "value"
            ]
            == 1
        )
        assert second.admin_ok("GET", "/stats")["recovery"] == {"checkpoint_seq": 0, "replayed": 4}
    finally:
        second.stop()


def test_acknowledged_writes_survive_a_kill_in_the_middle_of_writing(
    server_pki: Pki, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = Server(server_pki, data).start()
    first.admin_ok("PUT", "/programs/load", json={"primacy": 3})
    acknowledged: list[str] = []
    stop = threading.Event()
    url = f"http://127.0.0.1:{first.admin_port}/admin/programs/load/controls"
    headers = {"Authorization": "Bearer test-admin-token"}

    def write() -> None:
        with httpx.Client(headers=headers, timeout=5) as client:
            for n in range(2000):  # bounded
                if stop.is_set():
                    return
                body = {
                    "start": 2_000_000_000 + n,
                    "duration": 60,
                    "base": {"opModFixedW": n % 100},
                }
                try:
                    response = client.post(url, json=body)
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    acknowledged.extend(response.json()["mRIDs"])

    writer = threading.Thread(target=write)
    writer.start()
    while len(acknowledged) < 50 and writer.is_alive():
        time.sleep(0.01)
    first.kill()
    stop.set()
    writer.join(10)
    assert len(acknowledged) >= 50

    second = Server(server_pki, data).start()
    try:
        listed = {c["mRID"] for c in second.admin_ok("GET", "/programs/load")["controls"]}
        missing = [m for m in acknowledged if m not in listed]
        assert missing == []
    finally:
        second.stop()


def test_clean_restart_resumes_from_the_checkpoint(server_pki: Pki, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Server(server_pki, data).start()
    first.admin_ok("PUT", "/programs/p", json={"primacy": 3, "description": "kept"})
    first.stop()
    second = Server(server_pki, data).start()
    try:
        assert second.admin_ok("GET", "/programs/p")["description"] == "kept"
        assert second.admin_ok("GET", "/stats")["recovery"] == {"checkpoint_seq": 1, "replayed": 0}
    finally:
        second.stop()


def test_sigterm_stops_cleanly(server_pki: Pki, tmp_path: Path) -> None:
    running = Server(server_pki, tmp_path / "data").start()
    running.stop()
    assert running.process is not None and running.process.returncode == 0
