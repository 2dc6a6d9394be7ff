"""Error answers of the device listener: a 2030.5 ``Error`` for a client that accepts 2030.5 XML
(its reasonCode; every body validated against the XSD by the fixture's client), plain text for
anyone else, and the reason in ``X-Csip-Reason`` either way."""

from __future__ import annotations

import httpx
import pytest
from lxml import etree

from tests.gateway.server_fixtures import Server

SEP_XML = "application/sep+xml"
SEP = {"Content-Type": SEP_XML, "Accept": SEP_XML}
NS = "urn:ieee:std:2030.5:ns"


@pytest.fixture(scope="module")
def device(server: Server) -> httpx.Client:
    server.admin_ok("PUT", f"/authorizations/{server.identity('device1').lfdi}", json={})
    return server.client("device1")


def reason_code(response: httpx.Response) -> int:
    assert response.headers["content-type"].startswith(SEP_XML), response.text
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{NS}}}Error"
    return int(root.findtext(f"{{{NS}}}reasonCode"))


def end_device(server: Server, name: str) -> str:
    me = server.identity(name)
    return (
        f'<EndDevice xmlns="{NS}"><lFDI>{me.lfdi}</lFDI><sFDI>{me.sfdi}</sFDI>'
        "<changedTime>0</changedTime></EndDevice>"
    )


def test_an_unknown_client_gets_403_with_an_error_body(server: Server) -> None:
    stranger = server.client("device6")  # a valid certificate the utility never registered
    response = stranger.get("/edev", headers={"Accept": SEP_XML})
    assert response.status_code == 403
    assert reason_code(response) == 1
    assert "unknown client" in response.headers["x-csip-reason"]


def test_without_2030_5_in_accept_the_reason_is_plain_text(server: Server) -> None:
    stranger = server.client("device6")
    response = stranger.get("/edev")  # httpx sends Accept: */*
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert "unknown client" in response.text
    assert "unknown client" in response.headers["x-csip-reason"]


def test_malformed_xml_is_400_invalid_format(server: Server, device: httpx.Client) -> None:
    response = device.post(
        "/edev", content=b'<EndDevice xmlns="urn:ieee:std:2030.5:ns">', headers=SEP
    )
    assert response.status_code == 400
    assert reason_code(response) == 0
    assert response.headers["x-csip-reason"].startswith("rejected XML")


def test_a_refused_value_is_400_invalid_values(server: Server, device: httpx.Client) -> None:
    body = end_device(server, "device1").replace(
        str(server.identity("device1").sfdi), "123456789012"
    )
    response = device.post("/edev", content=body, headers=SEP)
    assert response.status_code == 400
    assert reason_code(response) == 1
    assert "does not belong" in response.headers["x-csip-reason"]


def test_wrong_media_type_and_oversized_bodies_are_invalid_format(
    server: Server, device: httpx.Client
) -> None:
    body = end_device(server, "device1")
    wrong = device.post(
        "/edev", content=body, headers={"Content-Type": "application/json", "Accept": SEP_XML}
    )
    assert wrong.status_code == 415 and reason_code(wrong) == 0
    big = body.replace("</EndDevice>", "<x>" + "y" * 70_000 + "</x></EndDevice>")
    too_large = device.post("/edev", content=big, headers=SEP)
    assert too_large.status_code == 413 and reason_code(too_large) == 0


@pytest.mark.parametrize("path", ["/nothing", "/edev/abc", "/edev/999999", "/derp/x/derc/y"])
def test_unknown_resources_are_404_with_an_error_body(device: httpx.Client, path: str) -> None:
    response = device.get(path, headers={"Accept": SEP_XML})
    assert response.status_code == 404, path
    assert reason_code(response) == 1


def test_a_method_a_resource_does_not_have_is_405_with_allow(device: httpx.Client) -> None:
    response = device.request("PATCH", "/dcap", headers={"Accept": SEP_XML})
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    assert reason_code(response) == 1


def test_the_admin_api_keeps_plain_text(server: Server) -> None:
    response = server.admin.get("/devices/not-an-lfdi", headers={"Accept": SEP_XML})
    assert response.status_code in (400, 404)
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-csip-reason"]
