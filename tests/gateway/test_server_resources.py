"""Every 2030.5 resource over real HTTPS with client certificates; every body XSD-validated.

The world: programs ``system`` (a default, a curve) and ``feeder``; device1 in both through two
FSAs; aggregator1 managing device2.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from lxml import etree

from tests.gateway.server_fixtures import Server

NS = {"s": "urn:ieee:std:2030.5:ns"}
CURVE = "C0FFEE00C0FFEE00C0FFEE00C0FFEE00"


def xml(response: Any) -> etree._Element:
    assert response.status_code == 200, (response.status_code, response.text)
    return etree.fromstring(response.content)


def text(element: etree._Element, path: str) -> str:
    found = element.find(path, NS)
    assert found is not None, path
    return found.text or ""


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, Any]:
    server.admin_ok("PUT", "/programs/system", json={"primacy": 10, "description": "system"})
    server.admin_ok("PUT", "/programs/feeder", json={"primacy": 5, "description": "feeder"})
    server.admin_ok(
        "PUT",
        "/programs/system/default",
        json={"base": {"opModMaxLimW": 10000, "opModConnect": True, "setGradW": 50}},
    )
    server.admin_ok(
        "PUT",
        f"/programs/system/curves/{CURVE}",
        json={"curveType": 11, "points": [[95, 30], [105, -30]], "yRefType": 2},
    )
    device1 = server.identity("device1")
    device2 = server.identity("device2")
    aggregator = server.identity("aggregator1")
    server.admin_ok("PUT", "/aggregators/aggregator1", json={"lfdi": aggregator.lfdi})
    server.admin_ok("POST", "/devices", json={"lfdi": device1.lfdi, "pin": 12345})
    server.admin_ok("POST", "/devices", json={"lfdi": device2.lfdi, "aggregator": "aggregator1"})
    fsas = [
        {"description": "system", "programs": ["system"]},
        {"description": "feeder", "programs": ["feeder"]},
    ]
    for lfdi in (device1.lfdi, device2.lfdi):
        server.admin_ok("PUT", f"/devices/{lfdi}/fsas", json=fsas)
    edev = {
        name: server.admin_ok("GET", f"/devices/{server.identity(name).lfdi}")["edevId"]
        for name in ("device1", "device2", "aggregator1")
    }
    return {"edev": edev}


def test_device_capability_links_what_the_requester_sees(server: Server, world: dict) -> None:
    dcap = xml(server.client("device1").get("/dcap"))
    assert dcap.get("pollRate") == "900"
    assert dcap.find("s:EndDeviceListLink", NS).get("all") == "1"
    assert dcap.find("s:TimeLink", NS).get("href") == "/tm"
    dcap = xml(server.client("aggregator1").get("/dcap"))
    assert dcap.find("s:EndDeviceListLink", NS).get("all") == "2"  # itself and device2


def test_time_is_utc_now(server: Server, world: dict) -> None:
    tm = xml(server.client("device1").get("/tm"))
    assert abs(int(text(tm, "s:currentTime")) - time.time()) < 5
    assert text(tm, "s:tzOffset") == "0"


def test_end_device_list_and_end_device(server: Server, world: dict) -> None:
    client = server.client("device1")
    listing = xml(client.get("/edev", params={"l": 10}))
    assert (listing.get("all"), listing.get("results")) == ("1", "1")
    device = listing.find("s:EndDevice", NS)
    me = server.identity("device1")
    assert text(device, "s:lFDI") == me.lfdi
    assert text(device, "s:sFDI") == str(me.sfdi)
    href = device.get("href")
    assert href == f"/edev/{world['edev']['device1']}"
    one = xml(client.get(href))
    assert one.find("s:FunctionSetAssignmentsListLink", NS).get("all") == "2"
    registration = xml(client.get(one.find("s:RegistrationLink", NS).get("href")))
    assert text(registration, "s:pIN") == "12345"


def test_aggregator_sees_itself_and_its_devices(server: Server, world: dict) -> None:
    listing = xml(server.client("aggregator1").get("/edev", params={"l": 10}))
    lfdis = {text(d, "s:lFDI") for d in listing.findall("s:EndDevice", NS)}
    assert lfdis == {server.identity("aggregator1").lfdi, server.identity("device2").lfdi}


def test_list_paging_s_and_l_with_all_and_results(server: Server, world: dict) -> None:
    client = server.client("aggregator1")
    default = xml(client.get("/edev"))  # l defaults to 1 (IEEE 2030.5)
    assert (default.get("all"), default.get("results")) == ("2", "1")
    second = xml(client.get("/edev", params={"s": 1, "l": 5}))
    assert (second.get("all"), second.get("results")) == ("2", "1")
    beyond = xml(client.get("/edev", params={"s": 5, "l": 5}))
    assert (beyond.get("all"), beyond.get("results")) == ("2", "0")
    assert client.get("/edev", params={"l": "x"}).status_code == 400


def test_fsa_and_program_lists(server: Server, world: dict) -> None:
    client = server.client("device1")
    edev = world["edev"]["device1"]
    fsas = xml(client.get(f"/edev/{edev}/fsa", params={"l": 15}))
    assert (fsas.get("all"), fsas.get("results"), fsas.get("pollRate")) == ("2", "2", "300")
    second = fsas.findall("s:FunctionSetAssignments", NS)[1]
    programs = xml(client.get(second.find("s:DERProgramListLink", NS).get("href")))
    assert programs.get("pollRate") == "600"
    program = programs.find("s:DERProgram", NS)
    assert program.get("href") == "/derp/feeder"
    assert text(program, "s:primacy") == "5"
    assert xml(client.get(f"/edev/{edev}/fsa/2")).get("href") == f"/edev/{edev}/fsa/2"
    assert client.get(f"/edev/{edev}/fsa/3").status_code == 404


def test_program_default_and_curves(server: Server, world: dict) -> None:
    client = server.client("device1")
    program = xml(client.get("/derp/system"))
    default = xml(client.get(program.find("s:DefaultDERControlLink", NS).get("href")))
    assert text(default, "s:DERControlBase/s:opModMaxLimW") == "10000"
    assert text(default, "s:setGradW") == "50"
    curves = xml(client.get("/derp/system/dc", params={"l": 5}))
    assert curves.get("all") == "1"
    curve = xml(client.get(f"/derp/system/dc/{CURVE}"))
    assert text(curve, "s:curveType") == "11"
    assert client.get("/derp/feeder/dderc").status_code == 404  # no default


def test_control_lifecycle_on_the_server(server: Server, world: dict) -> None:
    """Scheduled, then active at its start (computed at request time), then cancelled."""
    start = int(time.time()) + 2
    created = server.admin_ok(
        "POST",
        "/programs/feeder/controls",
        json={"start": start, "duration": 600, "base": {"opModMaxLimW": 5000}},
    )
    mrid = created["mRIDs"][0]
    client = server.client("device1")
    href = f"/derp/feeder/derc/{mrid}"
    control = xml(client.get(href))
    assert text(control, "s:EventStatus/s:currentStatus") == "0"
    assert control.get("replyTo") == "/rsps/feeder/rsp"
    assert control.get("responseRequired") == "03"
    assert text(control, "s:DERControlBase/s:opModMaxLimW") == "5000"
    listing = xml(client.get("/derp/feeder/derc", params={"l": 10}))
    assert mrid in {text(c, "s:mRID") for c in listing.findall("s:DERControl", NS)}
    while time.time() < start:
        time.sleep(0.1)
    control = xml(client.get(href))
    assert text(control, "s:EventStatus/s:currentStatus") == "1"
    active = xml(client.get("/derp/feeder/actderc", params={"l": 10}))
    assert mrid in {text(c, "s:mRID") for c in active.findall("s:DERControl", NS)}
    server.admin_ok("POST", f"/programs/feeder/controls/{mrid}/cancel")
    assert text(xml(client.get(href)), "s:EventStatus/s:currentStatus") == "2"
    effective = server.admin_ok("GET", f"/devices/{server.identity('device1').lfdi}/effective")
    assert effective["modes"]["opModMaxLimW"]["event"] is None  # back to the default
    lifecycle = server.admin_ok(
        "GET", f"/devices/{server.identity('device1').lfdi}/responses", params={"mRID": mrid}
    )
    assert [r["status"] for r in lifecycle["expected"]] == [1, 2, 6]


def test_one_control_resource_shared_by_all_members(server: Server, world: dict) -> None:
    created = server.admin_ok(
        "POST",
        "/programs/system/controls",
        json={"start": int(time.time()) + 3600, "duration": 60, "base": {"opModConnect": False}},
    )
    href = f"/derp/system/derc/{created['mRIDs'][0]}"
    one = server.client("device1").get(href)
    other = server.client("aggregator1").get(href)
    assert one.content == other.content
    assert one.headers["etag"] == other.headers["etag"]


def test_etag_and_conditional_get(server: Server, world: dict) -> None:
    client = server.client("device1")
    first = client.get("/derp/system")
    etag = first.headers["etag"]
    again = client.get("/derp/system", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/derp/system", headers={"If-None-Match": '"other"'}).status_code == 200
    edev = world["edev"]["device1"]
    for path in ("/dcap", f"/edev/{edev}", f"/edev/{edev}/fsa", "/derp/system/dderc"):
        response = client.get(path)
        assert response.headers.get("etag"), path
        assert (
            client.get(path, headers={"If-None-Match": response.headers["etag"]}).status_code == 304
        )


def test_head_works_wherever_get_does(server: Server, world: dict) -> None:
    client = server.client("device1")
    edev = world["edev"]["device1"]
    for path in ("/dcap", "/tm", "/edev", f"/edev/{edev}", f"/edev/{edev}/fsa", "/derp/system"):
        got = client.get(path)
        head = client.head(path)
        assert head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-length"] == str(len(got.content)) or path == "/tm"


def test_program_changes_are_seen_at_once(server: Server, world: dict) -> None:
    client = server.client("device1")
    before = client.get("/derp/feeder")
    server.admin_ok("PUT", "/programs/feeder", json={"primacy": 4, "description": "feeder"})
    after = xml(client.get("/derp/feeder", headers={"If-None-Match": before.headers["etag"]}))
    assert text(after, "s:primacy") == "4"
