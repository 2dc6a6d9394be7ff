"""Bad input gets a clear error and changes nothing: 400, 413, 415, never a 500 or a leak."""

from __future__ import annotations

import time

import pytest

from tests.gateway.server_fixtures import Server

SEP = {"Content-Type": "application/sep+xml"}
NS = 'xmlns="urn:ieee:std:2030.5:ns"'


@pytest.fixture(scope="module")
def client(server: Server):  # type: ignore[no-untyped-def]
    server.admin_ok("PUT", f"/authorizations/{server.identity('device1').lfdi}", json={})
    return server.client("device1")


def end_device(server: Server, name: str = "device1") -> str:
    me = server.identity(name)
    return (
        f"<EndDevice {NS}><lFDI>{me.lfdi}</lFDI><sFDI>{me.sfdi}</sFDI>"
        "<changedTime>0</changedTime></EndDevice>"
    )


LAUGHS = (
    '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
)


HOSTILE = {
    "xxe": '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    f"<EndDevice {NS}><sFDI>&x;</sFDI></EndDevice>",
    "billion-laughs": f'<?xml version="1.0"?><!DOCTYPE l [{LAUGHS}]>'
    f"<EndDevice {NS}><sFDI>&d;</sFDI></EndDevice>",
    "doctype": f'<!DOCTYPE EndDevice SYSTEM "http://127.0.0.1:9/x.dtd"><EndDevice {NS}/>',
    "deep": f"<EndDevice {NS}>" + "<a>" * 5000 + "</a>" * 5000 + "</EndDevice>",
    "malformed": f"<EndDevice {NS}><sFDI>1</sFDI>",
    "wrong-namespace": '<EndDevice xmlns="urn:example"><sFDI>1</sFDI></EndDevice>',
    "wrong-root": f"<DERControl {NS}/>",
    "not-utf8": b"<EndDevice \xff\xfe/>".decode("latin-1"),
    "no-sfdi": f"<EndDevice {NS}><changedTime>0</changedTime></EndDevice>",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_xml_is_refused_with_a_reason(server: Server, client, kind: str) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = client.post("/edev", content=HOSTILE[kind].encode("latin-1"), headers=SEP)
    assert response.status_code == 400, response.text
    assert response.text.strip(), "a reason"
    assert "root:" not in response.text  # /etc/passwd never read back
    assert time.monotonic() - started < 2
    assert server.admin_ok("GET", "/devices") == []  # nothing registered


def test_oversized_body_is_413(server: Server, client) -> None:  # type: ignore[no-untyped-def]
    body = end_device(server).replace("</EndDevice>", "<x>" + "y" * 70_000 + "</x></EndDevice>")
    assert client.post("/edev", content=body, headers=SEP).status_code == 413

    def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(100):
            yield b"<a>" + b"z" * 1000 + b"</a>"

    assert client.post("/edev", content=chunks(), headers=SEP).status_code == 413


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_wrong_content_type_is_415(server: Server, client, content_type: str | None) -> None:  # type: ignore[no-untyped-def]
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/edev", content=end_device(server), headers=headers)
    assert response.status_code == 415


def test_sfdi_must_belong_to_the_lfdi(server: Server, client) -> None:  # type: ignore[no-untyped-def]
    body = end_device(server).replace(str(server.identity("device1").sfdi), "123456789012")
    response = client.post("/edev", content=body, headers=SEP)
    assert response.status_code == 400
    assert "does not belong" in response.text


def test_a_good_body_still_works_after_all_that(server: Server, client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/edev", content=end_device(server), headers=SEP)
    assert response.status_code == 201
    assert response.headers["location"].startswith("/edev/")


def test_unknown_resources_are_404(server: Server, client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/nothing", "/edev/abc", "/derp/x/derc/y", "/edev/1/fsa/x", "/derp"):
        assert client.get(path).status_code == 404, path
