"""The view cache: repeated polls answered from materialized views, never a stale one.

Every test here polls a URL until it is answered from the cache (the cache's hit counter moves),
then changes what the URL shows in one of the ways a view goes stale, and checks the next poll
shows the change.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.kernel import Engine
from engine.kernel.catalog import Catalog
from engine.state.registry import Registry
from gateway.context import GatewayContext, GatewaySettings
from gateway.views import ViewCache
from tests.gateway.server_fixtures import Server

SEP = {"Content-Type": "application/sep+xml"}
NS = 'xmlns="urn:ieee:std:2030.5:ns"'


def hits(server: Server) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{server.admin_port}/metrics").text
    found = re.search(r'^csip_view_cache\{what="hits"\} (\S+)$', metrics, re.MULTILINE)
    assert found is not None, "the view cache exports its hits"
    return float(found.group(1))


def cached_get(server: Server, client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    """GET ``url`` twice; the second answer must come from the view cache."""
    first = client.get(url, **kwargs)
    before = hits(server)
    second = client.get(url, **kwargs)
    assert hits(server) == before + 1, "the repeated GET was answered from the view cache"
    assert (second.status_code, second.content) == (first.status_code, first.content)
    assert second.headers.get("etag") == first.headers.get("etag")
    return second


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, Any]:
    server.admin_ok("PUT", "/programs/vp", json={"primacy": 3})
    server.admin_ok(
        "PUT", "/aggregators/aggregator1", json={"lfdi": server.identity("aggregator1").lfdi}
    )
    edev = {}
    for name, aggregator in (("device1", None), ("device2", "aggregator1"), ("device3", None)):
        lfdi = server.identity(name).lfdi
        body = {"lfdi": lfdi, **({"aggregator": aggregator} if aggregator else {})}
        edev[name] = server.admin_ok("POST", "/devices", json=body)["edevId"]
        server.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["vp"]}])
    return {"edev": edev}


def test_a_cached_poll_answers_304_200_and_head_like_the_routes(
    server: Server, world: dict[str, Any]
) -> None:
    client = server.client("device1")
    full = cached_get(server, client, "/derp/vp/derc")
    etag = full.headers["etag"]
    assert full.headers["content-type"].startswith("application/sep+xml")
    not_modified = cached_get(server, client, "/derp/vp/derc", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    weak = client.get("/derp/vp/derc", headers={"If-None-Match": f'W/{etag}, "other"'})
    assert weak.status_code == 304
    head = client.head("/derp/vp/derc")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(full.content))


def test_a_new_control_shows_on_the_next_poll(server: Server, world: dict[str, Any]) -> None:
    client = server.client("device1")
    before = cached_get(server, client, "/derp/vp/derc")
    etag = before.headers["etag"]
    start = int(time.time()) + 3600
    server.admin_ok(
        "POST",
        "/programs/vp/controls",
        json={"start": start, "duration": 60, "base": {"opModFixedW": 5}},
    )
    after = client.get("/derp/vp/derc", params={"l": 10}, headers={"If-None-Match": etag})
    assert after.status_code == 200 and 'all="1"' in after.text


def test_a_device_report_refreshes_its_views_and_its_aggregators_only(
    server: Server, world: dict[str, Any]
) -> None:
    edev2 = world["edev"]["device2"]
    device2, aggregator = server.client("device2"), server.client("aggregator1")
    status = f"/edev/{edev2}/der/1/ders"
    body = (
        f"<DERStatus {NS}><inverterStatus><dateTime>1767225600</dateTime><value>{{}}</value>"
        "</inverterStatus><readingTime>1767225600</readingTime></DERStatus>"
    )
    assert device2.put(status, content=body.format(4), headers=SEP).status_code == 204
    cached_get(server, aggregator, status)
    cached_get(server, device2, status)
    other = server.client("device3")
    cached_get(server, other, "/derp/vp/derc")
    assert device2.put(status, content=body.format(7), headers=SEP).status_code == 204
    # Both viewers of device2 see the new status at once ...
    for client in (device2, aggregator):
        seen = client.get(status)
        assert "<value>7</value>" in seen.text
    # ... and a device that has nothing to do with it keeps its cached view.
    before = hits(server)
    other.get("/derp/vp/derc")
    assert hits(server) == before + 1


def test_a_control_starting_moves_its_status_without_any_write(
    server: Server, world: dict[str, Any]
) -> None:
    server.admin_ok("PUT", "/programs/vp2", json={"primacy": 4})
    lfdi = server.identity("device3").lfdi
    server.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["vp", "vp2"]}])
    start = int(time.time()) + 2
    created = server.admin_ok(
        "POST",
        "/programs/vp2/controls",
        json={"start": start, "duration": 600, "base": {"opModFixedW": 7}},
    )
    client = server.client("device3")
    url = f"/derp/vp2/derc/{created['mRIDs'][0]}"
    scheduled = cached_get(server, client, url)
    assert "<currentStatus>0</currentStatus>" in scheduled.text
    while time.time() < start + 1:
        time.sleep(0.2)
    assert "<currentStatus>1</currentStatus>" in client.get(url).text


def test_an_unknown_client_is_never_answered_from_the_cache(server: Server) -> None:
    unknown = server.client("device5")  # a certificate from our CA, but never registered
    before = hits(server)
    for _ in range(3):
        assert unknown.get("/derp/vp/derc").status_code == 403
    assert hits(server) == before


def test_a_removed_device_loses_its_cached_views(server: Server, world: dict[str, Any]) -> None:
    client = server.client("device1")
    edev = world["edev"]["device1"]
    cached_get(server, client, f"/edev/{edev}")
    lfdi = server.identity("device1").lfdi
    server.admin_ok("DELETE", f"/devices/{lfdi}")
    assert client.get(f"/edev/{edev}").status_code == 403
    assert client.get("/derp/vp/derc").status_code == 403


# -- the no-cache baseline ------------------------------------------------------------------


def test_the_baseline_renders_every_time_without_etags(server_pki: Any, tmp_path: Path) -> None:
    baseline = Server(server_pki, tmp_path / "data", "--no-view-cache").start()
    try:
        baseline.admin_ok("PUT", "/programs/b", json={"primacy": 3})
        lfdi = baseline.identity("device1").lfdi
        baseline.admin_ok("POST", "/devices", json={"lfdi": lfdi})
        baseline.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=[{"programs": ["b"]}])
        client = baseline.client("device1")
        first = client.get("/derp/b/derc")
        again = client.get("/derp/b/derc", headers={"If-None-Match": "*"})
        assert first.status_code == again.status_code == 200
        assert "etag" not in first.headers and first.content == again.content
        metrics = httpx.get(f"http://127.0.0.1:{baseline.admin_port}/metrics").text
        assert 'csip_view_cache{what="hits"}' not in metrics
    finally:
        baseline.stop()


# -- stamps (no server) ---------------------------------------------------------------------


class _Backend:
    """Just enough of a backend for a ViewCache: a real registry and a real engine."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.engine = Engine()


