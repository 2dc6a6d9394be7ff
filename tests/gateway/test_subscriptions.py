"""Subscriptions over HTTPS and notifications delivered to a subscriber on loopback (test mode):
changes by commands and by time, a resource deleted, a subscriber that refuses for a while and a
server restart in between, dead letters, and notificationURI checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from gateway.pki import Pki
from tests.gateway.server_fixtures import Server
from tests.gateway.tls_fixtures import serving
from tests.xsd import assert_valid

SEP = {"Content-Type": "application/sep+xml"}
NS = {"s": "urn:ieee:std:2030.5:ns"}


class Sink:
    """A subscriber's notification endpoint: records what it is sent; can refuse for a while."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.answer = 200
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        status = self.answer
        if status < 300:
            with self.lock:
                self.received.append((request.url.path, body))
        await Response(status_code=status)(scope, receive, send)

    def bodies(self, path: str) -> list[etree._Element]:
        with self.lock:
            return [etree.fromstring(b) for p, b in self.received if p == path]

    def wait(self, path: str, count: int, timeout: float = 20.0) -> list[etree._Element]:
        """At least ``count`` notifications received at ``path``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.bodies(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.bodies(path))} notifications, expected {count}")


@pytest.fixture(scope="module")
def sink() -> Iterator[tuple[Sink, str]]:
    app = Sink()
    with serving(app) as url:  # type: ignore[arg-type]
        yield app, url


@pytest.fixture(scope="module")
def notifying(server_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(
        server_pki, tmp_path_factory.mktemp("notify") / "data", "--notify-test-mode"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def world(notifying: Server) -> dict[str, Any]:
    server = notifying
    server.admin_ok("PUT", "/programs/p1", json={"primacy": 1})
    server.admin_ok(
        "PUT", "/aggregators/aggregator1", json={"lfdi": server.identity("aggregator1").lfdi}
    )
    server.admin_ok("PUT", "/aggregators/aggregator1/notification-hosts", json=["127.0.0.1"])
    edev = {
        "aggregator1": server.admin_ok("GET", f"/devices/{server.identity('aggregator1').lfdi}")[
            "edevId"
        ]
    }
    for name in ("device1", "device2"):
        lfdi = server.identity(name).lfdi
        edev[name] = server.admin_ok(
            "POST", "/devices", json={"lfdi": lfdi, "aggregator": "aggregator1"}
        )["edevId"]
        server.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["p1"]}])
    return {"edev": edev}


def subscribe(
    server: Server, resource: str, uri: str, limit: int = 10, holder: int | None = None
) -> str:
    holder = (
        holder
        if holder is not None
        else server.admin_ok("GET", f"/devices/{server.identity('aggregator1').lfdi}")["edevId"]
    )
    body = (
        '<Subscription xmlns="urn:ieee:std:2030.5:ns">'
        f"<subscribedResource>{resource}</subscribedResource><encoding>0</encoding>"
        f"<level>+S1</level><limit>{limit}</limit><notificationURI>{uri}</notificationURI></Subscription>"
    )
    response = server.client("aggregator1").post(f"/edev/{holder}/sub", content=body, headers=SEP)
    assert response.status_code == 201, response.text
    return str(response.headers["location"])


def mrids(notification: etree._Element) -> list[str]:
    return [m.text or "" for m in notification.findall("s:Resource/s:DERControl/s:mRID", NS)]


def test_control_changes_are_notified_with_the_list(
    notifying: Server, world: dict, sink: tuple[Sink, str]
) -> None:
    app, url = sink
    location = subscribe(notifying, "/derp/p1/derc", f"{url}/derc", limit=1)
    assert notifying.client("aggregator1").get(location).status_code == 200
    start = int(time.time()) + 3
    first = notifying.admin_ok(
        "POST",
        "/programs/p1/controls",
        json={"start": start, "duration": 600, "base": {"opModMaxLimW": 5}},
    )["mRIDs"][0]
    notification = app.wait("/derc", 1)[0]
    assert_valid(etree.tostring(notification))
    assert notification.findtext("s:subscribedResource", namespaces=NS) == "/derp/p1/derc"
    assert notification.findtext("s:status", namespaces=NS) == "0"
    assert notification.findtext("s:subscriptionURI", namespaces=NS).endswith(location)
    assert mrids(notification) == [first]
    assert notification.find("s:Resource", NS).get("all") == "1"
    # A second control: the list is cut to the subscription's limit, "all" says how many.
    notifying.admin_ok(
        "POST",
        "/programs/p1/controls",
        json={"start": start + 3600, "duration": 60, "base": {"opModMaxLimW": 6}},
    )
    second = app.wait("/derc", 2)[1]
    assert second.find("s:Resource", NS).get("all") == "2" and len(mrids(second)) == 1
    # Time alone: the first control becomes active at its start.
    third = app.wait("/derc", 3, timeout=15)[2]
    statuses = third.findall("s:Resource/s:DERControl/s:EventStatus/s:currentStatus", NS)
    assert [s.text for s in statuses] == ["1"]


def test_registry_changes_are_notified(
    notifying: Server, world: dict, sink: tuple[Sink, str]
) -> None:
    app, url = sink
    edev = world["edev"]["device1"]
    subscribe(notifying, f"/edev/{edev}/fsa", f"{url}/fsa")
    subscribe(notifying, "/edev", f"{url}/edev")
    assert (
        notifying.client("aggregator1")
        .post(
            f"/edev/{world['edev']['aggregator1']}/sub",
            content=(
                '<Subscription xmlns="urn:ieee:std:2030.5:ns"><subscribedResource>/derp/p1/dderc'
                "</subscribedResource><encoding>0</encoding><level>+S1</level><limit>1</limit>"
                f"<notificationURI>{url}/dderc</notificationURI></Subscription>"
            ),
            headers=SEP,
        )
        .status_code
        == 400
    )  # no DefaultDERControl yet: nothing to subscribe to
    notifying.admin_ok("PUT", "/programs/p1/default", json={"base": {"opModMaxLimW": 8000}})
    subscribe(notifying, "/derp/p1/dderc", f"{url}/dderc")
    lfdi = notifying.identity("device1").lfdi
    notifying.admin_ok("PUT", "/programs/p2", json={"primacy": 2})
    notifying.admin_ok(
        "PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["p1"]}, {"programs": ["p2"]}]
    )
    fsa = app.wait("/fsa", 1)[0]
    assert fsa.find("s:Resource", NS).get("all") == "2"
    notifying.admin_ok("PUT", "/programs/p1/default", json={"base": {"opModMaxLimW": 9000}})
    default = app.wait("/dderc", 1)[0]
    assert default.findtext("s:Resource/s:DERControlBase/s:opModMaxLimW", namespaces=NS) == "9000"
    notifying.admin_ok(
        "PUT",
        f"/authorizations/{notifying.identity('device3').lfdi}",
        json={"aggregator": "aggregator1"},
    )
    body = (
        '<EndDevice xmlns="urn:ieee:std:2030.5:ns">'
        f"<lFDI>{notifying.identity('device3').lfdi}</lFDI><sFDI>{notifying.identity('device3').sfdi}</sFDI>"
        "<changedTime>0</changedTime></EndDevice>"
    )
    assert (
        notifying.client("aggregator1").post("/edev", content=body, headers=SEP).status_code == 201
    )
    # Other changes (changedTime, link counts) were notified before; then device3 arrived.
    deadline = time.monotonic() + 10
    while app.bodies("/edev")[-1].find("s:Resource", NS).get("all") != "4":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_deleted_resource_ends_the_subscription(
    notifying: Server, world: dict, sink: tuple[Sink, str]
) -> None:
    app, url = sink
    edev = world["edev"]["device2"]
    subscribe(notifying, f"/edev/{edev}/fsa", f"{url}/gone")
    assert notifying.client("aggregator1").delete(f"/edev/{edev}").status_code == 204
    final = app.wait("/gone", 1)[0]
    assert final.findtext("s:status", namespaces=NS) == "4"
    assert final.find("s:Resource", NS) is None
    deadline = time.monotonic() + 10
    while any(
        s["resource"] == f"/edev/{edev}/fsa" for s in notifying.admin_ok("GET", "/subscriptions")
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_delete_subscription_stops_notifications(
    notifying: Server, world: dict, sink: tuple[Sink, str]
) -> None:
    app, url = sink
    location = subscribe(notifying, "/derp/p1", f"{url}/stop")
    assert notifying.client("aggregator1").delete(location).status_code == 204
    assert notifying.client("aggregator1").get(location).status_code == 404
    notifying.admin_ok("PUT", "/programs/p1", json={"primacy": 7})
    time.sleep(0.5)
    assert app.bodies("/stop") == []


def test_a_4xx_dead_letters_at_once(notifying: Server, world: dict, sink: tuple[Sink, str]) -> None:
    app, url = sink
    subscribe(notifying, "/derp/p1", f"{url}/rejecting")
    app.answer = 404
    try:
        notifying.admin_ok("PUT", "/programs/p1", json={"primacy": 8})
        deadline = time.monotonic() + 10
        while not notifying.admin_ok("GET", "/dead-letters"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        app.answer = 200
    letter = notifying.admin_ok("GET", "/dead-letters")[0]
    assert (
        letter["reason"] == "rejected" and letter["lastStatus"] == 404 and letter["attempts"] == 1
    )
    notifying.admin_ok("DELETE", f"/dead-letters/{letter['id']}")


def test_notification_uris_are_checked(
    notifying: Server, server: Server, world: dict, sink: tuple[Sink, str]
) -> None:
    _, url = sink
    for uri in ("http://192.0.2.1/x", "https://unlisted.example.com/x", "ftp://127.0.0.1/x"):
        body = (
            '<Subscription xmlns="urn:ieee:std:2030.5:ns">'
            "<subscribedResource>/derp/p1</subscribedResource><encoding>0</encoding>"
            f"<level>+S1</level><limit>1</limit><notificationURI>{uri}</notificationURI>"
            "</Subscription>"
        )
        edev = world["edev"]["aggregator1"]
        response = notifying.client("aggregator1").post(
            f"/edev/{edev}/sub", content=body, headers=SEP
        )
        assert response.status_code == 400, uri
    notifying.admin_ok(
        "PUT",
        "/aggregators/aggregator1/notification-hosts",
        json=["127.0.0.1", "notify.example.com"],
    )
    ok = subscribe(notifying, "/derp/p1", "https://notify.example.com/x")
    assert notifying.client("aggregator1").delete(ok).status_code == 204
    # Without test mode, loopback http is refused too.
    server.admin_ok("PUT", "/programs/p1", json={"primacy": 1})
    server.admin_ok(
        "PUT", "/aggregators/aggregator1", json={"lfdi": server.identity("aggregator1").lfdi}
    )
    server.admin_ok("PUT", "/aggregators/aggregator1/notification-hosts", json=["127.0.0.1"])
    server.admin_ok(
        "POST",
        "/devices",
        json={"lfdi": server.identity("device1").lfdi, "aggregator": "aggregator1"},
    )
    server.admin_ok(
        "PUT", f"/devices/{server.identity('device1').lfdi}/fsas", json=[{"programs": ["p1"]}]
    )
    edev = server.admin_ok("GET", f"/devices/{server.identity('aggregator1').lfdi}")["edevId"]
    body = (
        '<Subscription xmlns="urn:ieee:std:2030.5:ns">'
        "<subscribedResource>/derp/p1</subscribedResource><encoding>0</encoding>"
        f"<level>+S1</level><limit>1</limit><notificationURI>{url}/x</notificationURI>"
        "</Subscription>"
    )
    assert (
        server.client("aggregator1")
        .post(f"/edev/{edev}/sub", content=body, headers=SEP)
        .status_code
        == 400
    )


def test_refusing_subscriber_gets_everything_after_it_recovers_across_a_restart(
    server_pki: Pki, tmp_path: Path, sink: tuple[Sink, str]
) -> None:
    app, url = sink
    data = tmp_path / "data"
    first = Server(server_pki, data, "--notify-test-mode").start()
    first.admin_ok("PUT", "/programs/q", json={"primacy": 1})
    first.admin_ok(
        "PUT", "/aggregators/aggregator1", json={"lfdi": first.identity("aggregator1").lfdi}
    )
    first.admin_ok("PUT", "/aggregators/aggregator1/notification-hosts", json=["127.0.0.1"])
    first.admin_ok(
        "POST",
        "/devices",
        json={"lfdi": first.identity("device1").lfdi, "aggregator": "aggregator1"},
    )
    first.admin_ok(
        "PUT", f"/devices/{first.identity('device1').lfdi}/fsas", json=[{"programs": ["q"]}]
    )
    subscribe(first, "/derp/q/derc", f"{url}/outage")
    app.answer = 503
    try:
        created = first.admin_ok(
            "POST",
            "/programs/q/controls",
            json={
                "start": int(time.time()) + 3600,
                "duration": 60,
                "base": {"opModConnect": False},
            },
        )
        time.sleep(1.5)  # at least one refused attempt
        first.stop()
        second = Server(server_pki, data, "--notify-test-mode").start()
        time.sleep(0.5)
    finally:
        app.answer = 200
    try:
        received = app.wait("/outage", 1, timeout=30)
        assert mrids(received[0]) == created["mRIDs"]
        assert second.admin_ok("GET", "/dead-letters") == []
    finally:
        second.stop()
