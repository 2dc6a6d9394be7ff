"""The admin API: token, OpenAPI, programs and controls, devices, read views, health."""

from __future__ import annotations

import time

import httpx
import pytest

from engine import compiled
from tests.gateway.server_fixtures import Server


@pytest.fixture(scope="module")
def lfdi(server: Server) -> str:
    server.admin_ok("PUT", "/programs/sys", json={"primacy": 9})
    server.admin_ok("PUT", "/programs/sys/default", json={"base": {"opModMaxLimW": 10000}})
    device = server.identity("device1").lfdi
    server.admin_ok("POST", "/devices", json={"lfdi": device})
    server.admin_ok("PUT", f"/devices/{device}/fsas", json=[{"programs": ["sys"]}])
    return device


def test_a_token_is_required(server: Server) -> None:
    base = f"http://127.0.0.1:{server.admin_port}/admin"
    assert httpx.get(f"{base}/devices").status_code == 403
    assert (
        httpx.get(f"{base}/devices", headers={"Authorization": "Bearer wrong"}).status_code == 403
    )
    assert server.admin.get("/devices").status_code == 200


def test_openapi_docs(server: Server) -> None:
    base = f"http://127.0.0.1:{server.admin_port}/admin"
    assert "swagger" in httpx.get(f"{base}/docs").text.lower()
    paths = httpx.get(f"{base}/openapi.json").json()["paths"]
    assert "/admin/programs/{program}/controls" in paths
    assert "/admin/devices/{lfdi}/effective" in paths


def test_health_readiness_and_metrics(server: Server) -> None:
    base = f"http://127.0.0.1:{server.admin_port}"
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").text.strip() == "ready"
    server.client(None)  # nothing; metrics must exist even before device traffic
    metrics = httpx.get(f"{base}/metrics").text
    assert "csip_engine" in metrics and "csip_http_requests_total" in metrics
    assert f"csip_kernel_compiled {1.0 if compiled.built() else 0.0}" in metrics


def test_bulk_controls_cancel_and_refusals(server: Server, lfdi: str) -> None:
    start = int(time.time()) + 600
    created = server.admin_ok(
        "POST",
        "/controls",
        json={
            "controls": [
                {"program": "sys", "start": start, "duration": 60, "base": {"opModFixedW": 10}},
                {
                    "program": "sys",
                    "start": start + 60,
                    "duration": 60,
                    "base": {"opModFixedW": 20},
                },
            ]
        },
    )
    assert len(created["mRIDs"]) == 2
    admin = server.admin
    bad = admin.post(
        "/programs/sys/controls", json={"start": start, "duration": 1, "base": {"opModNope": 1}}
    )
    assert bad.status_code == 400 and "opModNope" in bad.text
    duplicate = admin.post(
        "/programs/sys/controls",
        json={
            "mRID": created["mRIDs"][0],
            "start": start,
            "duration": 1,
            "base": {"opModFixedW": 1},
        },
    )
    assert duplicate.status_code == 409
    odd = admin.post(
        "/programs/sys/controls",
        json={"mRID": "ABC", "start": 1, "duration": 1, "base": {"opModFixedW": 1}},
    )
    assert odd.status_code == 400
    assert admin.post("/programs/sys/controls/00FF/cancel").status_code == 404
    assert (
        admin.post(
            "/programs/nope/controls", json={"start": 1, "duration": 1, "base": {}}
        ).status_code
        == 404
    )
    server.admin_ok("POST", f"/programs/sys/controls/{created['mRIDs'][1]}/cancel")
    controls = {c["mRID"]: c for c in server.admin_ok("GET", "/programs/sys")["controls"]}
    assert controls[created["mRIDs"][1]]["currentStatus"] == 2
    assert controls[created["mRIDs"][0]]["currentStatus"] == 0


def test_effective_control_now_projected_and_past(server: Server, lfdi: str) -> None:
    start = int(time.time()) + 2
    server.admin_ok(
        "POST",
        "/programs/sys/controls",
        json={"start": start, "duration": 30, "base": {"opModMaxLimW": 2500}},
    )
    now = server.admin_ok("GET", f"/devices/{lfdi}/effective")
    assert now["modes"]["opModMaxLimW"] == {"value": 10000, "program": "sys", "event": None}
    ahead = server.admin_ok("GET", f"/devices/{lfdi}/effective", params={"at": start + 5})
    assert ahead["projected"] and ahead["modes"]["opModMaxLimW"]["value"] == 2500
    while time.time() < start + 1:
        time.sleep(0.1)
    past = server.admin_ok("GET", f"/devices/{lfdi}/effective", params={"at": start - 1})
    assert past["modes"]["opModMaxLimW"]["value"] == 10000
    assert (
        server.admin_ok("GET", f"/devices/{lfdi}/effective")["modes"]["opModMaxLimW"]["value"]
        == 2500
    )


def test_poll_rates_show_in_lists(server: Server, lfdi: str) -> None:
    server.admin_ok("PUT", "/poll-rates", json={"edev": 120})
    assert 'pollRate="120"' in server.client("device1").get("/edev").text
    assert server.admin.put("/poll-rates", json={"nope": 5}).status_code == 400


def test_stats(server: Server, lfdi: str) -> None:
    stats = server.admin_ok("GET", "/stats")
    assert stats["engine"]["devices"] >= 1 and stats["registry"]["programs"] >= 1


def test_batch_registration_each_device_on_its_own(server: Server) -> None:
    server.admin_ok("PUT", "/programs/batch-feeder", json={"primacy": 5})
    lfdis = [f"BA7C{n:036X}" for n in range(1, 301)]
    devices = [
        {"lfdi": lfdi, "fsas": [{"description": "feeder", "programs": ["batch-feeder"]}]}
        for lfdi in lfdis
    ]
    devices.append({"lfdi": "not-an-lfdi"})
    devices.append({"lfdi": "BA7D" + "0" * 36, "fsas": [{"programs": ["no-such-program"]}]})
    answer = server.admin_ok("POST", "/devices/batch", json={"devices": devices})
    statuses = [r["status"] for r in answer["results"]]
    assert statuses[:300] == [201] * 300
    assert statuses[300] == 400 and "LFDI" in answer["results"][300]["error"].upper()
    assert statuses[301] >= 400 and "FSAs refused" in answer["results"][301]["error"]
    one = server.admin_ok("GET", f"/devices/{lfdis[123]}")
    assert one["fsas"][0]["programs"] == ["batch-feeder"]
    again = server.admin_ok("POST", "/devices/batch", json={"devices": devices[:2]})
    assert [r["status"] for r in again["results"]] == [200, 200]  # already registered
    too_many = server.admin.post("/devices/batch", json={"devices": [{"lfdi": lfdis[0]}] * 10_001})
    assert too_many.status_code in (400, 422)