def test_stamps_expire_at_the_next_instant_time_changes_a_view() -> None:
    backend = _Backend()
    ctx = GatewayContext(backend, GatewaySettings())  # type: ignore[arg-type]
    views = ViewCache(ctx)
    stamp = views.stamp("A" * 40, now=100)
    assert views.current(stamp, "A" * 40, now=10_000_000)  # nothing scheduled: never expires
    views.changed()
    assert not views.current(stamp, "A" * 40, now=101)
    fresh = views.stamp("A" * 40, now=101)
    views.reported("B" * 40)  # somebody else's report
    assert views.current(fresh, "A" * 40, now=102)
    views.reported("A" * 40)
    assert not views.current(fresh, "A" * 40, now=102)


def test_next_view_change_is_the_next_start_supersede_or_end() -> None:
    from engine.kernel.model import DERControl
    from engine.kernel.modes import freeze

    catalog = Catalog()
    catalog.define_program("p", 1)
    control = DERControl(
        mrid="A" * 32,
        program="p",
        creation_time=1,
        start=1000,
        duration=100,
        base=(("opModFixedW", freeze("opModFixedW", 1)),),
    )
    catalog.add_control(control, 1)
    assert catalog.next_view_change(0) == 1000
    assert catalog.next_view_change(1000) == 1100
    assert catalog.next_view_change(1100) is None
