"""The Kafka runtime end to end: a stateless gateway and a worker on a real broker. Writes are
answered after the broker has them; GETs come from the gateway's replica; what the worker
decides shows in the gateway's views; with the broker down, writes get 503."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from engine.runtime.kafka.admin import ensure_topics
from gateway.pki import Pki
from tests.gateway.server_fixtures import Server
from tests.kafka.broker_fixtures import Broker

NS = "urn:ieee:std:2030.5:ns"

SHARDS = "4"


def start_worker(broker: Broker, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable, "-m", "csip", "worker", "--broker", broker.url,
                "--prefix", prefix, "--shards", SHARDS, "--group", f"{prefix}workers",
                "--session-timeout-ms", "2000", "--no-idempotence", "--metrics-port", "0",
                "--log-level", "warning",
            ],
            stdout=out,
            stderr=out,
        )  # fmt: skip


def gateway(server_pki: Pki, broker: Broker, prefix: str, data: Path) -> Server:
    return Server(
        server_pki,
        data,
        "--broker", broker.url, "--prefix", prefix, "--shards", SHARDS, "--no-idempotence",
        "--notify-test-mode",
        command="gateway",
    )  # fmt: skip


@pytest.fixture
def cluster(
    broker: Broker, topic_prefix: str, server_pki: Pki, tmp_path: Path
) -> Iterator[tuple[Server, Server]]:
    ensure_topics(broker.url, prefix=topic_prefix, shards=int(SHARDS))
    worker = start_worker(broker, topic_prefix, tmp_path / "worker.log")
    first = gateway(server_pki, broker, topic_prefix, tmp_path / "g1").start()
    second = gateway(server_pki, broker, topic_prefix, tmp_path / "g2").start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()
        worker.terminate()
        worker.wait(10)


def test_writes_reads_and_worker_outputs_through_two_gateways(
    cluster: tuple[Server, Server],
) -> None:
    first, second = cluster
    lfdi = first.identity("device1").lfdi
    first.admin_ok("PUT", "/programs/p1", json={"primacy": 1})
    first.admin_ok("PUT", "/programs/p1/default", json={"base": {"opModMaxLimW": 9000}})
    edev = first.admin_ok("POST", "/devices", json={"lfdi": lfdi})["edevId"]
    first.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["p1"]}])
    mrid = first.admin_ok(
        "POST",
        "/programs/p1/controls",
        json={"start": int(time.time()) - 1, "duration": 600, "base": {"opModMaxLimW": 2500}},
    )["mRIDs"][0]
    # Refused by the fold, answered as such (the verdict every reader reaches).
    assert (
        first.admin.post(
            "/programs/nope/controls", json={"start": 1, "duration": 1, "base": {}}
        ).status_code
        == 404
    )
    # The other replica serves the same answers.
    deadline = time.monotonic() + 20
    while second.client("device1").get(f"/derp/p1/derc/{mrid}").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for server in (first, second):
        assert server.client("device1").get(f"/edev/{edev}").status_code == 200
    same = [
        s.client("device1").get("/derp/p1/derc", params={"l": 5}).content for s in (first, second)
    ]
    assert same[0] == same[1]
    # What the worker decided reaches the gateways' views.
    while True:
        lifecycle = second.admin_ok("GET", f"/devices/{lfdi}/responses", params={"mRID": mrid})
        if [r["status"] for r in lifecycle["expected"]] == [1, 2]:
            break
        assert time.monotonic() < deadline, lifecycle
        time.sleep(0.2)
    effective = second.admin_ok("GET", f"/devices/{lfdi}/effective")
    assert effective["modes"]["opModMaxLimW"]["value"] == 2500
    # No telemetry log on a Kafka gateway: said so, not an empty log.
    answer = first.admin.get("/telemetry")
    assert answer.status_code == 501
    assert "csip.telemetry" in answer.text


def test_writes_get_503_when_the_broker_is_down(
    server_pki: Pki, tmp_path: Path, topic_prefix: str
) -> None:
    own = Broker(tmp_path).start()
    try:
        ensure_topics(own.url, prefix=topic_prefix, shards=int(SHARDS))
        running = gateway(server_pki, own, topic_prefix, tmp_path / "g").start()
        try:
            running.admin_ok("PUT", "/programs/p1", json={"primacy": 1})
            me = running.identity("device1")
            running.admin_ok("PUT", f"/authorizations/{me.lfdi}", json={})
            own.kill()
            response = running.admin.put("/programs/p2", json={"primacy": 1})
            assert response.status_code == 503
            assert response.headers["retry-after"]
            assert running.admin.get("/programs").status_code == 200  # reads still served
            # a device's write: a 2030.5 Error saying when to come back
            body = (
                f'<EndDevice xmlns="{NS}"><lFDI>{me.lfdi}</lFDI><sFDI>{me.sfdi}</sFDI>'
                "<changedTime>0</changedTime></EndDevice>"
            )
            sep = {"Content-Type": "application/sep+xml", "Accept": "application/sep+xml"}
            with httpx.Client(
                base_url=running.url, verify=running.tls("device1"), timeout=60
            ) as device:  # the gateway gives the broker 10 s before it answers 503
                refused = device.post("/edev", content=body, headers=sep)
            assert refused.status_code == 503
            error = etree.fromstring(refused.content)
            assert error.findtext(f"{{{NS}}}reasonCode") == "2"
            assert error.findtext(f"{{{NS}}}maxRetryDuration") == refused.headers["retry-after"]
        finally:
            running.stop()
    finally:
        own.stop()


def test_the_notifier_delivers_what_subscribers_asked_for(
    cluster: tuple[Server, Server], broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    from tests.gateway.test_subscriptions import Sink, subscribe
    from tests.gateway.tls_fixtures import serving

    first, _ = cluster
    ready = tmp_path / "notifier.ready"
    with open(tmp_path / "notifier.log", "ab") as out:
        notifier = subprocess.Popen(
            [
                sys.executable, "-m", "csip", "notifier", "--broker", broker.url,
                "--prefix", topic_prefix, "--shards", SHARDS, "--data", str(tmp_path / "n"),
                "--pki", str(first.pki.directory), "--metrics-port", "0",
                "--public-url", first.url, "--no-idempotence", "--notify-test-mode",
                "--ready-file", str(ready), "--log-level", "warning",
            ],
            stdout=out,
            stderr=out,
        )  # fmt: skip
    sink = Sink()
    try:
        with serving(sink) as url:  # type: ignore[arg-type]
            first.admin_ok("PUT", "/programs/p1", json={"primacy": 1})
            aggregator = first.identity("aggregator1").lfdi
            first.admin_ok("PUT", "/aggregators/aggregator1", json={"lfdi": aggregator})
            first.admin_ok("PUT", "/aggregators/aggregator1/notification-hosts", json=["127.0.0.1"])
            device = first.identity("device1").lfdi
            first.admin_ok("POST", "/devices", json={"lfdi": device, "aggregator": "aggregator1"})
            first.admin_ok("PUT", f"/devices/{device}/fsas", json=[{"programs": ["p1"]}])
            deadline = time.monotonic() + 30
            while not ready.exists() or not ready.read_text().strip():
                assert notifier.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            subscribe(first, "/derp/p1/derc", f"{url}/kafka")
            time.sleep(1.0)  # the notifier sees the subscription and takes its baseline
            mrid = first.admin_ok(
                "POST",
                "/programs/p1/controls",
                json={
                    "start": int(time.time()) + 600,
                    "duration": 60,
                    "base": {"opModConnect": False},
                },
            )["mRIDs"][0]
            notification = sink.wait("/kafka", 1, timeout=30)[0]
            ns = {"s": "urn:ieee:std:2030.5:ns"}
            found = [m.text for m in notification.findall("s:Resource/s:DERControl/s:mRID", ns)]
            assert found == [mrid]
            assert notification.findtext("s:subscriptionURI", namespaces=ns).startswith(first.url)
    finally:
        notifier.terminate()
        notifier.wait(15)
