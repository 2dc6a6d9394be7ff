"""In-band registration (POST EndDevice), the authorization list, modes, and deletion."""

from __future__ import annotations

import pytest

from tests.gateway.server_fixtures import Server

SEP = {"Content-Type": "application/sep+xml"}


def body(server: Server, name: str, *, with_lfdi: bool = True, category: str | None = None) -> str:
    me = server.identity(name)
    lfdi = f"<lFDI>{me.lfdi}</lFDI>" if with_lfdi else ""
    cat = f"<deviceCategory>{category}</deviceCategory>" if category else ""
    return (
        f'<EndDevice xmlns="urn:ieee:std:2030.5:ns">{cat}{lfdi}<sFDI>{me.sfdi}</sFDI>'
        "<changedTime>0</changedTime></EndDevice>"
    )


@pytest.fixture(scope="module", autouse=True)
def world(server: Server) -> None:
    server.admin_ok(
        "PUT", "/aggregators/aggregator1", json={"lfdi": server.identity("aggregator1").lfdi}
    )
    server.admin_ok(
        "PUT", "/aggregators/aggregator2", json={"lfdi": server.identity("aggregator2").lfdi}
    )
    server.admin_ok("PUT", f"/authorizations/{server.identity('device1').lfdi}", json={"pin": 4321})
    for name in ("device2", "device3"):
        server.admin_ok(
            "PUT",
            f"/authorizations/{server.identity(name).lfdi}",
            json={"aggregator": "aggregator1"},
        )


def test_an_authorized_device_registers_itself(server: Server) -> None:
    client = server.client("device1")
    assert client.get("/edev").text.count("<EndDevice ") == 0  # nothing yet, but allowed
    response = client.post(
        "/edev", content=body(server, "device1", with_lfdi=False, category="00000004"), headers=SEP
    )
    assert response.status_code == 201
    location = response.headers["location"]
    device = client.get(location)
    assert server.identity("device1").lfdi in device.text
    assert "<deviceCategory>00000004</deviceCategory>" in device.text
    assert "<pIN>4321</pIN>" in client.get(location + "/rg").text
    again = client.post("/edev", content=body(server, "device1"), headers=SEP)
    # registered already: refused, with the existing one's Location
    assert (again.status_code, again.headers["location"]) == (409, location)
    assert len(server.admin_ok("GET", "/devices")) == 3  # two aggregators and device1


def test_an_aggregator_registers_its_devices(server: Server) -> None:
    client = server.client("aggregator1")
    response = client.post("/edev", content=body(server, "device2"), headers=SEP)
    assert response.status_code == 201
    assert client.get(response.headers["location"]).status_code == 200
    # Without the lFDI, the sFDI is matched against the aggregator's authorizations.
    response = client.post("/edev", content=body(server, "device3", with_lfdi=False), headers=SEP)
    assert response.status_code == 201
    managed = server.admin_ok("GET", "/devices", params={"aggregator": "aggregator1"})
    assert {d["lfdi"] for d in managed} == {server.identity(n).lfdi for n in ("device2", "device3")}


def test_not_on_the_list_is_refused(server: Server) -> None:
    response = server.client("aggregator2").post(
        "/edev", content=body(server, "device4"), headers=SEP
    )
    assert response.status_code == 403
    assert (
        server.client("device4")
        .post("/edev", content=body(server, "device4"), headers=SEP)
        .status_code
        == 403
    )


def test_a_device_registers_only_itself(server: Server) -> None:
    server.admin_ok("PUT", f"/authorizations/{server.identity('device5').lfdi}", json={})
    response = server.client("device1").post("/edev", content=body(server, "device5"), headers=SEP)
    assert response.status_code == 403


def test_closed_and_open_registration(server: Server) -> None:
    server.admin_ok("PUT", "/registration-mode", json={"mode": "closed"})
    try:
        response = server.client("device5").post(
            "/edev", content=body(server, "device5"), headers=SEP
        )
        assert response.status_code == 403
        assert "closed" in response.text
    finally:
        server.admin_ok("PUT", "/registration-mode", json={"mode": "open"})
    response = server.client("device6").post("/edev", content=body(server, "device6"), headers=SEP)
    assert response.status_code == 201
    server.admin_ok("PUT", "/registration-mode", json={"mode": "allowlist"})


def test_the_managing_aggregator_deletes_a_device(server: Server) -> None:
    client = server.client("aggregator1")
    lfdi = server.identity("device3").lfdi
    href = server.admin_ok("GET", f"/devices/{lfdi}")["href"]
    assert client.delete(href).status_code == 204
    assert client.get(href).status_code == 404
    assert server.admin.get(f"/devices/{lfdi}").status_code == 404
